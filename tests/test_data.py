"""Datasets: fixed-seed stratified splits, user .npz files and their errors."""

import numpy as np
import pytest

from models.data import load_dataset


def test_digits_split_is_stratified_and_deterministic():
    a, b = load_dataset("digits", seed=3), load_dataset("digits", seed=3)
    np.testing.assert_array_equal(a.x_test, b.x_test)
    assert a.shape == (1, 8, 8) and a.levels == 17 and a.x_train.dtype == np.uint8
    assert len(a.y_train) + len(a.y_val) + len(a.y_test) == 1797
    counts = np.bincount(a.y_test, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37
    c = load_dataset("digits", seed=4)
    assert not np.array_equal(a.y_test, c.y_test)


def test_user_npz(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 4, size=(100, 5, 5)).astype(np.uint8)
    y = np.repeat(np.arange(4), 25)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    d = load_dataset(str(tmp_path / "d.npz"))
    assert d.shape == (1, 5, 5) and d.levels == 4 and d.classes == ("0", "1", "2", "3")


@pytest.mark.parametrize("arrays, message", [
    ({"x": np.zeros((4, 2, 2), np.float32), "y": np.zeros(4, int)}, "must be uint8 images"),
    ({"x": np.zeros((4, 2, 2), np.uint8)}, "must hold arrays 'x'"),
    ({"x": np.zeros((4, 2, 2), np.uint8), "y": np.zeros(3, int)}, "must be 4 integer labels"),
])
def test_user_npz_errors(tmp_path, arrays, message):
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(ValueError, match=message):
        load_dataset(str(tmp_path / "d.npz"))


def test_unknown_dataset():
    with pytest.raises(ValueError, match="Unknown dataset 'cifar'"):
        load_dataset("cifar")


def test_mnist5k_is_real_28x28_digits():
    d = load_dataset("mnist5k", seed=0)
    assert d.shape == (1, 28, 28) and d.levels == 256 and d.x_train.dtype == np.uint8
    assert len(d.y_train) + len(d.y_val) + len(d.y_test) == 5000
    assert sorted(set(d.y_test.tolist())) == list(range(10))
