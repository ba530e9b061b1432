"""Reset a DUT and check that its outputs are driven right after."""

from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

__all__ = ["reset", "unresolved"]


def unresolved(*handles):
    """The names of the signals whose value is not all 0/1 (X or Z, as a 4-state simulator
    such as Icarus shows an undriven net; Verilator, 2-state, shows 0)."""
    return [handle._name for handle in handles if not handle.value.is_resolvable]


async def reset(clock, rst, cycles=3, *, active=1, check=()):
    """Hold ``rst`` at ``active`` for ``cycles`` rising edges of ``clock``, then release it.

    ``clock`` is the clock signal or its cocotb ``Clock``. Returns :func:`unresolved` of
    the ``check`` signals right after the release (empty: all driven), at the next rising
    edge, where the test may write signals again. Create the drivers and monitors first:
    they set the inputs' idle values (``valid`` low, ``ready`` high).
    """
    if isinstance(clock, Clock):
        clock = clock.signal
    rst.value = active
    for _ in range(cycles):
        await RisingEdge(clock)
    rst.value = 1 - active
    await ReadOnly()
    bad = unresolved(*check)
    await RisingEdge(clock)
    return bad
