"""cocotb testbench for a generated top (network or single engine), run by :mod:`rtl.cosim`.

Built from :mod:`rtl.testbench` (public as :mod:`lqflow.testing`): a
:class:`~rtl.testbench.StreamDriver` on ``i``, a :class:`~rtl.testbench.StreamMonitor`
on ``o`` and one :class:`~rtl.testbench.Scoreboard` per phase. The expected values are
hwsim's, computed once by the caller and handed over in an ``.npz`` bundle
(``LQFLOW_BENCH``). Two phases:

1. *clean*: inputs back to back, output always ready — measures latency, the
   initiation interval and ``clean_cycles``, the cycles from the first input transfer
   to the last output transfer;
2. *stress* (optional): random gaps on the input (bursts of 1–4 cycles) and random
   backpressure on the output, from the bundle's seed.

After each phase's last expected beat the output is watched, ready high, for
``watch_cycles`` more cycles (bundle key; default: twice the cycles per sample the
budget allows, at least 64): any beat there is an extra one.

Errors, all counted into the final ``assert errors == 0``: an output port (or ``i__ready``)
that is not 0 or 1 right after reset (X or Z, as a 4-state simulator shows it), every
sample whose output differs from hwsim's in any integer (or never came: a design that
hangs fails after the bundle's cycle budget), every extra beat, and the clean phase's
timing against the bundle's ``model_latency``, ``model_ii`` and ``model_clean_cycles``.

Results go to the JSON file named by ``LQFLOW_RESULTS`` (with ``errors``, the
scoreboards' messages), the clean phase's output integers to the ``.npy`` named by
``LQFLOW_OUTPUTS``.
"""

import json
import os
import time
from types import SimpleNamespace

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import SimTimeoutError, Timer, with_timeout

from rtl.testbench import LaneLayout, Scoreboard, StreamBus, StreamDriver, StreamMonitor, random_stalls, reset

PERIOD_NS = 10
CHECKED_AFTER_RESET = ("i__ready", "o__valid", "o__payload")


def _layouts(bundle):
    """The input and output :class:`LaneLayout` the bundle describes."""
    inputs = LaneLayout(int(bundle["x"].shape[2]), int(bundle["lane_width"]))
    outputs = LaneLayout(int(bundle["out_count"]), int(bundle["out_width"]), signed=bool(bundle["out_signed"]),
                         tail=int(bundle["out_tail"]))
    return inputs, outputs


def _scoreboard(bundle, name, timing=None):
    mask = bundle["mask"] if "mask" in bundle.files else None
    labels = [str(s) for s in bundle["labels"]] if "labels" in bundle.files else None
    context = str(bundle["context"]) if "context" in bundle.files else None
    return Scoreboard(bundle["expected"], mask=mask, labels=labels, timing=timing, name=name, context=context)


def _watch_cycles(bundle):
    if "watch_cycles" in bundle.files:
        return int(bundle["watch_cycles"])
    return max(64, 2 * int(bundle["max_cycles"]) // max(1, len(bundle["x"])))


async def run_phase(bundle, driver, monitor, board, words, budget_cycles):
    """Send ``words``, score every output beat on ``board`` until the last expected one
    (or the budget runs out), then watch for extra beats. Returns the cycle of the
    phase's first input transfer (``None`` if none was taken)."""
    first = len(driver.transfers)
    monitor.callback = board.add
    expected_beats = len(monitor.beats) + board.expected.shape[0]
    sending = cocotb.start_soon(driver.send(words))
    try:
        await with_timeout(monitor.wait_for(expected_beats), budget_cycles * PERIOD_NS, "ns")
    except SimTimeoutError:
        pass                                    # the scoreboard reports the beats that never came
    if not sending.done():
        sending.cancel()
    monitor.set_backpressure(None)
    await Timer(_watch_cycles(bundle) * PERIOD_NS, "ns")
    return driver.transfers[first] if len(driver.transfers) > first else None


def _write_results(results, outputs):
    np.save(os.environ["LQFLOW_OUTPUTS"], outputs)
    with open(os.environ["LQFLOW_RESULTS"], "w") as fh:
        json.dump(results, fh)


@cocotb.test()
async def bench(dut):
    bundle = np.load(os.environ["LQFLOW_BENCH"], allow_pickle=False)
    seed, samples = int(bundle["seed"]), len(bundle["x"])
    in_layout, out_layout = _layouts(bundle)
    words = [in_layout.pack(beat) for sample in bundle["x"] for beat in sample]
    clock = Clock(dut.clk, PERIOD_NS, unit="ns")
    clock.start()
    driver = StreamDriver(StreamBus.from_prefix(dut, "i"), clock)
    monitor = StreamMonitor(StreamBus.from_prefix(dut, "o"), clock, layout=out_layout)
    unresolved = await reset(clock, dut.rst, check=[getattr(dut, name) for name in CHECKED_AFTER_RESET])
    if unresolved:   # nothing further is meaningful: report and fail
        message = f"X or Z right after reset on {', '.join(unresolved)}"
        _write_results(dict(samples=samples, clean_mismatches=[], stress_mismatches=[],
                            extra_beats={"clean": 0, "stress": 0}, timing_errors=[],
                            unresolved_after_reset=unresolved, latency=None, ii=None, clean_cycles=None,
                            clean_wall_s=0.0, wall_s=0.0, errors=[message]), np.zeros((samples, 0), np.int64))
        assert not unresolved, message

    model = SimpleNamespace(latency=int(bundle["model_latency"]), ii=int(bundle["model_ii"]),
                            cycles=int(bundle["model_clean_cycles"]))
    clean = _scoreboard(bundle, "clean phase", timing=model)
    t0 = time.perf_counter()
    start = await run_phase(bundle, driver, monitor, clean, words, int(bundle["max_cycles"]) + 10_000)
    clean_wall = time.perf_counter() - t0
    latency, ii, clean_cycles = clean.measured(start)

    stress = None
    if bool(bundle["stress"]):
        stress = _scoreboard(bundle, "stress phase (random input gaps, output backpressure)")
        driver.set_stalls(random_stalls(float(bundle["gap_prob"]), seed, longest=4))
        monitor.set_backpressure(random_stalls(1 - float(bundle["ready_prob"]), seed + 1))
        # A hung design fails the bench instead of hanging it: the budget is generous
        # (the cycle model's estimate, times 4 for stalls, plus slack).
        await run_phase(bundle, driver, monitor, stress, words, int(bundle["max_cycles"]) * 4 + 10_000)

    messages = [f"{clean.name}: {e}" for e in clean.errors(start)]
    messages += [f"{stress.name}: {e}" for e in stress.errors()] if stress else []
    results = {
        "samples": samples,
        "clean_mismatches": clean.mismatches, "stress_mismatches": stress.mismatches if stress else [],
        "extra_beats": {"clean": len(clean.extra), "stress": len(stress.extra) if stress else 0},
        "timing_errors": clean.timing_errors(start), "unresolved_after_reset": [],
        "latency": latency, "ii": ii, "clean_cycles": clean_cycles, "clean_wall_s": clean_wall,
        "wall_s": time.perf_counter() - t0, "errors": messages,
    }
    _write_results(results, clean.outputs)
    errors = len(messages)
    context = f"\n{clean.context}" if clean.context else ""
    assert errors == 0, "\n".join(messages) + context
