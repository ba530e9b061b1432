"""The max unit: lane-wise max of level indices over consecutive beats (max-pooling).

Fed by a :class:`rtl.window.WindowUnit` in taps-inner order, each group of ``taps``
beats is one output pixel's channel word; thresholds are monotone, so the max of the
level indices is the level of the max. Its schedule is :class:`hwsim.cycles.MaxModel`.
"""

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hwsim.stages import MaxStage

__all__ = ["MaxUnit"]


class MaxUnit(wiring.Component):
    """One :class:`hwsim.stages.MaxStage`.

    Members
    -------
    i : ``In(stream.Signature(unsigned(lanes · width)))``
        ``taps`` beats per output beat.
    o : ``Out(stream.Signature(unsigned(lanes · width)))``
        Their lane-wise max, from a one-beat output register (latency 1 cycle after the
        group's last beat). ``i.ready`` depends on registers only.
    """

    def __init__(self, stage):
        if not isinstance(stage, MaxStage):
            raise TypeError(f"Max unit stage must be a hwsim.stages.MaxStage, not {stage!r}")
        self.stage = stage
        super().__init__({
            "i": In(stream.Signature(unsigned(stage.lanes * stage.width))),
            "o": Out(stream.Signature(unsigned(stage.lanes * stage.width))),
        })

    def elaborate(self, platform):
        m = Module()
        st, w = self.stage, self.stage.width
        tap = Signal(range(max(2, st.taps)))
        best = [Signal(w, name=f"best{k}") for k in range(st.lanes)]
        last = tap == st.taps - 1
        m.d.comb += self.i.ready.eq(~(self.o.valid & last))
        merged = []
        for k in range(st.lanes):
            value = self.i.payload[k * w:(k + 1) * w]
            merged.append(Mux((tap == 0) | (value > best[k]), value, best[k]))
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += tap.eq(tap + 1)
            m.d.sync += [b.eq(v) for b, v in zip(best, merged)]
            with m.If(last):
                m.d.sync += [tap.eq(0), self.o.payload.eq(Cat(*merged)), self.o.valid.eq(1)]
        return m
