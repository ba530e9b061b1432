"""--in-bits: the input quantizer that lets the first layer pay fewer input planes."""

import numpy as np
import pytest

from lqflow.flow import RunConfig
from models.data import load_dataset, requantize


def test_requantize_is_uniform_and_monotone():
    x = np.arange(17, dtype=np.uint8)
    q, levels = requantize(x, 17, 2)
    assert levels == 4
    assert q.tolist() == [(k * 4) // 17 for k in range(17)]
    assert np.all(np.diff(q.astype(int)) >= 0) and q.max() == 3 and q.min() == 0


def test_requantize_keeps_data_that_already_fits():
    x = np.arange(4, dtype=np.uint8)
    q, levels = requantize(x, 4, 3)
    assert levels == 4 and q is x


def test_dataset_with_in_bits_has_fewer_levels():
    full, low = load_dataset("digits", seed=0), load_dataset("digits", seed=0, in_bits=2)
    assert (full.levels, low.levels) == (17, 4)
    np.testing.assert_array_equal(low.x_test, (full.x_test.astype(np.int64) * 4) // 17)
    np.testing.assert_array_equal(low.y_test, full.y_test)


@pytest.mark.parametrize("bad", [0, 9, 2.5, True])
def test_in_bits_is_validated_before_training(bad):
    with pytest.raises(ValueError, match=r"in_bits \(--in-bits\)"):
        RunConfig(in_bits=bad)
