"""A first-word-fall-through FIFO whose read-side flag is a flip-flop.

The engines' output FIFOs sit between two stages that are placed apart: the reader's
``ready`` comes from the next engine's loader. With :class:`amaranth.lib.fifo.SyncFIFO`
the path from the FIFO's ``level`` register through ``level != 0`` (``r_rdy``), the
reader's handshake and back into the ``level`` adder was the design's slowest (five LUTs,
two long routes). Here ``r_rdy`` is a register, and ``r_en`` only selects among values
computed from registers; cycle for cycle the FIFO behaves as ``SyncFIFO`` does
(``tests/test_fifo.py`` runs both side by side).
"""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["StreamFifo"]


def _next(pointer, depth):
    return Mux(pointer == depth - 1, 0, pointer + 1) if depth & (depth - 1) else pointer + 1


class StreamFifo(wiring.Component):
    """``depth`` entries of ``width`` bits; the first entry is on ``r_data`` while ``r_rdy``.

    The writer counts its own room: it must not raise ``w_en`` when ``level == depth``
    (each engine's finalizer keeps that count; a window unit compares ``level``).

    Parameters
    ----------
    width : int
        Entry width, at least 1.
    depth : int
        Number of entries, at least 2.

    Members
    -------
    w_data : ``In(width)``, w_en : ``In(1)``
        An entry written in a cycle is readable from the next.
    r_data : ``Out(width)``, r_rdy : ``Out(1)``, r_en : ``In(1)``
        The oldest entry, combinationally from the storage; it leaves in a cycle with
        ``r_rdy & r_en``. ``r_rdy`` is a register (``level != 0``).
    level : ``Out(range(depth + 1))``
        Entries held.
    """

    def __init__(self, width, depth):
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise TypeError(f"FIFO width must be a positive integer, not {width!r}")
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 2:
            raise TypeError(f"FIFO depth must be an integer of at least 2, not {depth!r}")
        self.width, self.depth = width, depth
        super().__init__({
            "w_data": In(width), "w_en": In(1),
            "r_data": Out(width), "r_rdy": Out(1), "r_en": In(1),
            "level": Out(range(depth + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        depth = self.depth
        m.submodules.storage = storage = Memory(shape=self.width, depth=depth, init=[])
        w_port, r_port = storage.write_port(), storage.read_port(domain="comb")
        produce, consume = Signal(range(depth)), Signal(range(depth))
        do_read = self.r_rdy & self.r_en
        m.d.comb += [w_port.addr.eq(produce), w_port.data.eq(self.w_data), w_port.en.eq(self.w_en),
                     r_port.addr.eq(consume), self.r_data.eq(r_port.data)]
        with m.If(self.w_en):
            m.d.sync += produce.eq(_next(produce, depth))
        with m.If(do_read):
            m.d.sync += consume.eq(_next(consume, depth))
        level = self.level
        up, down = self.w_en & ~do_read, do_read & ~self.w_en
        with m.If(up):
            m.d.sync += level.eq(level + 1)
        with m.Elif(down):
            m.d.sync += level.eq(level - 1)
        # level ≤ 1 as a register, so that the next r_rdy needs no compare after r_en
        at_most_one = Signal(init=1)
        m.d.sync += [
            self.r_rdy.eq(self.w_en | (self.r_rdy & ~(self.r_en & at_most_one))),
            at_most_one.eq(Mux(down, level <= 2, Mux(up, level == 0, at_most_one))),
        ]
        return m
