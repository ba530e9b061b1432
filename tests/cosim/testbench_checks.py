"""cocotb tests of lqflow.testing's driver, monitor and scoreboard on a real lqflow_top.

Run by tests/cosim/test_testing_api.py (``LQFLOW_MODEL``, ``LQFLOW_TOP_JSON`` and
``LQFLOW_INPUTS`` name the model, its top's description and the inputs). Each test
passes when the API does what it promises: custom stall patterns stall exactly as
asked and still match hwsim, a seed reproduces every cycle, and a corrupted
expectation, a beat that never comes and an extra beat fail with messages that name them.
"""

import itertools
import os

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, SimTimeoutError, with_timeout

import lqir
from lqflow.testing import NetworkPorts, StreamBus, StreamDriver, StreamMonitor, reset


def setup(dut):
    """The model's ports, the inputs and a running 10 ns clock."""
    model = lqir.load(os.environ["LQFLOW_MODEL"])
    ports = NetworkPorts.from_description(model, os.environ["LQFLOW_TOP_JSON"])
    clock = Clock(dut.clk, 10, unit="ns")
    clock.start()
    return ports, np.load(os.environ["LQFLOW_INPUTS"]), clock


async def start(dut, ports, clock, *, gaps=None, backpressure=None, seed=0):
    """A driver and a monitor, then reset."""
    driver = StreamDriver(StreamBus.from_prefix(dut, "i"), clock, stalls=gaps, seed=seed)
    monitor = StreamMonitor(StreamBus.from_prefix(dut, "o"), clock, layout=ports.output,
                            backpressure=backpressure, seed=seed + 1)
    assert await reset(clock, dut.rst, check=[dut.i__ready, dut.o__valid, dut.o__payload]) == []
    return driver, monitor


async def run(ports, x, driver, monitor, board, beats=None):
    """Send ``x``; wait for ``beats`` more output beats (default one per sample); watch 100 more cycles."""
    monitor.callback = board.add
    cocotb.start_soon(driver.send(ports.input_words(x)))
    wanted = len(monitor.beats) + (beats or len(x))
    try:
        await with_timeout(monitor.wait_for(wanted), 10 * (4 * ports.timing(len(x)).cycles + 1000), "ns")
    except SimTimeoutError:
        pass
    monitor.set_backpressure(None)
    await ClockCycles(driver.clock, 100)


def failure(board, **kw):
    try:
        board.check(**kw)
    except AssertionError as exc:
        return str(exc)
    raise AssertionError("the scoreboard passed a faulty run")


@cocotb.test()
async def custom_patterns_stall_exactly_and_still_match(dut):
    """An iterable for the input (two empty cycles before every beat) and a callable for
    the output (ready low two decisions in three)."""
    ports, x, clock = setup(dut)
    driver, monitor = await start(dut, ports, clock, gaps=itertools.cycle([True, True, False]),
                                  backpressure=lambda n: n % 3 != 2)
    board = ports.scoreboard(ports.expected(x))
    await run(ports, x, driver, monitor, board)
    board.check()
    words = len(ports.input_words(x))
    assert driver.stalled == 2 * words, driver.stalled
    assert all(b - a >= 3 for a, b in zip(driver.transfers, driver.transfers[1:]))
    assert monitor.stalled >= len(x), monitor.stalled      # each beat waited at least once


@cocotb.test()
async def a_seed_reproduces_every_cycle(dut):
    ports, x, clock = setup(dut)
    cycles = []
    for _ in range(2):
        driver, monitor = await start(dut, ports, clock, gaps=0.4, backpressure=0.6, seed=11)
        board = ports.scoreboard(ports.expected(x))
        await run(ports, x, driver, monitor, board)
        board.check()
        assert driver.stalled > 0 and monitor.stalled > 0
        first = driver.transfers[0]
        cycles.append(([c - first for c in driver.transfers], [b.cycle - first for b in monitor.beats]))
        monitor.stop()
    assert cycles[0] == cycles[1]


@cocotb.test()
async def a_corrupted_expectation_names_its_sample_and_logit(dut):
    ports, x, clock = setup(dut)
    driver, monitor = await start(dut, ports, clock, backpressure=0.5, seed=3)
    expected = ports.expected(x)
    right = int(expected[2, 1])
    expected[2, 1] += 1
    board = ports.scoreboard(expected, name="corrupted")
    await run(ports, x, driver, monitor, board)
    message = failure(board)
    assert board.mismatches == [2], message
    assert f"first: sample 2\n    sample 2: logit 1: expected {right + 1}, got {right}" in message, message
    assert "foldings: fc0 PE" in message, message


@cocotb.test()
async def a_missing_beat_and_an_extra_beat_are_named(dut):
    ports, x, clock = setup(dut)
    driver, monitor = await start(dut, ports, clock)
    expected = ports.expected(x)
    longer = ports.scoreboard(np.concatenate([expected, expected[:1]]), name="one sample too many")
    await run(ports, x, driver, monitor, longer, beats=len(x) + 1)
    message = failure(longer)
    assert (f"1 of {len(x) + 1} expected beats never came (dropped or stuck): the first missing is "
            f"sample {len(x)}") in message, message
    shorter = ports.scoreboard(expected[:-1], name="one sample too few")
    await run(ports, x, driver, monitor, shorter)
    message = failure(shorter)
    assert "1 extra beat(s) after the last expected one, first at cycle" in message, message
    assert message.split("\n")[1].endswith(str(expected[-1].tolist())), message
