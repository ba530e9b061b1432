"""The three signals of a valid/ready stream port on a cocotb DUT."""

from typing import NamedTuple

__all__ = ["StreamBus"]


class StreamBus(NamedTuple):
    """A stream port's ``payload``, ``valid`` and ``ready`` signal handles.

    Amaranth's Verilog names a stream member ``i`` as ``i__payload``, ``i__valid`` and
    ``i__ready``: :meth:`from_prefix` finds them. A port of another design (a DMA in
    front, a host interface behind) can be given signal by signal.
    """

    payload: object
    valid: object
    ready: object

    @classmethod
    def from_prefix(cls, dut, prefix, separator="__"):
        """``dut.<prefix>__payload``, ``dut.<prefix>__valid`` and ``dut.<prefix>__ready``."""
        handles = []
        for field in cls._fields:
            name = f"{prefix}{separator}{field}"
            try:
                handles.append(getattr(dut, name))
            except AttributeError:
                raise AttributeError(f"{getattr(dut, '_name', 'the DUT')} has no signal {name!r}; give the "
                                     f"port's prefix (lqflow_top: 'i', 'o') or StreamBus(payload, valid, "
                                     f"ready)") from None
        return cls(*handles)
