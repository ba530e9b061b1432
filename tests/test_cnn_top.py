"""Convolutional networks on the network top, in Amaranth's simulator: every logit against
hwsim, latency and II against the cycle model; random shapes, kernels, strides, padding,
pooling, lanes and both weight encodings."""

import numpy as np
import pytest

from hwsim import Simulator, run_layer
from hwsim.cycles import Folding, network_timing
from hwsim.stages import conv_as_dense, dense_after_flatten
from lqir import Conv2dLayer, input_values, weight_values
from lqir.random_models import random_cnn_model
from rtl import NetworkTop
from rtl.top import input_stream
from tests.stream_bench import beats_of, drive, unpack


def _divisors(n):
    return [d for d in range(1, n + 1) if n % d == 0]


def random_foldings(rng, model):
    """Foldings whose lanes chain: a conv's lanes divide its channels on both sides."""
    foldings, lanes = [], None
    for layer in model.mac_layers():
        conv = isinstance(layer, Conv2dLayer)
        if lanes is None:
            lanes = int(rng.choice(_divisors(layer.in_channels))) if conv else 1
        n_out = layer.n_out
        out_lanes = int(rng.choice(_divisors(n_out) if conv else [1, 2]))
        pe = out_lanes * int(rng.integers(1, max(2, n_out // out_lanes + 1)))
        simd = lanes * int(rng.integers(1, 4))
        foldings.append(Folding(pe, simd, out_lanes, lanes))
        lanes = out_lanes
    return foldings


def check_top(model, foldings, x):
    expected = Simulator(model).run(x)
    top = NetworkTop(model, foldings)
    acc_bits, classes = model.layers[-1].acc_bits, len(model.classes)
    got, ins, outs = drive(top, beats_of(input_stream(model, x), top.in_lanes, top.in_width), len(x))
    np.testing.assert_array_equal([unpack(w, classes, acc_bits, signed=True) for w in got], expected)
    assert [w >> (classes * acc_bits) for w in got] == expected.argmax(axis=1).tolist()
    timing = network_timing(model, foldings, inferences=len(x))
    assert outs[0] - ins[0] == timing.latency
    assert outs[-1] - outs[-2] == timing.ii


def test_digits_shaped_cnn():
    rng = np.random.default_rng(7)
    x = rng.integers(0, 17, size=(3, 1, 8, 8))
    model = random_cnn_model(rng, (1, 8, 8), [(4, 3, 1, 1, (2, 2)), (8, 3, 1, 1, (2, 2))], 2, 2, classes=10,
                             in_levels=17, inputs=x)
    check_top(model, [Folding(4, 3, 2, 1), Folding(4, 8, 2, 2), Folding(5, 4, 1, 2)], x)


def test_dense_layers_after_the_flatten():
    """Only the first dense layer after a flatten reads the channels-last image."""
    rng = np.random.default_rng(11)
    x = rng.integers(0, 5, size=(3, 2, 5, 5))
    model = random_cnn_model(rng, (2, 5, 5), [(4, 3, 1, 0, None)], 2, 2, inputs=x, hidden=(6, 5))
    check_top(model, [Folding(2, 6, 2, 1), Folding(3, 8, 1, 2), Folding(2, 3, 1, 1), Folding(3, 5, 1, 1)], x)


@pytest.mark.parametrize("seed", range(6))
def test_random_cnns(seed):
    rng = np.random.default_rng(200 + seed)
    c, h, w = int(rng.integers(1, 4)), int(rng.integers(5, 9)), int(rng.integers(5, 9))
    blocks = []
    for _ in range(int(rng.integers(1, 3))):
        k = int(rng.integers(1, 4))
        pool = (2, 2) if rng.random() < 0.5 else None
        blocks.append((int(rng.integers(1, 5)), k, int(rng.integers(1, 3)), int(rng.integers(0, 2)), pool))
    in_levels = int(rng.integers(2, 9))
    x = rng.integers(0, in_levels, size=(3, c, h, w))
    try:
        model = random_cnn_model(rng, (c, h, w), blocks, int(rng.integers(1, 4)), int(rng.integers(1, 3)),
                                 in_levels=in_levels, inputs=x, weight_encoding=("pm1", "bin")[seed % 2])
    except ValueError:       # the shapes shrank below a kernel: draw a plainer network
        model = random_cnn_model(rng, (c, h, w), [(3, 3, 1, 1, None)], 2, 2, in_levels=in_levels, inputs=x)
    check_top(model, random_foldings(rng, model), x)


def test_views_compute_the_layers():
    """conv_as_dense on numpy im2col windows, dense_after_flatten on channels-last vectors."""
    rng = np.random.default_rng(3)
    x = rng.integers(0, 5, size=(4, 2, 5, 5))
    model = random_cnn_model(rng, (2, 5, 5), [(3, 3, 2, 1, None)], 2, 2, inputs=x)
    conv, fc = model.layers[0], model.layers[-1]
    view = conv_as_dense(conv)
    values = np.pad(input_values(conv)[x], ((0, 0), (0, 0), (1, 1), (1, 1)))       # padded taps are 0
    cols = np.stack([values[:, :, 2 * oy:2 * oy + 3, 2 * ox:2 * ox + 3].transpose(0, 2, 3, 1).reshape(len(x), -1)
                     for oy in range(3) for ox in range(3)], axis=1)              # [B, pixel, (ky, kx, c)]
    got = np.einsum("bpn,on->bop", cols, weight_values(view)) + view.bias[None, :, None]
    want, _ = run_layer(conv, x)
    np.testing.assert_array_equal(got.reshape(want.shape), want)
    levels = rng.integers(0, 4, size=(4, 3, 3, 3))
    _, want = run_layer(fc, levels.reshape(4, -1))
    _, got = run_layer(dense_after_flatten(fc, (3, 3, 3)), levels.transpose(0, 2, 3, 1).reshape(4, -1))
    np.testing.assert_array_equal(got, want)
