"""Training: full-precision baseline, then QAT initialized from it; checkpoints."""

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from lqir import atomic_open, atomic_write_bytes

from .layers import QuantConfig
from .nets import NetConfig, QuantNet
from .quantizers import BasisQuantizer

__all__ = ["TrainConfig", "History", "fit", "predict", "quantizer_levels", "shuffled_batches",
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


def shuffled_batches(n, batch_size, gen):
    """Index batches of one random permutation of ``n`` samples (a last batch of one sample is
    skipped: batch-norm needs two)."""
    perm = torch.randperm(n, generator=gen)
    for start in range(0, n, batch_size):
        idx = perm[start:start + batch_size]
        if len(idx) >= 2:
            yield idx


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
        total = 0.0
        for idx in shuffled_batches(len(x), cfg.batch_size, gen):
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


def save_checkpoint(folder, model, extra=None):
    """Write ``model.pt`` (state dict) and ``config.json`` (NetConfig + extra) atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = {"net": model.config.to_json(), **(extra or {})}
    with atomic_open(folder / "model.pt") as fh:
        torch.save(model.state_dict(), fh)
    atomic_write_bytes(folder / "config.json", json.dumps(config, indent=2).encode())
    return folder


def load_checkpoint(folder):
    """Rebuild the network of a checkpoint folder; returns ``(model, config dict)``.

    Every problem of the folder is a ``ValueError`` (``FileNotFoundError`` if it is not a
    checkpoint folder) naming the file: ``config.json`` is checked before anything is
    built, ``model.pt`` is read only as a PyTorch zip archive of tensors
    (``weights_only``), must match the configured network exactly and hold no NaN or inf.
    """
    folder = Path(folder)
    cfg_path, pt_path = folder / "config.json", folder / "model.pt"
    if not cfg_path.is_file() or not pt_path.is_file():
        raise FileNotFoundError(f"{folder} is not a checkpoint folder (needs model.pt and config.json; "
                                "make one with 'lqflow train')")
    config = _read_config(cfg_path)
    net_cfg = _net_config(cfg_path, config["net"])
    state = _read_state(pt_path)
    held = sum(tensor.numel() for tensor in state.values())
    if _weight_count(net_cfg) > held:  # before building it: a forged config must not allocate more
        raise _invalid(pt_path, f"it does not match config.json, which describes a network of "
                                f"{_weight_count(net_cfg):,} weights; model.pt holds {held:,} numbers")
    model = QuantNet(net_cfg)
    _match_state(pt_path, state, model.state_dict())
    model.load_state_dict(state)
    model.eval()
    return model, config


#: Largest config.json and model.pt that load_checkpoint reads.
MAX_CONFIG_BYTES = 1 << 20
MAX_STATE_BYTES = 1 << 30


def _invalid(path, why):
    return ValueError(f"{path}: not a valid lqflow checkpoint ({why})")


def _read_config(path):
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise _invalid(path, f"more than {MAX_CONFIG_BYTES >> 20} MiB of JSON")
    try:
        config = json.loads(path.read_bytes().decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise _invalid(path, f"not valid JSON: {type(exc).__name__}") from None
    if not isinstance(config, dict) or not isinstance(config.get("net"), dict):
        raise _invalid(path, "no 'net' object")
    dataset = config.get("dataset")
    if dataset is not None:
        classes = dataset.get("classes") if isinstance(dataset, dict) else None
        if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
            raise _invalid(path, "dataset.classes must be a list of class names (strings)")
        if len(classes) != config["net"].get("classes"):
            raise _invalid(path, f"dataset.classes names {len(classes)} classes, net.classes is "
                                 f"{config['net'].get('classes')!r}")
    return config


def _is_int(value, lo, hi):
    return not isinstance(value, bool) and isinstance(value, int) and lo <= value <= hi


def _is_number(value):
    return not isinstance(value, bool) and isinstance(value, (int, float)) and np.isfinite(value)


def _net_config(path, raw):
    """The :class:`NetConfig` of ``config.json``'s ``net``, every field's type checked first."""
    checks = {
        "input_shape": lambda v: isinstance(v, list) and len(v) == 3 and all(_is_int(s, 1, 2**16) for s in v),
        "in_levels": lambda v: _is_int(v, 2, 2**16),
        "classes": lambda v: _is_int(v, 2, 2**16),
        "widths": lambda v: isinstance(v, list) and all(_is_int(w, 1, 2**16) for w in v),
        "quant": lambda v: isinstance(v, dict),
        "in_mean": _is_number,
        "in_std": _is_number,
    }
    wanted = {"input_shape": "3 integers", "in_levels": "an integer from 2 to 65536",
              "classes": "an integer from 2 to 65536", "widths": "a list of integers from 1 to 65536",
              "quant": "an object", "in_mean": "a finite number", "in_std": "a finite number"}
    for key, ok in checks.items():
        if key not in raw or not ok(raw[key]):
            raise _invalid(path, f"net.{key} must be {wanted[key]}, not {raw.get(key)!r}")
    try:
        return NetConfig(**{**raw, "quant": QuantConfig(**raw["quant"])})
    except (TypeError, ValueError) as exc:
        raise _invalid(path, f"net: {exc}") from None


def _weight_count(cfg):
    """Weights of the dense and conv layers of the network ``cfg`` describes (as in :mod:`models.nets`)."""
    c, h, w = cfg.input_shape
    if cfg.arch == "mlp":
        sizes = [c * h * w, *cfg.widths, cfg.classes]
        return sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    count = 0
    for width in cfg.widths:
        count += 9 * c * width
        pool = h >= 2 and w >= 2
        c, h, w = width, (h // 2 if pool else h), (w // 2 if pool else w)
    return count + c * h * w * cfg.classes


def _read_state(path):
    """The state dict of ``model.pt``: a PyTorch zip archive of tensors, nothing else is unpickled."""
    if path.stat().st_size == 0:
        raise _invalid(path, "the file is empty")
    try:
        with zipfile.ZipFile(path) as archive:
            declared = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise _invalid(path, f"not a PyTorch zip archive: {exc}") from None
    if declared > MAX_STATE_BYTES:
        raise _invalid(path, f"it declares more than {MAX_STATE_BYTES >> 30} GiB of data")
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - torch raises many types on a bad file; name none of its advice
        raise _invalid(path, f"its contents are not a state dict of tensors: {type(exc).__name__}") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise _invalid(path, f"it holds a {type(state).__name__}, not a state dict of tensors")
    for key, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise _invalid(path, f"parameter {key!r} holds NaN or inf values; retrain the network")
    return state


def _match_state(path, state, expected):
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        what = f"parameter {missing[0]!r} is missing" if missing else f"parameter {unexpected[0]!r} is unexpected"
        raise _invalid(path, f"{what}; model.pt does not match config.json")
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape) or state[key].dtype != tensor.dtype:
            raise _invalid(path, f"parameter {key!r} is {state[key].dtype} {list(state[key].shape)}, config.json "
                                 f"implies {tensor.dtype} {list(tensor.shape)}")
