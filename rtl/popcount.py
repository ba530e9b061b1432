"""A pipelined popcount: an adder tree with a register after every level."""

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hwsim.cycles import popcount_latency

__all__ = ["Popcount"]


class Popcount(wiring.Component):
    """Number of set bits of ``i``, ``latency`` cycles later.

    Parameters
    ----------
    width : int
        Input width, at least 1.

    Members
    -------
    i : ``In(width)``
        The bits to count; sampled every cycle.
    o : ``Out(range(width + 1))``
        ``popcount(i)`` as it was ``latency`` cycles earlier.

    Latency: ``max(1, ceil(log2(width)))`` cycles (one register per tree level).
    """

    def __init__(self, width):
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise TypeError(f"Popcount width must be a positive integer, not {width!r}")
        self.width = width
        self.latency = popcount_latency(width)
        super().__init__({"i": In(width), "o": Out(range(width + 1))})

    def elaborate(self, platform):
        m = Module()
        # (value, largest value it can hold) per tree node
        level = [(self.i[k], 1) for k in range(self.width)]
        for stage in range(self.latency):
            nxt = []
            for k in range(0, len(level), 2):
                pair = level[k:k + 2]
                top = sum(t for _, t in pair)
                node = Signal(range(top + 1), name=f"sum_l{stage}_{k // 2}")
                m.d.sync += node.eq(sum(v for v, _ in pair))
                nxt.append((node, top))
            level = nxt
        m.d.comb += self.o.eq(level[0][0])
        return m
