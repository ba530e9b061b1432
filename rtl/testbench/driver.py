"""A cocotb driver that feeds beats into a valid/ready stream port."""

from cocotb.triggers import ReadOnly, RisingEdge

from .cycles import CycleCounter
from .stalls import stall_pattern

__all__ = ["StreamDriver"]


def high(handle):
    """Whether a 1-bit signal is 1 (X or Z count as 0)."""
    return str(handle.value) == "1"


class StreamDriver:
    """Drives ``bus`` (a :class:`~rtl.testbench.StreamBus` into the DUT) beat by beat.

    It follows ``amaranth.lib.stream``'s rules: the payload is presented with ``valid``
    high and held until a rising edge of ``clock`` sees ``ready`` high (the transfer).

    ``layout`` (a :class:`~rtl.testbench.LaneLayout`) packs beats given as lane values;
    without it, beats are payload words. ``stalls`` (a stall pattern,
    :mod:`rtl.testbench.stalls`; a probability draws from ``seed``) is consulted before
    every beat and then once per cycle while it says "stall": each "stall" is one cycle
    with ``valid`` low.

    ``clock`` is the cocotb ``Clock`` (or the clock signal; see
    :class:`~rtl.testbench.CycleCounter`). ``transfers`` collects the cycle of every
    transfer (``first_transfer`` is the first), ``stalled`` counts the cycles the pattern
    left empty.
    """

    def __init__(self, bus, clock, *, layout=None, stalls=None, seed=None):
        self.bus, self.layout = bus, layout
        self.cycles = CycleCounter.of(clock)
        self.clock = self.cycles.signal
        self.set_stalls(stalls, seed)
        self.transfers = []
        self.stalled = 0
        bus.valid.value = 0

    @property
    def first_transfer(self):
        """The cycle of the first transfer (``None`` before it): the start of a latency."""
        return self.transfers[0] if self.transfers else None

    def set_stalls(self, stalls, seed=None):
        """A new stall pattern (``None``: inputs back to back), from the next beat on."""
        self._stalls = stall_pattern(stalls, seed)

    def word(self, beat):
        """A beat as its payload word."""
        if self.layout is None:
            return int(beat)
        return self.layout.pack(beat)

    async def send(self, beats):
        """Transfer every beat of ``beats``, in order; return the cycle of each transfer.

        Starts at the next rising edge and returns at the rising edge that takes the last
        beat, with ``valid`` low again.
        """
        bus, sent = self.bus, []
        await RisingEdge(self.clock)
        for beat in beats:
            word = self.word(beat)
            while self._stalls is not None and self._stalls():
                bus.valid.value = 0
                self.stalled += 1
                await RisingEdge(self.clock)
            bus.payload.value = word
            bus.valid.value = 1
            await ReadOnly()
            while not high(bus.ready):
                await RisingEdge(bus.ready)     # sleeps through the cycles the DUT is busy
                await ReadOnly()
            sent.append(self.cycles.now())
            self.transfers.append(sent[-1])
            await RisingEdge(self.clock)
        bus.valid.value = 0
        return sent
