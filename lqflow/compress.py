"""``lqflow compress``: safety-guided self-compression, float vs unsafe vs safe, down to hwsim.

Per seed: train the float network; select the preservation set on it (training split
only); train two self-compressing networks initialized from it — "unsafe" (Cséfalvay &
Imber: ``CE + γQ``) and "safe" (Zbeeb et al.: ``+ λ·CE(preservation)`` and restoration);
lower both to the IR (pruned channels removed, channels sorted by depth) and verify them
in hwsim (argmax agreement with the PyTorch eval model, fast == bit-plane).

The run folder gets ``compress.json`` (every number, per seed and mean ± std over seeds),
``split.json`` and ``preservation.json`` (dataset indices; the preservation set is checked
to lie in ``train``), ``report.md`` (the table), ``compress.png`` (bits per channel per
layer, safe vs unsafe; size vs accuracy) and, per seed, the two ``*.lqir.npz`` models, the
three state dicts (``*.pt``) and ``net.json``.

``hardware``: a hook ``hardware(model, x_test, folder) -> {column: number}`` run on each
compressed model (the RTL's LUTs and cycles, say); its columns join the table.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from lqir import DEFAULT_COEF_BITS, atomic_open, atomic_write_bytes, save
from lqir.prune import channel_bits, weight_bits_stored

from .ladder import verify

__all__ = ["VARIANTS", "CompressRunConfig", "run_compress", "summarize", "table_rows", "write_compress_plot"]

VARIANTS = ("float", "unsafe", "safe")


@dataclass(frozen=True)
class CompressRunConfig:
    """Everything ``lqflow compress`` needs.  Seeds are ``first_seed .. first_seed + seeds - 1``."""

    dataset: str = "digits"
    arch: str = "mlp"
    widths: tuple = ()
    seeds: int = 3
    first_seed: int = 0
    act_quantizer: str = "uniform"
    act_bits: int = 4
    float_epochs: int = 30
    epochs: int = 30
    batch_size: int = 64
    lr: float = 3e-3
    gamma: float = 0.1
    lam: float = 0.05
    preserve: float = 0.1
    restore_every: int = 10
    restore_margin: float = 0.05
    restore_fraction: float = 0.1
    coef_bits: int = DEFAULT_COEF_BITS

    def __post_init__(self):
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        for key in ("seeds", "float_epochs", "epochs", "batch_size"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{key} must be a positive integer, not {value!r}")
        if self.arch not in ("mlp", "cnn"):
            raise ValueError(f"arch must be 'mlp' or 'cnn', not {self.arch!r}")
        if isinstance(self.coef_bits, bool) or not isinstance(self.coef_bits, int) or not 2 <= self.coef_bits <= 24:
            raise ValueError(f"coef_bits must be an integer from 2 to 24, not {self.coef_bits!r}")
        # the remaining options are validated by the configs they feed, before any training
        self.compress_config(0), self.train_config(0), self.sc_config(), self.preservation_config(0)

    def sc_config(self):
        from models.selfcompress import SelfCompressConfig

        return SelfCompressConfig(act_quantizer=self.act_quantizer, act_bits=self.act_bits)

    def compress_config(self, seed, safe=True):
        from models.train_compress import CompressTrainConfig

        return CompressTrainConfig(epochs=self.epochs, batch_size=self.batch_size, gamma=self.gamma,
                                   lam=self.lam if safe else 0.0, restore_every=self.restore_every,
                                   restore_margin=self.restore_margin, restore_fraction=self.restore_fraction,
                                   seed=seed)

    def train_config(self, seed):
        from models.train import TrainConfig

        return TrainConfig(self.float_epochs, self.batch_size, self.lr, seed=seed)

    def preservation_config(self, seed):
        from models.preservation import PreservationConfig

        return PreservationConfig(fraction=self.preserve, seed=seed)

    def default_folder(self):
        name = Path(self.dataset).stem if self.dataset.endswith(".npz") else self.dataset
        return Path("runs") / f"compress-{name}-{self.arch}-a{self.act_bits}"


def _net_config(cfg, data):
    from models.layers import QuantConfig
    from models.nets import NetConfig

    mean = float(data.x_train.mean()) if cfg.arch == "mlp" else 0.0
    std = float(data.x_train.std()) or 1.0
    return NetConfig(cfg.arch, data.shape, data.levels, len(data.classes), cfg.widths, QuantConfig("float"),
                     in_mean=mean, in_std=std)


def _float_row(net, data):
    from models.nets import ConvBlock, DenseBlock
    from models.selfcompress import weight_count
    from models.train import predict

    n = weight_count(net)
    layers = sum(isinstance(b, (DenseBlock, ConvBlock)) for b in net.blocks)
    return {"test_acc": float(np.mean(predict(net, data.x_test) == data.y_test)), "bits_per_weight": 32.0,
            "bytes": 4.0 * n, "percent_of_float": 100.0, "weights": n, "pruned": [0] * layers}


def _compressed_row(net, model, ladder, history):
    """Numbers of one compressed variant: PyTorch and hwsim accuracy, sizes, pruned channels per layer."""
    from models.selfcompress import compress_quantizers, size_report

    report = size_report(net)
    n = report["weights"]
    stored = weight_bits_stored(model)
    layers = model.mac_layers()
    quantizers = compress_quantizers(net)
    # hidden layers lose their pruned channels physically; the logit layer keeps its rows
    pruned = [q.channels - layer.n_out if layer.output == "threshold" else int((q.int_depth() == 0).sum())
              for q, layer in zip(quantizers, layers)]
    return {"test_acc": ladder.qat_acc, "hwsim_acc": ladder.hwsim_acc, "agreement": ladder.agreement,
            "planes_equal": ladder.planes_equal, "bits_per_weight": stored / n, "bytes": stored / 8,
            "percent_of_float": 100.0 * stored / (32.0 * n), "weights": n, "pruned": pruned,
            "q_pytorch": report["bits_per_weight"], "revived": history.revived,
            "channel_bits": [channel_bits(layer).tolist() for layer in layers],
            "layers": [layer.name for layer in layers],
            "ir_shapes": [list(layer.weight_shape) for layer in layers]}


def run_seed(cfg, seed, folder, progress=True, hardware=None, log=print):
    """One seed: the three variants, exported and verified. Returns ``(rows, split, preservation, histories)``."""
    import torch

    from export.lower_compress import lower_compressed
    from models.data import load_dataset
    from models.nets import QuantNet
    from models.preservation import select_preservation, split_indices
    from models.selfcompress import init_from_float, self_compressing
    from models.train import fit
    from models.train_compress import fit_compress

    data = load_dataset(cfg.dataset, seed=seed)
    split = split_indices(cfg.dataset, seed, data)
    net_cfg = _net_config(cfg, data)
    torch.manual_seed(seed)
    float_net = QuantNet(net_cfg)
    fit(float_net, data, cfg.train_config(seed), desc=f"seed {seed}: float", progress=progress)
    pres = select_preservation(float_net, data, cfg.preservation_config(seed))
    global_pres = split["train"][pres.indices]
    if not np.isin(global_pres, split["train"]).all() or np.isin(global_pres, np.r_[split["val"], split["test"]]).any():
        raise RuntimeError("preservation set: an index outside the training split")  # cannot happen by construction
    rows, histories = {"float": _float_row(float_net, data)}, {}
    data_meta = {"name": data.name, "seed": seed, "classes": list(data.classes), "levels": data.levels}
    seed_dir = folder / f"seed{seed}"
    seed_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(seed_dir / "net.json", json.dumps({"net": net_cfg.to_json(), "self_compress": asdict(
        cfg.sc_config()), "dataset": data_meta}, indent=2).encode())
    with atomic_open(seed_dir / "float.pt") as fh:
        torch.save(float_net.state_dict(), fh)
    for variant in ("unsafe", "safe"):
        torch.manual_seed(seed)
        net = init_from_float(self_compressing(net_cfg, cfg.sc_config()), float_net)
        safe = variant == "safe"
        hist = fit_compress(net, data, cfg.compress_config(seed, safe), preservation=pres.indices if safe else None,
                            desc=f"seed {seed}: {variant}", progress=progress)
        model = lower_compressed(net, data.classes, cfg.coef_bits,
                                 meta={"dataset": data_meta, "variant": variant, "compress": asdict(cfg)})
        ladder = verify(model, net, float_net, data.x_test, data.y_test)
        save(model, seed_dir / f"{variant}.lqir.npz")
        with atomic_open(seed_dir / f"{variant}.pt") as fh:      # rebuild: self_compressing(net.json) + this
            torch.save(net.state_dict(), fh)
        row = _compressed_row(net, model, ladder, hist)
        if hardware is not None:
            row["hardware"] = dict(hardware(model, data.x_test, seed_dir / variant))
        rows[variant], histories[variant] = row, hist.to_json()
        log(f"seed {seed} {variant}: test {row['test_acc']:.2%}, {row['bits_per_weight']:.2f} bits/weight "
            f"({row['percent_of_float']:.1f} % of float), pruned {row['pruned']}, hwsim agreement "
            f"{row['agreement']:.2%}, fast == bit-plane {row['planes_equal']}")
    split_json = {k: v.tolist() for k, v in split.items()}
    pres_json = {"indices": global_pres.tolist(), "train_positions": pres.indices.tolist(),
                 "sources": {k: split["train"][v].tolist() for k, v in pres.sources.items()}}
    return rows, split_json, pres_json, histories


def _mean_std(values):
    arr = np.asarray(values, dtype=np.float64)
    mean = arr.mean(axis=0)
    std = arr.std(axis=0, ddof=1) if len(arr) > 1 else np.zeros_like(mean)
    return mean.tolist(), std.tolist()


def summarize(per_seed):
    """Mean and std over seeds of every numeric figure, per variant."""
    out = {}
    for variant in VARIANTS:
        rows = [seed_rows[variant] for seed_rows in per_seed.values()]
        keys = ["test_acc", "bits_per_weight", "bytes", "percent_of_float", "pruned"]
        keys += [k for k in ("hwsim_acc", "agreement", "revived") if k in rows[0]]
        summary = {}
        for key in keys:
            mean, std = _mean_std([r[key] for r in rows])
            summary[key] = {"mean": mean, "std": std}
        hw_keys = sorted({k for r in rows for k in r.get("hardware", {})})
        if hw_keys:
            summary["hardware"] = {}
            for key in hw_keys:
                mean, std = _mean_std([r["hardware"].get(key, np.nan) for r in rows])
                summary["hardware"][key] = {"mean": mean, "std": std}
        out[variant] = summary
    return out


def _pm(stat, fmt):
    mean, std = stat["mean"], stat["std"]
    if isinstance(mean, list):          # one figure per layer
        return " / ".join(f"{m:{fmt}}±{s:{fmt}}" for m, s in zip(mean, std))
    return f"{mean:{fmt}} ± {std:{fmt}}"


def table_rows(summary):
    """``(header, rows)`` of the results table (mean ± std over seeds)."""
    hw_keys = sorted({k for s in summary.values() for k in s.get("hardware", {})})
    header = ["variant", "test accuracy", "bits / weight", "weight memory (bytes)", "% of float (32-bit)",
              "channels pruned per layer"] + hw_keys
    rows = []
    for variant in VARIANTS:
        s = summary[variant]
        acc = {"mean": 100 * s["test_acc"]["mean"], "std": 100 * s["test_acc"]["std"]}
        row = [variant, _pm(acc, ".2f") + " %", _pm(s["bits_per_weight"], ".2f"), _pm(s["bytes"], ".0f"),
               _pm(s["percent_of_float"], ".2f"), _pm(s["pruned"], ".3g")]
        row += [_pm(s["hardware"][k], ".4g") if k in s.get("hardware", {}) else "" for k in hw_keys]
        rows.append(row)
    return header, rows


def write_compress_plot(path, per_seed):
    """Bits per channel per layer (first seed, safe vs unsafe) and size vs accuracy per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = per_seed[min(per_seed)]
    n_layers = len(first["safe"]["channel_bits"])
    fig, axes = plt.subplots(1, n_layers + 1, figsize=(4.2 * (n_layers + 1), 3.6), squeeze=False)
    for k, ax in enumerate(axes[0, :n_layers]):
        for variant, style in (("unsafe", "C1"), ("safe", "C2")):
            bits = np.asarray(first[variant]["channel_bits"][k])
            ax.step(np.arange(len(bits)), bits, where="mid", color=style, label=f"{variant} ({len(bits)} ch)")
        ax.set(xlabel="output channel (IR order, pruned removed)", ylabel="bits",
               title=f"{first['safe']['layers'][k]}: bits per channel (seed {min(per_seed)})")
        ax.set_ylim(0, 8.5)
        ax.legend(fontsize=8)
    ax = axes[0, -1]
    for variant, color in zip(VARIANTS, ("C0", "C1", "C2")):
        xs = [rows[variant]["percent_of_float"] for rows in per_seed.values()]
        ys = [100 * rows[variant]["test_acc"] for rows in per_seed.values()]
        ax.scatter(xs, ys, color=color, alpha=0.5)
        (mx, my), (sx, sy) = _mean_std(np.c_[xs, ys])          # mean ± std, as in the table
        ax.errorbar(mx, my, xerr=sx, yerr=sy, color=color, marker="o", capsize=3, label=variant)
    ax.set_xscale("log")
    ax.set(xlabel="weight memory, % of float (log)", ylabel="test accuracy (%)", title="size vs accuracy")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_open(path) as fh:
        fig.savefig(fh, format="png", dpi=110)
    plt.close(fig)


def _report(cfg, header, rows, timings):
    lines = [f"# lqflow compress: {cfg.dataset}, {cfg.arch}, {cfg.act_quantizer} A{cfg.act_bits}", "",
             f"Seeds {cfg.first_seed}..{cfg.first_seed + cfg.seeds - 1}; mean ± std over seeds. γ = {cfg.gamma}, "
             f"λ = {cfg.lam}, preservation set {cfg.preserve:.0%} of the training split.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    lines += ["", "Accuracy: the PyTorch eval model on the test split (the exported IR agrees: see compress.json, "
              "`hwsim_acc` and `agreement`). Bits / weight: the bits the IR stores over the unpruned network's weight "
              "count (Cséfalvay's Q); weight memory = that × weights / 8.", "", "## Timings", ""]
    lines += [f"- {k}: {v:.1f} s" for k, v in timings.items()]
    return "\n".join(lines) + "\n"


def run_compress(cfg, folder=None, progress=True, hardware=None, log=print):
    """The whole experiment; returns ``(result dict, folder)``.  ``result["ok"]``: every hwsim check passed."""
    import torch

    folder = Path(folder or cfg.default_folder())
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    per_seed, splits, preservation, histories, timings = {}, {}, {}, {}, {}
    # These networks are tiny: one intra-op thread beats two (several times over on a
    # shared machine, where a second thread mostly waits).  Results do not depend on it.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for seed in range(cfg.first_seed, cfg.first_seed + cfg.seeds):
            t = time.perf_counter()
            rows, split, pres, hist = run_seed(cfg, seed, folder, progress, hardware, log)
            per_seed[seed], splits[str(seed)], preservation[str(seed)], histories[str(seed)] = rows, split, pres, hist
            timings[f"seed {seed}"] = time.perf_counter() - t
    finally:
        torch.set_num_threads(threads)
    timings["total"] = time.perf_counter() - t0
    summary = summarize(per_seed)
    header, rows = table_rows(summary)
    ok = all(r[v]["planes_equal"] and r[v]["agreement"] >= 0.99 for r in per_seed.values() for v in ("unsafe", "safe"))
    result = {"config": asdict(cfg), "summary": summary, "per_seed": {str(k): v for k, v in per_seed.items()},
              "timings": timings, "ok": ok, "table": {"header": header, "rows": rows}}
    atomic_write_bytes(folder / "compress.json", json.dumps(result, indent=2).encode())
    atomic_write_bytes(folder / "split.json", json.dumps({"dataset": cfg.dataset, "seeds": splits}).encode())
    atomic_write_bytes(folder / "preservation.json",
                       json.dumps({"dataset": cfg.dataset, "fraction": cfg.preserve, "seeds": preservation}).encode())
    atomic_write_bytes(folder / "history.json", json.dumps(histories).encode())
    atomic_write_bytes(folder / "report.md", _report(cfg, header, rows, timings).encode())
    write_compress_plot(folder / "compress.png", per_seed)
    return result, folder


def hardware_estimate(model, x_test, folder):
    """The hook ``lqflow compress`` runs by default: cycles per inference (the cycle model)
    and estimated LUT4 / DP16KD (``rtl.folding``) of the RTL at one fixed folding (PE 8, SIMD
    16, one value per beat), the same for every variant, so that the columns compare the
    models, not foldings."""
    from hwsim.cycles import network_timing
    from lqir import UnsupportedLayerError, check_backend
    from rtl.folding import network_cost
    from rtl.verilog import choose_foldings

    try:
        check_backend(model, "rtl")
    except UnsupportedLayerError:
        return {}
    foldings = choose_foldings(model)
    cost = network_cost(model, foldings)
    return {"cycles/inference": network_timing(model, foldings).ii, "LUT4 (est.)": cost.lut4,
            "DP16KD (est.)": cost.bram}
