"""``lqflow sweep``: a grid of ``lqflow run`` points on Ray, resumable, with a Pareto front.

The driver validates the spec, skips the points whose folder under ``FOLDER/points/``
already holds a finished ``point.json`` with the same options, and sends the others to
Ray: a local instance with the machine's cores, or an existing cluster (``address``).
At most ``workers`` points run at once. Each task (:func:`lqflow.sweep_point.evaluate_point`)
returns its row and its run folder as bytes; the driver unpacks it into
``FOLDER/points/<id>/`` (a temp folder, then one rename) and rewrites ``results.csv`` and
``results.json`` after every point, ``pareto.png`` at the end. A task whose worker dies
is retried once by Ray (``max_retries=1``), then recorded as failed; a point that raises
is recorded as failed by its worker; either way the sweep goes on, and the next run of the
same command tries the failed points again.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from lqir import atomic_write_bytes

from .sweep_point import evaluate_point, point_row, unpack
from .sweep_report import write_pareto_plot, write_results

__all__ = ["INSTALL_HINT", "SweepResult", "require_ray", "run_sweep", "load_record"]

INSTALL_HINT = ("lqflow sweep runs its points on Ray, which is not installed: pip install 'lqflow[sweep]' "
                "(from a checkout: pip install -e '.[sweep]')")


def require_ray():
    """The ``ray`` module, or an ImportError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ImportError(INSTALL_HINT) from None
    return ray


@dataclass(frozen=True)
class SweepResult:
    """One ``lqflow sweep``: the rows in spec order and the Pareto front (rows)."""

    folder: Path
    rows: list
    front: list
    ran: list          # ids run by this call
    reused: list       # ids finished by an earlier call

    @property
    def failed(self):
        return [row["id"] for row in self.rows if row["status"] != "ok"]


def load_record(points_dir, point):
    """The ``point.json`` of a finished point with these options, or None (not run, failed, stale)."""
    try:
        record = json.loads((Path(points_dir) / point.id / "point.json").read_text())
    except (OSError, ValueError):
        return None
    ok = isinstance(record, dict) and record.get("status") == "ok" and record.get("options") == point.options()
    return record if ok else None


def _store(points_dir, point, out):
    """Unpack a worker's answer into ``points/<id>/`` with its ``point.json``: built in a temp
    folder, then renamed into place (an older folder of the point is replaced)."""
    row = out["row"]
    record = {"id": point.id, "status": row["status"], "error": row["error"], "options": point.options(),
              "row": row, "wall_s": out.get("wall_s"), "host": out.get("host")}
    tmp = Path(tempfile.mkdtemp(dir=points_dir, prefix=f".{point.id}.", suffix=".tmp"))
    try:
        if out.get("archive"):
            unpack(out["archive"], tmp)
        atomic_write_bytes(tmp / "point.json", json.dumps(record, indent=2).encode())
        final, old = points_dir / point.id, None
        if final.exists():
            old = Path(tempfile.mkdtemp(dir=points_dir, prefix=f".{point.id}.", suffix=".old"))
            os.replace(final, old / "point")
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return record


def _crashed(ray, point, exc):
    """The answer recorded for a task Ray gave up on: its worker died twice (or its node
    left), or a replacement ``evaluate`` raised."""
    first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    how = "raised" if isinstance(exc, ray.exceptions.RayTaskError) else "after one retry"
    error = f"{type(exc).__name__} ({how}): {first}"[:500]
    return {"id": point.id, "row": point_row(point, error=error), "archive": b"", "wall_s": None, "host": None}


def _cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _connect(ray, address):
    """Start a local Ray instance (``address`` None) or join a cluster; True if we started Ray."""
    if ray.is_initialized():
        return False
    quiet = dict(logging_level=logging.WARNING, log_to_driver=False)
    if address is None:
        ray.init(address="local", num_cpus=_cores(), include_dashboard=False, **quiet)
        return True
    try:
        ray.init(address=address, **quiet)
    except Exception as exc:  # ray raises ConnectionError, RuntimeError, ValueError, ...
        first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise RuntimeError(f"--address {address}: cannot join the Ray cluster: {first}") from None
    return True


def _summary(row):
    if row["status"] != "ok":
        return f"FAILED: {row['error']}"
    text = "finished" if row["hwsim_acc"] is None else f"hwsim {row['hwsim_acc']:.2%}"
    if row["ii"] is not None:
        lut = f"{row['lut4']:,} LUT4" if row["lut4"] is not None else f"~{row['lut4_est']:,} LUT4"
        text += f", II {row['ii']}, {row['fps']:,} inferences/s, {lut}"
    return text


def run_sweep(spec, folder, *, address=None, workers=None, spec_text=None, evaluate=None, console=None):
    """Run every unfinished point of ``spec`` on Ray; write the results into ``folder``.

    ``workers`` caps the points running at once (default: the cluster's CPUs); ``evaluate``
    replaces :func:`~lqflow.sweep_point.evaluate_point` (tests). Returns a :class:`SweepResult`.
    """
    ray = require_ray()
    points, folder = spec.points(), Path(folder)
    points_dir = folder / "points"
    records = {p.id: r for p in points if (r := load_record(points_dir, p)) is not None}
    reused = [p.id for p in points if p.id in records]
    pending = [p for p in points if p.id not in records]
    points_dir.mkdir(parents=True, exist_ok=True)
    for stale in [*points_dir.glob(".*.tmp"), *points_dir.glob(".*.old")]:  # a driver killed mid-rename
        shutil.rmtree(stale, ignore_errors=True)
    if spec_text is not None:
        atomic_write_bytes(folder / "sweep.toml", spec_text.encode())

    def rows():   # a point still running is "pending" in the results written meanwhile
        return [records[p.id]["row"] if p.id in records else {**point_row(p), "status": "pending"} for p in points]

    def extra():
        return {i: {"wall_s": r.get("wall_s"), "host": r.get("host")} for i, r in records.items()}

    if pending:
        _run_pending(ray, pending, points_dir, records, address, workers, evaluate or evaluate_point, console,
                     done=len(reused), total=len(points), on_point=lambda: write_results(folder, spec, rows(), extra()))
    final = rows()
    front = write_results(folder, spec, final, extra())
    write_pareto_plot(folder / "pareto.png", final)
    return SweepResult(folder, final, front, [p.id for p in pending], reused)


def _run_pending(ray, pending, points_dir, records, address, workers, evaluate, console, done, total, on_point):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    started = _connect(ray, address)
    try:
        window = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        task = ray.remote(num_cpus=1, max_retries=1)(evaluate)
        datasets = {name: ray.put(Path(name).read_bytes())
                    for name in sorted({p.dataset for p in pending if p.dataset.endswith(".npz")})}
        queue, running = list(pending), {}
        progress = Progress(TextColumn("sweep"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            console=console or Console(), transient=False)
        with progress:
            bar = progress.add_task("points", total=total, completed=done)
            while queue or running:
                while queue and len(running) < window:
                    point = queue.pop(0)
                    ref = task.options(name=f"lqflow-sweep:{point.id}").remote(point, datasets.get(point.dataset))
                    running[ref] = point
                finished, _ = ray.wait(list(running), num_returns=1)
                for ref in finished:
                    point = running.pop(ref)
                    try:
                        out = ray.get(ref)
                    except ray.exceptions.RayError as exc:
                        out = _crashed(ray, point, exc)
                    records[point.id] = _store(points_dir, point, out)
                    on_point()
                    progress.console.print(f"{point.id}: {_summary(out['row'])}", highlight=False, markup=False,
                                           soft_wrap=True)
                    progress.advance(bar)
    finally:
        if started:
            ray.shutdown()
