"""hwsim: hand-checked arithmetic, fast mode == bit-plane mode on random models.

The random models put their thresholds on accumulators the test inputs reach, so both
modes (and the loop reference) must agree on ties too; hand-computed ties are in
``tests/test_ties.py``.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lqir import DenseLayer, FlattenLayer, InputSpec, Model
from lqir.random_models import random_conv_model, random_dense_model
from hwsim import Simulator, accuracy, predict
from hwsim.bitplane import pack_bits


def _tiny_model(encoding):
    """A 3-input, 2-output layer small enough to check by hand."""
    layer = DenseLayer(
        name="fc", in_features=3, out_features=2, weight_bits=2, weight_encoding=encoding,
        in_bits=2, in_levels=3, output="accumulate", acc_bits=16,
        weight_code=np.array([[0b00, 0b01, 0b11], [0b10, 0b10, 0b01]], np.uint8),
        weight_coef=np.array([[1, 2], [3, -1]], np.int64),
        bias=np.array([10, -4], np.int64),
        in_code=np.array([0b00, 0b01, 0b11], np.uint16),  # value_in = [0, 5, 12]
        in_coef=np.array([5, 7], np.int64))
    return Model(InputSpec((3,), 3), (layer,), ("a", "b"), 1.0)


@pytest.mark.parametrize("mode", ["fast", "bitplane"])
def test_hand_computed_pm1(mode):
    # pm1: codes 00, 01, 11 → w = -1-2, +1-2, +1+2 = [-3, -1, 3] (row 0, coef [1, 2])
    #      codes 10, 10, 01 → w = -3-1, -3-1, 3+1 = [-4, -4, 4]... with coef [3, -1]:
    #      10: -3 + (-1)(+1) = -4; 01: 3 + (-1)(-1) = 4
    # x = [2, 1, 0] → values [12, 5, 0]
    # acc0 = 10 + (-3*12) + (-1*5) + 3*0 = -31;  acc1 = -4 + (-4*12) + (-4*5) + 0 = -72
    acc = Simulator(_tiny_model("pm1")).run(np.array([[2, 1, 0]]), mode=mode)
    np.testing.assert_array_equal(acc, [[-31, -72]])


@pytest.mark.parametrize("mode", ["fast", "bitplane"])
def test_hand_computed_bin(mode):
    # bin: row 0 codes 00, 01, 11 → w = [0, 1, 3]; row 1 codes 10, 10, 01 → w = [-1, -1, 3]
    # x = [2, 2, 1] → values [12, 12, 5]
    # acc0 = 10 + 0 + 12 + 15 = 37;  acc1 = -4 - 12 - 12 + 15 = -13
    acc = Simulator(_tiny_model("bin")).run(np.array([[2, 2, 1]]), mode=mode)
    np.testing.assert_array_equal(acc, [[37, -13]])


def _reference_dense(layer, x):
    """Straight loops over the DESIGN §3 semantics, independent of hwsim's vectorization."""
    planes = lambda code, bits: [(int(code) >> i) & 1 for i in range(bits)]
    value_in = [sum(c * b for c, b in zip(layer.in_coef, planes(k, layer.in_bits))) for k in layer.in_code]
    s = (lambda b: 2 * b - 1) if layer.weight_encoding == "pm1" else (lambda b: b)
    out = []
    for row in x:
        acc = []
        for o in range(layer.out_features):
            total = int(layer.bias[o])
            for n in range(layer.in_features):
                w = sum(int(c) * s(b) for c, b in zip(layer.weight_coef[o], planes(layer.weight_code[o, n], layer.weight_bits)))
                total += w * int(value_in[row[n]])
            acc.append(total)
        if layer.output == "threshold":
            acc = [sum(a >= t for t in layer.thresholds[o]) for o, a in enumerate(acc)]
        out.append(acc)
    return np.array(out, dtype=np.int64)


def test_loops_reference_equals_hwsim_layer_by_layer(rng):
    x = rng.integers(0, 5, size=(8, 9))
    model = random_dense_model(rng, [9, 6, 4], weight_bits=3, act_bits=2, in_levels=5, inputs=x)
    y, trace = Simulator(model).run(x, trace=True)
    np.testing.assert_array_equal(trace.out["fc0"], _reference_dense(model.layers[0], x))
    np.testing.assert_array_equal(y, _reference_dense(model.layers[1], trace.out["fc0"]))


@given(seed=st.integers(0, 2**32 - 1), wbits=st.integers(1, 8), abits=st.integers(1, 8),
       sizes=st.lists(st.integers(1, 130), min_size=2, max_size=4), affine=st.booleans())
def test_fast_equals_bitplane_dense(seed, wbits, abits, sizes, affine):
    rng = np.random.default_rng(seed)
    levels = int(rng.integers(2, 17))
    x = rng.integers(0, levels, size=(17, sizes[0]))
    model = random_dense_model(rng, sizes, wbits, abits, in_levels=levels, inputs=x,
                               in_affine="random" if affine else None)
    sim = Simulator(model)
    fast, tf = sim.run(x, mode="fast", trace=True)
    planes, tp = sim.run(x, mode="bitplane", trace=True)
    np.testing.assert_array_equal(fast, planes)
    np.testing.assert_array_equal(sim.run(x), planes)  # the untraced, chunked fast path too
    for name in tf.out:
        np.testing.assert_array_equal(tf.acc[name], tp.acc[name])
        np.testing.assert_array_equal(tf.out[name], tp.out[name])


@given(seed=st.integers(0, 2**32 - 1), wbits=st.integers(1, 4), abits=st.integers(1, 4),
       c=st.integers(1, 3), h=st.integers(3, 9), w=st.integers(3, 9), ch=st.integers(1, 6))
def test_fast_equals_bitplane_conv(seed, wbits, abits, c, h, w, ch):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 5, size=(5, c, h, w))
    model = random_conv_model(rng, (c, h, w), ch, wbits, abits, in_levels=5, inputs=x)
    sim = Simulator(model)
    fast, tf = sim.run(x, mode="fast", trace=True)
    planes, tp = sim.run(x, mode="bitplane", trace=True)
    np.testing.assert_array_equal(fast, planes)
    np.testing.assert_array_equal(sim.run(x), planes)  # the untraced, chunked fast path too
    for name in tf.out:
        np.testing.assert_array_equal(tf.out[name], tp.out[name])


def test_chunking_keeps_every_integer(rng):
    model = random_dense_model(rng, [20, 9, 4], 3, 3)
    x = rng.integers(0, model.input.levels, size=(50, 20))
    whole = Simulator(model, chunk=1000).run(x)
    for chunk in (1, 7, 50):
        np.testing.assert_array_equal(Simulator(model, chunk=chunk).run(x), whole)
    assert Simulator(model).run(x[:0]).shape == (0, 4)


@pytest.mark.parametrize("coef, values, arithmetic", [
    (2**3, [1, 2], "float32"),      # bound ≈ 40·2^4·3 < 2^24
    (2**14, [2**10, 2**11], "float64"),
    (2**30, [2**20, 2**21], "int64"),
])
def test_the_proven_arithmetic_is_exact(rng, coef, values, arithmetic):
    from dataclasses import replace

    model = random_dense_model(rng, [40, 3], weight_bits=2, act_bits=2, in_levels=4)
    layer = replace(model.layers[0], weight_coef=np.full_like(model.layers[0].weight_coef, coef),
                    bias=np.zeros(3, np.int64), in_coef=np.array(values, np.int64),
                    in_code=np.arange(4, dtype=np.uint16), acc_bits=64)
    sim = Simulator(replace(model, layers=(layer,)))
    assert sim.arithmetic() == {"fc0": arithmetic}
    x = rng.integers(0, 4, size=(6, 40))
    np.testing.assert_array_equal(sim.run(x), _reference_dense(layer, x))
    np.testing.assert_array_equal(sim.run(x, mode="bitplane"), _reference_dense(layer, x))


def test_int64_fallback_when_float64_is_not_exact(rng):
    """Coefficients near 2**31 defeat the 2**53 proof; the int64 path stays exact."""
    model = random_dense_model(rng, [40, 3], weight_bits=2, act_bits=2, in_levels=4)
    layer = model.layers[0]
    from dataclasses import replace

    big = replace(layer, weight_coef=np.full_like(layer.weight_coef, 2**30), bias=np.zeros(3, np.int64),
                  in_coef=np.array([2**20, 2**21], np.int64), in_code=np.arange(4, dtype=np.uint16), acc_bits=64)
    model = replace(model, layers=(big,))
    sim = Simulator(model)
    assert sim.float_exact() == {"fc0": False}
    x = rng.integers(0, 4, size=(6, 40))
    np.testing.assert_array_equal(sim.run(x), sim.run(x, mode="bitplane"))
    np.testing.assert_array_equal(sim.run(x), _reference_dense(big, x))


def test_pack_bits_little_endian_words():
    bits = np.zeros((1, 70), np.uint8)
    bits[0, [0, 3, 64, 69]] = 1
    words = pack_bits(bits)
    assert words.dtype == np.uint64 and words.shape == (1, 2)
    assert words[0].tolist() == [0b1001, 0b100001]


def test_flatten_only_input_shape(rng):
    model = random_dense_model(rng, [12, 3], 2, 2, in_levels=4)
    wrapped = Model(InputSpec((3, 2, 2), 4), (FlattenLayer(name="flat"),) + model.layers, model.classes, 1.0)
    x = rng.integers(0, 4, size=(5, 3, 2, 2))
    np.testing.assert_array_equal(Simulator(wrapped).run(x), Simulator(model).run(x.reshape(5, 12)))


@pytest.mark.parametrize("x, message", [
    (np.zeros((2, 3), np.float32), "must be integer level indices"),
    (np.zeros((2, 4), np.int64), r"shape must be \[B, 3\]"),
    (np.full((2, 3), 3), r"must lie in \[0, 3\)"),
    (np.full((2, 3), -1), r"must lie in \[0, 3\)"),
])
def test_bad_inputs_are_named(x, message):
    with pytest.raises(ValueError, match=message):
        Simulator(_tiny_model("pm1")).run(x)


def test_unknown_mode():
    with pytest.raises(ValueError, match="mode: must be one of fast, bitplane"):
        Simulator(_tiny_model("pm1")).run(np.zeros((1, 3), int), mode="gpu")


def test_predict_takes_the_first_index_on_ties():
    acc = np.array([[1, 5, 5], [7, 7, 7], [-3, -9, -3]])
    assert predict(acc).tolist() == [1, 0, 0]
    assert accuracy(acc, [1, 0, 2]) == pytest.approx(2 / 3)
