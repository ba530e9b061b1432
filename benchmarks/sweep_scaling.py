"""``lqflow sweep`` on Ray: the same 8-point sweep with 1 and 2 workers, and the digits Pareto front.

    python benchmarks/sweep_scaling.py [--workers 1 2] [--epochs 3] [-o FOLDER]
    python benchmarks/sweep_scaling.py --pareto [--synth] [-o FOLDER]

The scaling sweep (digits MLP 64-64, LQ and uniform, W1/W2, A2, 100 k and 1 M inferences/s,
``--epochs`` float and QAT epochs, 50 co-simulated samples, no synthesis) runs once per
worker count, each time into a fresh folder, on a local Ray instance; the table gives the
wall time of each and the speed-up over one worker. ``--pareto`` sweeps the digits MLP
(default widths and epochs) over W1–W3 × A2–A3 × LQ/uniform × 100 k and 1 M inferences/s
and prints the Pareto front (hwsim accuracy, LUT4, inferences/s) as a Markdown table;
``--synth`` places every point, so that LUT4 is the placed count instead of the estimate.
Both write their sweep folders under ``-o`` (default ``runs/sweep-bench``), so that an
interrupted ``--pareto`` resumes where it stopped.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from lqflow.sweep import run_sweep
from lqflow.sweep_report import front_markdown
from lqflow.sweep_spec import spec_from_dict

SCALING = {"dataset": "digits", "arch": "mlp", "widths": [64, 64], "quantizer": ["lq", "uniform"], "wbits": [1, 2],
           "abits": 2, "seeds": 0, "target_fps": [100_000, 1_000_000], "synth": False, "cosim_samples": 50}
PARETO = {"dataset": "digits", "arch": "mlp", "quantizer": ["lq", "uniform"], "wbits": [1, 2, 3], "abits": [2, 3],
          "seeds": 0, "target_fps": [100_000, 1_000_000], "cosim_samples": 100}


def scaling(out, workers, epochs):
    spec = spec_from_dict({**SCALING, "epochs": epochs, "qat_epochs": epochs})
    print(f"{len(spec.points())} points: digits MLP 64-64, LQ/uniform, W1/W2, A2, 100 k and 1 M inferences/s, "
          f"{epochs} + {epochs} epochs, 50 co-simulated samples, no synthesis")
    lines, first = ["| workers | wall time | speed-up | points failed |", "|---|---|---|---|"], None
    for n in workers:
        folder = out / f"scaling-{n}w-{time.strftime('%Y%m%d-%H%M%S')}"
        t0 = time.perf_counter()
        result = run_sweep(spec, folder, workers=n)
        wall = time.perf_counter() - t0
        first = first or wall
        lines.append(f"| {n} | {wall:.0f} s | {first / wall:.2f}× | {len(result.failed)} |")
        print(lines[-1], flush=True)
    print("\n".join(lines))


def pareto(out, synth, workers):
    spec = spec_from_dict({**PARETO, "synth": synth})
    folder = out / f"pareto{'-synth' if synth else ''}"
    t0 = time.perf_counter()
    result = run_sweep(spec, folder, workers=workers)
    print(f"{len(result.rows)} points ({len(result.ran)} run now, {len(result.reused)} finished before, "
          f"{len(result.failed)} failed) in {time.perf_counter() - t0:.0f} s; {folder}/results.csv, pareto.png")
    print(front_markdown(result.rows, result.front))
    return 1 if result.failed else 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-o", "--out", type=Path, default=Path("runs/sweep-bench"))
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to time (default 1 2)")
    p.add_argument("--epochs", type=int, default=3, help="float and QAT epochs of the scaling sweep (default 3)")
    p.add_argument("--pareto", action="store_true", help="the digits Pareto front instead of the scaling table")
    p.add_argument("--synth", action="store_true", help="with --pareto: synthesize and place every point")
    args = p.parse_args(argv)
    if args.pareto:
        return pareto(args.out, args.synth, max(args.workers))
    scaling(args.out, args.workers, args.epochs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
