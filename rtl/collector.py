"""Collects the last layer's accumulators and emits them with the predicted class."""

from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .engine import level_width

__all__ = ["ArgmaxCollector"]


class ArgmaxCollector(wiring.Component):
    """``classes`` accumulators in, one beat out: all logits and their argmax.

    Members
    -------
    i : ``In(stream.Signature(signed(acc_bits)))``
        Logits, class 0 first, one per beat.
    o : ``Out(stream.Signature(unsigned(classes * acc_bits + level_width(classes))))``
        Bits ``[k*acc_bits, (k+1)*acc_bits)``: logit k (two's complement); the top
        ``level_width(classes)`` bits: the predicted class (first index on ties).

    Timing: one input beat per cycle, then the output beat on the next cycle; ``i`` is
    not ready while the output beat waits.
    """

    def __init__(self, classes, acc_bits):
        if isinstance(classes, bool) or not isinstance(classes, int) or classes < 1:
            raise TypeError(f"Collector classes must be a positive integer, not {classes!r}")
        if isinstance(acc_bits, bool) or not isinstance(acc_bits, int) or not 2 <= acc_bits <= 64:
            raise TypeError(f"Collector acc_bits must be an integer from 2 to 64, not {acc_bits!r}")
        self.classes, self.acc_bits = classes, acc_bits
        self.pred_width = level_width(classes)
        super().__init__({
            "i": In(stream.Signature(signed(acc_bits))),
            "o": Out(stream.Signature(unsigned(classes * acc_bits + self.pred_width))),
        })

    def elaborate(self, platform):
        m = Module()
        logits = [Signal(signed(self.acc_bits), name=f"logit{k}") for k in range(self.classes)]
        best = Signal(signed(self.acc_bits))
        pred = Signal(self.pred_width)
        k = Signal(range(max(self.classes, 2)))
        m.d.comb += self.o.payload.eq(sum((lg.as_unsigned() << (n * self.acc_bits) for n, lg in enumerate(logits)),
                                          pred << (self.classes * self.acc_bits)))
        with m.FSM(name="collect"):
            with m.State("COLLECT"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    for n, lg in enumerate(logits):
                        with m.If(k == n):
                            m.d.sync += lg.eq(self.i.payload)
                    # strictly greater keeps the first index on ties
                    with m.If((k == 0) | (self.i.payload > best)):
                        m.d.sync += [best.eq(self.i.payload), pred.eq(k)]
                    with m.If(k == self.classes - 1):
                        m.d.sync += k.eq(0)
                        m.next = "SEND"
                    with m.Else():
                        m.d.sync += k.eq(k + 1)
            with m.State("SEND"):
                m.d.comb += self.o.valid.eq(1)
                with m.If(self.o.ready):
                    m.next = "COLLECT"
        return m
