# amaranth: UnusedElaboratable=no
"""Ties: an accumulator exactly on a threshold counts (``acc >= T``), in every backend.

Two hand-built models whose inputs put accumulators exactly on thresholds; every
expected accumulator, level and logit below is worked out by hand in the comments and
written as a literal, never computed, so a ``>`` for ``>=`` in hwsim (either kernel,
either mode), the RTL compare or the hls4ml step layers fails here.
"""

import numpy as np
import pytest

from hwsim import Simulator, run_layer
from hwsim.cycles import Folding, network_timing
from lqir import DenseLayer, InputSpec, Model
from rtl import DenseEngine, NetworkTop
from tests.amaranth_bench import run_stream, signed


def _tie_model():
    """fc0: 3 level indices → 3 channels, 2 thresholds each; fc1: 3 levels → 2 logits.

    fc0 ('bin', 1 bit): input value = level (in_code k, in_coef [1, 2]);
        w = [[2, 2, 0], [0, -1, -1], [1, 0, 0]], bias [1, 3, 0],
        thresholds [[5, 7], [0, 2], [3, 3]] (channel 2: two equal thresholds).
    fc1 ('pm1', 1 bit): level → value [0, 2, 5] (codes 00, 01, 11; in_coef [2, 3]);
        w = [[1, -1, 1], [2, 2, -2]], bias [0, -1].
    """
    fc0 = DenseLayer(
        name="fc0", in_features=3, out_features=3, weight_bits=1, weight_encoding="bin",
        in_bits=2, in_levels=4, output="threshold", out_levels=3, acc_bits=5,
        weight_code=np.array([[1, 1, 0], [0, 1, 1], [1, 0, 0]], np.uint8),
        weight_coef=np.array([[2], [-1], [1]], np.int64),
        bias=np.array([1, 3, 0], np.int64),
        in_code=np.arange(4, dtype=np.uint16), in_coef=np.array([1, 2], np.int64),
        thresholds=np.array([[5, 7], [0, 2], [3, 3]], np.int64))
    fc1 = DenseLayer(
        name="fc1", in_features=3, out_features=2, weight_bits=1, weight_encoding="pm1",
        in_bits=2, in_levels=3, output="accumulate", acc_bits=6,
        weight_code=np.array([[1, 0, 1], [1, 1, 0]], np.uint8),
        weight_coef=np.array([[1], [2]], np.int64),
        bias=np.array([0, -1], np.int64),
        in_code=np.array([0b00, 0b01, 0b11], np.uint16), in_coef=np.array([2, 3], np.int64))
    return Model(InputSpec((3,), 4), (fc0, fc1), ("a", "b"), 1.0)


X = np.array([[1, 1, 0], [3, 0, 3], [0, 0, 0], [3, 1, 0]])
# fc0 accumulators, by hand (bias + w · x):
#   [1,1,0]: 1+2+2 = 5 (= T 5),   3-1-0 = 2 (= T 2),  1
#   [3,0,3]: 1+6   = 7 (= T 7),   3-0-3 = 0 (= T 0),  3 (= both T 3)
#   [0,0,0]: 1,                   3,                  0                  (no tie)
#   [3,1,0]: 1+6+2 = 9,           3-1   = 2 (= T 2),  3 (= both T 3)
ACC0 = np.array([[5, 2, 1], [7, 0, 3], [1, 3, 0], [9, 2, 3]])
# levels = number of thresholds <= acc (with `>` instead: [0,1,0], [1,0,0], [0,2,0], [2,1,0])
LEVELS0 = np.array([[1, 2, 0], [2, 1, 2], [0, 2, 0], [2, 2, 2]])
# fc1 on values [0, 2, 5][level]:
#   [2,5,0]: 2-5+0 = -3,  4+10-0-1 = 13
#   [5,2,5]: 5-2+5 =  8,  10+4-10-1 = 3
#   [0,5,0]: 0-5+0 = -5,  0+10-0-1 = 9
#   [5,5,5]: 5-5+5 =  5,  10+10-10-1 = 9
LOGITS = np.array([[-3, 13], [8, 3], [-5, 9], [5, 9]])
PRED = np.array([1, 0, 1, 1])


def _staircase_model():
    """One channel, six thresholds (hwsim's binary-search path): ``acc = x`` for levels 0..7.

    step: thresholds [1, 2, 2, 4, 6, 7]; out: logit = level (values 0..6, weight 1, bias 0).
    """
    step = DenseLayer(
        name="step", in_features=1, out_features=1, weight_bits=1, weight_encoding="bin",
        in_bits=3, in_levels=8, output="threshold", out_levels=7, acc_bits=4,
        weight_code=np.array([[1]], np.uint8), weight_coef=np.array([[1]], np.int64),
        bias=np.array([0], np.int64), in_code=np.arange(8, dtype=np.uint16),
        in_coef=np.array([1, 2, 4], np.int64), thresholds=np.array([[1, 2, 2, 4, 6, 7]], np.int64))
    out = DenseLayer(
        name="out", in_features=1, out_features=1, weight_bits=1, weight_encoding="bin",
        in_bits=3, in_levels=7, output="accumulate", acc_bits=4,
        weight_code=np.array([[1]], np.uint8), weight_coef=np.array([[1]], np.int64),
        bias=np.array([0], np.int64), in_code=np.arange(7, dtype=np.uint16),
        in_coef=np.array([1, 2, 4], np.int64))
    return Model(InputSpec((1,), 8), (step, out), ("level",), 1.0)


STAIR_X = np.arange(8)[:, None]
# #{T in [1, 2, 2, 4, 6, 7] : T <= x} for x = 0..7 (with `>`: [0, 0, 1, 3, 3, 4, 4, 5])
STAIR_LEVELS = np.array([0, 1, 3, 3, 4, 4, 5, 6])[:, None]


# --- hwsim ------------------------------------------------------------------------------

def _kernels():
    from hwsim.kernels import _numba_import_error

    return ["numpy"] + (["numba"] if _numba_import_error() is None else [])


@pytest.mark.parametrize("kernels", _kernels())
@pytest.mark.parametrize("mode", ["fast", "bitplane"])
def test_hwsim_counts_ties(mode, kernels):
    for chunk in (1, 2048):
        sim = Simulator(_tie_model(), chunk=chunk, kernels=kernels)
        np.testing.assert_array_equal(sim.run(X, mode=mode), LOGITS)
    logits, trace = Simulator(_tie_model(), kernels=kernels).run(X, mode=mode, trace=True)
    np.testing.assert_array_equal(logits, LOGITS)
    np.testing.assert_array_equal(trace.acc["fc0"], ACC0)
    np.testing.assert_array_equal(trace.out["fc0"], LEVELS0)
    stair = Simulator(_staircase_model(), kernels=kernels)
    np.testing.assert_array_equal(stair.run(STAIR_X, mode=mode), STAIR_LEVELS)
    np.testing.assert_array_equal(stair.run(STAIR_X, mode=mode, trace=True)[1].out["step"], STAIR_LEVELS)


def test_run_layer_counts_ties():
    acc, out = run_layer(_tie_model().layers[0], X)
    np.testing.assert_array_equal(acc, ACC0)
    np.testing.assert_array_equal(out, LEVELS0)
    np.testing.assert_array_equal(run_layer(_staircase_model().layers[0], STAIR_X)[1], STAIR_LEVELS)


# --- RTL in Amaranth's simulator ----------------------------------------------------------

@pytest.mark.parametrize("pe, simd", [(1, 1), (2, 2), (3, 3)])
def test_engine_counts_ties(pe, simd):
    got, _, _ = run_stream(DenseEngine(_tie_model().layers[0], Folding(pe, simd)), X, X.size)
    np.testing.assert_array_equal(np.array(got).reshape(LEVELS0.shape), LEVELS0)
    got, _, _ = run_stream(DenseEngine(_staircase_model().layers[0], Folding(1, 1)), STAIR_X, len(STAIR_X))
    np.testing.assert_array_equal(np.array(got)[:, None], STAIR_LEVELS)


def _decode(words, classes, width):
    logits = np.array([signed([(w >> (k * width)) & ((1 << width) - 1) for k in range(classes)], width)
                       for w in words])
    return logits, np.array([w >> (classes * width) for w in words])


def test_network_top_counts_ties():
    model = _tie_model()
    foldings = [Folding(2, 2), Folding(1, 3)]
    got, ins, outs = run_stream(NetworkTop(model, foldings), X, len(X))
    logits, pred = _decode(got, 2, 6)
    np.testing.assert_array_equal(logits, LOGITS)
    np.testing.assert_array_equal(pred, PRED)
    timing = network_timing(model, foldings, inferences=len(X))
    assert outs[0] - ins[0] == timing.latency
    assert outs[-1] - ins[0] == timing.cycles        # the model, cycle by cycle (not latency + k·II)
    stair = _staircase_model()
    got, _, _ = run_stream(NetworkTop(stair, [Folding(1, 1)] * 2), STAIR_X, len(STAIR_X))
    logits, pred = _decode(got, 1, 4)
    np.testing.assert_array_equal(logits, STAIR_LEVELS)
    assert pred.tolist() == [0] * len(STAIR_X)


# --- the generated Verilog under Verilator (cocotb) and hls4ml's C simulation --------------

def test_cocotb_network_counts_ties(tmp_path):
    from rtl.cosim import cosim_network

    res = cosim_network(_tie_model(), X, [Folding(2, 2), Folding(1, 3)], tmp_path, stress=True, seed=5)
    np.testing.assert_array_equal(res.outputs, np.concatenate([LOGITS, PRED[:, None]], axis=1))
    assert res.mismatches == [] and res.stress_mismatches == []
    assert (res.latency, res.ii) == (res.model_latency, res.model_ii)
    assert res.clean_cycles == res.model_clean_cycles      # the cycle model, cycle by cycle


def run_plan(plan, x):
    """An hls4ml plan's integers in numpy: Dense ``h·Wᵀ + b``, ReLU ``max(h, 0)``; every
    result must lie within the bounds its precision was chosen from (used by test_hls too)."""
    h = np.asarray(x, dtype=np.int64).reshape(len(x), -1)
    for layer in plan[1:]:
        h = h @ layer.weight.T + layer.bias if layer.kind == "dense" else np.maximum(h, 0)
        assert (h >= layer.lo).all() and (h <= layer.hi).all(), layer.name
    return h


def test_hls_plan_counts_ties():
    from export.hls import plan_hls

    np.testing.assert_array_equal(run_plan(plan_hls(_tie_model()), X), LOGITS)
    np.testing.assert_array_equal(run_plan(plan_hls(_staircase_model()), STAIR_X), STAIR_LEVELS)


def test_hls4ml_counts_ties(tmp_path):
    from export.hls import hls_cosim

    res = hls_cosim(_tie_model(), X, tmp_path / "prj")
    np.testing.assert_array_equal(res.outputs, LOGITS)


# --- the random models' contract: thresholds the test inputs reach -------------------------

def test_random_models_put_thresholds_on_reached_accumulators():
    from lqir import input_values
    from lqir.random_models import random_conv_model, random_dense_model, reference_accumulators

    for seed in range(20):
        rng = np.random.default_rng(seed)
        x = rng.integers(0, 6, size=(10, 9))
        model = random_dense_model(rng, [9, 7, 5, 3], 3, 2, in_levels=6, inputs=x)
        _, trace = Simulator(model).run(x, trace=True)
        prev = None
        for layer in model.layers[:-1]:   # every channel of every threshold layer has a tie
            acc = trace.acc[layer.name]
            assert (acc[:, :, None] == layer.thresholds[None]).any(axis=(0, 2)).all(), (seed, layer.name)
            np.testing.assert_array_equal(acc, reference_accumulators(layer, x if prev is None
                                                                      else trace.out[prev.name]))
            prev = layer
        xc = rng.integers(0, 5, size=(3, 2, 6, 6))
        conv = random_conv_model(rng, (2, 6, 6), 3, 2, 2, inputs=xc)
        _, trace = Simulator(conv).run(xc, trace=True)
        for layer in conv.mac_layers()[:-1]:
            acc = np.moveaxis(trace.acc[layer.name], 1, -1).reshape(-1, layer.n_out)
            assert (acc[:, :, None] == layer.thresholds[None]).any(axis=(0, 2)).all(), (seed, layer.name)
    # deterministic per rng; affine inputs as asked
    x = np.random.default_rng(0).integers(0, 6, size=(10, 9))
    a, b = (random_dense_model(np.random.default_rng(7), [9, 4, 3], 2, 2, in_levels=6, inputs=x,
                               in_affine=(-4, 3)) for _ in range(2))
    for la, lb in zip(a.layers, b.layers):
        for key, value in la.arrays().items():
            np.testing.assert_array_equal(value, lb.arrays()[key])
    np.testing.assert_array_equal(input_values(a.layers[0]), 3 * (np.arange(6) - 4))
