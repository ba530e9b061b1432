"""A pipelined popcount of ``weights & inputs``: an adder tree with a register after every level.

The AND is inside the unit so that synthesis sees the whole cone of the tree's first
level (two AND pairs per LUT4) and can map the unit on its own (``rtl/synth.py``).
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hwsim.cycles import popcount_latency

__all__ = ["Popcount", "POPCOUNT_PREFIX"]

#: Engines name their popcount instances with this prefix; synthesis finds them by it.
POPCOUNT_PREFIX = "popcount"


class Popcount(wiring.Component):
    """Number of positions set in both ``weights`` and ``inputs``, ``latency`` cycles later.

    Parameters
    ----------
    width : int
        Input width, at least 1.

    Members
    -------
    weights, inputs : ``In(width)``
        The bits whose AND is counted; sampled every cycle. (Not ``a``/``b``: Yosys's
        Verilog functions name their arguments so, and Verilator warns of the shadowing.)
    o : ``Out(range(width + 1))``
        ``popcount(weights & inputs)`` as it was ``latency`` cycles earlier.

    Latency: ``max(1, ceil(log2(width)))`` cycles (one register per tree level).
    """

    def __init__(self, width):
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise TypeError(f"Popcount width must be a positive integer, not {width!r}")
        self.width = width
        self.latency = popcount_latency(width)
        super().__init__({"weights": In(width), "inputs": In(width), "o": Out(range(width + 1))})

    def elaborate(self, platform):
        m = Module()
        # (value, largest value it can hold) per tree node
        both = self.weights & self.inputs
        level = [(both[k], 1) for k in range(self.width)]
        for stage in range(self.latency):
            nxt = []
            for k in range(0, len(level), 2):
                pair = level[k:k + 2]
                top = sum(t for _, t in pair)
                node = Signal(range(top + 1), name=f"sum_l{stage}_{k // 2}", reset_less=True)   # data only
                m.d.sync += node.eq(sum(v for v, _ in pair))
                nxt.append((node, top))
            level = nxt
        m.d.comb += self.o.eq(level[0][0])
        return m
