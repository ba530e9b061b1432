"""Helpers to run rtl components in Amaranth's own simulator (fast unit tests)."""

import numpy as np
from amaranth.sim import Simulator


def run_stream(dut, rows, beats_out, ready=lambda k: True, gap=lambda k: False, max_cycles=200_000):
    """Feed ``rows`` (one beat per element) into ``dut.i``; collect ``beats_out`` beats of ``dut.o``.

    Returns (payloads, cycle of each input transfer, cycle of each output transfer).
    """
    flat = [int(v) for row in rows for v in row]
    got, in_cycles, out_cycles = [], [], []
    sim = Simulator(dut)
    sim.add_clock(1e-6)

    async def bench(ctx):
        sent, cycle = 0, 0
        while len(got) < beats_out and cycle < max_cycles:
            offer = sent < len(flat) and not gap(cycle)
            ctx.set(dut.i.valid, int(offer))
            if offer:
                ctx.set(dut.i.payload, flat[sent])
            ctx.set(dut.o.ready, int(ready(cycle)))
            _, _, i_ready, o_valid, o_ready, payload = await ctx.tick().sample(
                dut.i.ready, dut.o.valid, dut.o.ready, dut.o.payload)
            if offer and i_ready:
                in_cycles.append(cycle)
                sent += 1
            if o_valid and o_ready:
                got.append(payload)
                out_cycles.append(cycle)
            cycle += 1

    sim.add_testbench(bench)
    sim.run()
    return got, in_cycles, out_cycles


def signed(values, width):
    values = np.asarray(values, dtype=np.int64)
    return np.where(values >> (width - 1), values - (1 << width), values)
