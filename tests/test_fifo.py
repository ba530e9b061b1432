# amaranth: UnusedElaboratable=no
"""rtl.fifo.StreamFifo against amaranth.lib.fifo.SyncFIFO, cycle by cycle, in Amaranth's simulator."""

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib.fifo import SyncFIFO
from amaranth.sim import Simulator
from hypothesis import given, settings
from hypothesis import strategies as st

from rtl.fifo import StreamFifo


def _side_by_side(width, depth, seed, cycles=400, p_write=0.5, p_read=0.5):
    """Drive both FIFOs with the same random writes (only when there is room: the writer
    counts its own, as the engines do) and reads; return the cycles where they differ."""
    rng = np.random.default_rng(seed)
    m = Module()
    m.submodules.ours = ours = StreamFifo(width, depth)
    m.submodules.ref = ref = SyncFIFO(width=width, depth=depth)
    differences, result = [], {}

    async def bench(ctx):
        transfers = 0
        for cycle in range(cycles):
            write = ctx.get(ref.level) < depth and rng.random() < p_write
            data, read = int(rng.integers(0, 1 << width)), bool(rng.random() < p_read)
            for fifo in (ours, ref):
                ctx.set(fifo.w_en, write)
                ctx.set(fifo.w_data, data)
                ctx.set(fifo.r_en, read)
            seen = [(ctx.get(f.r_rdy), ctx.get(f.level)) for f in (ours, ref)]
            if ctx.get(ref.r_rdy):
                seen = [s + (ctx.get(f.r_data),) for s, f in zip(seen, (ours, ref))]
                transfers += read
            if seen[0] != seen[1]:
                differences.append((cycle, seen))
            await ctx.tick()
        result["transfers"] = transfers

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return differences, result["transfers"]


@pytest.mark.parametrize("width, depth, p_write, p_read", [
    (1, 2, 0.5, 0.5), (4, 9, 0.7, 0.3), (4, 9, 0.3, 0.7), (5, 16, 0.9, 0.9), (3, 64, 0.8, 0.2),
])
def test_stream_fifo_behaves_as_syncfifo(width, depth, p_write, p_read):
    differences, transfers = _side_by_side(width, depth, seed=depth * 31 + width, p_write=p_write, p_read=p_read)
    assert differences == []
    assert transfers > 50         # the run moved data, through full and empty


@settings(max_examples=15, deadline=None)
@given(width=st.integers(1, 8), depth=st.integers(2, 20), seed=st.integers(0, 2**32 - 1))
def test_stream_fifo_behaves_as_syncfifo_random(width, depth, seed):
    differences, _ = _side_by_side(width, depth, seed, cycles=200)
    assert differences == []


@pytest.mark.parametrize("width, depth", [(0, 4), (4, 1), (2.0, 4), (True, 4), (4, "8")])
def test_stream_fifo_parameters_are_validated(width, depth):
    with pytest.raises(TypeError, match="FIFO (width|depth) must be"):
        StreamFifo(width, depth)
