"""A first-word-fall-through FIFO whose read-side flag is a flip-flop.

The engines' output FIFOs sit between two stages that are placed apart: the reader's
``ready`` comes from the next engine's loader. With :class:`amaranth.lib.fifo.SyncFIFO`
the path from the FIFO's ``level`` register through ``level != 0`` (``r_rdy``), the
reader's handshake and back into the ``level`` adder was the design's slowest (five LUTs,
two long routes). Here ``r_rdy`` is a register (:func:`occupancy`), and ``r_en`` only
selects among values computed from registers; cycle for cycle the FIFO behaves as ``SyncFIFO`` does
(``tests/test_fifo.py`` runs both side by side).
"""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["StreamFifo", "occupancy", "ring_next"]


def ring_next(pointer, size):
    """The position after ``pointer`` in a ring of ``size`` (a plain increment when
    ``size`` is a power of two)."""
    return Mux(pointer == size - 1, 0, pointer + 1) if size & (size - 1) else (pointer + 1)[:len(pointer)]


def occupancy(m, add, remove, size, name):
    """A count of ``size`` places in use, +1 on ``add``, −1 on ``remove`` (the caller never
    adds to a full or removes from an empty count), with "some are" and "all are" as
    registers: their next values are chosen from registers by ``add`` and ``remove``, so
    neither is a compare after the adder. Returns (count, some, all).

    The FIFOs' level, the finalizer's and the window units' room, and the sum buffers'
    rings (taken and given back in order, so "the next is in use" is "all are") use it."""
    count = Signal(range(size + 1), name=f"{name}_count")
    some, full = Signal(name=f"{name}_some"), Signal(name=f"{name}_all")
    up, down = add & ~remove, remove & ~add
    with m.If(up):
        m.d.sync += count.eq(count + 1)
    with m.Elif(down):
        m.d.sync += count.eq(count - 1)
    m.d.sync += [some.eq(Mux(up, 1, Mux(down, count != 1, some))),
                 full.eq(Mux(up, count == size - 1, Mux(down, 0, full)))]
    return count, some, full


class StreamFifo(wiring.Component):
    """``depth`` entries of ``width`` bits; the first entry is on ``r_data`` while ``r_rdy``.

    The writer counts its own room: it must not raise ``w_en`` when ``level == depth``
    (each engine's finalizer and each window unit keeps that count with :func:`occupancy`).

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
            m.d.sync += produce.eq(ring_next(produce, depth))
        with m.If(do_read):
            m.d.sync += consume.eq(ring_next(consume, depth))
        level, nonempty, _ = occupancy(m, self.w_en, do_read, depth, "level")
        m.d.comb += [self.level.eq(level), self.r_rdy.eq(nonempty)]
        return m
