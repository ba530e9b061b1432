"""Training: full-precision baseline, then QAT initialized from it; checkpoints."""

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .layers import QuantConfig
from .nets import NetConfig, QuantNet
from .quantizers import BasisQuantizer

__all__ = ["TrainConfig", "History", "fit", "predict", "quantizer_levels",
           "save_checkpoint", "load_checkpoint"]


@dataclass(frozen=True)
class TrainConfig:
    """Optimizer settings; ``epochs`` of Adam with a cosine schedule."""

    epochs: int = 30
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.0
    seed: int = 0

    def __post_init__(self):
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"epochs must be a positive integer, not {self.epochs!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, not {self.batch_size!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, not {self.lr!r}")


@dataclass
class History:
    """Per-epoch validation accuracy and, per step, each activation quantizer's levels."""

    val_acc: list
    loss: list
    levels: dict


def quantizer_levels(model):
    """Sorted levels of every activation quantizer (one basis row), by module name."""
    out = {}
    for name, module in model.named_modules():
        if isinstance(module, BasisQuantizer) and module.channels == 1 and module.encoding == "bin":
            out[name] = module.sorted_levels()[0][0].tolist()
    return out


def predict(model, x, batch_size=1024):
    """Class predictions (argmax, first index on ties) of ``model`` on level indices ``x``."""
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            out.append(model(torch.as_tensor(x[start:start + batch_size])).argmax(dim=1).numpy())
    return np.concatenate(out)


def fit(model, data, cfg, desc="train", progress=True):
    """Train ``model`` on ``data`` (a :class:`models.data.Dataset`); deterministic per seed."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    x, y = torch.as_tensor(data.x_train), torch.as_tensor(data.y_train)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * -(-len(x) // cfg.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    loss_fn = nn.CrossEntropyLoss()
    hist = History([], [], {})
    bar = tqdm(range(cfg.epochs), desc=desc, unit="epoch", disable=None if progress else True, leave=False)
    for _ in bar:
        model.train()
        perm = torch.randperm(len(x), generator=gen)
        total = 0.0
        for start in range(0, len(x), cfg.batch_size):
            idx = perm[start:start + cfg.batch_size]
            if len(idx) < 2:
                continue  # batch-norm needs two samples
            loss = loss_fn(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
            for name, levels in quantizer_levels(model).items():
                hist.levels.setdefault(name, []).append(levels)
        hist.loss.append(total / len(x))
        hist.val_acc.append(float(np.mean(predict(model, data.x_val) == data.y_val)))
        bar.set_postfix(loss=f"{hist.loss[-1]:.3f}", val=f"{hist.val_acc[-1]:.3f}")
    return hist


def _atomic_write(path, write):
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(folder, model, extra=None):
    """Write ``model.pt`` (state dict) and ``config.json`` (NetConfig + extra) atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = {"net": model.config.to_json(), **(extra or {})}
    _atomic_write(folder / "model.pt", lambda fh: torch.save(model.state_dict(), fh))
    _atomic_write(folder / "config.json", lambda fh: fh.write(json.dumps(config, indent=2).encode()))
    return folder


def load_checkpoint(folder):
    """Rebuild the network of a checkpoint folder; returns ``(model, config dict)``."""
    folder = Path(folder)
    cfg_path, pt_path = folder / "config.json", folder / "model.pt"
    if not cfg_path.is_file() or not pt_path.is_file():
        raise FileNotFoundError(f"{folder} is not a checkpoint folder (needs model.pt and config.json; "
                                "make one with 'lqflow train')")
    try:
        config = json.loads(cfg_path.read_text())
        net = NetConfig(**{**config["net"], "quant": QuantConfig(**config["net"]["quant"])})
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{cfg_path}: not a valid lqflow checkpoint config ({exc})") from None
    model = QuantNet(net)
    model.load_state_dict(torch.load(pt_path, weights_only=True, map_location="cpu"))
    model.eval()
    return model, config
