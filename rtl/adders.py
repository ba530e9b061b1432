"""A pipelined adder tree: the sum of a list of values, one register per tree level."""

from amaranth.hdl import Signal, signed

from hwsim.cycles import popcount_latency

__all__ = ["pipelined_sum", "sum_latency"]


def sum_latency(count):
    """Registers between the addends and the sum: ``max(1, ceil(log2(count)))``."""
    return popcount_latency(count)


def pipelined_sum(m, addends, width, name):
    """Add ``addends`` (Amaranth values) in a balanced tree of ``signed(width)`` registers.

    Returns the sum, valid :func:`sum_latency` cycles after the addends; ``width`` must
    hold every partial sum (two's-complement wrap-around would be exact anyway when the
    final sum fits, since every level is the same width).
    """
    if not addends:
        raise ValueError(f"Adder tree {name!r} needs at least one addend")
    level = list(addends)
    for stage in range(sum_latency(len(addends))):
        nxt = []
        for k in range(0, len(level), 2):
            node = Signal(signed(width), name=f"{name}_l{stage}_{k // 2}", reset_less=True)   # data only
            m.d.sync += node.eq(sum(level[k:k + 2]))
            nxt.append(node)
        level = nxt
    return level[0]
