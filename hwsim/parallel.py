"""Chunks of a batch on several threads, each with a single-threaded BLAS.

numpy's element-wise passes and the compiled kernels run on one core, BLAS on all of
them, and BLAS gains little on a chunk's small products.  Running whole chunks on
``threads`` Python threads (numpy, BLAS and the kernels release the GIL) with BLAS
held to one thread for the duration puts every core to work on every pass.  Holding
BLAS to one thread needs ``threadpoolctl``; without it, chunks run one after another.
"""

import functools
import os
from concurrent.futures import ThreadPoolExecutor

__all__ = ["default_threads", "check_threads", "map_chunks"]


def default_threads():
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def check_threads(threads):
    """``threads`` as a positive int (None: :func:`default_threads`)."""
    if threads is None:
        return default_threads()
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise TypeError(f"Simulator threads must be a positive integer or None, not {threads!r}")
    return threads


@functools.cache
def _blas_controller():
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController()


@functools.cache
def _pool(threads, pid):
    # One pool per thread count for the life of the process: starting threads on every
    # call would cost as much as a small batch.  Keyed by process id too, since a forked
    # child inherits the pool object but none of its threads.
    return ThreadPoolExecutor(threads, thread_name_prefix="hwsim")


def map_chunks(fn, chunks, threads):
    """``[fn(c) for c in chunks]``, in order, on up to ``threads`` threads."""
    controller = _blas_controller() if threads > 1 and len(chunks) > 1 else None
    if controller is None:
        return [fn(chunk) for chunk in chunks]
    with controller.limit(limits=1, user_api="blas"):
        return list(_pool(threads, os.getpid()).map(fn, chunks))
