"""The preservation set of safety-guided self-compression (Zbeeb et al., arXiv 2505.00350).

Three selectors score the training split on the trained float model:

* **saliency** — Grad-CAM intensity on the last conv block for a CNN (the sum of
  ``ReLU(Σ_k α_k A_k)``, ``α_k`` the spatial mean of the predicted logit's gradient);
  the L1 norm of the predicted logit's input gradient for an MLP.  Highest first.
* **uncertainty** — least confidence ``1 − max softmax`` above a threshold (most
  uncertain first), or the smallest top-2 softmax margin.
* **diversity** — k-means (scikit-learn, fixed seed) on the penultimate features; the
  sample nearest each centroid, largest cluster first.

Their union, de-duplicated, is taken class by class (round robin over the selectors'
rankings, so each contributes) up to an equal share of the requested size per class.

The reference code draws the set from the *test* set.  Here the selectors see only
``data.x_train``/``data.y_train``; the indices returned are positions in the training
split, and :func:`split_indices` maps them to the dataset as loaded.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import data as _data
from .nets import ConvBlock

__all__ = ["SELECTORS", "PreservationConfig", "PreservationSet", "saliency_scores", "uncertainty_scores",
           "penultimate_features", "diverse_indices", "select_preservation", "split_indices"]

SELECTORS = ("saliency", "uncertainty", "diversity")
UNCERTAINTY = ("least_confidence", "margin")


@dataclass(frozen=True)
class PreservationConfig:
    """``fraction`` of the training split (default 10 %); ``uncertainty`` 'least_confidence'
    (``1 − max p > threshold``) or 'margin' (smallest top-2 gap); ``seed`` of k-means."""

    fraction: float = 0.1
    uncertainty: str = "least_confidence"
    threshold: float = 0.2
    selectors: tuple = SELECTORS
    seed: int = 0

    def __post_init__(self):
        if not 0 < self.fraction <= 1:
            raise ValueError(f"preservation fraction must be in (0, 1], not {self.fraction!r}")
        if self.uncertainty not in UNCERTAINTY:
            raise ValueError(f"uncertainty must be one of {', '.join(UNCERTAINTY)}, not {self.uncertainty!r}")
        if not 0 <= self.threshold < 1:
            raise ValueError(f"uncertainty threshold must be in [0, 1), not {self.threshold!r}")
        object.__setattr__(self, "selectors", tuple(self.selectors))
        unknown = set(self.selectors) - set(SELECTORS)
        if not self.selectors or unknown:
            raise ValueError(f"selectors must be a non-empty subset of {', '.join(SELECTORS)}, not {self.selectors!r}")


@dataclass(frozen=True)
class PreservationSet:
    """Positions in the training split (sorted), and which selector brought each in."""

    indices: np.ndarray
    sources: dict          # selector -> positions it contributed (first come)

    def __len__(self):
        return len(self.indices)


def _batches(n, size=512):
    return [slice(s, min(s + size, n)) for s in range(0, n, size)]


def _last_conv(net):
    convs = [b for b in net.blocks if isinstance(b, ConvBlock)]
    return convs[-1] if convs else None


def saliency_scores(net, x):
    """Grad-CAM intensity (CNN) or input-gradient L1 norm (MLP) of the predicted class, per sample."""
    net.eval()
    block, scores = _last_conv(net), []
    for sl in _batches(len(x)):
        xb = torch.as_tensor(x[sl]).float().requires_grad_(block is None)
        captured = {}
        hook = None
        if block is not None:
            # the conv block's activation map A (before pooling), as Grad-CAM reads it
            hook = block.act.register_forward_hook(lambda m, i, o: captured.update(a=o))
        try:
            logits = net(xb)
        finally:
            if hook is not None:
                hook.remove()
        top = logits.gather(1, logits.argmax(1, keepdim=True)).sum()
        if block is None:
            (grad,) = torch.autograd.grad(top, xb)
            scores.append(grad.abs().flatten(1).sum(1))
        else:
            act = captured["a"]
            (grad,) = torch.autograd.grad(top, act)
            alpha = grad.mean(dim=(2, 3), keepdim=True)
            scores.append(F.relu((alpha * act).sum(1)).flatten(1).sum(1))
    return torch.cat(scores).detach().numpy()


@torch.no_grad()
def uncertainty_scores(net, x, method="least_confidence"):
    """Higher is more uncertain: ``1 − max p`` or ``−(p_top1 − p_top2)``."""
    net.eval()
    probs = torch.cat([F.softmax(net(torch.as_tensor(x[sl])), dim=1) for sl in _batches(len(x))])
    top2 = probs.topk(2, dim=1).values
    return (1 - top2[:, 0] if method == "least_confidence" else top2[:, 1] - top2[:, 0]).numpy()


@torch.no_grad()
def penultimate_features(net, x):
    """The last block's input (flattened): the features the classifier reads."""
    net.eval()
    captured = []
    hook = net.blocks[-1].register_forward_hook(lambda m, i, o: captured.append(i[0].flatten(1)))
    try:
        for sl in _batches(len(x)):
            net(torch.as_tensor(x[sl]))
    finally:
        hook.remove()
    return torch.cat(captured).numpy()


def diverse_indices(features, k, seed=0):
    """k-means with ``k`` clusters; the member nearest each centroid, largest cluster first."""
    from sklearn.cluster import KMeans

    k = max(1, min(int(k), len(features)))
    km = KMeans(n_clusters=k, random_state=seed, n_init=1).fit(features.astype(np.float64))
    dist = km.transform(features.astype(np.float64))      # [N, k] distances to the centroids
    picks = []
    sizes = np.bincount(km.labels_, minlength=k)
    for c in np.argsort(-sizes, kind="stable"):
        members = np.flatnonzero(km.labels_ == c)
        if len(members):
            picks.append(int(members[np.argmin(dist[members, c])]))
    return np.asarray(picks, dtype=np.int64)


def _rankings(net, x, cfg, size):
    """Each selector's candidates (positions), best first."""
    out = {}
    if "saliency" in cfg.selectors:
        out["saliency"] = np.argsort(-saliency_scores(net, x), kind="stable")
    if "uncertainty" in cfg.selectors:
        score = uncertainty_scores(net, x, cfg.uncertainty)
        order = np.argsort(-score, kind="stable")
        if cfg.uncertainty == "least_confidence":
            order = order[score[order] > cfg.threshold]
        out["uncertainty"] = order
    if "diversity" in cfg.selectors:
        # a share of the set per selector: that many clusters
        out["diversity"] = diverse_indices(penultimate_features(net, x), -(-size // len(cfg.selectors)), cfg.seed)
    return out


def select_preservation(net, data, cfg=PreservationConfig()):
    """The preservation set of ``data``'s training split (a :class:`PreservationSet`).

    Reads ``data.x_train`` and ``data.y_train`` only: validation and test data never
    reach a selector.
    """
    x, y = data.x_train, np.asarray(data.y_train)
    size = max(1, int(round(cfg.fraction * len(x))))
    classes = np.unique(y)
    quota = np.full(len(classes), size // len(classes))
    quota[: size % len(classes)] += 1
    ranks = _rankings(net, x, cfg, size)
    chosen, sources = [], {name: [] for name in ranks}
    taken = np.zeros(len(x), dtype=bool)
    for cls, want in zip(classes, quota):
        lists = {name: [int(i) for i in order if y[i] == cls] for name, order in ranks.items()}
        cursor = {name: 0 for name in lists}
        got = 0
        while got < want and any(cursor[n] < len(lists[n]) for n in lists):
            for name in lists:               # round robin: each selector in turn adds its next new sample
                while cursor[name] < len(lists[name]) and taken[lists[name][cursor[name]]]:
                    cursor[name] += 1
                if cursor[name] < len(lists[name]) and got < want:
                    i = lists[name][cursor[name]]
                    taken[i] = True
                    chosen.append(i)
                    sources[name].append(i)
                    got += 1
    return PreservationSet(np.sort(np.asarray(chosen, dtype=np.int64)),
                           {k: np.sort(np.asarray(v, dtype=np.int64)) for k, v in sources.items()})


def split_indices(name="digits", seed=0, data=None):
    """Indices of the train/val/test split into the dataset as :func:`models.data.load_dataset` loads it.

    The split is :mod:`models.data`'s own (its ``_split`` run on the sample indices); with
    ``data`` (the loaded :class:`~models.data.Dataset`) the indices are checked to pick
    exactly its arrays.
    """
    if name == "digits":
        from sklearn.datasets import load_digits

        raw = load_digits()
        x, y, levels = raw.images.astype(np.uint8), raw.target, 17
    elif name == "mnist5k":
        x, y, levels = _data._mnist5k()
    elif str(name).endswith(".npz"):
        x, y, levels = _data._user_npz(Path(name))
    else:
        raise ValueError(f"Unknown dataset {name!r}: use one of {', '.join(_data.DATASETS)} or a .npz path")
    if x.ndim == 3:
        x = x[:, None]
    y = np.asarray(y, dtype=np.int64)
    parts = _data._split(str(name), np.arange(len(y)), y, levels, seed)
    out = {"train": parts.x_train, "val": parts.x_val, "test": parts.x_test}
    if data is not None:
        for which, idx in out.items():
            dx, dy = data.split(which)
            if not (np.array_equal(x[idx], dx) and np.array_equal(y[idx], dy)):
                raise ValueError(f"split_indices: the {which} indices do not pick the loaded dataset's {which} split")
    return out
