"""Work that runs beside synthesis at a lower CPU priority.

In ``lqflow run``, yosys and nextpnr (one core, in a background thread) set the wall time;
the co-simulation's C++ build and the hls4ml compile run beside them on the other core and
finish minutes earlier. When all of them share two cores evenly, synthesis loses a third
of its speed to work that has time to spare; run at a lower priority, that work takes only
what synthesis leaves.
"""

from __future__ import annotations

import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

__all__ = ["BESIDE_SYNTHESIS_NICENESS", "at_lower_priority"]

#: How much nicer than its caller the work beside synthesis runs (CFS gives a thread
#: 10 steps nicer about a tenth of the CPU when both want it).
BESIDE_SYNTHESIS_NICENESS = 10


def _lower_this_thread(steps):
    # On Linux the niceness belongs to a thread, and processes it starts inherit it.
    tid = threading.get_native_id()
    now = os.getpriority(os.PRIO_PROCESS, tid)
    os.setpriority(os.PRIO_PROCESS, tid, min(now + steps, 19))


def at_lower_priority(fn, *args, steps=BESIDE_SYNTHESIS_NICENESS, **kwargs):
    """``fn(*args, **kwargs)`` in a thread ``steps`` nicer than this one; returns its result
    or raises its exception. The caller's own priority does not change. On other systems,
    where niceness belongs to the whole process, ``fn`` simply runs in this thread."""
    if not isinstance(steps, int) or isinstance(steps, bool) or not 0 <= steps <= 19:
        raise ValueError(f"Niceness steps must be an integer from 0 to 19, not {steps!r}")
    if not sys.platform.startswith("linux") or steps == 0:
        return fn(*args, **kwargs)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="beside-synthesis",
                              initializer=_lower_this_thread, initargs=(steps,))
    try:
        return pool.submit(fn, *args, **kwargs).result()
    finally:
        # on Ctrl-C the child processes stop with the terminal's signal; do not wait here
        pool.shutdown(wait=False, cancel_futures=True)
