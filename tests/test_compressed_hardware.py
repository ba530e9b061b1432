"""Self-compressed models down to the RTL: the engine keeps the savings.

Channels sorted by bit depth let each PE group issue only the planes its widest channel
has; the same model with its channels interleaved issues more. Both are co-simulated
under Verilator: every logit equals hwsim's, and the cycles equal the cycle model's.
"""

import numpy as np

from export.lower_compress import lower_compressed
from hwsim import Simulator
from hwsim.cycles import Folding, network_timing
from lqflow.compress import hardware_estimate
from lqir import channel_bits, reorder_by_bits
from lqir.prune import _consumer, _input_groups, _take_inputs, _take_rows
from rtl.cosim import cosim_network
from tests.test_selfcompress import pruned_mlp  # noqa: F401  (the fixture: a trained, pruned MLP)


def _interleave(model):
    """The same network with its first layer's channels dealt out widest, narrowest, …"""
    layers = list(model.layers)
    i = next(k for k, layer in enumerate(layers) if hasattr(layer, "weight_coef"))
    bits = channel_bits(layers[i])
    order = np.argsort(-bits, kind="stable")
    dealt = np.empty_like(order)
    dealt[0::2], dealt[1::2] = order[:(len(order) + 1) // 2], order[(len(order) + 1) // 2:][::-1]
    j, flattened = _consumer(layers, i)
    groups = _input_groups(layers, i, j, flattened)
    layers[i] = _take_rows(layers[i], dealt)
    layers[j] = _take_inputs(layers[j], groups[dealt])
    return model.__class__(model.input, tuple(layers), model.classes, model.logit_scale, model.meta)


def test_ordered_channels_cost_fewer_cycles_and_stay_exact(pruned_mlp, digits, tmp_path, one_thread):  # noqa: F811
    ordered = lower_compressed(pruned_mlp, digits.classes)
    mixed = _interleave(ordered)
    first = ordered.mac_layers()[0]
    assert len(set(channel_bits(first).tolist())) > 1                   # mixed depths to exploit
    x = digits.x_test[:40]
    np.testing.assert_array_equal(Simulator(mixed).run(x), Simulator(ordered).run(x))
    np.testing.assert_array_equal(channel_bits(reorder_by_bits(mixed).mac_layers()[0]), channel_bits(first))
    foldings = [Folding(4, 16), Folding(4, 8), Folding(2, 8)]
    fast, slow = network_timing(ordered, foldings), network_timing(mixed, foldings)
    assert fast.per_layer[0].compute_cycles < slow.per_layer[0].compute_cycles
    assert fast.cycles <= slow.cycles
    res = cosim_network(ordered, x, foldings, tmp_path / "ordered", stress=True, seed=2)
    assert res.mismatches == [] and res.stress_mismatches == [] and res.unresolved == []
    np.testing.assert_array_equal(res.outputs[:, :-1], Simulator(ordered).run(x))
    assert (res.latency, res.ii, res.clean_cycles) == (res.model_latency, res.model_ii, res.model_clean_cycles)


def test_compress_hardware_columns(pruned_mlp, digits, tmp_path):  # noqa: F811
    model = lower_compressed(pruned_mlp, digits.classes)
    figures = hardware_estimate(model, digits.x_test, tmp_path)
    assert set(figures) == {"cycles/inference", "LUT4 (est.)", "DP16KD (est.)"}
    assert figures["cycles/inference"] > 0 and figures["LUT4 (est.)"] > 0
