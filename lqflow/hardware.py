"""The hardware steps of ``lqflow run``: Verilog → co-simulation → synthesis (ladder step 5)
and the hls4ml C simulation (step 6), with typed results."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import asdict, dataclass, field, replace

from lqir import UnsupportedLayerError, check_backend

from .ladder import LadderRow, Status
from .priority import at_lower_priority

__all__ = ["CosimSummary", "HardwareResult", "HlsStepResult", "hardware_steps", "hls_step",
           "hardware_section"]


@dataclass(frozen=True)
class CosimSummary:
    """Step 5: the co-simulation's counts and its measured vs modelled cycles."""

    samples: int
    mismatches: int
    stress_mismatches: int
    latency: int
    model_latency: int
    ii: int
    model_ii: int
    clean_cycles: int       # the clean phase, first input to last output
    model_clean_cycles: int
    extra_beats: int        # output beats after the last expected one (both phases)
    unresolved: list        # ports that were X or Z right after reset
    samples_per_s: float
    build_s: float

    @property
    def equal(self):
        return self.mismatches == 0 and self.stress_mismatches == 0 and self.extra_beats == 0 and not self.unresolved

    @property
    def cycles_equal(self):
        return (self.ii, self.latency, self.clean_cycles) == (self.model_ii, self.model_latency,
                                                               self.model_clean_cycles)


@dataclass(frozen=True)
class HardwareResult:
    """Step 5 of a run; ``skipped`` says why it did not run."""

    skipped: str | None = None
    verilog: str | None = None
    description: dict = field(default_factory=dict)
    cosim: CosimSummary | None = None
    synth: dict | None = None                 # rtl.synth.SynthReport fields + throughput
    synth_rows: list = field(default_factory=list)
    pending: Future | None = field(default=None, repr=False, compare=False)   # synthesis, still running

    def finished(self):
        """This result with the synthesis figures, once the background synthesis is done."""
        return self if self.pending is None else _with_synth(self, self.pending.result())

    def rows(self):
        if self.skipped:
            return [LadderRow(5, "RTL under Verilator == hwsim", self.skipped, Status.SKIP)]
        c = self.cosim
        return [
            LadderRow(5, "RTL (Verilator) == hwsim, every logit, with gaps + backpressure",
                      f"{c.samples} samples, {c.mismatches + c.stress_mismatches} mismatches", Status.of(c.equal)),
            LadderRow(5, "RTL cycles == hwsim cycle model (II, latency, whole clean phase)",
                      f"{c.ii} / {c.latency} / {c.clean_cycles} vs {c.model_ii} / {c.model_latency} / "
                      f"{c.model_clean_cycles}", Status.of(c.cycles_equal)),
        ]


@dataclass(frozen=True)
class HlsStepResult:
    """Step 6 of a run; ``skipped`` says why it did not run."""

    skipped: str | None = None
    samples: int = 0
    mismatches: int = 0
    compile_s: float = 0.0
    layers: list = field(default_factory=list)

    def rows(self):
        if self.skipped:
            return [LadderRow(6, "hls4ml C simulation == hwsim", self.skipped, Status.SKIP)]
        return [LadderRow(6, "hls4ml C simulation == hwsim, every logit",
                          f"{self.samples} samples, {self.mismatches} mismatches", Status.of(self.mismatches == 0))]


def hardware_steps(model, x, folder, choose_foldings, synth=True, freq_mhz=150.0, log=print, background=None):
    """Run the RTL steps on the test inputs; returns a :class:`HardwareResult`.

    ``choose_foldings(model)`` returns ``(foldings, note, device)`` (the CLI's folding
    options); the note is logged.  Synthesis targets ``freq_mhz`` on ``device``. With a
    ``background`` executor, synthesis runs there beside the co-simulation and the result
    is pending: :meth:`HardwareResult.finished` waits for it.
    """
    try:
        check_backend(model, "rtl")
    except UnsupportedLayerError as exc:
        return HardwareResult(skipped=str(exc))
    from rtl.cosim import cosim_network
    from rtl.verilog import write_network

    foldings, note, device = choose_foldings(model)
    log(f"folding: {note}")
    log("writing Verilog ...")
    verilog, info = write_network(model, foldings, folder / "rtl", device=device)
    result = HardwareResult(verilog=str(verilog.relative_to(folder)), description=info)

    def cosim():
        log(f"co-simulating {len(x)} samples under Verilator (cocotb) ...")
        return _summary(cosim_network(model, x, foldings, folder / "cosim_build", stress=True, verilog=verilog))

    if not synth:
        return replace(result, cosim=cosim())
    from rtl.synth import synthesize

    # absolute paths, resolved here: hls4ml may change the working directory meanwhile
    source, synth_dir = verilog.resolve(), (folder / "rtl" / "synth").resolve()

    def place():
        return synthesize(source, synth_dir, device=device, target_mhz=freq_mhz, description=info)

    if background is None:
        result = replace(result, cosim=cosim())
        log("synthesizing (yosys synth_ecp5) and placing and routing (nextpnr-ecp5) ...")
        return _with_synth(result, place())
    # yosys and nextpnr use one core, for most of this step: they run beside the
    # co-simulation (and whatever the caller does next), in their own folder. They set the
    # wall time, so the co-simulation (its C++ build above all) yields the CPU to them.
    log("synthesizing (yosys synth_ecp5) and placing and routing (nextpnr-ecp5) in the background ...")
    pending = background.submit(place)
    return replace(result, cosim=at_lower_priority(cosim), pending=pending)


def _summary(res):
    return CosimSummary(samples=res.samples, mismatches=len(res.mismatches),
                        stress_mismatches=len(res.stress_mismatches), latency=res.latency,
                        model_latency=res.model_latency, ii=res.ii, model_ii=res.model_ii,
                        clean_cycles=res.clean_cycles, model_clean_cycles=res.model_clean_cycles,
                        extra_beats=sum(res.extra_beats.values()), unresolved=list(res.unresolved),
                        samples_per_s=res.samples_per_s, build_s=res.build_s)


def _with_synth(result, report):
    from rtl.synth import efficiency, figure_rows

    info = result.description
    return replace(result, synth=asdict(report) | efficiency(report, info), pending=None,
                   synth_rows=[[str(name), str(value)] for name, value in figure_rows(report, info)])


def hls_step(model, x, folder, log=print):
    """Step 6: hls4ml's C simulation against hwsim on the test inputs."""
    from export.hls import hls_cosim

    log("writing the hls4ml project and compiling its C simulation ...")
    try:
        res = hls_cosim(model, x, folder / "hls4ml")
    except UnsupportedLayerError as exc:
        return HlsStepResult(skipped=str(exc))
    return HlsStepResult(samples=len(res.outputs), mismatches=len(res.mismatches), compile_s=res.compile_s,
                         layers=[{"name": l.name, "kind": l.kind, "outputs": l.n_out, "precision": l.precision}
                                 for l in res.plan])


def hardware_section(hw):
    """Markdown: the hardware table of the report."""
    if hw.skipped:
        return f"## Hardware\n\nSkipped: {hw.skipped}"
    info, c = hw.description, hw.cosim
    lines = ["## Hardware", "", "| layer | in → out | PE | SIMD | lanes in / out | II (cycles) | latency |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {l['name']} | {l['in_features']} → {l['out_features']} | {l['pe']} | {l['simd']} | "
              f"{l['in_lanes']} / {l['out_lanes']} | {l['ii_cycles']} | {l['latency_cycles']} |"
              for l in info["layers"]]
    figures = hw.synth_rows or [["initiation interval", f"{info['initiation_interval_cycles']} cycles"],
                                ["latency", f"{info['latency_cycles']} cycles"]]
    figures = figures + [["co-simulation", f"{c.samples} samples, {c.mismatches + c.stress_mismatches} "
                                           f"mismatches, {c.samples_per_s:.0f} samples/s"]]
    lines += ["", "| figure | value |", "|---|---|"] + [f"| {name} | {value} |" for name, value in figures]
    top = info["top"]
    lines += ["", f"Files: `rtl/{top}.v`, `rtl/{top}.json` (ports, folding, latency, II)"
              + (", `rtl/synth/` (yosys and nextpnr logs, `synth.json`; placed out of context)"
                 if hw.synth else "") + "."]
    return "\n".join(lines)
