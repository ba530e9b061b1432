"""The end-to-end flow: train → export → simulate, and the verification ladder (DESIGN §4)."""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from hwsim import Simulator, predict

from . import ir
from .atomic import atomic_write_bytes

__all__ = ["RunConfig", "Ladder", "train_models", "export_checkpoint", "verify", "run"]


@dataclass(frozen=True)
class RunConfig:
    """Everything ``lqflow run`` / ``lqflow train`` needs; one spelling per option."""

    dataset: str = "digits"
    arch: str = "mlp"
    widths: tuple = ()
    quantizer: str = "lq"
    scale: str = "max"
    weight_bits: int = 2
    act_bits: int = 2
    float_epochs: int = 30
    qat_epochs: int = 30
    lr: float = 3e-3
    qat_lr: float = 1e-3
    batch_size: int = 64
    seed: int = 0
    coef_bits: int = 8

    def __post_init__(self):
        if self.quantizer not in ("lq", "uniform"):
            raise ValueError(f"quantizer must be 'lq' or 'uniform', not {self.quantizer!r}")
        for key in ("float_epochs", "qat_epochs"):
            if not isinstance(getattr(self, key), int) or getattr(self, key) < 1:
                raise ValueError(f"{key} must be a positive integer, not {getattr(self, key)!r}")
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))

    def quant(self):
        from models.layers import QuantConfig

        return QuantConfig(self.quantizer, self.weight_bits, self.act_bits, self.scale)

    def default_folder(self):
        name = Path(self.dataset).stem if self.dataset.endswith(".npz") else self.dataset
        return Path("runs") / f"{name}-{self.arch}-{self.quantizer}-w{self.weight_bits}a{self.act_bits}"


@dataclass
class Ladder:
    """Results of the verification ladder on the test split."""

    float_acc: float
    qat_acc: float
    hwsim_acc: float
    agreement: float
    planes_equal: bool
    integers_compared: int
    samples: int
    checks: dict = field(default_factory=dict)

    def __post_init__(self):
        self.checks = {
            "agreement >= 99%": self.agreement >= 0.99,
            "|hwsim - qat| <= 0.5 pt": abs(self.hwsim_acc - self.qat_acc) <= 0.005 + 1e-12,
            "fast == bit-plane": self.planes_equal,
        }


def git_revision():
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             timeout=5, cwd=Path(__file__).parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def train_models(cfg, data, progress=True):
    """Float baseline, then QAT initialized from it. Returns (float_net, qat_net, history)."""
    import torch

    from models.nets import NetConfig, QuantNet
    from models.layers import QuantConfig
    from models.train import TrainConfig, fit

    mean = float(data.x_train.mean()) if cfg.arch == "mlp" else 0.0
    std = float(data.x_train.std()) or 1.0
    net_cfg = NetConfig(cfg.arch, data.shape, data.levels, len(data.classes), cfg.widths,
                        QuantConfig("float"), in_mean=mean, in_std=std)
    torch.manual_seed(cfg.seed)
    float_net = QuantNet(net_cfg)
    float_hist = fit(float_net, data, TrainConfig(cfg.float_epochs, cfg.batch_size, cfg.lr, seed=cfg.seed),
                     desc="float", progress=progress)
    qat_net = QuantNet(net_cfg.with_quant(cfg.quant()))
    # Quantizer bases keep their reference initialization; everything else comes from float.
    qat_net.load_state_dict(float_net.state_dict(), strict=False)
    qat_hist = fit(qat_net, data, TrainConfig(cfg.qat_epochs, cfg.batch_size, cfg.qat_lr, seed=cfg.seed),
                   desc=f"QAT {cfg.quantizer} W{cfg.weight_bits}/A{cfg.act_bits}", progress=progress)
    history = {"float_val_acc": float_hist.val_acc, "qat_val_acc": qat_hist.val_acc,
               "float_loss": float_hist.loss, "qat_loss": qat_hist.loss, "act_levels": qat_hist.levels}
    return float_net, qat_net, history


def export_checkpoint(net, data_meta, coef_bits=8, meta=None):
    """Lower a trained network to an IR model with provenance in ``meta``."""
    from .lower import lower

    full_meta = {"dataset": data_meta, "git_revision": git_revision(), **(meta or {})}
    return lower(net, data_meta["classes"], coef_bits=coef_bits, meta=full_meta)


def verify(model, qat_net, float_net, x, y):
    """DESIGN §4 steps 1–4 on (x, y); hwsim's answer is computed once and compared."""
    from models.train import predict as torch_predict

    sim = Simulator(model)
    acc_fast, trace_fast = sim.run(x, mode="fast", trace=True)
    _, trace_planes = sim.run(x, mode="bitplane", trace=True)
    equal, compared = True, 0
    for name, arr in trace_fast.acc.items():
        equal &= bool(np.array_equal(arr, trace_planes.acc[name]))
        equal &= bool(np.array_equal(trace_fast.out[name], trace_planes.out[name]))
        compared += arr.size + trace_fast.out[name].size
    # The untraced path (fused kernels, chunks on every core) is the one users run.
    untraced = sim.run(x)
    equal &= bool(np.array_equal(untraced, acc_fast))
    compared += untraced.size
    hw_pred, q_pred = predict(acc_fast), torch_predict(qat_net, x)
    return Ladder(float_acc=float(np.mean(torch_predict(float_net, x) == y)),
                  qat_acc=float(np.mean(q_pred == y)), hwsim_acc=float(np.mean(hw_pred == y)),
                  agreement=float(np.mean(hw_pred == q_pred)), planes_equal=equal,
                  integers_compared=compared, samples=len(y))


def run(cfg, folder=None, progress=True, hardware=None, log=print):
    """``lqflow run``: train, export, simulate, verify; write the run folder.

    ``hardware``: keyword arguments of :func:`export.flow_rtl.hardware_steps` (folding,
    ``synth``), or None to stop after hwsim. Returns ``(result dict, folder)``.
    """
    from models.data import load_dataset
    from models.train import save_checkpoint

    from .report import write_plot, write_report

    folder = Path(folder or cfg.default_folder())
    folder.mkdir(parents=True, exist_ok=True)
    timings, t0 = {}, time.perf_counter()
    data = load_dataset(cfg.dataset, seed=cfg.seed)
    float_net, qat_net, history = train_models(cfg, data, progress)
    timings["train_s"] = time.perf_counter() - t0
    data_meta = {"name": data.name, "seed": cfg.seed, "classes": list(data.classes), "levels": data.levels}
    extra = {"run": asdict(cfg), "dataset": data_meta}
    save_checkpoint(folder / "float", float_net, extra)
    save_checkpoint(folder / "qat", qat_net, extra)
    t1 = time.perf_counter()
    model = export_checkpoint(qat_net, data_meta, cfg.coef_bits, meta={"run": asdict(cfg)})
    ladder = verify(model, qat_net, float_net, data.x_test, data.y_test)
    model = _with_meta(model, {"accuracy": {"float": ladder.float_acc, "qat": ladder.qat_acc,
                                            "hwsim": ladder.hwsim_acc, "agreement": ladder.agreement}})
    ir.save(model, folder / "model.lqir.npz")
    timings["export_verify_s"] = time.perf_counter() - t1
    result = {"config": asdict(cfg), "ladder": asdict(ladder), "timings": timings,
              "ir": _ir_summary(model)}
    if hardware is not None:
        from .flow_rtl import hardware_section, hardware_steps, hls_step

        hardware = dict(hardware)
        with_hls = hardware.pop("hls4ml", True)
        t2 = time.perf_counter()
        result["hardware"] = hardware_steps(model, data.x_test, folder, log=log, **hardware)
        result["extra_sections"] = [hardware_section(result["hardware"])]
        timings["hardware_s"] = time.perf_counter() - t2
        if with_hls:
            t3 = time.perf_counter()
            result["hls4ml"] = hls_step(model, data.x_test, folder, log=log)
            timings["hls4ml_s"] = time.perf_counter() - t3
    timings["total_s"] = time.perf_counter() - t0
    atomic_write_bytes(folder / "history.json", json.dumps(history).encode())
    atomic_write_bytes(folder / "results.json", json.dumps(result, indent=2).encode())
    write_plot(folder / "training.png", history, cfg)
    write_report(folder / "report.md", result)
    return result, folder


def _with_meta(model, extra):
    from dataclasses import replace

    return replace(model, meta={**model.meta, **extra})


def _ir_summary(model):
    rows = []
    shapes = model.layer_shapes()
    for layer, shape in zip(model.layers, shapes[1:]):
        row = {"name": layer.name, "op": layer.op, "out_shape": list(shape)}
        if hasattr(layer, "acc_bits"):
            row.update(weight_bits=layer.weight_bits, in_bits=layer.in_bits, acc_bits=layer.acc_bits,
                       output=layer.output, out_levels=layer.out_levels)
        rows.append(row)
    return {"layers": rows, "logit_scale": model.logit_scale}
