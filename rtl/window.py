"""The sliding-window unit: im2col windows of a channels-last image stream.

A frame buffer of two banks (ping-pong): the loader writes one image while the generator
reads windows out of the other, so that neither waits for the other in steady state.
The generator walks :meth:`hwsim.stages.WindowStage.loop_order`'s counters, one read per
cycle while its output FIFO has room; every counter step moves the read address by a
constant (the address is linear in the counters), so no multiplier is needed. A tap
outside the image (zero padding) reads nothing and yields ``pad_level`` in every lane.

Its schedule is :class:`hwsim.cycles.WindowModel`, exactly.
"""

from amaranth.hdl import C, Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hwsim.cycles import WINDOW_DELAY
from hwsim.stages import WindowStage

from .fifo import StreamFifo, occupancy

__all__ = ["WindowUnit", "PING_PONG_MEMORIES"]

#: The frame buffer's two banks are written and read apart (the loader fills one bank
#: while the generator reads the other), so synthesis need not order a read and a write
#: of one word in the same cycle (``no_rw_check`` in rtl/synth.py): its bypass logic
#: would sit between the block RAM and its output register.
PING_PONG_MEMORIES = ("frame",)


class WindowUnit(wiring.Component):
    """Windows of one :class:`hwsim.stages.WindowStage`.

    Members
    -------
    i : ``In(stream.Signature(unsigned(lanes · in_width)))``
        The image, channels-last, pixel by pixel in raster order, ``lanes`` channels per beat.
    o : ``Out(stream.Signature(unsigned(lanes · out_width)))``
        The windows in the stage's loop order, ``lanes`` channels per beat; padded taps
        carry ``pad_level``.

    Latency: a window's first beat leaves ``WINDOW_DELAY`` cycles after the frame's last
    input beat at the earliest; one beat per cycle after that while ``o`` is ready.
    """

    def __init__(self, stage):
        if not isinstance(stage, WindowStage):
            raise TypeError(f"Window unit stage must be a hwsim.stages.WindowStage, not {stage!r}")
        self.stage = stage
        super().__init__({
            "i": In(stream.Signature(unsigned(stage.lanes * stage.in_width))),
            "o": Out(stream.Signature(unsigned(stage.lanes * stage.out_width))),
        })

    def _offsets(self):
        """Per counter: the (address, y, x) step when it advances and every inner one wraps."""
        st = self.stage
        unit = {"oy": (st.stride * st.shape[2] * st.words, st.stride, 0), "ox": (st.stride * st.words, 0, st.stride),
                "ky": (st.shape[2] * st.words, 1, 0), "kx": (st.words, 0, 1), "cw": (1, 0, 0)}
        order = st.loop_order()
        steps = []
        for k, (name, _) in enumerate(order):
            step = list(unit[name])
            for inner, count in order[k + 1:]:
                step = [a - (count - 1) * b for a, b in zip(step, unit[inner])]
            steps.append(tuple(step))
        return steps

    def elaborate(self, platform):
        m = Module()
        st = self.stage
        frame = st.in_beats
        mem = Memory(shape=unsigned(st.lanes * st.in_width), depth=2 * frame, init=[])
        m.submodules.frame = mem
        full, full_set, full_clr = Signal(2), Signal(2), Signal(2)
        m.d.sync += full.eq((full | full_set) & ~full_clr)
        # loader: straight into the bank being written
        wb, count = Signal(), Signal(range(max(2, frame)))
        w_port = mem.write_port()
        take = self.i.valid & self.i.ready
        m.d.comb += [self.i.ready.eq(~full.bit_select(wb, 1)), w_port.addr.eq(Mux(wb, frame, 0) + count),
                     w_port.data.eq(self.i.payload), w_port.en.eq(take)]
        with m.If(take):
            m.d.sync += count.eq(count + 1)
            with m.If(count == frame - 1):
                m.d.sync += [count.eq(0), wb.eq(~wb)]
                m.d.comb += full_set.eq(Mux(wb, 0b10, 0b01))
        self._generator(m, mem, full, full_clr)
        return m

    def _generator(self, m, mem, full, full_clr):
        st = self.stage
        fifo = StreamFifo(len(self.o.payload), WINDOW_DELAY + 1)
        m.submodules.fifo = fifo
        m.d.comb += [self.o.payload.eq(fifo.r_data), self.o.valid.eq(fifo.r_rdy), fifo.r_en.eq(self.o.ready)]
        order, steps = st.loop_order(), self._offsets()
        counters = [Signal(range(max(2, count)), name=f"n_{name}") for name, count in order]
        span = 2 * st.in_beats + st.shape[1] * st.shape[2] * st.words       # |address| bound, padding included
        # the counters' reset values: the first window of a frame
        start = (-st.padding * st.shape[2] * st.words - st.padding * st.words, -st.padding, -st.padding)
        addr = Signal(signed(span.bit_length() + 1), init=start[0])
        y, x = (Signal(signed(max(st.shape[1:]).bit_length() + 2), name=n, init=v) for n, v in zip("yx", start[1:]))
        rb, go = Signal(), Signal()
        # beats in the FIFO plus reads in flight, one count, with "all used" a register (a
        # compare after the adder gated every counter's enable)
        _, _, all_used = occupancy(m, go, fifo.r_en & fifo.r_rdy, WINDOW_DELAY + 1, "used")
        m.d.comb += go.eq(full.bit_select(rb, 1) & ~all_used)
        r_port = mem.read_port()
        m.d.comb += r_port.addr.eq((addr + Mux(rb, st.in_beats, 0))[:len(r_port.addr)])
        inside = (y >= 0) & (y < st.shape[1]) & (x >= 0) & (x < st.shape[2])
        wraps = [c == count - 1 for c, (_, count) in zip(counters, order)]
        with m.If(go):
            # the innermost counter that does not wrap advances; every inner one wraps to 0
            for k in range(len(order)):
                advance = ~wraps[k]
                for inner in wraps[k + 1:]:
                    advance = advance & inner
                with m.If(advance):
                    m.d.sync += [counters[k].eq(counters[k] + 1)] + [c.eq(0) for c in counters[k + 1:]]
                    m.d.sync += [addr.eq(addr + steps[k][0]), y.eq(y + steps[k][1]), x.eq(x + steps[k][2])]
            last = wraps[0]
            for w in wraps[1:]:
                last = last & w
            with m.If(last):
                m.d.sync += [c.eq(0) for c in counters]
                m.d.sync += [addr.eq(start[0]), y.eq(start[1]), x.eq(start[2]), rb.eq(~rb)]
                m.d.comb += full_clr.eq(Mux(rb, 0b10, 0b01))
        # t: read issued; t+1: data registered (block RAM output register); t+2: into the FIFO
        pad_word = Cat(*[C(st.pad_level or 0, st.out_width)] * st.lanes)
        data = Signal(len(r_port.data), reset_less=True)   # reset-less: synthesis moves it into the RAM
        valid1, valid2, pad1, pad2 = Signal(), Signal(), Signal(), Signal()
        m.d.sync += [data.eq(r_port.data), valid1.eq(go), valid2.eq(valid1), pad1.eq(~inside), pad2.eq(pad1)]
        lanes = [Signal(st.out_width, name=f"lane{k}") for k in range(st.lanes)]
        m.d.comb += [lane.eq(data[k * st.in_width:(k + 1) * st.in_width]) for k, lane in enumerate(lanes)]
        m.d.comb += [fifo.w_data.eq(Mux(pad2, pad_word, Cat(*lanes))), fifo.w_en.eq(valid2)]
