"""Convolutional networks under Verilator and Icarus: window units, max units and conv
engines against hwsim, logit for logit, and against the cycle model, cycle for cycle.

The digits CNN (16-32 channels) runs the whole test set at ``lqflow run``'s default
folding, clean and under random gaps and backpressure; random small conv/pool/dense
models (fuzzed shapes, kernels, strides, padding, bit widths, both weight encodings)
run through the same co-simulation; Icarus runs a subset at a second folding.
"""

import numpy as np
import pytest

from export.lower import lower
from hwsim import Simulator
from lqir.random_models import random_cnn_model
from rtl.cosim import cosim_network
from rtl.folding import fold_for_rate
from rtl.verilog import choose_foldings
from tests.test_cnn_top import random_foldings


def _check(res, x, model):
    assert res.mismatches == [] and res.stress_mismatches == []
    assert res.unresolved == []
    np.testing.assert_array_equal(res.outputs[:, :-1], Simulator(model).run(x))       # every logit
    assert (res.latency, res.ii, res.clean_cycles) == (res.model_latency, res.model_ii, res.model_clean_cycles)
    assert sum(res.extra_beats.values()) == 0 and res.timing_errors == []


@pytest.fixture(scope="module")
def digits_cnn(trained_cnn, digits):
    return lower(trained_cnn[1], digits.classes)


def test_digits_cnn_whole_test_set(tmp_path, digits_cnn, digits):
    foldings, _ = fold_for_rate(digits_cnn, 1_000_000, 150, "25k")         # lqflow run's default
    res = cosim_network(digits_cnn, digits.x_test, foldings, tmp_path, stress=True, seed=3)
    assert res.samples == len(digits.y_test) == 360
    _check(res, digits.x_test, digits_cnn)


def test_digits_cnn_under_icarus_at_a_second_folding(tmp_path, digits_cnn, digits):
    foldings = choose_foldings(digits_cnn, pe=[4, 8, 2], simd=[3, 16, 8], out_lanes=[2, 4, 1])
    x = digits.x_test[:24]
    _check(cosim_network(digits_cnn, x, foldings, tmp_path, stress=True, seed=4, simulator="icarus"), x, digits_cnn)


@pytest.mark.parametrize("seed", range(2))
def test_random_cnns(tmp_path, seed):
    rng = np.random.default_rng(300 + seed)
    c, h, w = int(rng.integers(1, 4)), int(rng.integers(6, 10)), int(rng.integers(6, 10))
    blocks = [(int(rng.integers(2, 6)), int(rng.integers(1, 4)), int(rng.integers(1, 3)), int(rng.integers(0, 3)),
               (2, 2) if rng.random() < 0.6 else None)]
    if rng.random() < 0.5:
        blocks.append((int(rng.integers(2, 6)), 1, 1, 0, None))
    in_levels = int(rng.integers(2, 17))
    x = rng.integers(0, in_levels, size=(16, c, h, w))
    model = random_cnn_model(rng, (c, h, w), blocks, int(rng.integers(1, 5)), int(rng.integers(1, 3)),
                             in_levels=in_levels, inputs=x, weight_encoding=("pm1", "bin")[seed % 2])
    _check(cosim_network(model, x, random_foldings(rng, model), tmp_path, stress=True, seed=seed), x, model)


def test_mnist5k_cnn_200_samples(tmp_path, one_thread):
    from lqflow.flow import RunConfig, train_models
    from models.data import load_dataset

    data = load_dataset("mnist5k", seed=0)
    cfg = RunConfig(dataset="mnist5k", arch="cnn", widths=(8, 16), float_epochs=1, qat_epochs=1)
    model = lower(train_models(cfg, data, progress=False)[1], data.classes)
    foldings, _ = fold_for_rate(model, 1_000_000, 150, "25k")
    x = data.x_test[:200]
    _check(cosim_network(model, x, foldings, tmp_path, stress=False, seed=5), x, model)
