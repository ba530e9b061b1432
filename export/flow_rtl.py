"""The hardware steps of ``lqflow run``: Verilog → co-simulation → synthesis (DESIGN §4 step 5)."""

from __future__ import annotations

from dataclasses import asdict

__all__ = ["hardware_steps", "hardware_section", "hls_step", "ladder_rtl_rows"]


def hardware_steps(model, x, folder, pe=None, simd=None, target_ii=None, synth=True, device="25k", log=print):
    """Run the RTL steps on the test inputs; returns a JSON-able dict (``skipped`` says why not)."""
    from rtl.top import check_supported

    try:
        check_supported(model)
    except ValueError as exc:
        return {"skipped": str(exc)}
    from rtl.cosim import cosim_network
    from rtl.verilog import choose_foldings, write_network

    foldings = choose_foldings(model, pe=pe, simd=simd, target_ii=target_ii)
    log("writing Verilog ...")
    verilog, info = write_network(model, foldings, folder / "rtl")
    log(f"co-simulating {len(x)} samples under Verilator (cocotb) ...")
    res = cosim_network(model, x, foldings, folder / "cosim_build", stress=True)
    out = {"verilog": str(verilog.relative_to(folder)), "description": info,
           "cosim": {"samples": res.samples, "mismatches": len(res.mismatches),
                     "stress_mismatches": len(res.stress_mismatches), "latency": res.latency,
                     "model_latency": res.model_latency, "ii": res.ii, "model_ii": res.model_ii,
                     "samples_per_s": res.samples_per_s, "build_s": res.build_s}}
    if synth:
        from rtl.synth import figure_rows, synthesize

        log("synthesizing (yosys synth_ecp5) and placing and routing (nextpnr-ecp5) ...")
        report = synthesize(verilog, folder / "rtl" / "synth", device=device)
        rate, micros = report.throughput(info["initiation_interval_cycles"], info["latency_cycles"])
        out["synth"] = {**asdict(report), "inferences_per_s": rate, "latency_us": micros}
        out["synth_rows"] = [[str(name), str(value)] for name, value in figure_rows(report, info)]
    return out


def hls_step(model, x, folder, log=print):
    """DESIGN §4 step 6: hls4ml's C simulation against hwsim on the test inputs."""
    from .hls import ExpressError, hls_cosim

    log("writing the hls4ml project and compiling its C simulation ...")
    try:
        res = hls_cosim(model, x, folder / "hls4ml")
    except ExpressError as exc:
        return {"skipped": str(exc)}
    return {"samples": len(res.outputs), "mismatches": len(res.mismatches), "compile_s": res.compile_s,
            "layers": [{"name": l.name, "kind": l.kind, "outputs": l.n_out, "precision": l.precision}
                       for l in res.plan]}


def ladder_rtl_rows(hw, hls=None):
    """Step-5 (and step-6) rows of the verification ladder."""
    rows = [] if hls is None else _hls_rows(hls)
    if "skipped" in hw:
        return [("5", "RTL under Verilator == hwsim", hw["skipped"], "SKIP")] + rows
    c = hw["cosim"]
    ok = {True: "PASS", False: "FAIL"}
    equal = c["mismatches"] == 0 and c["stress_mismatches"] == 0
    cycles = c["ii"] == c["model_ii"] and c["latency"] == c["model_latency"]
    return [
        ("5", "RTL (Verilator) == hwsim, every logit, with gaps + backpressure",
         f"{c['samples']} samples, {c['mismatches'] + c['stress_mismatches']} mismatches", ok[equal]),
        ("5", "RTL cycles == hwsim cycle model (II, latency)",
         f"{c['ii']} / {c['latency']} vs {c['model_ii']} / {c['model_latency']}", ok[cycles]),
    ] + rows


def _hls_rows(hls):
    if "skipped" in hls:
        return [("6", "hls4ml C simulation == hwsim", hls["skipped"], "SKIP")]
    return [("6", "hls4ml C simulation == hwsim, every logit",
             f"{hls['samples']} samples, {hls['mismatches']} mismatches", "PASS" if hls["mismatches"] == 0 else "FAIL")]


def hardware_section(hw):
    """Markdown: the hardware table of the report."""
    if "skipped" in hw:
        return f"## Hardware\n\nSkipped: {hw['skipped']}"
    info, c = hw["description"], hw["cosim"]
    lines = ["## Hardware", "", "| layer | in → out | PE | SIMD | cycles / vector |", "|---|---|---|---|---|"]
    lines += [f"| {l['name']} | {l['in_features']} → {l['out_features']} | {l['pe']} | {l['simd']} | "
              f"{l['cycles_per_vector']} |" for l in info["layers"]]
    figures = hw.get("synth_rows") or [["initiation interval", f"{info['initiation_interval_cycles']} cycles"],
                                       ["latency", f"{info['latency_cycles']} cycles"]]
    figures = figures + [["co-simulation", f"{c['samples']} samples, {c['mismatches'] + c['stress_mismatches']} "
                                           f"mismatches, {c['samples_per_s']:.0f} samples/s"]]
    lines += ["", "| figure | value |", "|---|---|"] + [f"| {name} | {value} |" for name, value in figures]
    lines += ["", "Files: `rtl/lqflow_top.v`, `rtl/lqflow_top.json` (ports, folding, latency, II)"
              + (", `rtl/synth/` (yosys and nextpnr logs, `synth.json`; placed out of context)"
                 if "synth" in hw else "") + "."]
    return "\n".join(lines)
