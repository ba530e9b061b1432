"""What ``lqflow sweep`` writes: ``results.csv``, ``results.json``, ``pareto.png``, and the
Pareto front (hwsim accuracy up, LUT4 down, inferences/s up) as table rows.

LUT4 is the placed count when every point on the front was synthesized (``synth = true``),
else the cost model's estimate (``rtl/folding.py``) for every point alike; inferences/s
are at the clock the folding was chosen for (``freq``).
"""

from __future__ import annotations

import csv
import io
import json

from lqir import atomic_open, atomic_write_bytes

from .sweep_point import COLUMNS

__all__ = ["write_results", "pareto_front", "lut_key", "front_table", "front_markdown", "write_pareto_plot"]

FRONT_HEADER = ("network", "quantizer", "W/A", "target inf/s", "hwsim acc", "LUT4", "inferences/s", "II", "latency")


def _cell(value):
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return " ".join(map(str, value))
    return repr(value) if isinstance(value, float) else str(value)


def write_results(folder, spec, rows, extra, front=None):
    """``results.csv`` (one row per point, :data:`COLUMNS`) and ``results.json`` (the spec,
    the rows with each point's wall time and host, the Pareto front's ids), atomically."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows([_cell(row[c]) for c in COLUMNS] for row in rows)
    atomic_write_bytes(folder / "results.csv", text.getvalue().encode())
    front = pareto_front(rows) if front is None else front
    doc = {"spec": spec.to_json(), "columns": list(COLUMNS), "lut4": lut_key(rows),
           "points": [{**row, **extra.get(row["id"], {})} for row in rows], "pareto_front": [r["id"] for r in front]}
    atomic_write_bytes(folder / "results.json", json.dumps(doc, indent=2).encode())
    return front


def _candidates(rows):
    return [r for r in rows if r["status"] == "ok" and r["hwsim_acc"] is not None and r["fps"] is not None
            and r["lut4_est"] is not None]


def lut_key(rows):
    """``lut4`` (placed) when every candidate was synthesized, else ``lut4_est``."""
    cand = _candidates(rows)
    return "lut4" if cand and all(r["lut4"] is not None for r in cand) else "lut4_est"


def _dominated(row, others, objectives):
    def at_least(a, b):
        return all(sign * a[k] >= sign * b[k] for k, sign in objectives)

    return any(o is not row and at_least(o, row) and not at_least(row, o) for o in others)


def pareto_front(rows, objectives=None):
    """The rows no other row beats in every objective (default: hwsim accuracy up, LUT4
    down, inferences/s up), sorted by LUT4; failed points and points without RTL are left out."""
    cand, lut = _candidates(rows), lut_key(rows)
    objectives = objectives or (("hwsim_acc", 1), (lut, -1), ("fps", 1))
    return sorted((r for r in cand if not _dominated(r, cand, objectives)), key=lambda r: (r[lut], -r["fps"], r["id"]))


def front_table(rows, front=None):
    """``(header, cells)`` of the front for a terminal table."""
    lut = lut_key(rows)
    front = pareto_front(rows) if front is None else front
    cells = [(_network(r), r["quantizer"], f"W{r['wbits']}/A{r['abits']}",
              "default" if r["target_fps"] is None else f"{r['target_fps']:,.0f}", f"{r['hwsim_acc']:.2%}",
              f"{r[lut]:,}{'' if lut == 'lut4' else ' (est.)'}", f"{r['fps']:,}", str(r["ii"]), str(r["latency"]))
             for r in front]
    return FRONT_HEADER, cells


def _network(row):
    """``digits mlp 64-64 s0``: what tells the points of a front apart besides quantizer and bits."""
    name = row["dataset"].rsplit("/", 1)[-1].removesuffix(".npz")
    widths = "-".join(map(str, row["widths"])) or "default"
    return f"{name} {row['arch']} {widths} s{row['seed']}"


def front_markdown(rows, front=None):
    """The front as a Markdown table."""
    header, cells = front_table(rows, front)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(c) + " |" for c in cells])


def write_pareto_plot(path, rows):
    """``pareto.png``: hwsim accuracy against LUT4 and against inferences/s, each panel's
    own front (two objectives) drawn as a line and labelled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    cand, lut = _candidates(rows), lut_key(rows)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    panels = ((lut, -1, f"LUT4 ({'placed' if lut == 'lut4' else 'estimated, cost model'})"),
              ("fps", 1, "inferences/s at the folding's clock"))
    for ax, (key, sign, label) in zip(axes, panels):
        ax.set(xlabel=label, ylabel="hwsim test accuracy", xscale="log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:,.0f}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.grid(True, which="both", alpha=0.3)
        if not cand:
            ax.text(0.5, 0.5, "no finished point with RTL figures", ha="center", transform=ax.transAxes)
            continue
        for quantizer, marker in (("lq", "o"), ("uniform", "s")):
            pts = [r for r in cand if r["quantizer"] == quantizer]
            if pts:
                ax.scatter([r[key] for r in pts], [r["hwsim_acc"] for r in pts], marker=marker, alpha=0.55,
                           label=quantizer)
        front = sorted((r for r in cand if not _dominated(r, cand, (("hwsim_acc", 1), (key, sign)))),
                       key=lambda r: r[key])
        ax.plot([r[key] for r in front], [r["hwsim_acc"] for r in front], "r-", marker="*", markersize=11,
                label="Pareto front")
        labels = {}   # points at the same place share one label
        for r in front:
            labels.setdefault((r[key], r["hwsim_acc"]), []).append(f"W{r['wbits']}A{r['abits']} {r['quantizer']}")
        for xy, names in labels.items():
            ax.annotate(" / ".join(dict.fromkeys(names)), xy, fontsize=7, xytext=(4, -10), textcoords="offset points")
        ax.legend(fontsize=8, loc="best")
    axes[0].set_title("accuracy against LUT4")
    axes[1].set_title("accuracy against inferences/s")
    fig.tight_layout()
    with atomic_open(path) as fh:
        fig.savefig(fh, format="png", dpi=110)
    plt.close(fig)
