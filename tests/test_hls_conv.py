"""hls4ml with images: conv2d, maxpool2d and flatten exact, integer for integer against hwsim.

The plan's integers are checked in numpy (``run_plan`` below, channels last like hls4ml)
on many random models; hls4ml itself compiles few projects (each costs tens of seconds):
the digits CNN over the whole test set, and two random models that between them take
every route of the plan (affine fold, input expansion, padded convolution with v0 != 0,
strides 1 and 2, kernels 1-3, pooling with and without overlap, a hidden dense layer,
both weight encodings).
"""

import itertools
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from numpy.lib.stride_tricks import sliding_window_view

from export.hls import ExpressError, build_hls_model, hls_cosim, plan_hls
from hwsim import Simulator
from lqir import (Conv2dLayer, DenseLayer, FlattenLayer, InputSpec, MaxPool2dLayer, Model, accumulator_bounds,
                  bits_for_levels, input_values, signed_width, weight_values)
from lqir.random_models import random_mac_layer, reference_accumulators, reference_levels

BATCH = 24


def run_plan(plan, x):
    """An hls4ml plan's integers in numpy, images channels last as hls4ml holds them; every
    result must lie within the bounds its precision was chosen from."""
    x = np.asarray(x, dtype=np.int64)
    h = x.transpose(0, 2, 3, 1) if len(plan[0].shape) == 3 else x.reshape(len(x), -1)
    for layer in plan[1:]:
        if layer.kind == "dense":
            h = h @ layer.weight.T + layer.bias
        elif layer.kind == "relu":
            h = np.maximum(h, 0)
        elif layer.kind == "conv":
            p, k, s = layer.padding, layer.kernel, layer.stride
            win = sliding_window_view(np.pad(h, ((0, 0), (p, p), (p, p), (0, 0))), (k, k), axis=(1, 2))
            h = np.einsum("byxcij,ocij->byxo", win[:, ::s, ::s], layer.weight) + layer.bias
        elif layer.kind == "maxpool":
            win = sliding_window_view(h, (layer.kernel, layer.kernel), axis=(1, 2))
            h = win[:, ::layer.stride, ::layer.stride].max(axis=(-1, -2))
        elif layer.kind == "flatten":
            h = h.reshape(len(h), -1)
        assert h.shape[1:] == layer.shape, layer.name
        assert (h >= layer.lo).all() and (h <= layer.hi).all(), layer.name
    return h


def _pool_levels(levels, kernel, stride):
    return sliding_window_view(levels, (kernel, kernel), axis=(2, 3))[:, :, ::stride, ::stride].max(axis=(-1, -2))


def random_image_model(seed, convs=2, wbits=2, abits=2, encoding="pm1", in_levels=5, in_shape=(2, 7, 6),
                       in_affine=None, hidden=0):
    """conv (kernel 1-3, stride 1-2, padding 0-1) [→ maxpool] … → flatten [→ dense] → dense.

    Thresholds sit on accumulators the returned inputs reach (ties in every layer).
    """
    rng = np.random.default_rng(seed)
    x = rng.integers(0, in_levels, size=(BATCH, *in_shape))
    h, shape, levels, in_bits, layers = x, in_shape, in_levels, bits_for_levels(in_levels), []
    for i in range(convs):
        pad = int(rng.integers(0, 2))
        kernel = int(min(rng.integers(1, 4), min(shape[1:]) + 2 * pad))
        stride = int(rng.integers(1, 3))
        conv = random_mac_layer(rng, Conv2dLayer, f"conv{i}", weight_bits=wbits, in_bits=in_bits, in_levels=levels,
                                output="threshold", out_levels=1 << abits, in_channels=shape[0],
                                out_channels=int(rng.integers(1, 4)), kernel=kernel, stride=stride, padding=pad,
                                inputs=h, weight_encoding=encoding, in_affine=in_affine if i == 0 else None)
        h = reference_levels(conv, reference_accumulators(conv, h))
        layers.append(conv)
        pool_k, pool_s = int(rng.integers(2, 4)), int(rng.integers(1, 3))
        if rng.random() < 0.6 and min(h.shape[2:]) >= pool_k:
            layers.append(MaxPool2dLayer(name=f"pool{i}", kernel=pool_k, stride=pool_s))
            h = _pool_levels(h, pool_k, pool_s)
        shape, levels, in_bits = h.shape[1:], 1 << abits, abits
    layers.append(FlattenLayer(name="flat"))
    h = h.reshape(len(h), -1)
    sizes = [h.shape[1]] + [int(rng.integers(2, 6))] * hidden + [3]
    for k, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        last = k == len(sizes) - 2
        fc = random_mac_layer(rng, DenseLayer, f"fc{k}", weight_bits=wbits, in_bits=in_bits, in_levels=levels,
                              output="accumulate" if last else "threshold", out_levels=None if last else 1 << abits,
                              in_features=n_in, out_features=n_out, inputs=h, weight_encoding=encoding)
        layers.append(fc)
        if not last:
            h = reference_levels(fc, reference_accumulators(fc, h))
    model = Model(InputSpec(tuple(in_shape), in_levels), tuple(layers), ("a", "b", "c"), 1.0, {"source": "random"})
    return model, x


def _kinds(plan):
    return [layer.kind for layer in plan]


@given(seed=st.integers(0, 2**32 - 1), convs=st.integers(1, 3), wbits=st.integers(1, 3), abits=st.integers(1, 3),
       encoding=st.sampled_from(["pm1", "bin"]), levels=st.integers(2, 9), hidden=st.integers(0, 1),
       inputs=st.sampled_from(["random", "affine", "index"]),
       in_shape=st.tuples(st.integers(1, 3), st.integers(3, 8), st.integers(3, 8)))
def test_plan_equals_hwsim_on_images(seed, convs, wbits, abits, encoding, levels, hidden, inputs, in_shape):
    in_affine = {"random": None, "affine": (int(seed % 5) - 2, 1 + seed % 4), "index": (0, 1)}[inputs]
    model, x = random_image_model(seed, convs, wbits, abits, encoding, levels, in_shape, in_affine, hidden)
    plan = plan_hls(model)
    np.testing.assert_array_equal(run_plan(plan, x), Simulator(model).run(x))
    values, first = input_values(model.layers[0]), model.layers[0]
    affine = len(set(np.diff(values).tolist())) == 1             # any two levels are affine
    assert affine or inputs == "random"
    assert (plan[1].name == "conv0") == (affine and (first.padding == 0 or values[0] == 0))


def test_routes_of_a_small_cnn():
    """The layer list: select, step and value around every threshold conv; pools on values."""
    model, x = random_image_model(3, convs=2, in_affine=(0, 1), hidden=1)
    plan = plan_hls(model)
    assert [layer.op for layer in model.layers] == ["conv2d", "maxpool2d", "conv2d", "flatten", "dense", "dense"]
    assert [(p.name, p.kind) for p in plan] == [
        ("x", "input"), ("conv0", "conv"), ("conv0_select", "conv"), ("conv0_step", "relu"),
        ("conv0_value", "conv"), ("pool0", "maxpool"), ("conv1", "conv"), ("conv1_select", "conv"),
        ("conv1_step", "relu"), ("conv1_value", "conv"), ("flat", "flatten"), ("fc0", "dense"),
        ("fc0_select", "dense"), ("fc0_step", "relu"), ("fc1", "dense")]
    assert plan[0].shape == (7, 6, 2)                            # channels last
    np.testing.assert_array_equal(run_plan(plan, x), Simulator(model).run(x))


def test_flatten_permutes_the_dense_columns():
    """A dense after flatten reads hls4ml's [H, W, C] entries with the IR's [C, H, W] weights."""
    model, _ = random_image_model(5, convs=1, in_affine=(0, 1))
    plan = plan_hls(model)
    flat = next(k for k, p in enumerate(plan) if p.kind == "flatten")
    h, w, c = plan[flat - 1].shape
    assert c > 1 and h * w > 1
    perm = np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).reshape(-1)
    np.testing.assert_array_equal(plan[-1].weight, weight_values(model.layers[-1])[:, perm])


def test_digits_cnn(tmp_path, trained_cnn, digits):
    """hls4ml's C simulation of the trained digits CNN == hwsim on every logit of the test set."""
    from export.lower import lower

    model = lower(trained_cnn[1], digits.classes)
    assert [layer.op for layer in model.layers] == ["conv2d", "maxpool2d", "conv2d", "maxpool2d", "flatten", "dense"]
    res = hls_cosim(model, digits.x_test, tmp_path / "prj")
    assert len(digits.x_test) == 360
    np.testing.assert_array_equal(res.outputs, Simulator(model).run(digits.x_test))
    np.testing.assert_array_equal(res.outputs, res.reference)
    assert res.mismatches == []
    assert res.plan[1].name == model.layers[0].name              # raw pixels fold into the first conv
    np.testing.assert_array_equal(run_plan(res.plan, digits.x_test), res.outputs)


def _with_bin_weights(model, name, coef):
    """``name`` as a 1-bit 'bin' layer with coefficient ``coef`` (weights {0, coef})."""
    layers = []
    for layer in model.layers:
        if layer.name == name:
            layer = replace(layer, weight_bits=1, weight_encoding="bin", weight_code=layer.weight_code & 1,
                            weight_coef=np.full((layer.n_out, 1), coef, np.int64), acc_bits=64)
            lo, hi = accumulator_bounds(layer)
            layer = replace(layer, acc_bits=max(2, signed_width(lo.min(), hi.max())))
        layers.append(layer)
    return replace(model, layers=tuple(layers))


@pytest.mark.parametrize("seed, encoding, in_affine, hidden", [
    (11, "pm1", (-2, 3), 1),     # affine input, v0 = -6, into an unpadded conv: folded (bias += v0·Σw)
    (12, "bin", None, 0),        # random in_code: the input expanded into values; padded convs read values
])
def test_random_image_models(tmp_path, seed, encoding, in_affine, hidden):
    model, x = random_image_model(seed, convs=3, wbits=2, abits=2, encoding=encoding, in_levels=6,
                                  in_shape=(2, 9, 8), in_affine=in_affine, hidden=hidden)
    if not hidden:   # weights {0, -2}: hls4ml's ternary product would read -2 as +1 in an ap_int<2>
        model = _with_bin_weights(model, "fc0", -2)
    plan = plan_hls(model)
    assert plan[1].name == ("conv0" if in_affine else "x_select")
    kinds = {(p.kind, p.kernel, p.stride, p.padding) for p in plan if p.kind in ("conv", "maxpool")}
    res = hls_cosim(model, x, tmp_path / "prj")
    np.testing.assert_array_equal(res.outputs, res.reference)
    np.testing.assert_array_equal(run_plan(plan, x), res.reference)
    assert len(kinds) >= 3, kinds
    if not hidden:
        assert set(np.unique(plan[-1].weight)) <= {0, -2} and plan[-1].precision["weight"] == "ap_int<3>"


def assert_every_precision_is_ours(hls_model, plan):
    """No hls4ml default (``ap_fixed<16,6>``, ``auto``) left: every type is the plan's."""
    wanted = {layer.name: layer.precision for layer in plan}
    for layer in hls_model.get_layers():
        types = {str(t.precision) for t in layer.get_layer_precision().values()
                 if not t.name.endswith("_index")}   # hls4ml's internal index type
        assert not any("16,6" in t or "auto" in t for t in types), (layer.name, types)
        assert {p.replace("ap_", "") for p in wanted[layer.name].values()} >= types - {"uint<1>"}, (layer.name, types)

def test_every_precision_is_ours_with_images(tmp_path):
    model, _ = random_image_model(4, convs=2, in_affine=(0, 1), hidden=1)
    assert_every_precision_is_ours(*build_hls_model(model, tmp_path / "prj"))


def test_conv_widths_beyond_exact_transport_are_refused():
    model, _ = random_image_model(6, convs=1, in_affine=(0, 1))
    conv = model.layers[0]
    # |w| <= 2**29 and values k·2**26 <= 2**28: every tap's product alone needs 58 bits
    huge = replace(conv, weight_coef=np.full_like(conv.weight_coef, 2**28), bias=np.zeros(conv.n_out, np.int64),
                   in_coef=2**26 << np.arange(conv.in_bits), in_code=np.arange(conv.in_levels, dtype=np.uint16),
                   acc_bits=64, thresholds=np.zeros_like(conv.thresholds))
    with pytest.raises(ExpressError, match=r"conv0: the .* needs \d+ bits, more than 53 \(hls4ml carries values as float64\)"):
        plan_hls(replace(model, layers=(huge,) + model.layers[1:]))


def test_names_hls4ml_cannot_use_are_refused():
    model, _ = random_image_model(7, convs=1, in_affine=(0, 1))
    renamed = replace(model, layers=(replace(model.layers[0], name="conv-0"),) + model.layers[1:])
    with pytest.raises(ExpressError, match=r"conv-0: hls4ml needs unique C identifiers as layer names"):
        plan_hls(renamed)
