"""Collects the last layer's accumulators and emits them with the predicted class."""

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
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

    Timing: one input beat per cycle; the output beat three cycles after the last one
    (the beat's own maximum and its compares, the running maximum, then the beat:
    ``hwsim.cycles.COLLECT_DELAY``); ``i`` is not ready from the last beat until the output
    beat has left.
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
        # Stage 0: the beat taken last cycle, with "first"/"last" flags, in registers (not
        # compared straight from the producer's FIFO, a LUT RAM read).
        taken, taken_beat = Signal(len(self.i.payload), reset_less=True), Signal.like(beat)
        taken_first, taken_last, pending = Signal(), Signal(), Signal()
        m.d.comb += self.o.payload.eq(sum((lg.as_unsigned() << (n * width) for n, lg in enumerate(logits)),
                                          pred << (self.classes * width)))
        m.d.sync += pending.eq(0)
        with m.If(pending):
            self._store(m, logits, taken, taken_beat)
        self._running_max(m, taken, taken_beat, (pending, taken_first, taken_last), best, pred)
        with m.FSM(name="collect"):
            with m.State("COLLECT"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    m.d.sync += [taken.eq(self.i.payload), taken_beat.eq(beat), pending.eq(1),
                                 taken_first.eq(beat == 0), taken_last.eq(beat == self.beats - 1)]
                    with m.If(beat == self.beats - 1):
                        m.d.sync += beat.eq(0)
                        m.next = "FINISH"
                    with m.Else():
                        m.d.sync += beat.eq(beat + 1)
            with m.State("FINISH"):          # the last beat's own maximum and compares
                m.next = "DECIDE"
            with m.State("DECIDE"):          # the running maximum takes it or not
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

    def _beat_max(self, word, beat, last):
        """The beat's largest live lane and its class index (the first on ties)."""
        width = self.acc_bits
        tail = self.classes - (self.beats - 1) * self.lanes        # lanes the last beat uses
        top, index = word[:width].as_signed(), beat * self.lanes
        for lane in range(1, self.lanes):
            value = word[lane * width:(lane + 1) * width].as_signed()
            better = (value > top) if lane < tail else ~last & (value > top)
            top, index = Mux(better, value, top), Mux(better, beat * self.lanes + lane, index)
        return top, index

    def _running_max(self, m, word, beat, flags, best, pred):
        """Two stages, so that no carry chain is inside the running maximum's loop.

        Stage 1 compares the beat's maximum with ``best`` and with the previous beat's
        candidate (which stage 2 is deciding on meanwhile); stage 2 picks the compare that
        holds — the candidate's if the previous beat won, else ``best``'s — with one LUT.
        Strictly greater replaces ``best``, so ties keep the first index; class 0 starts.
        """
        pending, first, last = flags
        top, index = self._beat_max(word, beat, last)
        cand, cand_index = Signal(signed(self.acc_bits)), Signal(self.pred_width)
        cand_first, cand_pending, won = Signal(), Signal(), Signal()
        m.d.sync += [cand.eq(top), cand_index.eq(index), cand_first.eq(first), cand_pending.eq(pending)]
        over_best, over_cand = self._greater(m, top, best, "best"), self._greater(m, top, cand, "cand")
        better = cand_pending & (cand_first | Mux(won, over_cand, over_best))
        m.d.sync += won.eq(better)
        with m.If(better):
            m.d.sync += [best.eq(cand), pred.eq(cand_index)]

    def _greater(self, m, a, b, name):
        """``a > b`` (signed) one cycle later, from two half-width compares registered
        separately: a 22-bit carry chain and its routing took most of a cycle."""
        half = self.acc_bits // 2
        hi_a, hi_b = a[half:].as_signed(), b[half:].as_signed()
        hi_gt, hi_eq, lo_gt = Signal(name=f"{name}_hi_gt"), Signal(name=f"{name}_hi_eq"), Signal(name=f"{name}_lo_gt")
        m.d.sync += [hi_gt.eq(hi_a > hi_b), hi_eq.eq(hi_a == hi_b), lo_gt.eq(a[:half] > b[:half])]
        return hi_gt | (hi_eq & lo_gt)
