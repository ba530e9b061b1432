"""hwsim fast mode's speed paths: kernels, threads, chunks, buffers, index operands.

Each is checked against one reference, the traced run (plain numpy, layer by layer),
and the bit-plane mode: every integer equal, whatever the kernels, threads or chunk.
"""

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lqir import Conv2dLayer, DenseLayer, InputSpec, Model
from lqir.random_models import random_conv_model, random_dense_model, random_mac_layer
from hwsim import Simulator


def _check_every_path(model, x):
    reference, _ = Simulator(model, kernels="numpy").run(x, trace=True)
    np.testing.assert_array_equal(Simulator(model).run(x, mode="bitplane"), reference)
    for kernels in ("numpy", "numba"):
        for chunk, threads in ((3, 2), (5, 1), (4096, 2)):
            found = Simulator(model, chunk=chunk, threads=threads, kernels=kernels).run(x)
            assert found.dtype == np.int64
            np.testing.assert_array_equal(found, reference)


@given(seed=st.integers(0, 2**32 - 1), wbits=st.integers(1, 4), abits=st.integers(1, 8),
       sizes=st.lists(st.integers(1, 24), min_size=2, max_size=4), batch=st.integers(1, 17))
def test_kernels_threads_and_chunks_agree_dense(seed, wbits, abits, sizes, batch):
    # act_bits up to 8: more than 4 thresholds take numpy's binary search, numba's loop.
    rng = np.random.default_rng(seed)
    model = random_dense_model(rng, sizes, wbits, abits)
    _check_every_path(model, rng.integers(0, model.input.levels, size=(batch, sizes[0])))


@given(seed=st.integers(0, 2**32 - 1), wbits=st.integers(1, 3), abits=st.integers(1, 3),
       c=st.integers(1, 3), h=st.integers(3, 8), w=st.integers(3, 8), ch=st.integers(1, 5))
def test_kernels_threads_and_chunks_agree_conv(seed, wbits, abits, c, h, w, ch):
    # Threshold → max-pool → conv, conv → flatten → dense: the fused operand crosses both.
    rng = np.random.default_rng(seed)
    model = random_conv_model(rng, (c, h, w), ch, wbits, abits)
    _check_every_path(model, rng.integers(0, model.input.levels, size=(7, c, h, w)))


def _two_layers(rng, hidden_coef, out_coef, act_bits=2, n_in=30):
    hidden = random_mac_layer(rng, DenseLayer, "fc0", weight_bits=2, in_bits=2, in_levels=4,
                              output="threshold", out_levels=1 << act_bits, coef_max=hidden_coef,
                              in_features=n_in, out_features=6)
    out = random_mac_layer(rng, DenseLayer, "fc1", weight_bits=2, in_bits=act_bits, in_levels=1 << act_bits,
                           output="accumulate", coef_max=out_coef, in_features=6, out_features=3)
    return Model(InputSpec((n_in,), 4), (hidden, out), ("a", "b", "c"), 1.0)


@pytest.mark.parametrize("hidden_coef, out_coef, arithmetic", [
    (50, 2**13, ("float32", "float64")),
    (2**13, 50, ("float64", "float32")),
    (2**24, 2**13, ("int64", "float64")),
    (50, 2**26, ("float32", "int64")),
])
def test_kernels_between_layers_of_different_arithmetic(rng, hidden_coef, out_coef, arithmetic):
    # The threshold kernel compares in one layer's dtype and writes the next layer's.
    model = _two_layers(rng, hidden_coef, out_coef)
    assert tuple(Simulator(model).arithmetic().values()) == arithmetic
    _check_every_path(model, rng.integers(0, 4, size=(40, 30)))


def _with_input_values(layer, in_bits, in_coef, in_code):
    return replace(layer, in_bits=in_bits, in_levels=len(in_code), in_coef=np.array(in_coef, np.int64),
                   in_code=np.array(in_code, np.uint16), acc_bits=62)


@pytest.mark.parametrize("in_coef, in_code, reads_index", [
    ([3, 6], [0, 1, 2, 3], True),       # values 0 3 6 9: the step 3 goes into the weights
    ([1, 2, 4], range(8), True),        # 0..7, raw pixels
    ([3, 7], [0, 1, 2, 3], False),      # 0 3 7 10
    ([2, 2], [0, 1, 3], True),          # 0 2 4
    ([2, 1], [2, 1, 3], False),         # 1 2 3: level 0 is not value 0
])
def test_level_index_operand_only_for_multiples_of_the_index(rng, in_coef, in_code, reads_index):
    model = random_dense_model(rng, [10, 5, 3], 2, 2, in_levels=len(in_code))
    first = _with_input_values(model.layers[0], len(in_coef), in_coef, list(in_code))
    model = replace(model, input=InputSpec((10,), len(in_code)), layers=(first,) + model.layers[1:])
    sim = Simulator(model)
    assert sim._prepared["fc0"].reads_index is reads_index
    _check_every_path(model, rng.integers(0, len(in_code), size=(25, 10)))


def test_level_index_operand_keeps_convolution_padding_zero(rng):
    # Padding is value 0, which must stay index 0 when the product reads indices.
    model = next(m for m in (random_conv_model(rng, (2, 6, 6), 3, 2, 2, in_levels=4) for _ in range(50))
                 if m.layers[0].padding == 1)
    conv0 = _with_input_values(model.layers[0], 2, [5, 10], [0, 1, 2, 3])  # values 0 5 10 15
    model = replace(model, layers=(conv0,) + model.layers[1:])
    assert isinstance(conv0, Conv2dLayer) and Simulator(model)._prepared["conv0"].reads_index
    _check_every_path(model, rng.integers(0, 4, size=(6, 2, 6, 6)))


def test_reused_buffers_do_not_leak_between_runs(rng):
    model = random_dense_model(rng, [16, 12, 8, 4], 2, 2)
    sim = Simulator(model, chunk=4, threads=2)
    x1, x2 = (rng.integers(0, model.input.levels, size=(23, 16)) for _ in range(2))
    first = sim.run(x1)
    kept = first.copy()
    second = sim.run(x2)
    np.testing.assert_array_equal(first, kept)  # the second run wrote into no earlier result
    np.testing.assert_array_equal(sim.run(x1), first)
    np.testing.assert_array_equal(second, Simulator(model, kernels="numpy", threads=1).run(x2))


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(threads=0), TypeError, "threads must be a positive integer or None, not 0"),
    (dict(threads=True), TypeError, "threads must be a positive integer or None, not True"),
    (dict(threads=1.5), TypeError, "not 1.5"),
    (dict(kernels="gpu"), ValueError, "kernels: must be one of auto, numpy, numba, not 'gpu'"),
    (dict(chunk=0), TypeError, "chunk must be a positive integer, not 0"),
])
def test_simulator_options_are_checked(rng, kwargs, error, message):
    with pytest.raises(error, match=message):
        Simulator(random_dense_model(rng, [4, 2], 1, 1), **kwargs)


def test_auto_kernels_are_numba_when_installed(rng):
    sim = Simulator(random_dense_model(rng, [4, 2], 1, 1))
    assert sim.kernels.name == "numba"
    assert sim.threads >= 1


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_a_forked_child_runs_chunks_on_threads_of_its_own(rng):
    # The parent's pool threads do not survive fork; the child must not wait on them.
    # (The simulator travels pickled: its buffers stay behind, its kernels are re-chosen.)
    import multiprocessing

    model = random_dense_model(rng, [16, 8, 3], 2, 2)
    x = rng.integers(0, model.input.levels, size=(40, 16))
    sim = Simulator(model, chunk=4, threads=2)
    expected = sim.run(x)
    with multiprocessing.get_context("fork").Pool(1) as pool:
        found = pool.apply_async(sim.run, (x,)).get(timeout=60)
    np.testing.assert_array_equal(found, expected)
