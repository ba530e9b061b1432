"""The preservation set: training split only, class-balanced, deterministic; the selectors by hand."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from models.layers import QuantConfig
from models.nets import NetConfig, QuantNet
from models.preservation import (PreservationConfig, diverse_indices, saliency_scores, select_preservation,
                                 split_indices, uncertainty_scores)
from models.train import TrainConfig, fit


pytestmark = pytest.mark.usefixtures("one_thread")


def _float_net(data, arch, epochs=2):
    cfg = NetConfig(arch, data.shape, data.levels, len(data.classes), (32, 16) if arch == "mlp" else (4, 8),
                    QuantConfig("float"), in_mean=float(data.x_train.mean()) if arch == "mlp" else 0.0,
                    in_std=float(data.x_train.std()))
    torch.manual_seed(0)
    net = QuantNet(cfg)
    fit(net, data, TrainConfig(epochs, seed=0), progress=False)
    return net


@pytest.fixture(scope="module")
def float_mlp(digits):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _float_net(digits, "mlp")
    finally:
        torch.set_num_threads(threads)


def test_never_a_validation_or_test_index(float_mlp, digits):
    split = split_indices("digits", 0, digits)
    pres = select_preservation(float_mlp, digits)
    chosen = split["train"][pres.indices]
    assert np.isin(chosen, split["train"]).all()
    assert not np.isin(chosen, np.r_[split["val"], split["test"]]).any()
    # the selectors cannot see validation or test data: poisoning them changes nothing
    poisoned = replace(digits, x_val=None, y_val=None, x_test=None, y_test=None)
    again = select_preservation(float_mlp, poisoned)
    np.testing.assert_array_equal(again.indices, pres.indices)


def test_split_indices_are_the_loaded_split(digits):
    split = split_indices("digits", 0, digits)          # checks every array against the loaded one
    every = np.sort(np.concatenate(list(split.values())))
    np.testing.assert_array_equal(every, np.arange(len(every)))
    assert [len(split[k]) for k in ("train", "val", "test")] == [len(digits.y_train), len(digits.y_val),
                                                                len(digits.y_test)]
    other = split_indices("digits", 1)
    assert not np.array_equal(other["train"], split["train"])


def test_class_balanced_deduplicated_and_deterministic(float_mlp, digits):
    cfg = PreservationConfig(fraction=0.1)
    pres = select_preservation(float_mlp, digits, cfg)
    assert len(pres) == round(0.1 * len(digits.y_train))
    assert len(np.unique(pres.indices)) == len(pres)
    counts = np.bincount(digits.y_train[pres.indices], minlength=len(digits.classes))
    assert counts.max() - counts.min() <= 1
    sources = np.sort(np.concatenate(list(pres.sources.values())))
    np.testing.assert_array_equal(sources, pres.indices)             # each index from exactly one selector
    assert all(len(v) > 0 for v in pres.sources.values())
    np.testing.assert_array_equal(select_preservation(float_mlp, digits, cfg).indices, pres.indices)
    small = select_preservation(float_mlp, digits, PreservationConfig(fraction=0.02, selectors=("saliency",)))
    assert len(small) == round(0.02 * len(digits.y_train)) and set(small.sources) == {"saliency"}


class _Fixed(nn.Module):
    """A 'network' with given logits per sample index (the input is the index)."""

    def __init__(self, logits):
        super().__init__()
        self.logits = torch.as_tensor(logits, dtype=torch.float32)

    def forward(self, x):
        return self.logits[torch.as_tensor(x).long().reshape(-1)]


def test_uncertainty_by_hand():
    p = np.array([[0.7, 0.2, 0.1], [0.4, 0.35, 0.25], [0.98, 0.01, 0.01]])
    net = _Fixed(np.log(p))
    x = np.arange(3)
    np.testing.assert_allclose(uncertainty_scores(net, x, "least_confidence"), [0.3, 0.6, 0.02], atol=1e-6)
    np.testing.assert_allclose(uncertainty_scores(net, x, "margin"), [-0.5, -0.05, -0.97], atol=1e-6)


def test_diversity_picks_the_sample_nearest_each_centroid():
    rng = np.random.default_rng(0)
    centers = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    sizes = [30, 20, 10]
    feats = np.concatenate([c + rng.normal(size=(n, 2)) for c, n in zip(centers, sizes)])
    picks = diverse_indices(feats, 3, seed=0)
    bounds = np.cumsum([0] + sizes)
    # largest cluster first, one pick per blob, each the member nearest its blob's mean
    for pick, lo, hi in zip(picks, bounds[:-1], bounds[1:]):
        members = feats[lo:hi]
        assert lo <= pick < hi
        assert pick == lo + np.argmin(((members - members.mean(0)) ** 2).sum(1))
    np.testing.assert_array_equal(diverse_indices(feats, 3, seed=0), picks)


def test_saliency_mlp_is_the_input_gradient(float_mlp, digits):
    x = digits.x_train[:5]
    scores = saliency_scores(float_mlp, x)
    xt = torch.as_tensor(x).float().requires_grad_(True)
    out = float_mlp(xt)
    out.gather(1, out.argmax(1, keepdim=True)).sum().backward()
    np.testing.assert_allclose(scores, xt.grad.abs().flatten(1).sum(1).numpy(), rtol=1e-5)


def test_saliency_cnn_is_grad_cam(digits):
    net = _float_net(digits, "cnn", epochs=1)
    x = digits.x_train[:6]
    scores = saliency_scores(net, x)
    # Grad-CAM by hand on the last conv block's activation map
    block = [b for b in net.blocks if hasattr(b, "conv")][-1]
    feats = {}
    hook = block.act.register_forward_hook(lambda m, i, o: feats.update(a=o))
    out = net(torch.as_tensor(x))
    hook.remove()
    grad = torch.autograd.grad(out.gather(1, out.argmax(1, keepdim=True)).sum(), feats["a"])[0]
    cam = torch.relu((grad.mean((2, 3), keepdim=True) * feats["a"]).sum(1)).flatten(1).sum(1)
    np.testing.assert_allclose(scores, cam.detach().numpy(), rtol=1e-5)
    assert np.all(scores >= 0) and np.isfinite(scores).all()
    pres = select_preservation(net, digits, PreservationConfig(fraction=0.05))
    assert len(pres) == round(0.05 * len(digits.y_train))
