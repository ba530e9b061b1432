"""The end-to-end flow of ``lqflow run``: train → export → simulate → verify, then the hardware."""

from __future__ import annotations

import json
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from lqir import DEFAULT_COEF_BITS, atomic_write_bytes, save

from .hardware import HardwareResult, HlsStepResult
from .ladder import Ladder, Status, verify

__all__ = ["RunConfig", "RunResult", "train_models", "export_checkpoint", "run"]


#: The command-line option of each RunConfig field (named in its errors).
_OPTIONS = {"dataset": "--dataset", "arch": "--arch", "widths": "--widths", "quantizer": "--quantizer",
            "scale": "--scale", "weight_bits": "--wbits", "act_bits": "--abits", "float_epochs": "--epochs",
            "qat_epochs": "--qat-epochs", "seed": "--seed", "coef_bits": "--coef-bits", "in_bits": "--in-bits"}
# The names of models.data.DATASETS and models.nets.ARCHS (tests/test_bad_input.py checks
# they agree), repeated here so that checking the options does not import torch.
_DATASETS = ("digits", "mnist5k")
_ARCHS = ("mlp", "cnn")
#: Widest hidden layer (or most channels) ``--widths`` accepts.
MAX_WIDTH = 4096
#: Range of ``--coef-bits`` (the lowering's integer basis coefficients).
COEF_BITS = (2, 24)


def _is_int(value):
    return not isinstance(value, bool) and isinstance(value, int)


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
    coef_bits: int = DEFAULT_COEF_BITS
    in_bits: int | None = None      # requantize pixels to 2**in_bits levels (None: keep them)

    def __post_init__(self):
        """Check every option before anything is loaded, trained or written; each error names
        the field and its command-line option (no torch import: a mistake fails at once)."""
        def fail(key, text):
            option = _OPTIONS.get(key)
            raise ValueError(f"{key}{f' ({option})' if option else ''}: {text}")

        if not isinstance(self.dataset, str) or not self.dataset:
            fail("dataset", f"must be a name or a path, not {self.dataset!r}")
        if self.dataset not in _DATASETS:
            if not self.dataset.endswith(".npz"):
                fail("dataset", f"{self.dataset!r} is neither {' nor '.join(_DATASETS)} nor a .npz file")
            if not Path(self.dataset).is_file():
                fail("dataset", f"{self.dataset} does not exist or is not a file")
        for key, allowed in (("arch", _ARCHS), ("quantizer", ("lq", "uniform")), ("scale", ("max", "learned"))):
            if getattr(self, key) not in allowed:
                fail(key, f"must be {' or '.join(map(repr, allowed))}, not {getattr(self, key)!r}")
        widths = tuple(self.widths) if isinstance(self.widths, (tuple, list)) else None
        if widths is None or not all(_is_int(w) and 1 <= w <= MAX_WIDTH for w in widths):
            fail("widths", f"must be integers from 1 to {MAX_WIDTH}, not "
                           f"{' '.join(map(repr, widths)) if widths is not None else repr(self.widths)}")
        object.__setattr__(self, "widths", tuple(int(w) for w in widths))
        for key, lo, hi in (("weight_bits", 1, 8), ("act_bits", 1, 8), ("coef_bits", *COEF_BITS),
                            ("float_epochs", 1, None), ("qat_epochs", 1, None), ("batch_size", 2, None),
                            ("seed", 0, 2**32 - 1)):
            value = getattr(self, key)
            if not _is_int(value) or value < lo or (hi is not None and value > hi):
                fail(key, f"must be an integer {f'from {lo} to {hi}' if hi is not None else f'of at least {lo}'}, "
                          f"not {value!r}")
        if self.in_bits is not None and (not _is_int(self.in_bits) or not 1 <= self.in_bits <= 8):
            fail("in_bits", f"must be an integer from 1 to 8, not {self.in_bits!r}")
        for key in ("lr", "qat_lr"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
                fail(key, f"must be a positive number, not {value!r}")

    def quant(self):
        from models.layers import QuantConfig

        return QuantConfig(self.quantizer, self.weight_bits, self.act_bits, self.scale)

    def default_folder(self):
        name = Path(self.dataset).stem if self.dataset.endswith(".npz") else self.dataset
        return Path("runs") / f"{name}-{self.arch}-{self.quantizer}-w{self.weight_bits}a{self.act_bits}"


@dataclass(frozen=True)
class RunResult:
    """Everything one ``lqflow run`` measured; ``results.json`` is its :meth:`to_json`."""

    config: RunConfig
    ladder: Ladder
    timings: dict
    ir: dict
    hardware: HardwareResult | None = None
    hls4ml: HlsStepResult | None = None

    def rows(self):
        """Every ladder row: steps 1–4, then 5 and 6 when they ran."""
        rows = self.ladder.rows()
        for part in (self.hardware, self.hls4ml):
            if part is not None:
                rows += part.rows()
        return rows

    def failed(self):
        """The failed checks of steps 4–6 (those that make ``lqflow run`` exit non-zero)."""
        return [row for row in self.rows() if row.status is Status.FAIL and row.step >= 4]

    def to_json(self):
        return asdict(self)


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

    from models.layers import QuantConfig
    from models.nets import NetConfig, QuantNet
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


def export_checkpoint(net, data_meta, coef_bits=DEFAULT_COEF_BITS, meta=None):
    """Lower a trained network to an IR model with provenance in ``meta``."""
    from export.lower import lower

    full_meta = {"dataset": data_meta, "git_revision": git_revision(), **(meta or {})}
    return lower(net, data_meta["classes"], coef_bits=coef_bits, meta=full_meta)


def run(cfg, folder=None, progress=True, hardware=None, log=print):
    """``lqflow run``: train, export, simulate, verify; write the run folder.

    ``hardware``: keyword arguments of :func:`lqflow.hardware.hardware_steps` (folding,
    ``synth``) and ``hls4ml`` (bool), or None to stop after hwsim. Returns
    ``(RunResult, folder)``.
    """
    from models.data import load_dataset
    from models.train import save_checkpoint

    from .report import write_plot, write_report

    folder = Path(folder or cfg.default_folder())
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder}: exists and is not a folder; give the run folder with -o")
    timings, t0 = {}, time.perf_counter()
    data = load_dataset(cfg.dataset, seed=cfg.seed, in_bits=cfg.in_bits)
    float_net, qat_net, history = train_models(cfg, data, progress)
    folder.mkdir(parents=True, exist_ok=True)  # only now: a refused input leaves no empty folder
    timings["train_s"] = time.perf_counter() - t0
    data_meta = data_meta_of(data, cfg)
    extra = {"run": asdict(cfg), "dataset": data_meta}
    save_checkpoint(folder / "float", float_net, extra)
    save_checkpoint(folder / "qat", qat_net, extra)
    t1 = time.perf_counter()
    model = export_checkpoint(qat_net, data_meta, cfg.coef_bits, meta={"run": asdict(cfg)})
    ladder = verify(model, qat_net, float_net, data.x_test, data.y_test)
    model = _with_meta(model, {"accuracy": {"float": ladder.float_acc, "qat": ladder.qat_acc,
                                            "hwsim": ladder.hwsim_acc, "agreement": ladder.agreement}})
    save(model, folder / "model.lqir.npz")
    timings["export_verify_s"] = time.perf_counter() - t1
    hw_result = hls_result = None
    if hardware is not None:
        from .hardware import hardware_steps, hls_step
        from .priority import BESIDE_SYNTHESIS_NICENESS, at_lower_priority

        hardware = dict(hardware)
        with_hls = hardware.pop("hls4ml", True)
        t2 = time.perf_counter()
        # synthesis runs in a background thread (started from this one, at its priority)
        # beside the co-simulation and hls4ml, one after the other; hls4ml changes the
        # working directory while it runs, so synthesis works on absolute paths
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="synthesis") as background:
            hw_result = hardware_steps(model, data.x_test, folder, log=log, background=background, **hardware)
            if with_hls:
                t3 = time.perf_counter()
                # beside a running synthesis, at a lower priority (see lqflow.priority)
                steps = BESIDE_SYNTHESIS_NICENESS if hw_result.pending is not None else 0
                hls_result = at_lower_priority(hls_step, model, data.x_test, folder, log=log, steps=steps)
                timings["hls4ml_s"] = time.perf_counter() - t3
            if hw_result.pending is not None:
                log("waiting for place and route ...")
            hw_result = hw_result.finished()
        timings["hardware_s"] = time.perf_counter() - t2
    timings["total_s"] = time.perf_counter() - t0
    result = RunResult(cfg, ladder, timings, _ir_summary(model), hw_result, hls_result)
    atomic_write_bytes(folder / "history.json", json.dumps(history).encode())
    atomic_write_bytes(folder / "results.json", json.dumps(result.to_json(), indent=2).encode())
    write_plot(folder / "training.png", history, cfg)
    write_report(folder / "report.md", result)
    return result, folder


def data_meta_of(data, cfg):
    """What the IR records of its dataset, so that ``lqflow sim --dataset`` can rebuild the inputs."""
    return {"name": data.name, "seed": cfg.seed, "classes": list(data.classes), "levels": data.levels,
            "in_bits": cfg.in_bits}


def _with_meta(model, extra):
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
