"""cocotb testbench for a generated top (network or single engine), run by :mod:`rtl.cosim`.

Driver, monitor and scoreboard; the expected values are hwsim's, computed once by the
caller and handed over in an ``.npz`` bundle (``LQFLOW_BENCH``). Two phases:

1. *clean*: inputs back to back, output always ready — measures latency and the
   initiation interval (compared with the cycle model by the caller);
2. *stress* (optional): random gaps on the input and random backpressure on the output.

Results go to the JSON file named by ``LQFLOW_RESULTS``, the clean phase's output
integers to the ``.npy`` named by ``LQFLOW_OUTPUTS``; the test ends in
``assert errors == 0``.
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
    """One output beat → the integers it carries."""
    kind, count, width = fmt
    if kind == "network":
        values = [_signed((word >> (k * width)) & ((1 << width) - 1), width) for k in range(count)]
        return values + [word >> (count * width)]
    return [_signed(word, width) if kind == "engine_signed" else word]


def _cycle():
    return int(get_sim_time("ns")) // PERIOD_NS


async def drive(dut, x, gap_prob, rng, starts):
    """Present every input vector, beat by beat; record each vector's first transfer."""
    await RisingEdge(dut.clk)
    for row in x:
        for k, value in enumerate(row):
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


def scoreboard(got, expected, beats_per_sample):
    """Indices of samples whose output differs from hwsim's in any integer."""
    got = np.array(got, dtype=np.int64).reshape(expected.shape[0], -1)
    exp = expected.reshape(expected.shape[0], -1)
    return [int(s) for s in np.nonzero((got != exp).any(axis=1))[0]]


async def run_phase(dut, bundle, stress, rng):
    x, expected = bundle["x"], bundle["expected"]
    fmt = (str(bundle["fmt_kind"]), int(bundle["fmt_count"]), int(bundle["fmt_width"]))
    beats = int(bundle["beats_per_sample"])
    starts, got, times = [], [], []
    gap, ready = (float(bundle["gap_prob"]), float(bundle["ready_prob"])) if stress else (0.0, 1.0)
    driver = cocotb.start_soon(drive(dut, x, gap, rng, starts))
    # A hung design fails the bench instead of hanging it: the budget is generous
    # (the cycle model's estimate, times 4 for stalls, plus slack).
    budget = int(bundle["max_cycles"]) * (4 if stress else 1) + 10_000
    await with_timeout(monitor(dut, beats * len(x), fmt, ready, rng, got, times), budget * PERIOD_NS, "ns")
    await driver
    return scoreboard(got, expected, beats), starts, times[beats - 1::beats], got


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
    t0, c0 = time.perf_counter(), _cycle()
    clean_bad, starts, ends, outputs = await run_phase(dut, bundle, stress=False, rng=rng)
    np.save(os.environ["LQFLOW_OUTPUTS"], np.array(outputs, dtype=np.int64).reshape(len(bundle["x"]), -1))
    clean_cycles, clean_wall = _cycle() - c0, time.perf_counter() - t0
    stress_bad = []
    if bool(bundle["stress"]):
        await RisingEdge(dut.clk)
        stress_bad = (await run_phase(dut, bundle, stress=True, rng=rng))[0]
    results = {
        "samples": int(len(bundle["x"])),
        "clean_mismatches": clean_bad, "stress_mismatches": stress_bad,
        "latency": ends[0] - starts[0],
        "ii": ends[-1] - ends[-2] if len(ends) > 1 else None,
        "clean_cycles": clean_cycles, "clean_wall_s": clean_wall,
        "wall_s": time.perf_counter() - t0,
    }
    with open(os.environ["LQFLOW_RESULTS"], "w") as fh:
        json.dump(results, fh)
    errors = len(clean_bad) + len(stress_bad)
    assert errors == 0, f"{errors} samples differ from hwsim (first: {(clean_bad + stress_bad)[:5]})"
