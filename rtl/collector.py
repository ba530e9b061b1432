"""Collects the last layer's accumulators and emits them with the predicted class."""

from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from lqir import bits_for_levels

__all__ = ["ArgmaxCollector"]


class ArgmaxCollector(wiring.Component):
    """``classes`` accumulators in, ``lanes`` per beat; one beat out: all logits and their argmax.

    Members
    -------
    i : ``In(stream.Signature(unsigned(lanes * acc_bits)))``
        Logits, class 0 first, ``lanes`` per beat (lane l in bits ``[l·acc_bits, (l+1)·acc_bits)``,
        two's complement); lanes past the last class are ignored.
    o : ``Out(stream.Signature(unsigned(classes * acc_bits + bits_for_levels(classes))))``
        Bits ``[k*acc_bits, (k+1)*acc_bits)``: logit k (two's complement); the top
        ``bits_for_levels(classes)`` bits: the predicted class (first index on ties).

    Timing: one input beat per cycle; the output beat two cycles after the last one (the
    last beat's compare, then the beat: ``hwsim.cycles.COLLECT_DELAY``); ``i`` is not
    ready from the last beat until the output beat has left.
    """

    def __init__(self, classes, acc_bits, lanes=1):
        if isinstance(classes, bool) or not isinstance(classes, int) or classes < 1:
            raise TypeError(f"Collector classes must be a positive integer, not {classes!r}")
        if isinstance(acc_bits, bool) or not isinstance(acc_bits, int) or not 2 <= acc_bits <= 64:
            raise TypeError(f"Collector acc_bits must be an integer from 2 to 64, not {acc_bits!r}")
        if isinstance(lanes, bool) or not isinstance(lanes, int) or lanes < 1:
            raise TypeError(f"Collector lanes must be a positive integer, not {lanes!r}")
        self.classes, self.acc_bits, self.lanes = classes, acc_bits, lanes
        self.beats = -(-classes // lanes)
        self.pred_width = bits_for_levels(classes)
        super().__init__({
            "i": In(stream.Signature(unsigned(lanes * acc_bits))),
            "o": Out(stream.Signature(unsigned(classes * acc_bits + self.pred_width))),
        })

    def elaborate(self, platform):
        m = Module()
        width = self.acc_bits
        logits = [Signal(signed(width), name=f"logit{k}") for k in range(self.classes)]
        best = Signal(signed(width))
        pred = Signal(self.pred_width)
        beat = Signal(range(max(self.beats, 2)))
        # the beat taken last cycle, stored and compared then: both start from registers,
        # not from the producer's FIFO (a LUT RAM read, then a carry chain, in one cycle)
        taken, taken_beat, pending = (Signal(len(self.i.payload), reset_less=True), Signal.like(beat), Signal())
        m.d.comb += self.o.payload.eq(sum((lg.as_unsigned() << (n * width) for n, lg in enumerate(logits)),
                                          pred << (self.classes * width)))
        m.d.sync += pending.eq(0)
        with m.If(pending):
            self._store(m, logits, taken, taken_beat)
            self._compare(m, taken, taken_beat, best, pred)
        with m.FSM(name="collect"):
            with m.State("COLLECT"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    m.d.sync += [taken.eq(self.i.payload), taken_beat.eq(beat), pending.eq(1)]
                    with m.If(beat == self.beats - 1):
                        m.d.sync += beat.eq(0)
                        m.next = "FINISH"
                    with m.Else():
                        m.d.sync += beat.eq(beat + 1)
            with m.State("FINISH"):          # the last beat's compare
                m.next = "SEND"
            with m.State("SEND"):
                m.d.comb += self.o.valid.eq(1)
                with m.If(self.o.ready):
                    m.next = "COLLECT"
        return m

    def _store(self, m, logits, word, beat):
        width = self.acc_bits
        for lane in range(self.lanes):
            value = word[lane * width:(lane + 1) * width].as_signed()
            for k in range(lane, self.classes, self.lanes):
                with m.If(beat == k // self.lanes):
                    m.d.sync += logits[k].eq(value)

    def _compare(self, m, word, beat, best, pred):
        """Carry the running maximum across one beat's lanes, in class order."""
        width = self.acc_bits
        run_best, run_pred = best, pred
        for lane in range(self.lanes):
            value = word[lane * width:(lane + 1) * width].as_signed()
            index = beat * self.lanes + lane
            live = index < self.classes
            # strictly greater keeps the first index on ties; class 0 starts the search
            better = live & ((index == 0) | (value > run_best))
            nb, np_ = Signal(signed(width), name=f"best_l{lane}"), Signal(self.pred_width, name=f"pred_l{lane}")
            m.d.comb += [nb.eq(run_best), np_.eq(run_pred)]
            with m.If(better):
                m.d.comb += [nb.eq(value), np_.eq(index)]
            run_best, run_pred = nb, np_
        m.d.sync += [best.eq(run_best), pred.eq(run_pred)]
