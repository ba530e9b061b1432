"""cocotb testbench for a generated top (network or single engine), run by :mod:`rtl.cosim`.

Driver, monitor and scoreboard; the expected values are hwsim's, computed once by the
caller and handed over in an ``.npz`` bundle (``LQFLOW_BENCH``). Two phases:

1. *clean*: inputs back to back, output always ready — measures latency, the
   initiation interval and ``clean_cycles``, the cycles from the first input transfer
   to the last output transfer;
2. *stress* (optional): random gaps on the input and random backpressure on the output.

After each phase's last expected beat the output is watched, ready high, for
``watch_cycles`` more cycles (bundle key; default: twice the cycles per sample the
budget allows, at least 64): any beat there is an extra one.

Errors, all counted into the final ``assert errors == 0``: an output port (or ``i__ready``)
that is not 0 or 1 right after reset (X or Z, as a 4-state simulator shows it), every sample whose output
differs from hwsim's in any integer, every extra beat, and the clean phase's timing
(:func:`timing_errors`): ``clean_cycles`` must equal the bundle's ``model_clean_cycles``
when it carries one, else ``latency + (samples - 1) · ii``; latency and II must equal
``model_latency`` / ``model_ii`` when the bundle carries them.

Results go to the JSON file named by ``LQFLOW_RESULTS``, the clean phase's output
integers to the ``.npy`` named by ``LQFLOW_OUTPUTS``.
"""

import json
import os
import random
import time

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import ReadOnly, RisingEdge, with_timeout

PERIOD_NS = 10


def _signed(value, width):
    return value - (1 << width) if value >> (width - 1) else value


def decode(word, fmt):
    """One output beat → the integers it carries (``count`` fields of ``width`` bits)."""
    kind, count, width = fmt
    values = [(word >> (k * width)) & ((1 << width) - 1) for k in range(count)]
    if kind in ("network", "engine_signed"):
        values = [_signed(v, width) for v in values]
    if kind == "network":
        values.append(word >> (count * width))    # the predicted class
    return values


def pack(lanes, width):
    """One input beat from its lanes (lane l in bits [l·width, (l+1)·width))."""
    word = 0
    for k, value in enumerate(lanes):
        word |= (int(value) & ((1 << width) - 1)) << (k * width)
    return word


def _cycle():
    return int(get_sim_time("ns")) // PERIOD_NS


async def drive(dut, x, width, gap_prob, rng, starts):
    """Present every input vector (``[beats, lanes]`` level indices), beat by beat; record
    each vector's first transfer."""
    await RisingEdge(dut.clk)
    for row in x:
        for k, lanes in enumerate(row):
            value = pack(lanes, width)
            if gap_prob and rng.random() < gap_prob:
                dut.i__valid.value = 0
                for _ in range(rng.randint(1, 4)):
                    await RisingEdge(dut.clk)
            dut.i__payload.value = int(value)
            dut.i__valid.value = 1
            while True:
                await ReadOnly()
                if dut.i__ready.value:
                    if k == 0:
                        starts.append(_cycle())
                    await RisingEdge(dut.clk)
                    break
                await RisingEdge(dut.i__ready)
    dut.i__valid.value = 0


async def monitor(dut, expected_beats, fmt, ready_prob, rng, got, times):
    """Collect output beats (with random backpressure if ``ready_prob`` < 1)."""
    dut.o__ready.value = 1
    while len(got) < expected_beats:
        await ReadOnly()
        if not dut.o__valid.value:
            await RisingEdge(dut.o__valid)
            continue
        if dut.o__ready.value:
            got.append(decode(dut.o__payload.value.to_unsigned(), fmt))
            times.append(_cycle())
        await RisingEdge(dut.clk)
        dut.o__ready.value = 1 if rng.random() < ready_prob else 0


async def watch(dut, cycles):
    """Output beats seen in the next ``cycles`` cycles with ready high (there should be none)."""
    dut.o__ready.value = 1
    extra = 0
    for _ in range(cycles):
        await ReadOnly()
        if dut.o__valid.value:
            extra += 1
        await RisingEdge(dut.clk)
    return extra


def scoreboard(got, expected, mask):
    """Indices of samples whose output differs from hwsim's in any integer ``mask`` selects
    (an engine's last beat may carry lanes past its last channel)."""
    got = np.array(got, dtype=np.int64).reshape(expected.shape[0], -1)
    exp, keep = expected.reshape(expected.shape[0], -1), mask.reshape(expected.shape[0], -1).astype(bool)
    return [int(s) for s in np.nonzero(((got != exp) & keep).any(axis=1))[0]]


async def run_phase(dut, bundle, stress, rng):
    x, expected = bundle["x"], bundle["expected"]
    fmt = (str(bundle["fmt_kind"]), int(bundle["fmt_count"]), int(bundle["fmt_width"]))
    beats = int(bundle["beats_per_sample"])
    starts, got, times = [], [], []
    gap, ready = (float(bundle["gap_prob"]), float(bundle["ready_prob"])) if stress else (0.0, 1.0)
    driver = cocotb.start_soon(drive(dut, x, int(bundle["lane_width"]), gap, rng, starts))
    # A hung design fails the bench instead of hanging it: the budget is generous
    # (the cycle model's estimate, times 4 for stalls, plus slack).
    budget = int(bundle["max_cycles"]) * (4 if stress else 1) + 10_000
    await with_timeout(monitor(dut, beats * len(x), fmt, ready, rng, got, times), budget * PERIOD_NS, "ns")
    await driver
    mask = bundle["mask"] if "mask" in bundle.files else np.ones_like(expected)
    return scoreboard(got, expected, mask), starts, times[beats - 1::beats], got


def _watch_cycles(bundle):
    if "watch_cycles" in bundle.files:
        return int(bundle["watch_cycles"])
    return max(64, 2 * int(bundle["max_cycles"]) // max(1, len(bundle["x"])))


def timing_errors(bundle, latency, ii, clean_cycles, samples):
    """The clean phase's timing faults, as messages (empty: all as expected).

    ``clean_cycles`` must equal the bundle's ``model_clean_cycles`` (the cycle model's
    count) when it carries one, else ``latency + (samples - 1) · ii``: one steady interval
    from the first output on, as the cycle model predicts for back-to-back inputs.
    """
    errors = []
    if "model_clean_cycles" in bundle.files:
        want, how = int(bundle["model_clean_cycles"]), "the cycle model's count"
    else:
        want, how = latency + (samples - 1) * (ii or 0), "latency + (samples - 1) * ii"
    if clean_cycles != want:
        errors.append(f"clean phase took {clean_cycles} cycles, not {how} = {want}")
    for key, got in (("model_latency", latency), ("model_ii", ii)):
        if key in bundle.files and int(bundle[key]) != got:
            errors.append(f"measured {key[6:]} {got} != the cycle model's {int(bundle[key])}")
    return errors


def _write_results(results, outputs):
    np.save(os.environ["LQFLOW_OUTPUTS"], outputs)
    with open(os.environ["LQFLOW_RESULTS"], "w") as fh:
        json.dump(results, fh)


@cocotb.test()
async def bench(dut):
    bundle = np.load(os.environ["LQFLOW_BENCH"], allow_pickle=False)
    rng = random.Random(int(bundle["seed"]))
    Clock(dut.clk, PERIOD_NS, unit="ns").start()
    dut.rst.value = 1
    dut.i__valid.value = 0
    dut.o__ready.value = 1
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    await ReadOnly()
    # a 4-state simulator (Icarus) shows X where a 2-state one (Verilator) shows 0
    unresolved = [name for name in ("i__ready", "o__valid", "o__payload")
                  if not getattr(dut, name).value.is_resolvable]
    await RisingEdge(dut.clk)
    if unresolved:   # nothing further is meaningful: report and fail
        _write_results(dict(samples=int(len(bundle["x"])), clean_mismatches=[], stress_mismatches=[],
                            extra_beats={"clean": 0, "stress": 0}, timing_errors=[],
                            unresolved_after_reset=unresolved, latency=None, ii=None, clean_cycles=None,
                            clean_wall_s=0.0, wall_s=0.0), np.zeros((len(bundle["x"]), 0), np.int64))
        assert not unresolved, f"X or Z right after reset on {', '.join(unresolved)}"
    t0 = time.perf_counter()
    clean_bad, starts, ends, outputs = await run_phase(dut, bundle, stress=False, rng=rng)
    clean_wall = time.perf_counter() - t0
    clean_extra = await watch(dut, _watch_cycles(bundle))
    clean_outputs = np.array(outputs, dtype=np.int64).reshape(len(bundle["x"]), -1)
    samples = int(len(bundle["x"]))
    latency, ii = ends[0] - starts[0], (ends[-1] - ends[-2] if len(ends) > 1 else None)
    clean_cycles = ends[-1] - starts[0]
    timing = timing_errors(bundle, latency, ii, clean_cycles, samples)
    stress_bad, stress_extra = [], 0
    if bool(bundle["stress"]):
        await RisingEdge(dut.clk)
        stress_bad = (await run_phase(dut, bundle, stress=True, rng=rng))[0]
        stress_extra = await watch(dut, _watch_cycles(bundle))
    results = {
        "samples": samples,
        "clean_mismatches": clean_bad, "stress_mismatches": stress_bad,
        "extra_beats": {"clean": clean_extra, "stress": stress_extra},
        "timing_errors": timing, "unresolved_after_reset": unresolved,
        "latency": latency, "ii": ii,
        "clean_cycles": clean_cycles, "clean_wall_s": clean_wall,
        "wall_s": time.perf_counter() - t0,
    }
    _write_results(results, clean_outputs)
    errors = len(clean_bad) + len(stress_bad) + clean_extra + stress_extra + len(timing) + len(unresolved)
    assert errors == 0, (f"{errors} errors: {len(clean_bad) + len(stress_bad)} samples differ from hwsim "
                         f"(first: {(clean_bad + stress_bad)[:5]}), {clean_extra} + {stress_extra} extra beats "
                         f"after the last expected one (clean + stress), timing: {timing or 'as expected'}, "
                         f"X/Z after reset: {unresolved or 'none'}")
