"""Lowering PyTorch → IR: the passes keep every integer, the ladder holds on digits."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from lqir import clamp_thresholds, fit_acc_bits
from export.lower import (LoweringError, integerize_bases, lower,
                          read_network)
from lqir.random_models import random_conv_model, random_dense_model
from hwsim import Simulator, predict
from models.layers import QuantConfig
from models.nets import NetConfig, QuantNet
from models.train import predict as torch_predict


@given(seed=st.integers(0, 2**32 - 1), conv=st.booleans())
def test_ir_passes_keep_every_integer(seed, conv):
    """simulate before == simulate after, for each IR → IR pass."""
    rng = np.random.default_rng(seed)
    if conv:
        model = random_conv_model(rng, (2, 6, 5), 3, 2, 2)
    else:
        model = random_dense_model(rng, [11, 8, 6, 3], 3, 2)
    # loosen the model: far-away thresholds and a generous accumulator width
    loose = []
    for layer in model.layers:
        if getattr(layer, "thresholds", None) is not None:
            span = rng.integers(0, 1000, size=layer.thresholds.shape)
            thr = layer.thresholds + np.where(layer.thresholds <= np.median(layer.thresholds), -span, span)
            layer = replace(layer, thresholds=np.sort(thr, axis=1), acc_bits=40)
        loose.append(layer)
    model = replace(model, layers=tuple(loose))
    x = rng.integers(0, model.input.levels, size=(12,) + model.input.shape)
    before, trace = Simulator(model).run(x, trace=True)
    for step in (clamp_thresholds, fit_acc_bits):
        after_model = step(model)
        after, after_trace = Simulator(after_model).run(x, trace=True)
        np.testing.assert_array_equal(after, before)
        for name in trace.out:
            np.testing.assert_array_equal(after_trace.out[name], trace.out[name])
    tight = fit_acc_bits(clamp_thresholds(model))
    assert all(t.acc_bits <= m.acc_bits for t, m in zip(tight.mac_layers(), model.mac_layers()))


def _ladder(float_net, qat_net, data):
    model = lower(qat_net, data.classes)
    acc = Simulator(model).run(data.x_test)
    assert acc.dtype == np.int64
    hw = predict(acc)
    q = torch_predict(qat_net, data.x_test)
    return model, float(np.mean(hw == q)), float(np.mean(hw == data.y_test)), float(np.mean(q == data.y_test))


def test_mlp_lowering_agrees_with_pytorch(trained_mlp, digits):
    float_net, qat_net = trained_mlp
    model, agreement, hw_acc, q_acc = _ladder(float_net, qat_net, digits)
    assert agreement >= 0.99
    assert abs(hw_acc - q_acc) <= 0.005
    assert q_acc > 0.9  # the network really learned
    assert [layer.op for layer in model.layers] == ["flatten", "dense", "dense", "dense"]


def test_cnn_lowering_agrees_with_pytorch(trained_cnn, digits):
    float_net, qat_net = trained_cnn
    model, agreement, hw_acc, q_acc = _ladder(float_net, qat_net, digits)
    assert agreement >= 0.99
    assert abs(hw_acc - q_acc) <= 0.005 + 1e-9
    assert q_acc > 0.85
    assert [layer.op for layer in model.layers] == ["conv2d", "maxpool2d", "conv2d", "maxpool2d", "flatten", "dense"]
    sim = Simulator(model)
    np.testing.assert_array_equal(sim.run(digits.x_test[:50]), sim.run(digits.x_test[:50], mode="bitplane"))


def test_negative_batchnorm_slope_negates_the_channel(trained_mlp, digits):
    """Flip the sign of some BN slopes: the export must negate those channels and still agree."""
    _, qat_net = trained_mlp
    net = QuantNet(qat_net.config)
    net.load_state_dict(qat_net.state_dict())
    bn = net.blocks[1].bn
    with torch.no_grad():
        bn.weight[::3] *= -1
    model = lower(net, digits.classes)
    original = lower(qat_net, digits.classes)
    flipped = np.zeros(len(bn.weight), bool)
    flipped[::3] = True
    # weights are untouched by batch-norm: the flipped channels are exactly negated
    np.testing.assert_array_equal(model.layers[1].weight_coef[flipped], -original.layers[1].weight_coef[flipped])
    np.testing.assert_array_equal(model.layers[1].weight_coef[~flipped], original.layers[1].weight_coef[~flipped])
    hw = predict(Simulator(model).run(digits.x_test))
    assert np.mean(hw == torch_predict(net, digits.x_test)) >= 0.99


def _hand_net():
    """A 3 → 2 → 2 LQ MLP with every quantizer basis, weight and BN statistic set by hand.

    All values are binary fractions, so float32 holds them exactly; the expected integers
    of :func:`test_lowering_by_hand` are worked out from them in its comments.
    """
    cfg = NetConfig("mlp", (1, 1, 3), 4, 2, (2,), QuantConfig("lq", 2, 2), in_mean=1.0, in_std=2.0)
    net = QuantNet(cfg)
    hidden, last = net.blocks[1], net.blocks[2]
    with torch.no_grad():
        hidden.linear.weight_quant.basis.copy_(torch.tensor([[0.5, 1.0], [1.0, -0.34375]]))
        hidden.linear.weight.copy_(torch.tensor([[1.5, -0.5, 0.5], [0.65625, -1.34375, 1.34375]]))
        bn = hidden.bn
        bn.eps = 0.0
        bn.weight.copy_(torch.tensor([2.0, -1.0]))
        bn.bias.copy_(torch.tensor([0.25, 0.5625]))
        bn.running_mean.copy_(torch.tensor([0.5, 0.0]))
        bn.running_var.copy_(torch.tensor([1.0, 1.0]))
        hidden.act.act_quant.basis.copy_(torch.tensor([[0.5, 1.0]]))
        last.linear.weight_quant.basis.copy_(torch.tensor([[-0.34375, 1.0]]))
        last.linear.weight.copy_(torch.tensor([[1.34375, -0.65625], [0.65625, -1.34375]]))
        last.linear.bias.copy_(torch.tensor([0.28125, -0.09375]))
    return net.eval()


def test_lowering_by_hand():
    """Every integer of one lowered network, computed by hand (coef_bits = 4: top coefficient 4..7).

    fc0 weight bases, per channel; the scale top/q (q = 4..7) with the least squared error wins:
      [0.5, 1]      → q = 4 is exact: coef [2, 4], scale 1/4 (q = 6 ties; the first wins)
      [1, -0.34375] → -0.34375·q = -1.375, -1.71875, -2.0625, -2.40625 → errors of -1, -2, -2, -2
                      over q: 0.0088, 0.0032, 0.0001, 0.0034 → q = 6: coef [6, -2] (floor: -3), scale 1/6
    pm1 codes (bit i set: +basis_i): weights [1.5, -0.5, 0.5] → codes [3, 1, 2] → w [6, -2, 2];
      [0.65625, -1.34375, 1.34375] → codes [3, 2, 1] → w [4, -8, 8]
    input: level k, real value (k - 1)/2: in_coef [1, 2], in_scale 1/2, in_offset -1/2
    z = c·acc + d with c = scale/2, d = scale·(-1/2)·Σw:  ch0 c = 1/8, d = -3/4;  ch1 c = 1/12, d = -1/3
    BN (eps 0, var 1): ch0 y = 2z + (0.25 - 2·0.5) → y = acc/4 - 9/4
                       ch1 y = -z + 0.5625 → y = -acc/12 + 43/48: slope < 0, so the channel is
                       negated (weight_coef [-6, 2]) and y = acc'/12 + 43/48
    act levels [0, 0.5, 1, 1.5] → midpoints t = 0.25, 0.75, 1.25; y > t  ⇔  acc >= floor(τ) + 1:
      ch0 τ = 4t + 9 = 10, 12, 14 → thresholds [11, 13, 15]
      ch1 τ = 12t - 10.75 = -7.75, -1.75, 4.25 → thresholds [-7, -1, 5]
    fc1 input: act basis [0.5, 1] → in_coef [2, 4] (q = 4 exact), scale 1/4; codes in level order [0, 1, 2, 3]
    fc1 weight basis (shared) [-0.34375, 1] → coef [-2, 6] (floor: -3), scale 1/6;
      weights [[1.34375, -0.65625], [0.65625, -1.34375]] → codes [[2, 0], [3, 1]]
    logits: c = (1/6)·(1/4) = 1/24, bias_int = rint(24·b): 24·0.28125 = 6.75 → 7 (floor: 6),
      24·(-0.09375) = -2.25 → -2 (floor: -3); logit_scale 1/24
    acc_bits: fc0 w [6, -2, 2] and [-4, 8, -8] on values 0..3: [-6, 24] and [-36, 24] → 7 bits;
      fc1 w [8, -4] + 7 and [4, -8] - 2 on values 0..6: [-17, 55] and [-50, 22] → 7 bits
    """
    model = lower(_hand_net(), ["a", "b"], coef_bits=4)
    assert [layer.op for layer in model.layers] == ["flatten", "dense", "dense"]
    fc0, fc1 = model.layers[1], model.layers[2]
    np.testing.assert_array_equal(fc0.weight_code, [[3, 1, 2], [3, 2, 1]])
    np.testing.assert_array_equal(fc0.weight_coef, [[2, 4], [-6, 2]])
    np.testing.assert_array_equal(fc0.bias, [0, 0])
    np.testing.assert_array_equal(fc0.in_code, [0, 1, 2, 3])
    np.testing.assert_array_equal(fc0.in_coef, [1, 2])
    np.testing.assert_array_equal(fc0.thresholds, [[11, 13, 15], [-7, -1, 5]])
    assert (fc0.out_levels, fc0.acc_bits, fc0.weight_encoding) == (4, 7, "pm1")
    np.testing.assert_array_equal(fc1.weight_code, [[2, 0], [3, 1]])
    np.testing.assert_array_equal(fc1.weight_coef, [[-2, 6], [-2, 6]])
    np.testing.assert_array_equal(fc1.bias, [7, -2])
    np.testing.assert_array_equal(fc1.in_code, [0, 1, 2, 3])
    np.testing.assert_array_equal(fc1.in_coef, [2, 4])
    assert fc1.acc_bits == 7
    assert model.logit_scale == pytest.approx(1 / 24, rel=1e-12)


def test_first_layer_input_is_exact(trained_mlp):
    _, qat_net = trained_mlp
    stages = integerize_bases(read_network(qat_net))
    first = next(s for s in stages if s.weight_basis is not None)
    assert first.in_coef.tolist() == [1, 2, 4, 8, 16]  # 17 pixel levels, value = level
    assert first.in_code.tolist() == list(range(17))


def test_coef_bits_are_validated(trained_mlp, digits):
    with pytest.raises(LoweringError, match="coef_bits"):
        lower(trained_mlp[1], digits.classes, coef_bits=1)


def test_float_model_cannot_be_lowered(digits):
    cfg = NetConfig("mlp", digits.shape, digits.levels, 10, (8,), QuantConfig("float"))
    with pytest.raises(LoweringError, match="float model has no integer form"):
        lower(QuantNet(cfg), digits.classes)


def test_uniform_quantizer_lowers(digits):
    from lqflow.flow import RunConfig, train_models

    cfg = RunConfig(quantizer="uniform", widths=(32,), float_epochs=4, qat_epochs=4)
    _, qat_net = train_models(cfg, digits, progress=False)[:2]
    model = lower(qat_net, digits.classes)
    hw = predict(Simulator(model).run(digits.x_test))
    assert np.mean(hw == torch_predict(qat_net, digits.x_test)) >= 0.99


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_28x28_inputs_lower_and_agree(arch):
    """mnist5k: 256 input levels (8 input bit planes) and 28×28 images through the whole lowering."""
    from lqflow.flow import RunConfig, train_models
    from models.data import load_dataset

    data = load_dataset("mnist5k", seed=0)
    cfg = RunConfig(dataset="mnist5k", arch=arch, widths=(32,) if arch == "mlp" else (4, 8),
                    float_epochs=1, qat_epochs=1)
    _, qat_net = train_models(cfg, data, progress=False)[:2]
    model = lower(qat_net, data.classes)
    first = model.mac_layers()[0]
    assert first.in_bits == 8 and first.in_levels == 256
    x = data.x_test[:200]
    hw = Simulator(model).run(x)
    np.testing.assert_array_equal(hw, Simulator(model).run(x, mode="bitplane"))
    assert np.mean(predict(hw) == torch_predict(qat_net, x)) >= 0.98
