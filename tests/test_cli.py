"""The lqflow command line: the sim contract, run end to end, and clear errors."""

import json

import numpy as np
import pytest

from export import ir
from export.cli import main
from export.random_model import random_dense_model
from hwsim import Simulator


@pytest.fixture
def model_file(tmp_path, rng):
    model = random_dense_model(rng, [10, 6, 3], 2, 2, in_levels=5)
    return model, ir.save(model, tmp_path / "m.lqir.npz")


@pytest.mark.parametrize("mode", ["fast", "bitplane"])
def test_sim_contract(model_file, tmp_path, rng, mode):
    model, path = model_file
    x = rng.integers(0, 5, size=(9, 10)).astype(np.int16)
    np.save(tmp_path / "x.npy", x)
    assert main(["sim", str(path), "--inputs", str(tmp_path / "x.npy"), "--save", str(tmp_path / "out.npy"),
                 "--mode", mode]) == 0
    out = np.load(tmp_path / "out.npy", allow_pickle=False)
    assert out.dtype == np.int64 and out.shape == (9, 3)
    np.testing.assert_array_equal(out, Simulator(model).run(x))


def test_sim_rejects_a_corrupt_model(tmp_path, capsys):
    bad = tmp_path / "bad.lqir.npz"
    bad.write_bytes(b"garbage")
    assert main(["sim", str(bad), "--inputs", str(bad)]) == 2
    assert "not an lqir file" in capsys.readouterr().err


def test_sim_rejects_pickled_inputs(model_file, tmp_path, capsys):
    _, path = model_file
    np.save(tmp_path / "x.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert main(["sim", str(path), "--inputs", str(tmp_path / "x.npy")]) == 2
    assert "not a readable .npy" in capsys.readouterr().err


def test_sim_names_bad_input_shapes(model_file, tmp_path, capsys):
    _, path = model_file
    np.save(tmp_path / "x.npy", np.zeros((2, 11), np.int64))
    assert main(["sim", str(path), "--inputs", str(tmp_path / "x.npy")]) == 2
    assert "shape must be [B, 10]" in capsys.readouterr().err


def test_run_train_export_sim_end_to_end(tmp_path, capsys):
    folder = tmp_path / "run"
    args = ["--epochs", "3", "--qat-epochs", "3", "--widths", "32", "--quiet"]
    assert main(["run", *args, "-o", str(folder)]) == 0
    text = capsys.readouterr().out
    assert "Verification ladder" in text and "fast == bit-plane" in text
    for name in ("model.lqir.npz", "report.md", "training.png", "results.json", "float/model.pt",
                 "qat/config.json"):
        assert (folder / name).is_file(), name
    results = json.loads((folder / "results.json").read_text())
    assert results["ladder"]["planes_equal"] is True
    assert "## Verification ladder" in (folder / "report.md").read_text()
    # export again from the saved checkpoint: the same IR, integer for integer
    assert main(["export", str(folder / "qat"), "-o", str(tmp_path / "again.lqir.npz")]) == 0
    a, b = ir.load(folder / "model.lqir.npz"), ir.load(tmp_path / "again.lqir.npz")
    for la, lb in zip(a.layers, b.layers):
        for key, arr in la.arrays().items():
            np.testing.assert_array_equal(arr, lb.arrays()[key])
    capsys.readouterr()
    assert main(["sim", str(folder / "model.lqir.npz"), "--dataset", "digits"]) == 0
    line = capsys.readouterr().out
    assert f"accuracy {results['ladder']['hwsim_acc']:.2%}" in line


def test_export_of_a_missing_checkpoint(tmp_path, capsys):
    assert main(["export", str(tmp_path / "none"), "-o", str(tmp_path / "m.lqir.npz")]) == 2
    assert "is not a checkpoint folder" in capsys.readouterr().err
