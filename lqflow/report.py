"""The run folder's Markdown report and training plot."""

from dataclasses import asdict

from lqir import atomic_open, atomic_write_bytes

from .hardware import hardware_section

__all__ = ["write_report", "write_plot"]


def write_report(path, result):
    """``report.md`` of a :class:`lqflow.flow.RunResult`."""
    cfg, ladder, timings = asdict(result.config), result.ladder, result.timings
    lines = [
        f"# lqflow run: {cfg['dataset']}, {cfg['arch']}, {cfg['quantizer']} W{cfg['weight_bits']}/A{cfg['act_bits']}",
        "",
        f"Test split: {ladder.samples} samples. Seed {cfg['seed']}, {cfg['coef_bits']}-bit coefficients.",
        "",
        "## Verification ladder", "",
        "| step | check | result | status |", "|---|---|---|---|",
    ]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in result.rows()]
    lines += ["", "## Integer IR", "", "| layer | op | output shape | W bits | in bits | acc bits | output |",
              "|---|---|---|---|---|---|---|"]
    for row in result.ir["layers"]:
        out = row.get("output", "")
        if out == "threshold":
            out = f"threshold → {row['out_levels']} levels"
        lines.append(f"| {row['name']} | {row['op']} | {row['out_shape']} | {row.get('weight_bits', '')} | "
                     f"{row.get('in_bits', '')} | {row.get('acc_bits', '')} | {out} |")
    lines += ["", f"logit_scale = {result.ir['logit_scale']:.6g}", "", "## Files", "",
              "- `model.lqir.npz` — the integer IR", "- `float/`, `qat/` — checkpoints (state dict + config.json)",
              "- `training.png` — accuracy per epoch and learned activation levels per step",
              "- `results.json`, `history.json` — numbers behind this report",
              "- `rtl/` — Verilog and synthesis; `hls4ml/` — the hls4ml project (when built)", "",
              "## Timings", ""]
    lines += [f"- {k}: {v:.1f} s" for k, v in timings.items()]
    if result.hardware is not None:
        lines += ["", hardware_section(result.hardware)]
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())


def write_plot(path, history, cfg):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = history["act_levels"]
    fig, axes = plt.subplots(1, 1 + len(levels), figsize=(4.5 * (1 + len(levels)), 3.6), squeeze=False)
    ax = axes[0, 0]
    ax.plot(range(1, len(history["float_val_acc"]) + 1), history["float_val_acc"], label="float")
    ax.plot(range(1, len(history["qat_val_acc"]) + 1), history["qat_val_acc"],
            label=f"{cfg.quantizer} W{cfg.weight_bits}/A{cfg.act_bits}")
    ax.set(xlabel="epoch", ylabel="validation accuracy", title="accuracy per epoch")
    ax.legend()
    for ax, (name, steps) in zip(axes[0, 1:], levels.items()):
        ax.plot(steps)
        ax.set(xlabel="QAT step", ylabel="level", title=f"learned levels, block {name.split('.')[1]}")
    fig.tight_layout()
    with atomic_open(path) as fh:
        fig.savefig(fh, format="png", dpi=110)
    plt.close(fig)
