"""The lqflow command line: the sim contract, run end to end, and clear errors."""

import json
import os
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import lqir as ir
from lqflow.cli import main
from lqflow.priority import BESIDE_SYNTHESIS_NICENESS
from lqir.random_models import random_cnn_model, random_dense_model
from hwsim import Simulator


@pytest.fixture
def model_file(tmp_path, rng):
    model = random_dense_model(rng, [10, 6, 3], 2, 2, in_levels=5)
    return model, ir.save(model, tmp_path / "m.lqir.npz")


@pytest.mark.parametrize("mode, options", [
    ("fast", []), ("bitplane", []), ("fast", ["--kernels", "numpy", "--threads", "1"]),
    ("fast", ["--kernels", "numba", "--threads", "2"]),
])
def test_sim_contract(model_file, tmp_path, rng, mode, options):
    model, path = model_file
    x = rng.integers(0, 5, size=(9, 10)).astype(np.int16)
    np.save(tmp_path / "x.npy", x)
    assert main(["sim", str(path), "--inputs", str(tmp_path / "x.npy"), "--save", str(tmp_path / "out.npy"),
                 "--mode", mode, *options]) == 0
    out = np.load(tmp_path / "out.npy", allow_pickle=False)
    assert out.dtype == np.int64 and out.shape == (9, 3)
    np.testing.assert_array_equal(out, Simulator(model).run(x, trace=True)[0])


@pytest.mark.parametrize("option, value", [("--threads", "0"), ("--threads", "two"), ("--kernels", "gpu")])
def test_sim_options_are_checked(model_file, option, value, capsys):
    _, path = model_file
    with pytest.raises(SystemExit) as stop:
        main(["sim", str(path), option, value])
    assert stop.value.code == 2
    assert f"argument {option}" in capsys.readouterr().err


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
    args = ["--epochs", "3", "--qat-epochs", "3", "--widths", "32", "--quiet", "--no-synth", "--pe", "4"]
    assert main(["run", *args, "-o", str(folder)]) == 0
    text = capsys.readouterr().out
    assert "Verification ladder" in text and "fast == bit-plane" in text and "RTL (Verilator) == hwsim" in text
    for name in ("model.lqir.npz", "report.md", "training.png", "results.json", "float/model.pt",
                 "qat/config.json", "rtl/lqflow_top.v", "rtl/lqflow_top.json"):
        assert (folder / name).is_file(), name
    results = json.loads((folder / "results.json").read_text())
    assert results["ladder"]["planes_equal"] is True
    cosim = results["hardware"]["cosim"]
    assert cosim["samples"] == 360 and cosim["mismatches"] == 0 and cosim["stress_mismatches"] == 0
    assert (cosim["ii"], cosim["latency"]) == (cosim["model_ii"], cosim["model_latency"])
    assert cosim["clean_cycles"] == cosim["model_clean_cycles"] and cosim["extra_beats"] == 0
    report = (folder / "report.md").read_text()
    assert "## Verification ladder" in report and "## Hardware" in report
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


def test_run_checks_hls4ml_nicer_while_synthesis_runs(tmp_path, monkeypatch):
    """lqflow run: with synthesis pending in its background thread (at the caller's
    priority), step 6 runs nicer (on Linux) and the run waits for synthesis. Stand-ins for
    steps 5 and 6 and a one-epoch training keep this fast."""
    from dataclasses import replace

    import lqflow.hardware as hw
    from lqflow.flow import RunConfig, run

    def niceness():
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    seen, caller = {}, niceness()

    def fake_steps(model, x, folder, log, background, choose_foldings):
        return hw.HardwareResult(skipped="stand-in", pending=background.submit(lambda: seen.setdefault("synth", niceness())))

    def fake_hls(model, x, folder, log):
        seen["hls"] = niceness()
        return hw.HlsStepResult(skipped="stand-in")

    monkeypatch.setattr(hw, "hardware_steps", fake_steps)
    monkeypatch.setattr(hw, "hls_step", fake_hls)
    monkeypatch.setattr(hw, "_with_synth", lambda result, report: replace(result, pending=None))
    cfg = RunConfig(widths=(8,), float_epochs=1, qat_epochs=1)
    result, _ = run(cfg, tmp_path / "run", progress=False, hardware={"choose_foldings": None}, log=lambda *a: None)
    nicer = min(caller + BESIDE_SYNTHESIS_NICENESS, 19) if sys.platform.startswith("linux") else caller
    assert seen == {"synth": caller, "hls": nicer}
    assert result.hardware.pending is None and niceness() == caller


def test_export_of_a_missing_checkpoint(tmp_path, capsys):
    assert main(["export", str(tmp_path / "none"), "-o", str(tmp_path / "m.lqir.npz")]) == 2
    assert "is not a checkpoint folder" in capsys.readouterr().err


def test_verilog_cosim_and_synth_commands(model_file, tmp_path, rng, capsys):
    model, path = model_file
    out = tmp_path / "hw"
    assert main(["verilog", str(path), "-o", str(out), "--pe", "3", "2", "--simd", "4"]) == 0
    info = json.loads((out / "lqflow_top.json").read_text())
    assert [(l["pe"], l["simd"]) for l in info["layers"]] == [(3, 4), (2, 4)]
    x = rng.integers(0, 5, size=(12, 10))
    np.save(tmp_path / "x.npy", x)
    capsys.readouterr()
    assert main(["cosim", str(path), "--inputs", str(tmp_path / "x.npy"), "--save", str(tmp_path / "rtl.npy"),
                 "--pe", "3", "2", "--simd", "4", "--build-dir", str(tmp_path / "build")]) == 0
    text = capsys.readouterr().out
    assert "mismatches against hwsim: 0 (clean), 0" in text
    np.testing.assert_array_equal(np.load(tmp_path / "rtl.npy"), Simulator(model).run(x))
    assert main(["synth", str(out)]) == 0
    synth = json.loads((out / "synth" / "synth.json").read_text())
    assert synth["lut4"] > 0 and synth["ff"] > 0 and synth["fmax_mhz"] > 0
    # every block RAM read and every multiplier is registered inside the hard block
    # (rtl/netlist.py): the engine's registers there are plain, and the pass found them all
    cells = json.loads((out / "synth" / "lqflow_top.ecp5.json").read_text())["modules"]["lqflow_top"]["cells"]
    rams = [c for c in cells.values() if c["type"] == "DP16KD"]
    dsps = [c for c in cells.values() if c["type"] == "MULT18X18D"]
    assert rams and all("OUTREG" in (c["parameters"]["REGMODE_A"], c["parameters"]["REGMODE_B"]) for c in rams)
    assert all(c["parameters"].get(f"REG_{reg}_CLK") == "CLK0" for c in dsps for reg in ("INPUTA", "INPUTB", "OUTPUT"))
    assert synth["hard_block_ff"] > 0
    assert synth["binary_macs_per_inference"] == info["binary_macs_per_inference"] == sum(
        layer.in_features * layer.out_features * layer.weight_bits * layer.in_bits for layer in model.mac_layers())
    ii = info["initiation_interval_cycles"]
    assert synth["inferences_per_s"] == round(synth["fmax_mhz"] * 1e6 / ii)
    assert synth["macs_per_lut_cycle"] == round(synth["binary_macs_per_inference"] / (ii * synth["pnr_lut4"]), 4)
    assert "inferences/s" in capsys.readouterr().out


def test_verilog_target_fps_reaches_its_rate(model_file, tmp_path, capsys):
    _, path = model_file
    assert main(["verilog", str(path), "-o", str(tmp_path / "a"), "--target-fps", "2000000", "--freq", "100"]) == 0
    info = json.loads((tmp_path / "a" / "lqflow_top.json").read_text())
    assert info["initiation_interval_cycles"] <= 50          # 100 MHz / 2 M/s
    assert "folding for 2,000,000 inferences/s at 100 MHz" in capsys.readouterr().out
    assert main(["verilog", str(path), "-o", str(tmp_path / "b"), "--target-fps", "1000", "--pe", "2"]) == 2
    assert "not both" in capsys.readouterr().err


def test_folding_options_are_checked(model_file, tmp_path, capsys):
    _, path = model_file
    assert main(["verilog", str(path), "-o", str(tmp_path), "--pe", "1", "2", "3"]) == 2
    assert "--pe takes one value or one per MAC layer (2)" in capsys.readouterr().err
    # two weight planes take two compute cycles per vector, however wide the folding
    assert main(["verilog", str(path), "-o", str(tmp_path), "--target-ii", "1"]) == 2
    assert "no folding reaches an initiation interval of 1 cycles" in capsys.readouterr().err


def test_synth_of_a_folder_without_verilog(tmp_path, capsys):
    assert main(["synth", str(tmp_path)]) == 2
    assert "write them with 'lqflow verilog'" in capsys.readouterr().err


def test_verilog_default_folding_and_device(model_file, tmp_path, capsys):
    """No folding options: 1 M inferences/s when it fits, on the smallest ECP5 it fits (recorded)."""
    _, path = model_file
    assert main(["verilog", str(path), "-o", str(tmp_path / "mlp")]) == 0
    assert "folding for 1,000,000 inferences/s at 150 MHz" in capsys.readouterr().out
    assert json.loads((tmp_path / "mlp" / "lqflow_top.json").read_text())["device"] == "25k"
    rng = np.random.default_rng(4)
    cnn = random_cnn_model(rng, (1, 8, 8), [(4, 3, 1, 1, (2, 2))], 2, 2, in_levels=17)
    ir.save(cnn, tmp_path / "cnn.lqir.npz")
    assert main(["verilog", str(tmp_path / "cnn.lqir.npz"), "-o", str(tmp_path / "cnn")]) == 0
    out = capsys.readouterr().out
    assert "1,000,000 inferences/s is out of this model's reach" in out and "(for the 25k device)" in out
    info = json.loads((tmp_path / "cnn" / "lqflow_top.json").read_text())
    assert info["initiation_interval_cycles"] == 576            # 64 pixels × 9 taps, one value per beat
    assert [layer["op"] for layer in info["layers"]] == ["conv2d", "dense"]


def test_run_synthesizes_beside_the_cosimulation(tmp_path, monkeypatch, rng):
    """lqflow run's step 5 with a background executor: synthesis is handed to it, with
    absolute paths (hls4ml may change the working directory meanwhile), the co-simulation
    runs meanwhile, nicer (on Linux), on the same Verilog file, and the result carries the
    synthesis figures once finished. Both tools are stand-ins here; the real ones run in
    test_verilog_cosim_and_synth_commands."""
    from concurrent.futures import ThreadPoolExecutor
    from types import SimpleNamespace

    import rtl.cosim
    import rtl.synth
    from hwsim.cycles import Folding
    from lqflow.hardware import hardware_steps
    from lqir.random_models import random_dense_model

    model = random_dense_model(rng, [6, 4, 3], 2, 2)
    events, seen, caller = [], {}, os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    def niceness():
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    def fake_synthesize(verilog, out_dir, device, target_mhz, description):
        events.append(("synth", verilog.is_absolute() and out_dir.is_absolute(), device, target_mhz))
        seen["synth"] = (verilog, niceness())
        return rtl.synth.SynthReport(device="LFE5U-25F", lut4=100, ccu2c=10, ff=90, hard_block_ff=5, bram=2,
                                     dsp=1, lutram=0, pnr_lut4=120, fmax_mhz=150.0, target_mhz=target_mhz,
                                     yosys_s=1.0, pnr_s=2.0)

    def fake_cosim(model, x, foldings, build_dir, stress, verilog):
        events.append(("cosim",))
        seen["cosim"] = (Path(verilog).resolve(), niceness())
        return SimpleNamespace(samples=len(x), mismatches=[], stress_mismatches=[], latency=9, model_latency=9,
                               ii=4, model_ii=4, clean_cycles=40, model_clean_cycles=40, extra_beats={},
                               unresolved=[], samples_per_s=1.0, build_s=0.0)

    monkeypatch.setattr(rtl.synth, "synthesize", fake_synthesize)
    monkeypatch.setattr(rtl.cosim, "cosim_network", fake_cosim)
    monkeypatch.chdir(tmp_path)
    foldings = [Folding(2, 2), Folding(1, 2)]
    with ThreadPoolExecutor(max_workers=1) as background:
        result = hardware_steps(model, np.zeros((3, 6), np.int64), Path("run"), lambda m: (foldings, "given", "25k"),
                                freq_mhz=120.0, background=background)
        assert result.pending is not None and result.synth is None
        done = result.finished()
    assert ("synth", True, "25k", 120.0) in events and ("cosim",) in events
    assert done.pending is None and done.synth["pnr_lut4"] == 120 and done.synth["hard_block_ff"] == 5
    assert done.synth["inferences_per_s"] == round(150e6 / done.description["initiation_interval_cycles"])
    assert ["Fmax", "150.0 MHz"] in done.synth_rows
    assert seen["cosim"][0] == seen["synth"][0] == (tmp_path / "run" / "rtl" / "lqflow_top.v").resolve()
    nicer = min(caller + BESIDE_SYNTHESIS_NICENESS, 19) if sys.platform.startswith("linux") else caller
    assert (seen["synth"][1], seen["cosim"][1]) == (caller, nicer)
