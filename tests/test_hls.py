"""hls4ml C simulation == hwsim, integer for integer; explicit precisions; clear errors."""

from dataclasses import replace

import numpy as np
import pytest

from export.cli import main
from export.hls import ExpressError, build_hls_model, hls_cosim, plan_hls
from export import ir
from export.lower import lower
from export.random_model import random_conv_model, random_dense_model
from hwsim import Simulator


def test_digits_model(tmp_path, trained_mlp, digits):
    model = lower(trained_mlp[1], digits.classes)
    res = hls_cosim(model, digits.x_test, tmp_path / "prj")
    np.testing.assert_array_equal(res.outputs, Simulator(model).run(digits.x_test))
    np.testing.assert_array_equal(res.outputs, res.reference)
    assert res.mismatches == []


@pytest.mark.parametrize("seed, wbits, abits, sizes", [
    (1, 1, 1, [9, 5, 3]),
    (2, 3, 2, [13, 7, 6, 4]),
    (3, 4, 3, [5, 11, 2]),
])
def test_random_models(tmp_path, seed, wbits, abits, sizes):
    rng = np.random.default_rng(seed)
    model = random_dense_model(rng, sizes, wbits, abits)   # random in_code: non-affine inputs too
    x = rng.integers(0, model.input.levels, size=(30, sizes[0]))
    res = hls_cosim(model, x, tmp_path / "prj")
    np.testing.assert_array_equal(res.outputs, res.reference)


def test_every_precision_is_ours(tmp_path, rng):
    model = random_dense_model(rng, [6, 4, 3], 2, 2)
    hls_model, plan = build_hls_model(model, tmp_path / "prj")
    wanted = {layer.name: layer.precision for layer in plan}
    for layer in hls_model.get_layers():
        types = {str(t.precision) for t in layer.get_layer_precision().values()
                 if not t.name.endswith("_index")}   # hls4ml's internal index type
        assert not any("16,6" in t or "auto" in t for t in types), (layer.name, types)
        assert {p.replace("ap_", "") for p in wanted[layer.name].values()} >= types - {"uint<1>"}, (layer.name, types)


def test_conv_models_are_refused_by_name(rng):
    model = random_conv_model(rng, (1, 5, 5), 2, 2, 2)
    with pytest.raises(ExpressError, match=r"layers\[0\] \(conv0\): 'conv2d' is not supported by the hls4ml writer"):
        plan_hls(model)


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
