"""hls4ml C simulation == hwsim, integer for integer; explicit precisions; clear errors.

The plan's integer arithmetic is also checked without hls4ml (``run_plan`` of
``tests/test_ties.py``, numpy) on many random models: affine inputs with ``v0 != 0`` and slope != 1 (the fold into the
first layer), non-affine inputs (the expansion) and thresholds the inputs reach (ties).
"""

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lqflow.cli import main
from export.hls import ExpressError, build_hls_model, hls_cosim, plan_hls
import lqir as ir
from export.lower import lower
from lqir.random_models import random_conv_model, random_dense_model
from hwsim import Simulator
from tests.test_hls_conv import assert_every_precision_is_ours, run_plan as run_image_plan
from tests.test_ties import run_plan


def _folded(plan):
    """True if the network input went straight into the first Dense (the affine fold)."""
    return plan[1].kind == "dense" and plan[1].name != "x_select"


@pytest.mark.parametrize("offset, slope", [(0, 3), (2, 1), (-3, 5), (4, 7), (-1, 1)])
def test_plan_folds_affine_inputs_exactly(offset, slope):
    """value = v0 + slope·k with v0 = slope·offset: the fold needs both v0·Σw and the slope."""
    rng = np.random.default_rng(100 + 10 * offset + slope)
    x = rng.integers(0, 6, size=(40, 7))
    model = random_dense_model(rng, [7, 5, 3], 2, 2, in_levels=6, inputs=x, in_affine=(offset, slope))
    values = ir.input_values(model.layers[0])
    np.testing.assert_array_equal(values, slope * (offset + np.arange(6)))
    plan = plan_hls(model)
    assert _folded(plan)
    np.testing.assert_array_equal(run_plan(plan, x), Simulator(model).run(x))


@given(seed=st.integers(0, 2**32 - 1), wbits=st.integers(1, 4), abits=st.integers(1, 3),
       sizes=st.lists(st.integers(1, 9), min_size=2, max_size=4), levels=st.integers(2, 17),
       inputs=st.sampled_from(["random", "affine", "index"]))
def test_plan_equals_hwsim(seed, wbits, abits, sizes, levels, inputs):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, levels, size=(20, sizes[0]))
    in_affine = {"random": None, "affine": "random", "index": (0, 1)}[inputs]
    model = random_dense_model(rng, sizes, wbits, abits, in_levels=levels, inputs=x, in_affine=in_affine)
    plan = plan_hls(model)
    if inputs != "random":
        assert _folded(plan)
    np.testing.assert_array_equal(run_plan(plan, x), Simulator(model).run(x))


def test_digits_model(tmp_path, trained_mlp, digits):
    model = lower(trained_mlp[1], digits.classes)
    res = hls_cosim(model, digits.x_test, tmp_path / "prj")
    np.testing.assert_array_equal(res.outputs, Simulator(model).run(digits.x_test))
    np.testing.assert_array_equal(res.outputs, res.reference)
    assert res.mismatches == []


@pytest.mark.parametrize("seed, wbits, abits, sizes, in_affine", [
    (1, 1, 1, [9, 5, 3], None),          # random in_code: non-affine inputs, expanded
    (2, 3, 2, [13, 7, 6, 4], (-3, 5)),   # affine, v0 = -15, slope 5: folded
    (3, 4, 3, [5, 11, 2], (2, 3)),       # affine, v0 = 6, slope 3: folded
])
def test_random_models(tmp_path, seed, wbits, abits, sizes, in_affine):
    rng = np.random.default_rng(seed)
    levels = int(rng.integers(3, 17))
    x = rng.integers(0, levels, size=(30, sizes[0]))
    # thresholds on accumulators x reaches: ties are in the C simulation's inputs
    model = random_dense_model(rng, sizes, wbits, abits, in_levels=levels, inputs=x, in_affine=in_affine)
    res = hls_cosim(model, x, tmp_path / "prj")
    assert _folded(res.plan) == (in_affine is not None)
    np.testing.assert_array_equal(res.outputs, res.reference)


def test_every_precision_is_ours(tmp_path, rng):
    model = random_dense_model(rng, [6, 4, 3], 2, 2)
    assert_every_precision_is_ours(*build_hls_model(model, tmp_path / "prj"))


def test_conv_models_are_planned(rng):
    """conv2d, maxpool2d and flatten are exact too (tests/test_hls_conv.py compiles them)."""
    x = rng.integers(0, 5, size=(12, 2, 6, 5))
    model = random_conv_model(rng, (2, 6, 5), 3, 2, 2, inputs=x)
    assert {"conv", "maxpool", "flatten"} <= {layer.kind for layer in plan_hls(model)}
    np.testing.assert_array_equal(run_image_plan(plan_hls(model), x), Simulator(model).run(x))


def test_widths_beyond_exact_transport_are_refused(rng):
    model = random_dense_model(rng, [40, 3], 2, 2, in_levels=4)
    layer = model.layers[0]
    # |w| <= 2**29, |value| <= 3 * 2**20, 40 inputs: accumulators need about 57 bits
    huge = replace(layer, weight_coef=np.full_like(layer.weight_coef, 2**28), bias=np.zeros(3, np.int64),
                   in_coef=np.array([2**20, 2**21], np.int64), in_code=np.arange(4, dtype=np.uint16), acc_bits=64)
    with pytest.raises(ExpressError, match=r"fc0: the .* needs \d+ bits, more than 53"):
        plan_hls(replace(model, layers=(huge,)))


def test_cli_contract(tmp_path, rng, capsys):
    model = random_dense_model(rng, [8, 5, 3], 2, 2, in_levels=6)
    path = ir.save(model, tmp_path / "m.lqir.npz")
    x = rng.integers(0, 6, size=(7, 8))
    np.save(tmp_path / "x.npy", x)
    assert main(["hls4ml", str(path), "-o", str(tmp_path / "prj"), "--inputs", str(tmp_path / "x.npy"),
                 "--save", str(tmp_path / "out.npy")]) == 0
    assert "mismatches against hwsim: 0" in capsys.readouterr().out
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), Simulator(model).run(x))
