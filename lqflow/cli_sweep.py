"""``lqflow sweep SPEC.toml -o FOLDER``: a grid of runs on Ray, and its Pareto front."""

from __future__ import annotations

import time
from pathlib import Path

from .cli_common import check_output_folder, positive_int, print_table

__all__ = ["register", "cmd_sweep"]


def cmd_sweep(args):
    from .sweep import require_ray, run_sweep
    from .sweep_report import front_table
    from .sweep_spec import load_spec

    spec, text = load_spec(args.spec)
    points = spec.points()
    inputs = [args.spec, *(Path(d) for d in spec.dataset if d.endswith(".npz"))]
    folder = check_output_folder(args.out, "-o/--out", inputs)
    require_ray()   # before anything is written
    where = f"the Ray cluster at {args.address}" if args.address else "a local Ray instance"
    print(f"sweep: {len(points)} points on {where}"
          f"{f', at most {args.workers} at once' if args.workers else ''}; results in {folder}")
    t0 = time.perf_counter()
    result = run_sweep(spec, folder, address=args.address, workers=args.workers, spec_text=text)
    header, cells = front_table(result.rows, result.front)
    print_table("Pareto front (hwsim accuracy up, LUT4 down, inferences/s up)", header, cells)
    print(f"{len(result.ran)} point(s) run, {len(result.reused)} already finished, {len(result.failed)} failed; "
          f"{folder / 'results.csv'}, results.json, pareto.png, points/")
    for row in result.rows:
        if row["status"] != "ok":
            print(f"  failed: {row['id']}: {row['error']}")
    print(f"wall time: {time.perf_counter() - t0:.1f} s")
    return 1 if result.failed else 0


def register(sub):
    p = sub.add_parser("sweep", help="a grid of runs on Ray (local or a cluster): accuracy against LUT4 and "
                                     "inferences/s, with the Pareto front")
    p.add_argument("spec", type=Path, help="sweep spec (TOML): run options, a list meaning each of its values")
    p.add_argument("-o", "--out", type=Path, required=True,
                   help="sweep folder (results.csv, results.json, pareto.png, points/); run again to resume")
    p.add_argument("--address", help="join this Ray cluster (host:port of its head) instead of starting a local one")
    p.add_argument("--workers", type=positive_int,
                   help="at most this many points at once (default: every CPU of the machine or cluster)")
    p.set_defaults(func=cmd_sweep)
