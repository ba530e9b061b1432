"""Atomic file writes: a temp file in the destination folder, then one rename."""

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

__all__ = ["atomic_open", "atomic_write_bytes", "atomic_save_npy"]


@contextmanager
def atomic_open(path):
    """Binary file handle whose content replaces ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path, data):
    with atomic_open(path) as fh:
        fh.write(data)
    return Path(path)


def atomic_save_npy(path, array):
    with atomic_open(path) as fh:
        np.save(fh, array, allow_pickle=False)
    return Path(path)
