"""Stall patterns: when a driver leaves a cycle empty and a monitor holds ``ready`` low.

A pattern is consulted once per decision (see :class:`~rtl.testbench.StreamDriver` and
:class:`~rtl.testbench.StreamMonitor` for when they decide) and answers "stall" (true)
or "go" (false). It can be

* ``None`` or ``0``: never stall;
* a probability ``0 < p < 1``: stall at random with probability ``p``, from ``seed``
  (:func:`random_stalls`);
* an iterable of booleans, consumed one item per decision (``itertools.cycle([1, 1, 0])``
  stalls two decisions out of three); when it runs out, no more stalls;
* a callable ``f(n) -> bool``, called with the decision's index ``n`` (0, 1, 2, ...).
"""

import itertools
import random
from collections.abc import Callable, Iterable

__all__ = ["random_stalls", "stall_pattern"]


def random_stalls(probability, seed=None, *, longest=1):
    """An endless pattern: each decision stalls with ``probability``, from ``seed``.

    ``longest`` > 1 makes each stall last 1 to ``longest`` decisions (uniformly), for
    bursts instead of single empty cycles.
    """
    if not 0 <= probability < 1:
        raise ValueError(f"stall probability must be in [0, 1), not {probability!r} (1 would stall forever)")
    if isinstance(longest, bool) or not isinstance(longest, int) or longest < 1:
        raise ValueError(f"longest must be a positive integer, not {longest!r}")
    rng = random.Random(seed)
    while True:
        if rng.random() < probability:
            yield from itertools.repeat(True, rng.randint(1, longest))
        else:
            yield False


def stall_pattern(stalls, seed=None):
    """``stalls`` (any form the module docstring lists) as ``decide() -> bool``, or ``None``
    when it never stalls."""
    if stalls is None or stalls is False:
        return None
    if isinstance(stalls, (int, float)) and not isinstance(stalls, bool):
        if stalls == 0:
            return None
        stalls = random_stalls(stalls, seed)
    if isinstance(stalls, Callable):
        count = itertools.count()
        return lambda: bool(stalls(next(count)))
    if isinstance(stalls, Iterable) and not isinstance(stalls, (str, bytes)):
        items = iter(stalls)
        return lambda: bool(next(items, False))
    raise TypeError(f"a stall pattern is None, a probability, an iterable of booleans or a callable "
                    f"f(n) -> bool, not {stalls!r}")
