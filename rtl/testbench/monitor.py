"""A cocotb monitor that collects the beats leaving a valid/ready stream port."""

from dataclasses import dataclass

import cocotb
from cocotb.triggers import Event, ReadOnly, RisingEdge

from .cycles import CycleCounter
from .driver import high
from .stalls import stall_pattern

__all__ = ["Beat", "StreamMonitor"]


@dataclass(frozen=True)
class Beat:
    """One transfer: its cycle, its payload word and the values the word carries.

    ``word`` and ``values`` are ``None`` when the payload was not all 0/1 (X or Z).
    """

    cycle: int
    word: int | None
    values: tuple | None


class StreamMonitor:
    """Collects every beat ``bus`` (a :class:`~rtl.testbench.StreamBus` out of the DUT)
    transfers: a cycle whose rising edge of ``clock`` sees ``valid`` and ``ready`` high.

    It drives ``ready``: always high, or low by the ``backpressure`` stall pattern
    (:mod:`rtl.testbench.stalls`; a probability draws from ``seed``), decided at every
    rising edge that follows a cycle with ``valid`` high (so a pattern meets the beats,
    not the idle cycles). ``passive=True`` leaves ``ready`` to the design (a stream
    inside a larger design) and only watches.

    ``layout`` (a :class:`~rtl.testbench.LaneLayout`) unpacks each payload into
    ``Beat.values``; without it, ``values`` is ``(word,)``. ``callback(beat)`` is called
    for every beat (a :class:`~rtl.testbench.Scoreboard`'s ``add``); ``beats`` keeps them
    all. Both ``callback`` and ``backpressure`` may be changed between phases of a test.
    The monitor runs from its creation until :meth:`stop`.
    """

    def __init__(self, bus, clock, *, layout=None, backpressure=None, seed=None, callback=None, passive=False):
        self.bus, self.layout, self.callback, self.passive = bus, layout, callback, passive
        self.cycles = CycleCounter.of(clock)
        self.clock = self.cycles.signal
        self.beats = []
        self.stalled = 0            # cycles with valid high that the monitor held ready low
        self._waiters = []
        self.set_backpressure(backpressure, seed)
        self._task = cocotb.start_soon(self._run())

    def set_backpressure(self, backpressure, seed=None):
        """A new stall pattern for ``ready`` (``None``: always ready), from the next decision."""
        if self.passive and backpressure is not None:
            raise ValueError("a passive monitor does not drive ready: it takes no backpressure")
        self._stalls = stall_pattern(backpressure, seed)
        self._ready = 1
        if not self.passive:
            self.bus.ready.value = self._ready

    async def _run(self):
        bus = self.bus
        while True:
            await ReadOnly()
            if not high(bus.valid):
                await RisingEdge(bus.valid)     # sleeps through idle cycles
                continue
            if high(bus.ready):
                self._record()
            elif not self.passive:
                self.stalled += 1
            await RisingEdge(self.clock)
            if self._stalls is not None:
                self._ready = 0 if self._stalls() else 1
                bus.ready.value = self._ready

    def _record(self):
        value = self.bus.payload.value
        word = value.to_unsigned() if value.is_resolvable else None
        values = None if word is None else (self.layout.unpack(word) if self.layout else (word,))
        beat = Beat(self.cycles.now(), word, values)
        self.beats.append(beat)
        if self.callback is not None:
            self.callback(beat)
        for count, event in list(self._waiters):
            if len(self.beats) >= count:
                event.set()
                self._waiters.remove((count, event))

    async def wait_for(self, count):
        """Wait until ``count`` beats in all have been seen; return them.

        Returns at the rising edge that transfers the ``count``-th beat (where the test may
        write signals), or at once if it has been seen already. Wrap it in cocotb's
        ``with_timeout`` to bound a design that hangs.
        """
        if len(self.beats) < count:
            event = Event()
            self._waiters.append((count, event))
            await event.wait()
            await RisingEdge(self.clock)
        return self.beats[:count]

    def stop(self):
        """Stop watching (``ready`` keeps its last value)."""
        self._task.cancel()
