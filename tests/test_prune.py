"""IR passes for pruned, mixed-depth layers: every simulated integer stays as it was."""

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hwsim import Simulator
from lqir import Conv2dLayer, DenseLayer, FlattenLayer, InputSpec, Model
from lqir.prune import (channel_bits, constant_channels, remove_constant_channels, reorder_by_bits, trim_planes,
                        weight_bits_stored)
from lqir.random_models import random_conv_model, random_dense_model, random_mac_layer


def _run(model, x):
    """Final logits (untraced), and per-layer traces in both modes (which must agree)."""
    sim = Simulator(model)
    logits = sim.run(x)
    acc, trace = sim.run(x, trace=True)
    acc_b, trace_b = sim.run(x, mode="bitplane", trace=True)
    np.testing.assert_array_equal(acc, logits)
    np.testing.assert_array_equal(acc_b, logits)
    for name in trace.out:
        np.testing.assert_array_equal(trace.out[name], trace_b.out[name])
    return logits, trace


def _subsequence(new, old):
    """Whether the channels (axis 1) of ``new`` are a subsequence of ``old``'s."""
    k = 0
    for c in range(old.shape[1]):
        if k < new.shape[1] and np.array_equal(new[:, k], old[:, c]):
            k += 1
    return k == new.shape[1]


def _loosen(model):
    """A generous accumulator width, so that biases may move without re-fitting it."""
    return replace(model, layers=tuple(replace(l, acc_bits=48) if hasattr(l, "acc_bits") else l for l in model.layers))


def _kill(model, rng, share=0.5, level_zero=None):
    """Zero the weights of a random share of every threshold layer's channels (some layers entirely).

    The bias then picks each dead channel's constant level; ``level_zero`` (a bool per
    layer name) forces level 0 everywhere (False) or somewhere (True) or leaves it random.
    """
    layers = []
    for layer in model.layers:
        if getattr(layer, "output", None) == "threshold":
            dead = rng.random(layer.n_out) < share
            if rng.random() < 0.15:
                dead[:] = True
            coef = np.where(dead[:, None], 0, layer.weight_coef)
            pick = rng.integers(0, layer.out_levels, size=layer.n_out)   # the constant level wanted
            thr = layer.thresholds
            # bias just at/below the thresholds that give level `pick`
            above = np.where(pick > 0, thr[np.arange(layer.n_out), np.maximum(pick - 1, 0)], thr[:, 0] - 1)
            bias = np.where(dead, above, layer.bias)
            layer = replace(layer, weight_coef=coef.astype(np.int64), bias=bias.astype(np.int64))
        layers.append(layer)
    return replace(model, layers=tuple(layers))


def _padded_conv_model(rng, x_shape=(2, 6, 6), channels=4, levels=5):
    """conv 3×3 (pad 1) → conv 3×3 (pad 1, inputs affine: level 0 is value 0) → flatten → dense."""
    c, h, w = x_shape
    conv0 = random_mac_layer(rng, Conv2dLayer, "conv0", weight_bits=2, in_bits=3, in_levels=levels, output="threshold",
                             out_levels=4, in_channels=c, out_channels=channels, kernel=3, padding=1)
    conv1 = random_mac_layer(rng, Conv2dLayer, "conv1", weight_bits=2, in_bits=2, in_levels=4, output="threshold",
                             out_levels=4, in_channels=channels, out_channels=channels, kernel=3, padding=1,
                             in_affine=(0, 3))
    fc = random_mac_layer(rng, DenseLayer, "fc", weight_bits=2, in_bits=2, in_levels=4, output="accumulate",
                          in_features=channels * h * w, out_features=3)
    return Model(InputSpec(x_shape, levels), (conv0, conv1, FlattenLayer(name="flat"), fc), ("a", "b", "c"), 1.0)


def _model(rng, kind):
    if kind == "dense":
        x = rng.integers(0, 6, size=(40, 9))
        return random_dense_model(rng, [9, 8, 7, 3], 3, 2, in_levels=6, inputs=x), x
    if kind == "conv":
        x = rng.integers(0, 5, size=(20, 2, 6, 5))
        return random_conv_model(rng, (2, 6, 5), 5, 2, 2, inputs=x), x
    x = rng.integers(0, 5, size=(20, 2, 6, 6))
    return _padded_conv_model(rng), x


def test_channel_bits_by_hand():
    layer = random_dense_model(np.random.default_rng(0), [3, 4, 2], 4, 2).layers[0]
    coef = np.array([[1, 2, 4, -8], [1, -2, 0, 0], [0, 0, 0, 0], [0, 0, 5, 0]], np.int64)
    assert channel_bits(replace(layer, weight_coef=coef)).tolist() == [4, 2, 0, 3]


@given(seed=st.integers(0, 2**32 - 1), kind=st.sampled_from(["dense", "conv", "padded"]))
def test_remove_constant_channels_keeps_every_integer(seed, kind):
    rng = np.random.default_rng(seed)
    model, x = _model(rng, kind)
    model = _kill(_loosen(model), rng)
    before, trace = _run(model, x)
    pruned = remove_constant_channels(model)
    after, trace_after = _run(pruned, x)
    np.testing.assert_array_equal(after, before)
    for old, new in zip(model.mac_layers(), pruned.mac_layers()):
        if old.output != "threshold":
            continue
        dead, _ = constant_channels(old)
        assert new.n_out >= 1
        # the kept channels are old ones, in order, with unchanged outputs
        assert _subsequence(trace_after.out[new.name], trace.out[old.name])
        if not (kind == "padded" and old.name == "conv0"):
            # dense and unpadded readers take every constant channel (one stays if all are); removing
            # a reader's inputs may leave more of its channels constant, and those go too
            assert old.n_out - new.n_out >= min(len(dead), old.n_out - 1)
    # the stored weight bits can only shrink
    assert weight_bits_stored(pruned) <= weight_bits_stored(model)


def test_padded_reader_keeps_nonzero_constants():
    """A zero-padded conv sees 0 at the border: only constants of value 0 may leave."""
    rng = np.random.default_rng(7)
    model = _loosen(_padded_conv_model(rng))
    conv0 = model.layers[0]
    coef = conv0.weight_coef.copy()
    coef[:2] = 0                                            # channels 0 and 1 constant
    bias = conv0.bias.copy()
    bias[0] = conv0.thresholds[0, 0] - 1                    # level 0 → value 0: removable
    bias[1] = conv0.thresholds[1, -1]                       # top level → value 9: must stay
    model = replace(model, layers=(replace(conv0, weight_coef=coef, bias=bias),) + model.layers[1:])
    x = rng.integers(0, 5, size=(16, 2, 6, 6))
    before, _ = _run(model, x)
    pruned = remove_constant_channels(model)
    assert pruned.layers[0].n_out == conv0.n_out - 1 and pruned.layers[1].in_channels == conv0.n_out - 1
    np.testing.assert_array_equal(_run(pruned, x)[0], before)


@given(seed=st.integers(0, 2**32 - 1), kind=st.sampled_from(["dense", "conv", "padded"]))
def test_reorder_and_trim_keep_every_integer(seed, kind):
    rng = np.random.default_rng(seed)
    model, x = _model(rng, kind)
    model = _loosen(model)
    # channels of mixed depth: zero each channel's planes from a random depth up
    layers = []
    for layer in model.layers:
        if hasattr(layer, "weight_coef"):
            depth = rng.integers(0, layer.weight_bits + 1, size=layer.n_out)
            coef = np.where(np.arange(layer.weight_bits)[None, :] < depth[:, None], layer.weight_coef, 0)
            layer = replace(layer, weight_coef=coef.astype(np.int64))
        layers.append(layer)
    model = replace(model, layers=tuple(layers))
    before, trace = _run(model, x)
    for step in (trim_planes, reorder_by_bits, lambda m: reorder_by_bits(m, descending=False)):
        after_model = step(model)
        after, trace_after = _run(after_model, x)
        np.testing.assert_array_equal(after, before)
        assert weight_bits_stored(after_model) == weight_bits_stored(model)
        for old, new in zip(model.mac_layers(), after_model.mac_layers()):
            np.testing.assert_array_equal(np.sort(channel_bits(new)), np.sort(channel_bits(old)))
            if step is reorder_by_bits and old.output == "threshold":
                bits = channel_bits(new)
                assert np.all(np.diff(bits) <= 0)          # widest first
                order = np.argsort(-channel_bits(old), kind="stable")
                np.testing.assert_array_equal(trace_after.out[new.name], trace.out[old.name][:, order])
    trimmed = trim_planes(model)
    for layer in trimmed.mac_layers():
        assert layer.weight_bits == max(1, int(channel_bits(layer).max(initial=0)))


def test_passes_compose_on_a_pruned_model():
    rng = np.random.default_rng(3)
    model, x = _model(rng, "conv")
    model = _kill(_loosen(model), rng, share=0.4)
    before, _ = _run(model, x)
    out = reorder_by_bits(trim_planes(remove_constant_channels(model)))
    np.testing.assert_array_equal(_run(out, x)[0], before)


@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_a_layer_never_loses_its_last_channel(kind):
    rng = np.random.default_rng(11)
    model, x = _model(rng, kind)
    model = _kill(_loosen(model), rng, share=1.1)       # every channel constant
    before, _ = _run(model, x)
    pruned = remove_constant_channels(model)
    assert all(layer.n_out == 1 for layer in pruned.mac_layers()[:-1])
    np.testing.assert_array_equal(_run(pruned, x)[0], before)
