"""Self-compression: the quantizer by hand, the size term by hand, restoration, and pruned channels
leaving the IR while hwsim (fast, bit-plane) and hls4ml still agree."""

import json
import math

import numpy as np
import pytest
import torch

from export.lower_compress import lower_compressed
from hwsim import Simulator
from lqir import signed_width
from lqir.prune import channel_bits, weight_bits_stored
from models.layers import QuantConfig
from models.nets import NetConfig, QuantNet
from models.selfcompress import (SelfCompressConfig, SelfCompressQuantizer, bit_parameters, compress_quantizers,
                                 init_from_float, self_compressing, size_report, size_term, weight_count)
from models.train import TrainConfig, fit
from models.train_compress import CompressTrainConfig, Restorer, fit_compress, pruned_channels

LN2 = math.log(2)


pytestmark = pytest.mark.usefixtures("one_thread")


# --- the quantizer -----------------------------------------------------------------------

def _quantizer(b, e):
    q = SelfCompressQuantizer(len(b))
    with torch.no_grad():
        q.b.copy_(torch.tensor(b))
        q.e.copy_(torch.tensor(e))
    return q


def test_values_and_gradients_by_hand():
    # channel 0: b = 2.5, e = -1 -> 2^-e w = 2w, bounds -2^1.5 = -2.828 and 2^1.5 - 1 = 1.828
    # channel 1: b = 1,   e = -1 -> bounds -1 and 0
    # channel 2: b = -0.3 -> pruned, exactly zero
    q = _quantizer([2.5, 1.0, -0.3], [-1.2, -0.6, 0.0])    # round(e) = -1, -1, 0
    w = torch.tensor([[0.3, -1.7, 2.2, 0.74], [0.2, -0.3, 0.1, -0.9], [1.0, 2.0, 3.0, 4.0]], requires_grad=True)
    y = q(w)
    expected = torch.tensor([[1, -3, 2, 1], [0, -1, 0, -1], [0, 0, 0, 0]]) * 0.5
    torch.testing.assert_close(y, expected.float(), rtol=0, atol=0)
    y.sum().backward()
    # d/dw: 1 inside the bounds (2^e · 2^-e), 0 where clipped or pruned
    torch.testing.assert_close(w.grad, torch.tensor([[1.0, 0, 0, 1], [0, 1, 0, 0], [0, 0, 0, 0]]))
    # d/db: through the bound that clips: 2^e · (∓ln2 · 2^(b-1)) per clipped weight
    s0, s1 = 2 ** 1.5, 2 ** 0.0
    db = [0.5 * LN2 * s0 * (1 - 1),                 # -1.7 clipped low, 2.2 clipped high: cancel
          0.5 * LN2 * s1 * (2 - 1),                 # 0.2 and 0.1 clipped high, -0.9 low
          0.0]
    torch.testing.assert_close(q.b.grad, torch.tensor(db), atol=1e-6, rtol=1e-6)
    # d/de (straight through round(e)): ln2 · (q - w · [w inside the bounds])
    de = [LN2 * ((0.5 - 1.5 + 1.0 + 0.5) - (0.3 + 0.74)), LN2 * ((-0.5 - 0.5) - (-0.3)), 0.0]
    torch.testing.assert_close(q.e.grad, torch.tensor(de), atol=1e-6, rtol=1e-6)
    # the forward is the same in eval mode: no switch of depth at export
    q.eval()
    torch.testing.assert_close(q(w), expected.float(), rtol=0, atol=0)


def test_stored_depth_is_the_width_of_the_forward_range():
    b = torch.linspace(-0.5, 8.0, 200)
    q = _quantizer(b.tolist(), [0.0] * len(b))
    w = torch.linspace(-300, 300, 2001).expand(len(b), -1)
    n = q.integers(w)
    depth = q.int_depth()
    for k in range(len(b)):
        if b[k] <= 0:
            assert depth[k] == 0 and not n[k].any()
            continue
        lo, hi = int(n[k].min()), int(n[k].max())
        assert depth[k] == signed_width(lo, hi)                 # tight: both ends are reached here
        assert math.ceil(b[k]) - 1 <= depth[k] <= math.ceil(b[k])
    assert q.int_depth()[torch.argmin((b - 1.3).abs())] == 1    # b = 1.3 holds {-1, 0}
    # the encoding: two's complement on `bits` planes, coefficients [1, 2, ..., -2^(B-1)] · 2^E
    _, values, planes = q.encode(w)
    torch.testing.assert_close((planes * q.effective_basis().float()[:, None, :]).sum(-1), values.reshape(len(b), -1))
    torch.testing.assert_close(values, q(w).detach(), rtol=0, atol=0)


def test_pruned_channel_is_exactly_zero_and_frozen():
    q = _quantizer([-2.0, 3.0], [-3.0, -3.0])
    w = torch.randn(2, 7, requires_grad=True)
    y = q(w)
    assert torch.equal(y[0], torch.zeros(7))
    y.sum().backward()
    assert torch.equal(w.grad[0], torch.zeros(7)) and q.b.grad[0] == 0 and q.e.grad[0] == 0


# --- the size term -----------------------------------------------------------------------

def _tiny_config(arch="mlp", widths=(4, 3)):
    return NetConfig(arch, (1, 8, 8), 17, 10, widths, QuantConfig("float"), in_mean=4.0 if arch == "mlp" else 0.0,
                     in_std=6.0)


def test_size_term_matches_a_hand_count():
    net = self_compressing(_tiny_config())                  # 64 -> 4 -> 3 -> 10
    q0, q1, q2 = compress_quantizers(net)
    with torch.no_grad():
        q0.b.copy_(torch.tensor([2.0, -1.0, 3.0, 1.5]))     # channel 1 pruned
        q1.b.copy_(torch.tensor([1.0, -0.5, 2.5]))          # channel 1 pruned
        q2.b.copy_(torch.full((10,), 4.0))
    n = 64 * 4 + 4 * 3 + 3 * 10
    assert weight_count(net) == n
    real = (2 + 3 + 1.5) * 64 + (1 + 2.5) * 3 + 4 * 10 * 2    # fan-ins: 64, 3 alive of 4, 2 alive of 3
    assert float(size_term(net).detach()) == pytest.approx(real / n)
    # stored depths: b = 2 -> {-2..1}: 2; b = 1.5 -> round(-1.41), round(0.41) = {-1, 0}: 1;
    # b = 2.5 -> round(-2.83), round(1.83) = {-3..2}: 3; b = 4 -> {-8..7}: 4
    stored = (2 + 3 + 1) * 64 + (1 + 3) * 3 + 4 * 10 * 2
    assert [q0.int_depth().tolist(), q1.int_depth().tolist()] == [[2, 0, 3, 1], [1, 0, 3]]
    assert float(size_term(net, integer=True)) == pytest.approx(stored / n)
    report = size_report(net)
    assert report["bytes"] == pytest.approx(stored / 8) and [l["pruned"] for l in report["layers"]] == [1, 1, 0]
    # d Q / d b: each channel's surviving fan-in over N (0 for a pruned one)
    size_term(net).backward()
    torch.testing.assert_close(q0.b.grad, torch.tensor([64, 0, 64, 64]) / n)
    torch.testing.assert_close(q1.b.grad, torch.tensor([3, 0, 3]) / n)
    torch.testing.assert_close(q2.b.grad, torch.full((10,), 2.0) / n)


def test_size_term_counts_conv_and_flatten_groups():
    net = self_compressing(_tiny_config("cnn", (2, 3)))    # conv 1->2 (8x8 -> 4x4), conv 2->3 (-> 2x2), fc 12->10
    q0, q1, q2 = compress_quantizers(net)
    with torch.no_grad():
        q0.b.copy_(torch.tensor([2.0, -1.0]))
        q1.b.copy_(torch.tensor([1.0, 1.0, -1.0]))
        q2.b.copy_(torch.full((10,), 3.0))
    n = 2 * 9 + 3 * 2 * 9 + 10 * 12
    real = 2 * 9 + (1 + 1) * 1 * 9 + 3 * 10 * 2 * 4       # conv1 reads 1 alive channel; fc reads 2 alive × 2·2
    assert float(size_term(net).detach()) == pytest.approx(real / n)


# --- restoration ---------------------------------------------------------------------------

def test_restoration_revives_a_fraction_of_pruned_channels():
    net = self_compressing(_tiny_config(widths=(10, 10)))
    q0, q1, _ = compress_quantizers(net)
    with torch.no_grad():
        q0.b[:6] = -1.0
        q1.b[:4] = -1.0
    cfg = CompressTrainConfig(restore_margin=0.02, restore_fraction=0.25, restore_bits=2.0)
    r = Restorer(net, cfg, torch.Generator().manual_seed(0))
    assert r.check(0.90) == 0                    # the first check sets the baseline
    assert r.check(0.89) == 0                    # a drop within the margin
    assert len(pruned_channels(net)) == 10
    assert r.check(0.80) == 3                    # ceil(25 % of 10)
    pruned = pruned_channels(net)
    assert len(pruned) == 7
    revived = [(k, c) for k, c in [(0, i) for i in range(6)] + [(1, i) for i in range(4)] if (k, c) not in pruned]
    for k, c in revived:
        assert compress_quantizers(net)[k].b[c] == 2.0
    assert r.check(0.85) == 0                    # compared with the last check (0.80), not the first


def test_the_training_loop_restores_on_a_drop(monkeypatch, digits):
    net = self_compressing(_tiny_config(widths=(12, 8)))
    with torch.no_grad():
        compress_quantizers(net)[0].b[:8] = -1.0
    falling = iter(np.linspace(1.0, 0.0, 1000))
    import models.train_compress as tc

    real = tc.accuracy
    monkeypatch.setattr(tc, "accuracy", lambda n, x, y, **k: next(falling) if len(x) == 5 else real(n, x, y, **k))
    cfg = CompressTrainConfig(epochs=1, restore_every=4, restore_margin=0.0, gamma=10.0)
    hist = fit_compress(net, digits, cfg, preservation=np.arange(5), progress=False)
    assert hist.checks and all(c[2] > 0 for c in hist.checks if c[0] > 0)
    assert hist.revived > 0
    # the unsafe variant never restores
    unsafe = fit_compress(self_compressing(_tiny_config(widths=(12, 8))), digits, cfg, progress=False)
    assert unsafe.checks == [] and unsafe.revived == 0


def test_optimizer_groups_and_determinism(digits):
    def run():
        torch.manual_seed(0)
        net = self_compressing(_tiny_config(widths=(12, 8)))
        fit_compress(net, digits, CompressTrainConfig(epochs=1, seed=3), preservation=np.arange(30), progress=False)
        return net

    a, b = run(), run()
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    bits, other = bit_parameters(a)
    assert len(bits) == 2 * 3 and {id(p) for p in bits}.isdisjoint({id(p) for p in other})
    assert len(bits) + len(other) == len(list(a.parameters()))


# --- down to the IR, hwsim and hls4ml ------------------------------------------------------

@pytest.fixture(scope="module")
def pruned_mlp(digits):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = NetConfig("mlp", digits.shape, digits.levels, 10, (24, 16), QuantConfig("float"),
                        in_mean=float(digits.x_train.mean()), in_std=float(digits.x_train.std()))
        torch.manual_seed(0)
        float_net = QuantNet(cfg)
        fit(float_net, digits, TrainConfig(3, seed=0), progress=False)
        net = init_from_float(self_compressing(cfg, SelfCompressConfig(act_bits=3)), float_net)
        fit_compress(net, digits, CompressTrainConfig(epochs=2, gamma=0.01), progress=False)
        with torch.no_grad():                         # drive channels to b = 0
            compress_quantizers(net)[0].b[[1, 5, 6]] = 0.0
            compress_quantizers(net)[1].b[[0, 9]] = -0.7
        net.eval()
        return net
    finally:
        torch.set_num_threads(threads)


def _torch_logits(net, x):
    with torch.no_grad():
        return net(torch.as_tensor(x)).numpy()


def test_pruned_channels_leave_the_ir(pruned_mlp, digits):
    net, x = pruned_mlp, digits.x_test
    model = lower_compressed(net, digits.classes)
    full = lower_compressed(net, digits.classes, prune=False)
    fc0, fc1, fc2 = model.mac_layers()
    q0, q1, q2 = compress_quantizers(net)
    alive0, alive1 = int(q0.alive().sum()), int(q1.alive().sum())
    assert alive0 <= 21 and alive1 <= 14
    assert (fc0.out_features, fc1.in_features, fc1.out_features, fc2.in_features) == (alive0, alive0, alive1, alive1)
    sim = Simulator(model)
    logits = sim.run(x)
    np.testing.assert_array_equal(logits, Simulator(full).run(x))          # removal changes no logit
    np.testing.assert_array_equal(sim.run(x, mode="bitplane"), logits)     # fast == bit-plane
    # the IR is the PyTorch eval model, up to the rounding of activation thresholds
    ref = _torch_logits(net, x)
    assert np.mean(logits.argmax(1) == ref.argmax(1)) >= 0.99
    # logits: equal but for the logit bias, rounded to a multiple of logit_scale
    close = np.abs(logits * model.logit_scale - ref).max(axis=1) <= 0.5 * model.logit_scale + 1e-5
    assert close.mean() >= 0.99
    # coefficients: 2^(E_o - E_min) · [1, 2, ..., -2^(B_o-1)]; hidden channels sorted by depth
    for layer, quant in zip(model.mac_layers(), (q0, q1, q2)):
        bits = channel_bits(layer)
        if layer is fc2:
            assert bits.tolist() == quant.int_depth().tolist()             # logits keep their order
        else:
            assert bits.tolist() == sorted(quant.int_depth()[quant.alive()].tolist(), reverse=True)
        used = bits > 0
        coef = layer.weight_coef[used]
        low = np.abs(coef[:, 0])
        np.testing.assert_array_equal(coef[np.arange(len(coef)), bits[used] - 1], -low * 2 ** (bits[used] - 1))
        assert np.all((low & (low - 1)) == 0) and low.min() == 1            # powers of two, the smallest 1
    # the size term counts exactly what the IR stores
    assert weight_bits_stored(model) == pytest.approx(float(size_term(net, integer=True)) * weight_count(net))


def test_pruned_model_in_hls4ml(pruned_mlp, digits, tmp_path):
    from export.hls import hls_cosim

    model = lower_compressed(pruned_mlp, digits.classes)
    res = hls_cosim(model, digits.x_test[:60], tmp_path / "prj")
    assert res.mismatches == []


def test_pruned_cnn_lowers_exactly(digits):
    cfg = _tiny_config("cnn", (6, 5))
    torch.manual_seed(1)
    net = self_compressing(cfg)
    fit_compress(net, digits, CompressTrainConfig(epochs=1, gamma=0.01), progress=False)
    with torch.no_grad():
        compress_quantizers(net)[0].b[[0, 3]] = -1.0
        compress_quantizers(net)[1].b[[2]] = -1.0
    model = lower_compressed(net, digits.classes)
    conv0, conv1, fc = model.mac_layers()
    assert (conv0.out_channels, conv1.in_channels, conv1.out_channels, fc.in_features) == (4, 4, 4, 4 * 2 * 2)
    x = digits.x_test[:100]
    logits = Simulator(model).run(x)
    np.testing.assert_array_equal(logits, Simulator(lower_compressed(net, digits.classes, prune=False)).run(x))
    np.testing.assert_array_equal(Simulator(model).run(x, mode="bitplane"), logits)
    assert np.mean(logits.argmax(1) == _torch_logits(net, x).argmax(1)) >= 0.97


# --- the experiment, end to end (tiny) ------------------------------------------------------

def test_compress_run_folder(tmp_path):
    from lqflow.compress import CompressRunConfig, run_compress

    cfg = CompressRunConfig(seeds=1, float_epochs=1, epochs=1, widths=(16, 8))
    result, folder = run_compress(cfg, tmp_path / "run", progress=False, log=lambda *a: None,
                                  hardware=lambda model, x, where: {"luts": 1.0})
    assert result["ok"]
    for name in ("compress.json", "split.json", "preservation.json", "report.md", "compress.png",
                 "seed0/unsafe.lqir.npz", "seed0/safe.lqir.npz"):
        assert (folder / name).is_file(), name
    split = json.loads((folder / "split.json").read_text())["seeds"]["0"]
    pres = json.loads((folder / "preservation.json").read_text())["seeds"]["0"]["indices"]
    assert set(pres) <= set(split["train"]) and not set(pres) & (set(split["val"]) | set(split["test"]))
    summary = json.loads((folder / "compress.json").read_text())["summary"]
    assert summary["float"]["percent_of_float"]["mean"] == 100.0
    assert summary["safe"]["hardware"]["luts"]["mean"] == 1.0
    assert "luts" in result["table"]["header"]
