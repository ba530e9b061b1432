"""PE groups issue only the weight planes their channels use (self-compressed models).

A plane whose coefficients are 0 in every channel of a group adds nothing, so the
group skips it (in the compute array and in the finalizer): the engine must still equal
hwsim on every integer, every transfer must happen on the cycle model's cycle, and the
model's cycles must be fewer than with every plane issued.
"""

from dataclasses import replace

import numpy as np
import pytest

from hwsim import Simulator, run_layer
from hwsim.cycles import Folding, engine_schedule, group_planes, layer_timing, network_timing
from lqir import DenseLayer, fit_acc_bits
from lqir.random_models import random_dense_model, random_mac_layer
from rtl import DenseEngine, NetworkTop
from tests.amaranth_bench import run_stream, signed
from tests.stream_bench import model_transfers


def _mixed_depth_layer(rng, output):
    layer = random_mac_layer(rng, DenseLayer, "fc", weight_bits=3, in_bits=2, in_levels=4, output=output,
                             out_levels=4 if output == "threshold" else None, in_features=10, out_features=6)
    coef = layer.weight_coef.copy()
    coef[0:2, 1:] = 0       # group 0 (PE 2): one plane
    coef[2:4, 2] = 0        # group 1: planes 0 and 1
    coef[4, 0] = 0          # group 2: plane 0 used by channel 5 only, so still issued
    return replace(layer, weight_coef=coef)


def test_group_planes_are_the_used_ones(rng):
    layer = _mixed_depth_layer(rng, "accumulate")
    assert group_planes(layer, Folding(2, 4)) == ((0,), (0, 1), (0, 1, 2))
    dead = replace(layer, weight_coef=np.zeros_like(layer.weight_coef))
    assert group_planes(dead, Folding(3, 4)) == ((0,), (0,))   # at least one pass per group
    full = replace(layer, weight_coef=np.ones_like(layer.weight_coef))
    assert layer_timing(layer, Folding(2, 4)).compute_cycles < layer_timing(full, Folding(2, 4)).compute_cycles
    assert layer_timing(layer, Folding(2, 4)).ii < layer_timing(full, Folding(2, 4)).ii


@pytest.mark.parametrize("output", ["threshold", "accumulate"])
def test_engine_skips_unused_planes_exactly(rng, output):
    layer = _mixed_depth_layer(rng, output)
    folding = Folding(2, 4)
    x = rng.integers(0, 4, size=(3, layer.in_features))
    _, expected = run_layer(layer, x)
    got, ins, outs = run_stream(DenseEngine(layer, folding), x, 3 * layer.out_features)
    if output == "accumulate":
        got = signed(got, layer.acc_bits)
    np.testing.assert_array_equal(np.array(got).reshape(3, -1), expected)
    schedule = engine_schedule(layer, folding)
    assert (ins, outs) == model_transfers(schedule, 3 * layer.in_features, 3 * layer.out_features)
    assert schedule.group_planes == (1, 2, 3)


def test_network_with_mixed_depths_equals_hwsim_and_the_cycle_model(rng):
    model = random_dense_model(rng, [9, 8, 3], 3, 2)
    first = model.layers[0]
    coef = first.weight_coef.copy()
    coef[:4, 2] = 0
    coef[:2, 1] = 0
    model = fit_acc_bits(replace(model, layers=(replace(first, weight_coef=coef),) + model.layers[1:]))
    foldings = [Folding(2, 3), Folding(3, 4)]
    x = rng.integers(0, model.input.levels, size=(3, 9))
    expected = Simulator(model).run(x)
    acc_bits = model.layers[-1].acc_bits
    got, ins, outs = run_stream(NetworkTop(model, foldings), x, 3)
    logits = np.array([signed([(w >> (k * acc_bits)) & ((1 << acc_bits) - 1) for k in range(3)], acc_bits)
                       for w in got])
    np.testing.assert_array_equal(logits, expected)
    timing = network_timing(model, foldings, inferences=3)
    assert outs[0] - ins[0] == timing.latency
    assert outs[2] - outs[1] == timing.ii
    assert outs[2] - ins[0] == timing.cycles
