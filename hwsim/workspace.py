"""Output buffers that fast mode reuses chunk after chunk, one set per thread."""

import threading

import numpy as np

__all__ = ["Workspace"]


class Workspace(threading.local):
    """Buffers by key; each thread that touches the workspace sees its own set.

    A fresh megabyte array costs a page fault per 4 KiB page on first write —
    about as much as the pass that fills it.  Reused buffers stay mapped and in cache.
    """

    def __init__(self):
        self._buffers = {}

    def get(self, key, shape, dtype, zeroed=False):
        """A C-contiguous ``shape`` array of ``dtype``: whatever the last user of ``key``
        left in it, or zeros when new and ``zeroed``."""
        buf = self._buffers.get(key)
        if buf is None or buf.dtype != dtype or buf.shape[1:] != tuple(shape[1:]) or len(buf) < shape[0]:
            buf = self._buffers[key] = (np.zeros if zeroed else np.empty)(shape, dtype)
        return buf[:shape[0]]
