"""Co-simulation: the generated Verilog under Verilator or Icarus (cocotb), scored against hwsim.

The bench is :mod:`rtl.bench`, built from :mod:`rtl.testbench` (public as :mod:`lqflow.testing`);
these functions compute hwsim's answer and the cycle model's numbers once, hand them over
and read back what the bench measured.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hwsim import Simulator, run_layer
from hwsim.cycles import engine_schedule, layer_timing, network_timing
from lqir import bits_for_levels

from .testbench import SIMULATORS, VERILATOR_WARNINGS, LaneLayout, NetworkPorts, folding_note, run_cocotb
from .top import input_stream
from .verilog import TOP_NAME, write_engine, write_network

__all__ = ["CosimResult", "cosim_network", "cosim_engine", "VERILATOR_WARNINGS", "SIMULATORS"]


@dataclass(frozen=True, kw_only=True)
class CosimResult:
    """What one co-simulation measured, beside hwsim's answer and the cycle model's numbers."""

    samples: int
    mismatches: list          # sample indices whose RTL output differs from hwsim (must be empty)
    stress_mismatches: list
    latency: int              # measured, cycles
    ii: int | None            # measured, cycles
    model_latency: int        # hwsim cycle model
    model_ii: int
    model_clean_cycles: int   # the cycle model's count of the clean phase (first input to last output)
    outputs: np.ndarray       # what the RTL produced in the clean phase (int64, one row per sample)
    reference: np.ndarray     # hwsim's answer for the same inputs
    build_s: float
    sim_s: float
    clean_cycles: int
    clean_wall_s: float       # wall time of the clean phase alone
    extra_beats: dict         # output beats after the last expected one, per phase (must be 0)
    timing_errors: list       # the bench's timing faults (must be empty)
    unresolved: list          # ports that were X or Z right after reset (must be empty)
    errors: tuple = ()        # the bench's scoreboard messages, one per fault (empty: all as expected)

    @property
    def samples_per_s(self):
        """Co-simulated inferences per second of wall time (clean phase)."""
        return self.samples / self.clean_wall_s if self.clean_wall_s else float("nan")


def _run(verilog, toplevel, bundle, build_dir, seed, simulator):
    """Run :mod:`rtl.bench` on ``verilog`` with ``bundle``; the bench's results, build and simulation seconds."""
    build_dir = Path(build_dir).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    bundle_path, results_path = build_dir / "bench.npz", build_dir / "results.json"
    outputs_path = build_dir / "rtl_outputs.npy"
    np.savez(bundle_path, seed=seed, **bundle)
    results_path.unlink(missing_ok=True)
    outputs_path.unlink(missing_ok=True)
    # the bench's own assertion fails on any fault; its results file says which, and the caller reports it
    run = run_cocotb([verilog], toplevel, "rtl.bench", build_dir, simulator=simulator, check=False,
                     extra_env={"LQFLOW_BENCH": bundle_path, "LQFLOW_RESULTS": results_path,
                                "LQFLOW_OUTPUTS": outputs_path})
    if not results_path.is_file():
        raise RuntimeError(f"the co-simulation did not finish; see {build_dir / 'sim.log'}")
    results = json.loads(results_path.read_text())
    results["outputs"] = np.load(outputs_path, allow_pickle=False)
    return results, run.build_s, run.sim_s


def _output_layout(layout):
    """A :class:`~rtl.testbench.LaneLayout` as bundle entries."""
    return dict(out_count=layout.count, out_width=layout.width, out_signed=layout.signed, out_tail=layout.tail)


def _beats(x, lanes):
    """Level indices ``[B, n]`` → input beats ``[B, ceil(n / lanes), lanes]`` (the last zero-padded)."""
    beats = -(-x.shape[1] // lanes)
    out = np.zeros((len(x), beats * lanes), np.int64)
    out[:, :x.shape[1]] = x
    return out.reshape(len(x), beats, lanes)


def cosim_network(model, x, foldings, build_dir, stress=True, seed=0, gap_prob=0.2, ready_prob=0.7,
                  simulator="verilator", verilog=None):
    """Run ``x`` (level indices ``[B, *input.shape]``) through the RTL of ``model``.

    ``verilog``: the top that :func:`~rtl.verilog.write_network` already wrote for this
    model and these foldings (its ``.json`` beside it is checked), so that it is not
    generated twice; None writes it into ``build_dir / "rtl"``.
    """
    sim = Simulator(model)
    x = sim.check_inputs(x)
    if len(x) < 2:
        raise ValueError("inputs: co-simulation needs at least 2 samples (the II is measured between two)")
    expected = sim.run(x)
    pred = expected.argmax(axis=1)
    build_dir = Path(build_dir)
    if verilog is None:
        verilog, _ = write_network(model, foldings, build_dir / "rtl")
    else:
        verilog = _written_top(Path(verilog), model, foldings)
    timing = network_timing(model, foldings, inferences=len(x))    # the cycle model, on these samples
    ports = NetworkPorts(model, foldings)
    bundle = dict(x=_beats(input_stream(model, x), ports.input.count), lane_width=ports.input.width,
                  expected=np.concatenate([expected, pred[:, None]], axis=1), **_output_layout(ports.output),
                  labels=np.array(ports.labels), context=folding_note(model.mac_layers(), foldings),
                  stress=stress, gap_prob=gap_prob, ready_prob=ready_prob, max_cycles=2 * timing.cycles + 1000,
                  model_latency=timing.latency, model_ii=timing.ii, model_clean_cycles=timing.cycles)
    res, build_s, sim_s = _run(verilog, TOP_NAME, bundle, build_dir, seed, simulator)
    return _result(res, model_latency=timing.latency, model_ii=timing.ii, model_clean_cycles=timing.cycles,
                   reference=bundle["expected"], build_s=build_s, sim_s=sim_s)


def _written_top(verilog, model, foldings):
    """``verilog`` when its description says it is ``model``'s network at ``foldings``."""
    described = verilog.with_suffix(".json")
    if not verilog.is_file() or not described.is_file():
        raise FileNotFoundError(f"{verilog}: no such network Verilog with its .json beside it; "
                                f"write it with rtl.verilog.write_network, or pass verilog=None")
    info = json.loads(described.read_text())
    layers = [(l.get("name"), l.get("pe"), l.get("simd"), l.get("in_lanes"), l.get("out_lanes"))
              for l in info.get("layers", [])]
    wanted = [(layer.name, f.pe, f.simd, f.in_lanes, f.out_lanes) for layer, f in zip(model.mac_layers(), foldings)]
    if layers != wanted:
        raise ValueError(f"{verilog}: written for {layers}, not for this model's foldings {wanted}; "
                         f"write it again or pass verilog=None")
    return verilog.resolve()


def cosim_engine(layer, folding, x, build_dir, stress=True, seed=0, simulator="verilator"):
    """One engine alone: every accumulator or level index of ``x`` (``[B, in_features]``)."""
    _, out = run_layer(layer, x)
    schedule = engine_schedule(layer, folding)
    width = bits_for_levels(layer.out_levels) if layer.output == "threshold" else layer.acc_bits
    # hwsim's outputs laid out as the engine's beats: out_lanes channels each, in its order
    lanes = folding.out_lanes
    channels = np.array([g * folding.pe + b * lanes + u for g, blocks in enumerate(schedule.group_blocks)
                         for b in range(blocks) for u in range(lanes)])
    live = channels < layer.out_features
    expected = np.zeros((len(x), len(channels)), np.int64)
    expected[:, live] = out[:, channels[live]]
    build_dir = Path(build_dir)
    (build_dir / "rtl").mkdir(parents=True, exist_ok=True)
    verilog = write_engine(layer, folding, build_dir / "rtl")
    timing = layer_timing(layer, folding, vectors=len(x))
    shape = (len(x), schedule.out_beats, lanes)
    layout = LaneLayout(lanes, width, signed=layer.output != "threshold")
    bundle = dict(x=_beats(np.asarray(x, np.int64), folding.in_lanes), lane_width=bits_for_levels(layer.in_levels),
                  expected=expected.reshape(shape), mask=np.broadcast_to(live, expected.shape).reshape(shape),
                  labels=np.array([f"channel {c}" if c < layer.out_features else f"unused lane {c}" for c in channels]),
                  context=folding_note([layer], [folding]),
                  **_output_layout(layout), stress=stress, gap_prob=0.2, ready_prob=0.7,
                  max_cycles=2 * timing.cycles + 1000, model_latency=timing.latency, model_ii=timing.ii,
                  model_clean_cycles=timing.cycles)
    res, build_s, sim_s = _run(verilog, "lqflow_engine", bundle, build_dir, seed, simulator)
    outputs = res["outputs"].reshape(len(x), -1)[:, live]
    order = np.argsort(channels[live])
    return _result({**res, "outputs": outputs[:, order]}, model_latency=timing.latency, model_ii=timing.ii,
                   model_clean_cycles=timing.cycles, reference=out, build_s=build_s, sim_s=sim_s)


def _result(res, **known):
    """A :class:`CosimResult` from the bench's results file and what the caller knows."""
    return CosimResult(samples=res["samples"], mismatches=res["clean_mismatches"],
                       stress_mismatches=res["stress_mismatches"], latency=res["latency"], ii=res["ii"],
                       outputs=res["outputs"], clean_cycles=res["clean_cycles"],
                       clean_wall_s=res["clean_wall_s"], extra_beats=res["extra_beats"],
                       timing_errors=res["timing_errors"], unresolved=res["unresolved_after_reset"],
                       errors=tuple(res.get("errors", ())), **known)
