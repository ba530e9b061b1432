"""Training a self-compressing network, with or without a preservation set (the "safe" and "unsafe" variants).

The loss of every step is

    Λ = CE(train batch) + γ · Q + λ · CE(preservation batch)

(``Q``: :func:`models.selfcompress.size_term`; λ = 0 and no preservation set is plain
self-compression, Cséfalvay & Imber).  With a preservation set, restoration runs every
``restore_every`` steps: if the accuracy on the preservation set (eval mode) fell by more
than ``restore_margin`` since the last check, ``restore_fraction`` of the pruned channels
(chosen with the run's generator) are revived at depth ``restore_bits``.

Optimizer: Adam in two groups, as Cséfalvay & Imber's reference trains it — the bit
depths and exponents with lr 0.5 and ε 1e-3 (the large ε damps Adam's normalization of
their tiny size-term gradients), everything else with lr 1e-3.  No schedule.
"""

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .nets import ConvBlock, DenseBlock
from .selfcompress import bit_parameters, compress_quantizers, size_term
from .train import shuffled_batches

__all__ = ["CompressTrainConfig", "CompressHistory", "Restorer", "fit_compress", "accuracy", "pruned_channels",
           "recalibrate_bn"]


@dataclass(frozen=True)
class CompressTrainConfig:
    """Self-compression training.  ``lam = 0`` (and no preservation set) is the unsafe variant.

    ``restore_margin``: the preservation-accuracy drop (a fraction) between two checks that
    triggers a restoration; 0.05 is the reference pseudocode's "5 % drop".  The reference
    revives half of the pruned channels; the issue asks for 10 % (``restore_fraction``).
    """

    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    bits_lr: float = 0.5
    bits_eps: float = 1e-3
    gamma: float = 0.1
    lam: float = 0.05
    restore_every: int = 10
    restore_margin: float = 0.05
    restore_fraction: float = 0.1
    restore_bits: float = 2.0
    seed: int = 0

    def __post_init__(self):
        for key in ("epochs", "batch_size", "restore_every"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{key} must be a positive integer, not {value!r}")
        for key in ("lr", "bits_lr", "bits_eps"):
            if not getattr(self, key) > 0:
                raise ValueError(f"{key} must be positive, not {getattr(self, key)!r}")
        for key in ("gamma", "lam", "restore_margin"):
            if not getattr(self, key) >= 0:
                raise ValueError(f"{key} must be non-negative, not {getattr(self, key)!r}")
        if not 0 < self.restore_fraction <= 1:
            raise ValueError(f"restore_fraction must be in (0, 1], not {self.restore_fraction!r}")
        if not self.restore_bits > 0:
            raise ValueError(f"restore_bits must be positive, not {self.restore_bits!r}")


@dataclass
class CompressHistory:
    """Per epoch: loss, validation accuracy, Q (integer depths); per check: preservation accuracy and revivals."""

    loss: list = field(default_factory=list)
    val_acc: list = field(default_factory=list)
    bits: list = field(default_factory=list)
    checks: list = field(default_factory=list)       # (step, preservation accuracy, channels revived)

    @property
    def revived(self):
        return int(sum(c[2] for c in self.checks))

    def to_json(self):
        return {"loss": self.loss, "val_acc": self.val_acc, "bits_per_weight": self.bits,
                "checks": [list(c) for c in self.checks], "revived": self.revived}


def pruned_channels(net):
    """``(quantizer index, channel)`` of every pruned channel, in network order."""
    return [(k, int(c)) for k, q in enumerate(compress_quantizers(net)) for c in torch.nonzero(~q.alive()).flatten()]


@torch.no_grad()
def accuracy(net, x, y, batch_size=1024):
    """Eval-mode accuracy (the integer depths the export uses); restores the training mode."""
    was = net.training
    net.eval()
    correct = 0
    for s in range(0, len(x), batch_size):
        pred = net(torch.as_tensor(x[s:s + batch_size])).argmax(1)
        correct += int((pred == torch.as_tensor(y[s:s + batch_size])).sum())
    net.train(was)
    return correct / max(1, len(x))


@torch.no_grad()
def recalibrate_bn(net, x, channels):
    """Batch-norm running statistics of ``channels`` (``(quantizer index, channel)``) measured on ``x``.

    A pruned channel's batch-norm input is 0 in every batch, so its running variance decays
    towards 0 while it is pruned; revived with those statistics, its eval-mode output would
    blow up (and fail the very preservation check that revived it).  The revived channels
    get the mean and variance of their pre-batch-norm output on ``x`` instead.
    """
    blocks = _mac_blocks(net)
    wanted = {}
    for k, c in channels:
        wanted.setdefault(k, []).append(c)
    captured = {}
    hooks = [blocks[k].bn.register_forward_hook(lambda m, i, o, k=k: captured.update({k: i[0]}))
             for k in wanted if blocks[k].bn is not None]
    was = net.training
    net.eval()
    try:
        net(torch.as_tensor(x))
    finally:
        for h in hooks:
            h.remove()
        net.train(was)
    for k, z in captured.items():
        bn, idx = blocks[k].bn, torch.as_tensor(wanted[k])
        z = z.transpose(0, 1).reshape(z.shape[1], -1)[idx]          # [channels, samples (× positions)]
        bn.running_mean[idx] = z.mean(dim=1)
        bn.running_var[idx] = z.var(dim=1, unbiased=True)


def _mac_blocks(net):
    return [b for b in net.blocks if isinstance(b, (DenseBlock, ConvBlock))]


class Restorer:
    """The restoration rule: compare each check's preservation accuracy with the previous one.

    ``calibration``: training inputs on which revived channels' batch-norm statistics are
    measured (:func:`recalibrate_bn`); None leaves them as they are.
    """

    def __init__(self, net, cfg, generator, calibration=None):
        self.net, self.cfg, self.gen, self.calibration = net, cfg, generator, calibration
        self.previous = None

    def check(self, acc):
        """Record ``acc``; if it fell by more than the margin, revive channels.  Returns how many."""
        drop = None if self.previous is None else self.previous - acc
        self.previous = acc
        if drop is None or drop <= self.cfg.restore_margin:
            return 0
        return self.revive()

    def revive(self):
        pruned = pruned_channels(self.net)
        if not pruned:
            return 0
        count = int(np.ceil(self.cfg.restore_fraction * len(pruned)))
        pick = torch.randperm(len(pruned), generator=self.gen)[:count].tolist()
        quantizers = compress_quantizers(self.net)
        revived = [pruned[i] for i in sorted(pick)]
        for k, channel in revived:
            quantizers[k].revive([channel], self.cfg.restore_bits)
        if self.calibration is not None:
            recalibrate_bn(self.net, self.calibration, revived)
        return count


def fit_compress(net, data, cfg, preservation=None, desc="self-compress", progress=True):
    """Train a self-compressing ``net`` on ``data``; ``preservation`` = training-split positions (safe variant).

    Deterministic per ``cfg.seed``.  Returns a :class:`CompressHistory`.
    """
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    x, y = torch.as_tensor(data.x_train), torch.as_tensor(data.y_train)
    safe = preservation is not None and len(preservation) > 0
    if safe:
        p_idx = torch.as_tensor(np.asarray(preservation, dtype=np.int64))
        if p_idx.min() < 0 or p_idx.max() >= len(x):
            raise ValueError("preservation: indices must be positions in the training split")
        px, py = x[p_idx], y[p_idx]
    bits, other = bit_parameters(net)
    opt = torch.optim.Adam([{"params": bits, "lr": cfg.bits_lr, "eps": cfg.bits_eps},
                            {"params": other, "lr": cfg.lr}])
    loss_fn = nn.CrossEntropyLoss()
    # batch-norm statistics of revived channels come from a fixed slice of the training split
    calib = data.x_train[torch.randperm(len(x), generator=gen)[:512].numpy()] if safe else None
    restorer = Restorer(net, cfg, gen, calibration=calib) if safe else None
    hist, step = CompressHistory(), 0
    if restorer is not None:
        restorer.check(accuracy(net, px.numpy(), py.numpy()))   # the baseline of the first comparison
    bar = tqdm(range(cfg.epochs), desc=desc, unit="epoch", disable=None if progress else True, leave=False)
    for _ in bar:
        net.train()
        total = 0.0
        for idx in shuffled_batches(len(x), cfg.batch_size, gen):
            loss = loss_fn(net(x[idx]), y[idx]) + cfg.gamma * size_term(net)
            if safe and cfg.lam > 0:
                pb = torch.randint(len(px), (min(cfg.batch_size, len(px)),), generator=gen)
                if len(pb) >= 2:
                    loss = loss + cfg.lam * loss_fn(net(px[pb]), py[pb])
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            total += loss.item() * len(idx)
            if restorer is not None and step % cfg.restore_every == 0:
                acc = accuracy(net, px.numpy(), py.numpy())
                hist.checks.append((step, acc, restorer.check(acc)))
        hist.loss.append(total / len(x))
        hist.val_acc.append(accuracy(net, data.x_val, data.y_val))
        hist.bits.append(float(size_term(net, integer=True)))
        bar.set_postfix(loss=f"{hist.loss[-1]:.3f}", val=f"{hist.val_acc[-1]:.3f}", bits=f"{hist.bits[-1]:.2f}")
    net.eval()
    return hist
