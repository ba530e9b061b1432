"""Clock cycle numbers shared by the drivers and monitors of one clock."""

import cocotb
from cocotb.clock import Clock
from cocotb.simtime import convert, get_sim_time
from cocotb.triggers import RisingEdge

__all__ = ["CycleCounter"]


class CycleCounter:
    """Numbers the rising edges of a clock, so that a driver's and a monitor's records compare.

    Give it the cocotb :class:`~cocotb.clock.Clock` that drives the clock (cycles then
    come from the simulation time and its period: nothing runs per cycle), or the clock
    signal itself (one task then counts its rising edges; every driver and monitor on that
    signal shares it). Read :meth:`now` in the read-only phase after a rising edge, as
    the drivers and monitors do.
    """

    _edge_counters = {}    # clock signal -> CycleCounter counting its edges (one per test)

    def __init__(self, signal, period_steps=None):
        self.signal = signal
        self._period = period_steps
        self._count = 0
        self._task = None if period_steps else cocotb.start_soon(self._count_edges())

    @classmethod
    def of(cls, clock):
        """The counter for ``clock`` (a cocotb ``Clock`` or a clock signal)."""
        if isinstance(clock, cls):
            return clock
        if isinstance(clock, Clock):
            return cls(clock.signal, convert(clock.period, clock.unit, to="step"))
        counter = cls._edge_counters.get(clock)
        if counter is None or counter._task.done():      # a new test: the last one's task has ended
            counter = cls._edge_counters[clock] = cls(clock)
        return counter

    async def _count_edges(self):
        while True:
            await RisingEdge(self.signal)
            self._count += 1

    def now(self):
        """The number of the current cycle."""
        if self._period:
            return get_sim_time("step") // self._period
        return self._count
