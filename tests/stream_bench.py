"""Run rtl components in Amaranth's simulator with multi-lane streams, beside the cycle model.

:func:`drive` feeds beats and collects beats under a valid/ready pattern;
:func:`model_transfers` steps :class:`hwsim.cycles.EngineModel` under the same pattern,
so a test can compare every transfer cycle of the RTL with the model's.
"""

import numpy as np
from amaranth.sim import Simulator

from hwsim.cycles import EngineModel


def pack(values, width):
    word = 0
    for k, value in enumerate(values):
        word |= (int(value) & ((1 << width) - 1)) << (k * width)
    return word


def unpack(word, count, width, signed=False):
    values = [(word >> (k * width)) & ((1 << width) - 1) for k in range(count)]
    if signed:
        values = [v - (1 << width) if v >> (width - 1) else v for v in values]
    return values


def beats_of(x, lanes, width):
    """Rows of level indices → input beats of ``lanes`` values (the last one of a row zero-padded)."""
    return [pack(row[start:start + lanes], width) for row in np.asarray(x) for start in range(0, len(row), lanes)]


def drive(dut, beats, n_out, ready=lambda k: True, gap=lambda k: False, max_cycles=200_000):
    """Offer ``beats`` on ``dut.i`` (unless ``gap(cycle)``), take ``n_out`` beats from ``dut.o``
    (while ``ready(cycle)``). Returns (payloads, input transfer cycles, output transfer cycles)."""
    got, ins, outs = [], [], []
    sim = Simulator(dut)
    sim.add_clock(1e-6)

    async def bench(ctx):
        sent, cycle = 0, 0
        while len(got) < n_out and cycle < max_cycles:
            offer = sent < len(beats) and not gap(cycle)
            ctx.set(dut.i.valid, int(offer))
            if offer:
                ctx.set(dut.i.payload, beats[sent])
            ctx.set(dut.o.ready, int(ready(cycle)))
            _, _, i_ready, o_valid, o_ready, payload = await ctx.tick().sample(
                dut.i.ready, dut.o.valid, dut.o.ready, dut.o.payload)
            if offer and i_ready:
                ins.append(cycle)
                sent += 1
            if o_valid and o_ready:
                got.append(payload)
                outs.append(cycle)
            cycle += 1

    sim.add_testbench(bench)
    sim.run()
    return got, ins, outs


def model_transfers(schedule, n_in, n_out, ready=lambda k: True, gap=lambda k: False, max_cycles=200_000):
    """The same drive against the cycle model: (input transfer cycles, output transfer cycles).

    ``schedule``: an engine's :class:`hwsim.cycles.EngineSchedule`, or any stage model
    (``in_ready``, ``out_valid``, ``step``) such as :class:`hwsim.cycles.WindowModel`.
    """
    unit = schedule if hasattr(schedule, "in_ready") else EngineModel(schedule)
    sent, got, ins, outs, cycle = 0, 0, [], [], 0
    while got < n_out and cycle < max_cycles:
        took = sent < n_in and not gap(cycle) and unit.in_ready
        gave = unit.out_valid and ready(cycle)
        if took:
            ins.append(cycle)
            sent += 1
        if gave:
            outs.append(cycle)
            got += 1
        unit.step(took, gave)
        cycle += 1
    return ins, outs


def engine_outputs(payloads, schedule, folding, out_features, field, signed):
    """Output beats of an engine → ``[vectors, out_features]`` in channel order."""
    values = [v for word in payloads for v in unpack(word, folding.out_lanes, field, signed)]
    per_vector = schedule.out_beats * folding.out_lanes
    rows = np.array(values).reshape(-1, per_vector)
    channels = [g * folding.pe + b * folding.out_lanes + u for g, blocks in enumerate(schedule.group_blocks)
                for b in range(blocks) for u in range(folding.out_lanes)]
    keep = np.array(channels) < out_features
    return rows[:, keep]
