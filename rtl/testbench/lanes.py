"""How a stream's payload word carries its values: lanes of equal width, plus an optional top field."""

from dataclasses import dataclass

__all__ = ["LaneLayout"]


@dataclass(frozen=True)
class LaneLayout:
    """``count`` values of ``width`` bits each in one payload word.

    Lane ``l`` sits in bits ``[l·width, (l+1)·width)``; ``signed`` lanes are two's
    complement. ``tail`` > 0 adds one more unsigned value of ``tail`` bits above the
    lanes: ``lqflow_top``'s output beat is ``classes`` signed logits of the last layer's
    ``acc_bits``, with the predicted class as its tail.
    """

    count: int
    width: int
    signed: bool = False
    tail: int = 0

    def __post_init__(self):
        for name, low in (("count", 1), ("width", 1), ("tail", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"LaneLayout {name} must be an integer >= {low}, not {value!r}")

    @property
    def bits(self):
        """Width of the whole payload word."""
        return self.count * self.width + self.tail

    @property
    def values(self):
        """Values per word: the lanes, and the tail if there is one."""
        return self.count + (1 if self.tail else 0)

    def unpack(self, word):
        """One payload word (an unsigned integer) → its values, lane 0 first, the tail last."""
        mask = (1 << self.width) - 1
        lanes = [(word >> (k * self.width)) & mask for k in range(self.count)]
        if self.signed:
            lanes = [v - (1 << self.width) if v >> (self.width - 1) else v for v in lanes]
        if self.tail:
            lanes.append((word >> (self.count * self.width)) & ((1 << self.tail) - 1))
        return tuple(lanes)

    def pack(self, values):
        """The payload word carrying ``values`` (as :meth:`unpack` returns them).

        Fewer values than lanes leave the upper lanes 0 (a partly empty last beat); a
        value that does not fit its lane is an error.
        """
        values = [int(v) for v in values]
        if len(values) > self.values:
            raise ValueError(f"{len(values)} values do not fit a beat of {self.values}")
        word = 0
        for k, value in enumerate(values):
            width, signed = (self.width, self.signed) if k < self.count else (self.tail, False)
            lo, hi = (-(1 << (width - 1)), (1 << (width - 1)) - 1) if signed else (0, (1 << width) - 1)
            if not lo <= value <= hi:
                kind = "signed" if signed else "unsigned"
                raise ValueError(f"value {k} of the beat, {value}, does not fit {width} {kind} bits")
            word |= (value & ((1 << width) - 1)) << (k * self.width)
        return word
