"""One point of ``lqflow sweep``, as a Ray worker runs it.

The worker runs ``lqflow run``'s steps in a scratch folder of its own machine — train,
export, ladder steps 1–4, then the RTL for the point's target with its co-simulation
(and synthesis when asked) — and returns the point's results row and its run folder
packed as bytes, so that the driver needs no file system shared with the workers. A
point that raises comes back as a failed row with its error; only a worker that dies
(the process, its machine) makes the task fail, which Ray retries.
"""

from __future__ import annotations

import io
import json
import socket
import tarfile
import tempfile
import time
import traceback
from dataclasses import replace
from pathlib import Path

from lqir import atomic_write_bytes

from .sweep_spec import KEYS

__all__ = ["COLUMNS", "RESULT_COLUMNS", "TORCH_THREADS", "SCRATCH", "evaluate_point", "run_point", "point_row",
           "pack", "unpack"]

#: PyTorch's intra-op threads while a point trains. Sums over more threads round in another
#: order, so a point equals ``lqflow run`` run with this many threads, on any worker.
TORCH_THREADS = 1
#: Run-folder entries not sent back: the Verilator build tree (a hundred megabytes, and
#: rebuilt from ``rtl/`` by ``lqflow cosim``).
SCRATCH = ("cosim_build",)
#: What a point measured, after its options.
RESULT_COLUMNS = ("float_acc", "qat_acc", "hwsim_acc", "agreement", "planes_equal", "folding", "rtl_device",
                  "cosim_checked", "mismatches", "ii", "latency", "fps", "lut4_est", "lut4", "ff", "bram", "dsp",
                  "fmax_mhz", "fps_fmax", "note", "error")
#: ``results.csv``: the point id and status, every spec key (``seed`` for ``seeds``), the results.
COLUMNS = ("id", "status", *("seed" if k == "seeds" else k for k in KEYS), *RESULT_COLUMNS)


def evaluate_point(point, dataset_bytes=None):
    """Run ``point`` in a scratch folder; return ``{"id", "row", "archive", "wall_s", "host"}``.

    ``dataset_bytes``: the content of the point's ``.npz`` dataset (the driver's file), or
    None for a built-in dataset. Exceptions become a failed row; nothing is raised.
    """
    import torch

    t0, lines = time.perf_counter(), []
    threads = torch.get_num_threads()
    torch.set_num_threads(TORCH_THREADS)
    try:
        with tempfile.TemporaryDirectory(prefix="lqflow-sweep-") as tmp:
            folder, local = Path(tmp) / "point", None
            result = error = None
            try:
                if dataset_bytes is not None:
                    local = Path(tmp) / Path(point.dataset).name
                    local.write_bytes(dataset_bytes)
                result = run_point(point, folder, log=lines.append, dataset=local)
            except Exception as exc:  # recorded in the row; the sweep goes on
                error = f"{type(exc).__name__}: {exc}"
                if local is not None:
                    error = error.replace(str(local), point.dataset)
                lines.append(traceback.format_exc())
            row = point_row(point, result, error)
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(folder / "sweep.log", ("\n".join(lines) + "\n").encode())
            archive = pack(folder)
    finally:
        torch.set_num_threads(threads)
    return {"id": point.id, "row": row, "archive": archive, "wall_s": round(time.perf_counter() - t0, 1),
            "host": socket.gethostname()}


def run_point(point, folder, log=print, dataset=None):
    """``lqflow run`` with the point's options into ``folder``, co-simulating the first
    ``cosim_samples`` test samples; returns the ``RunResult`` (also in ``results.json``)."""
    import lqir
    from models.data import load_dataset

    from .cli_hardware import foldings_from_args
    from .flow import run
    from .hardware import hardware_steps
    from .report import write_report

    cfg = point.run_config(dataset)
    result, folder = run(cfg, folder, progress=False, log=log)   # train, export, steps 1–4
    model = lqir.load(folder / "model.lqir.npz")
    x = load_dataset(cfg.dataset, seed=cfg.seed, in_bits=cfg.in_bits).x_test
    if point.cosim_samples is not None:
        x = x[:point.cosim_samples]
    t0 = time.perf_counter()
    hardware = hardware_steps(model, x, folder, choose_foldings=lambda m: foldings_from_args(m, point.folding_args()),
                              synth=point.synth, freq_mhz=point.freq, log=log)
    seconds = time.perf_counter() - t0
    timings = {**result.timings, "hardware_s": seconds, "total_s": result.timings["total_s"] + seconds}
    result = replace(result, hardware=hardware, timings=timings)
    atomic_write_bytes(folder / "results.json", json.dumps(result.to_json(), indent=2).encode())
    write_report(folder / "report.md", result)
    return result


def point_row(point, result=None, error=None):
    """The ``results.csv`` row of a point: its options, then what ``result`` measured."""
    row = dict.fromkeys(COLUMNS)
    row.update(id=point.id, **point.options())
    failed = []
    if result is not None:
        ladder = result.ladder
        row.update(float_acc=ladder.float_acc, qat_acc=ladder.qat_acc, hwsim_acc=ladder.hwsim_acc,
                   agreement=ladder.agreement, planes_equal=ladder.planes_equal)
        hw = result.hardware
        if hw is not None and hw.skipped:
            row["note"] = f"RTL skipped: {hw.skipped}"
        elif hw is not None:
            info, cosim = hw.description, hw.cosim
            ii = info["initiation_interval_cycles"]
            row.update(folding=", ".join(f"{layer['name']} {layer['pe']}x{layer['simd']}/{layer['out_lanes']}"
                                         for layer in info["layers"]),
                       rtl_device=info.get("device"), cosim_checked=cosim.samples,
                       mismatches=cosim.mismatches + cosim.stress_mismatches, ii=ii, latency=info["latency_cycles"],
                       fps=round(point.freq * 1e6 / ii), lut4_est=info["estimate"]["lut4"])
            if hw.synth:
                s = hw.synth
                row.update(rtl_device=s.get("device", row["rtl_device"]), lut4=s["pnr_lut4"], ff=s["ff"],
                           bram=s["bram"], dsp=s["dsp"], fmax_mhz=s["fmax_mhz"], fps_fmax=s["inferences_per_s"])
        failed = result.failed()
    if error is None and failed:
        error = "; ".join(f"step {r.step}: {r.check}: {r.result}" for r in failed)
    row["status"] = "failed" if error else "ok"
    row["error"] = error
    return row


def pack(folder):
    """The run folder as a gzipped tar (bytes), without :data:`SCRATCH`."""
    folder, buf = Path(folder), io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path in sorted(folder.rglob("*")):
            rel = path.relative_to(folder)
            if rel.parts[0] in SCRATCH or not (path.is_file() and not path.is_symlink()):
                continue
            tar.add(path, arcname=rel.as_posix(), recursive=False)
    return buf.getvalue()


def unpack(archive, dest):
    """Extract what :func:`pack` made into ``dest``: regular files inside it, nothing else."""
    dest = Path(dest)
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        members = tar.getmembers()
        for member in members:
            parts = Path(member.name).parts
            if not member.isfile() or member.name.startswith("/") or ".." in parts or not parts:
                raise ValueError(f"point archive: refusing {member.name!r} (only files inside the run folder)")
        tar.extractall(dest, members=members, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
