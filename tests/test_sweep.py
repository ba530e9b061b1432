"""``lqflow sweep``: a grid of runs on Ray, resumable, fault-tolerant, equal to direct runs.

One 4-point sweep (tiny networks, 2 + 2 epochs, 20 co-simulated samples, no synthesis)
on a local Ray instance is shared by the tests that read it: its rows equal four direct
``lqflow run``s, re-running it runs nothing, and extending it on a second Ray instance
joined with ``--address`` runs only the new points. Failures (a point that raises, a
worker that dies) use a stand-in for the expensive part of a point.
"""

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

import lqir
from hwsim.cycles import network_timing
from lqflow.cli import main
from lqflow.cli_hardware import foldings_from_args
from lqflow.sweep import run_sweep
from lqflow.sweep_point import COLUMNS, evaluate_point, point_row
from lqflow.sweep_report import pareto_front
from lqflow.sweep_spec import KEYS, load_spec, spec_from_dict
from rtl.folding import network_cost

SPEC = """\
dataset = "digits"
arch = "mlp"
widths = [16]
quantizer = ["lq", "uniform"]
wbits = [1, 2]
abits = 2
seeds = 0
epochs = 2
qat_epochs = 2
target_fps = 100000
cosim_samples = 20
"""


def _rows(folder):
    with open(folder / "results.csv", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """The 4-point sweep, run once: (spec path, sweep folder, results.csv bytes, output)."""
    root = tmp_path_factory.mktemp("sweep")
    spec, out = root / "spec.toml", root / "out"
    spec.write_text(SPEC)
    assert main(["sweep", str(spec), "-o", str(out), "--workers", "2"]) == 0
    return spec, out, (out / "results.csv").read_bytes()


def test_sweep_rows_equal_direct_runs(sweep, tmp_path, one_thread):
    spec, out, _ = sweep
    points = load_spec(spec)[0].points()
    rows = _rows(out)
    assert list(rows[0]) == list(COLUMNS)
    assert [r["id"] for r in rows] == [p.id for p in points]
    assert [(r["quantizer"], r["wbits"]) for r in rows] == [("lq", "1"), ("lq", "2"), ("uniform", "1"), ("uniform", "2")]
    for row, point in zip(rows, points):
        assert (row["status"], row["error"], row["widths"], row["epochs"], row["target_fps"]) == (
            "ok", "", "16", "2", "100000.0")
        # the same options through lqflow run, steps 1-4, PyTorch on the sweep's one thread
        direct = tmp_path / point.id
        assert main(["run", "--widths", "16", "--quantizer", point.quantizer, "--wbits", str(point.wbits),
                     "--abits", "2", "--epochs", "2", "--qat-epochs", "2", "--seed", "0", "--no-rtl", "--quiet",
                     "-o", str(direct)]) == 0
        ladder = json.loads((direct / "results.json").read_text())["ladder"]
        for key in ("float_acc", "qat_acc", "hwsim_acc", "agreement"):
            assert float(row[key]) == ladder[key], (point.id, key)
        assert row["planes_equal"] == "true"
        mine, theirs = lqir.load(out / "points" / point.id / "model.lqir.npz"), lqir.load(direct / "model.lqir.npz")
        for a, b in zip(mine.layers, theirs.layers, strict=True):
            for key, arr in a.arrays().items():
                np.testing.assert_array_equal(arr, b.arrays()[key])
        # the folding lqflow run picks for 100,000 inferences/s at 150 MHz, its cycles and cost
        foldings = foldings_from_args(theirs, point.folding_args())[0]
        timing = network_timing(theirs, foldings)
        assert (int(row["ii"]), int(row["latency"])) == (timing.ii, timing.latency)
        assert int(row["fps"]) == round(150e6 / timing.ii)
        assert int(row["lut4_est"]) == network_cost(theirs, foldings).lut4
        assert (int(row["cosim_checked"]), int(row["mismatches"]), row["lut4"], row["fmax_mhz"]) == (20, 0, "", "")
        # the run folder came back from the worker, without the Verilator build tree
        folder = out / "points" / point.id
        for name in ("report.md", "training.png", "float/model.pt", "qat/config.json", "rtl/lqflow_top.v",
                     "rtl/lqflow_top.json", "sweep.log", "point.json"):
            assert (folder / name).is_file(), name
        assert not (folder / "cosim_build").exists()
        cosim = json.loads((folder / "results.json").read_text())["hardware"]["cosim"]
        assert (cosim["samples"], cosim["mismatches"], cosim["stress_mismatches"]) == (20, 0, 0)
        assert (cosim["ii"], cosim["latency"], cosim["clean_cycles"]) == (
            cosim["model_ii"], cosim["model_latency"], cosim["model_clean_cycles"])


def test_the_pareto_front_and_the_plot(sweep):
    _, out, _ = sweep
    doc = json.loads((out / "results.json").read_text())
    rows = doc["points"]
    assert doc["lut4"] == "lut4_est" and [r["id"] for r in pareto_front(rows)] == doc["pareto_front"]
    front = {r["id"] for r in rows if r["id"] in doc["pareto_front"]}
    assert front

    def beats(a, b):
        ge = a["hwsim_acc"] >= b["hwsim_acc"] and a["lut4_est"] <= b["lut4_est"] and a["fps"] >= b["fps"]
        return ge and (a["hwsim_acc"], a["lut4_est"], a["fps"]) != (b["hwsim_acc"], b["lut4_est"], b["fps"])

    for row in rows:   # the front: exactly the points no other point beats
        assert any(beats(o, row) for o in rows) == (row["id"] not in front), row["id"]
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "sweep.toml").read_text() == SPEC


def test_resuming_runs_nothing_and_rewrites_the_same_results(sweep, capsys):
    spec, out, first = sweep
    stamps = {p.name: (p / "point.json").stat().st_mtime_ns for p in (out / "points").iterdir()}
    assert main(["sweep", str(spec), "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "0 point(s) run, 4 already finished, 0 failed" in text and "Pareto front" in text
    assert (out / "results.csv").read_bytes() == first
    assert {p.name: (p / "point.json").stat().st_mtime_ns for p in (out / "points").iterdir()} == stamps


@contextmanager
def ray_head(num_cpus=1):
    """A second Ray instance, started as ``ray start --head`` on the loopback address (as a
    cluster's head node is); yields its address and stops exactly the processes it started."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray = Path(sys.executable).with_name("ray")
    # token authentication off for this loopback-only instance (a real cluster shares a token)
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    head = subprocess.Popen([str(ray), "start", "--head", "--block", f"--port={port}", "--node-ip-address=127.0.0.1",
                             f"--num-cpus={num_cpus}", "--include-dashboard=false", "--disable-usage-stats"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert head.poll() is None and time.monotonic() < deadline, "ray start --head did not come up"
                time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:
        os.killpg(head.pid, signal.SIGINT)      # ray start --block stops its processes on SIGINT
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()


def test_extending_the_sweep_on_a_joined_cluster_runs_only_new_points(sweep, tmp_path, capsys):
    _, out, first = sweep
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not a zip archive")
    wider = tmp_path / "wider.toml"
    wider.write_text(SPEC.replace('dataset = "digits"', f'dataset = ["digits", {json.dumps(str(broken))}]'))
    with ray_head() as address:
        assert main(["sweep", str(wider), "-o", str(out), "--address", address]) == 1
    text = capsys.readouterr().out
    assert f"on the Ray cluster at {address}" in text and "4 point(s) run, 4 already finished, 4 failed" in text
    rows = _rows(out)
    assert len(rows) == 8
    old = {r["id"]: r for r in csv.DictReader(first.decode().splitlines())}
    assert [r for r in rows if r["dataset"] == "digits"] == list(old.values())
    for row in rows[4:]:
        assert row["dataset"] == str(broken) and row["status"] == "failed" and row["hwsim_acc"] == ""
        assert row["error"] == (f"ValueError: Dataset file {broken} is not a readable .npz (not a zip archive: "
                                "File is not a zip file)")     # the driver's path, not the worker's copy
        assert f"failed: {row['id']}: ValueError" in text
        assert json.loads((out / "points" / row["id"] / "point.json").read_text())["status"] == "failed"
        assert "Traceback" in (out / "points" / row["id"] / "sweep.log").read_text()


def test_a_point_that_raises_or_whose_worker_dies_does_not_stop_the_others(tmp_path):
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"\x00" * 10)
    spec = spec_from_dict({"dataset": ["digits", str(broken)], "wbits": [1, 2], "epochs": 1, "qat_epochs": 1})
    points = spec.points()
    doomed = points[1].id
    marks = tmp_path / "attempts"
    marks.mkdir()

    def evaluate(point, dataset_bytes=None):
        # the whole point for the broken dataset (it raises inside); a worker that exits for
        # `doomed`; a finished stand-in row otherwise (the real work is tested above)
        import uuid

        (marks / f"{point.id}.{uuid.uuid4().hex}").touch()
        if point.dataset.endswith(".npz"):
            return evaluate_point(point, dataset_bytes)
        if point.id == doomed:
            os._exit(3)
        return {"id": point.id, "row": point_row(point), "archive": b"", "wall_s": 0.0, "host": "test"}

    result = run_sweep(spec, tmp_path / "out", workers=2, evaluate=evaluate)
    attempts = {p.id: len(list(marks.glob(f"{p.id}.*"))) for p in points}
    assert attempts == {p.id: 2 if p.id == doomed else 1 for p in points}   # one retry, then recorded
    status = {r["id"]: r["status"] for r in result.rows}
    assert status == {points[0].id: "ok", doomed: "failed", points[2].id: "failed", points[3].id: "failed"}
    assert result.failed == [doomed, points[2].id, points[3].id] and result.ran == [p.id for p in points]
    errors = {r["id"]: r["error"] for r in result.rows}
    assert errors[doomed].startswith("WorkerCrashedError (after one retry): ")
    assert errors[points[2].id].startswith(f"ValueError: Dataset file {broken} is not a readable .npz")
    rows = _rows(tmp_path / "out")
    assert [r["status"] for r in rows] == ["ok", "failed", "failed", "failed"]
    # failed points are tried again by the next run; finished ones are not
    again = run_sweep(spec, tmp_path / "out", workers=2, evaluate=evaluate)
    assert again.reused == [points[0].id] and again.ran == [p.id for p in points[1:]]


@pytest.mark.parametrize("text, message", [
    ('wbit = [1, 2]\n', "sweep spec: unknown key 'wbit'; did you mean 'wbits'?"),
    ('quantizer = ["lq"]\nabits = []\n', "sweep spec: abits: is an empty list"),
    ('wbits = "two"\n', "sweep spec: wbits: must be an integer from 1 to 8, not 'two'"),
    ('wbits = [1, 9]\n', "sweep spec: wbits: must be an integer from 1 to 8, not 9"),
    ('synth = "yes"\n', "sweep spec: synth: must be true or false, not 'yes'"),
    ('target_fps = [100000, "fast"]\n', "sweep spec: target_fps: must be a positive number (inferences/s), not 'fast'"),
    ('widths = 16\n', "sweep spec: widths: must be a list of hidden widths (or a list of such lists), not 16"),
    ('cosim_samples = 1\n', "sweep spec: cosim_samples: must be an integer of at least 2"),
    ('seeds = [0, 0]\n', "sweep spec: seeds: lists 0 twice"),
    ('target_fps = 200e6\n', "sweep spec: target_fps: 200,000,000 inferences/s needs more than one inference per cycle"),
    ('arch = "mlp\n', "not a valid TOML file"),
])
def test_a_malformed_spec_is_a_clear_error_naming_the_key(tmp_path, capsys, text, message):
    spec = tmp_path / "spec.toml"
    spec.write_text(text)
    assert main(["sweep", str(spec), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"lqflow sweep: error: {spec}: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_without_ray_sweep_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)     # import ray raises ImportError
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)
    assert main(["sweep", str(spec), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err == ("lqflow sweep: error: lqflow sweep runs its points on Ray, which is not installed: "
                   "pip install 'lqflow[sweep]' (from a checkout: pip install -e '.[sweep]')\n")
    assert not (tmp_path / "out").exists()


def test_point_ids_depend_on_every_option_and_nothing_else():
    spec = spec_from_dict({"wbits": [1, 2], "target_fps": [1e5, 1e6], "epochs": 3})
    ids = [p.id for p in spec.points()]
    assert ids == [p.id for p in spec_from_dict({"epochs": 3, "target_fps": [100000, 1000000],
                                                 "wbits": [1, 2]}).points()]
    assert len(set(ids)) == 4 and ids[0].startswith("digits-mlp-lq-w1a2-s0-100k-")
    assert ids[1].startswith("digits-mlp-lq-w1a2-s0-1M-")
    assert not set(ids) & {p.id for p in spec_from_dict({"wbits": [1, 2], "target_fps": [1e5, 1e6],
                                                         "epochs": 4}).points()}
    assert set(KEYS) == {"dataset", "arch", "widths", "quantizer", "scale", "wbits", "abits", "in_bits", "coef_bits",
                         "seeds", "epochs", "qat_epochs", "target_fps", "freq", "device", "synth", "cosim_samples"}
