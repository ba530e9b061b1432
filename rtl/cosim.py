"""Co-simulation: the generated Verilog under Verilator (cocotb), scored against hwsim."""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hwsim import Simulator
from hwsim.cycles import layer_timing
from hwsim.fast import mac_fast, prepare
from hwsim.layout import apply_thresholds

from .engine import level_width
from .toolchain import verilator_env
from .verilog import TOP_NAME, write_engine, write_network

__all__ = ["CosimResult", "cosim_network", "cosim_engine", "VERILATOR_WARNINGS"]

# Yosys-written Verilog trips Verilator's width lint; silence exactly those warnings.
VERILATOR_WARNINGS = ["-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-Wno-UNUSEDSIGNAL", "-Wno-UNOPTFLAT",
                      "-Wno-PINCONNECTEMPTY", "-Wno-DECLFILENAME", "-Wno-UNSIGNED", "-Wno-CMPCONST",
                      "-Wno-CASEINCOMPLETE"]


@dataclass
class CosimResult:
    samples: int
    mismatches: list          # sample indices whose RTL output differs from hwsim (must be empty)
    stress_mismatches: list
    latency: int              # measured, cycles
    ii: int | None            # measured, cycles
    model_latency: int        # hwsim cycle model
    model_ii: int
    outputs: np.ndarray       # what the RTL produced in the clean phase (int64, one row per sample)
    reference: np.ndarray     # hwsim's answer for the same inputs
    build_s: float
    sim_s: float
    clean_cycles: int
    clean_wall_s: float       # wall time of the clean phase alone

    @property
    def samples_per_s(self):
        """Co-simulated inferences per second of wall time (clean phase)."""
        return self.samples / self.clean_wall_s if self.clean_wall_s else float("nan")


@contextmanager
def _verilator_on_path():
    """Verilator's variables in ``os.environ`` while the runner works, restored afterwards.

    cocotb's runner finds ``verilator`` with ``shutil.which`` and copies ``os.environ``
    into its subprocesses, so the variables must be there, but only for this call.
    """
    saved = {key: os.environ.get(key) for key in ("PATH", "VERILATOR_ROOT", "MAKEFLAGS")}
    os.environ.update(verilator_env())
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _run(verilog, toplevel, bundle, build_dir, seed):
    with _verilator_on_path():
        return _build_and_test(verilog, toplevel, bundle, build_dir, seed)


def _build_and_test(verilog, toplevel, bundle, build_dir, seed):
    from cocotb_tools.runner import get_runner

    build_dir = Path(build_dir).resolve()
    bundle_path, results_path = build_dir / "bench.npz", build_dir / "results.json"
    outputs_path = build_dir / "rtl_outputs.npy"
    np.savez(bundle_path, seed=seed, **bundle)
    results_path.unlink(missing_ok=True)
    outputs_path.unlink(missing_ok=True)
    runner = get_runner("verilator")
    t0 = time.perf_counter()
    runner.build(sources=[verilog], hdl_toplevel=toplevel, build_dir=build_dir, build_args=VERILATOR_WARNINGS,
                 log_file=build_dir / "build.log")
    t1 = time.perf_counter()
    runner.test(test_module="rtl.bench", hdl_toplevel=toplevel, build_dir=build_dir, test_dir=build_dir,
                extra_env={"LQFLOW_BENCH": str(bundle_path), "LQFLOW_RESULTS": str(results_path),
                           "LQFLOW_OUTPUTS": str(outputs_path)},
                log_file=build_dir / "sim.log")
    if not results_path.is_file():
        raise RuntimeError(f"the co-simulation did not finish; see {build_dir / 'sim.log'}")
    results = json.loads(results_path.read_text())
    results["outputs"] = np.load(outputs_path, allow_pickle=False)
    return results, t1 - t0, time.perf_counter() - t1


def cosim_network(model, x, foldings, build_dir, stress=True, seed=0, gap_prob=0.2, ready_prob=0.7):
    """Run ``x`` (level indices ``[B, *input.shape]``) through the RTL of ``model``."""
    sim = Simulator(model)
    x = sim.check_inputs(x)
    if len(x) < 2:
        raise ValueError("inputs: co-simulation needs at least 2 samples (the II is measured between two)")
    expected = sim.run(x)
    pred = expected.argmax(axis=1)
    build_dir = Path(build_dir)
    verilog, info = write_network(model, foldings, build_dir / "rtl")
    latency, ii = info["latency_cycles"], info["initiation_interval_cycles"]   # the cycle model's
    acc_bits = model.mac_layers()[-1].acc_bits
    bundle = dict(x=x.reshape(len(x), -1), expected=np.concatenate([expected, pred[:, None]], axis=1),
                  fmt_kind="network", fmt_count=len(model.classes), fmt_width=acc_bits, beats_per_sample=1,
                  stress=stress, gap_prob=gap_prob, ready_prob=ready_prob, max_cycles=2 * (latency + ii * len(x)))
    res, build_s, sim_s = _run(verilog, TOP_NAME, bundle, build_dir, seed)
    return CosimResult(res["samples"], res["clean_mismatches"], res["stress_mismatches"], res["latency"],
                       res["ii"], latency, ii, res["outputs"], bundle["expected"], build_s, sim_s,
                       res["clean_cycles"], res["clean_wall_s"])


def cosim_engine(layer, folding, x, build_dir, stress=True, seed=0):
    """One engine alone: every accumulator or level index of ``x`` (``[B, in_features]``)."""
    acc = mac_fast(prepare(layer), x).astype(np.int64)
    if layer.output == "threshold":
        expected, kind, width = apply_thresholds(acc, layer.thresholds), "engine", level_width(layer.out_levels)
    else:
        expected, kind, width = acc, "engine_signed", layer.acc_bits
    build_dir = Path(build_dir)
    (build_dir / "rtl").mkdir(parents=True, exist_ok=True)
    verilog = write_engine(layer, folding, build_dir / "rtl")
    bundle = dict(x=x, expected=expected, fmt_kind=kind, fmt_count=1, fmt_width=width,
                  beats_per_sample=layer.out_features, stress=stress, gap_prob=0.2, ready_prob=0.7,
                  max_cycles=2 * layer_timing(layer, folding).per_vector * (len(x) + 1))
    res, build_s, sim_s = _run(verilog, "lqflow_engine", bundle, build_dir, seed)
    # the last output beat of a vector comes per_vector - 1 cycles after its first input beat
    per_vector = layer_timing(layer, folding).per_vector
    return CosimResult(res["samples"], res["clean_mismatches"], res["stress_mismatches"], res["latency"],
                       res["ii"], per_vector - 1, per_vector, res["outputs"], expected, build_s, sim_s,
                       res["clean_cycles"], res["clean_wall_s"])
