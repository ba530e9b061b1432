"""lqflow.testing on real RTL.

* The README's example tests, extracted from README.md at test time (so they cannot
  drift) and run as a user runs them: ``python -m pytest tests/test_lqflow_rtl.py`` in a
  fresh folder holding ``model.lqir.npz``. They drive random gaps, random backpressure
  and a custom stall pattern under Verilator and Icarus, and call ``assert_rtl_matches``.
* ``testbench_checks.py`` (cocotb) under Verilator and Icarus: custom stall patterns stall
  exactly as asked, a seed reproduces every cycle, and a corrupted expectation, a
  missing beat and an extra beat fail with messages naming them.
* ``assert_rtl_matches`` against a corrupted hwsim answer: the ``AssertionError`` names
  the first mismatching sample, the logit and the layer foldings.

Builds are shared: the corrupted run and the Verilator checks use one build folder.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lqir
from hwsim import Simulator
from hwsim.cycles import Folding
from lqflow.testing import TOP_NAME, assert_rtl_matches, run_cocotb, write_top
from lqir.random_models import random_dense_model
from tests.test_testing import readme_files

HERE = Path(__file__).resolve().parent
FOLDINGS = [Folding(4, 6, 2, 3), Folding(2, 4, 1, 2)]


def readme_model(levels=6, features=13):
    """A random model whose thresholds sit on accumulators the README's own inputs reach
    (the examples draw them with these seeds and sizes)."""
    bench = np.random.default_rng(0).integers(0, levels, size=(24, features))     # bench_lqflow_top.py
    one_call = np.random.default_rng(1).integers(0, levels, size=(16, features))  # test_lqflow_rtl.py
    return random_dense_model(np.random.default_rng(14), [features, 9, 5], 2, 2, in_levels=levels,
                              inputs=np.concatenate([bench, one_call]))


def test_readme_examples_run_as_written(tmp_path):
    (tmp_path / "tests").mkdir()
    for name, code in readme_files().items():
        (tmp_path / "tests" / name).write_text(code)
    lqir.save(readme_model(), tmp_path / "model.lqir.npz")       # where the README's test looks by default
    env = {k: v for k, v in os.environ.items() if k not in ("LQFLOW_MODEL", "PYTEST_ADDOPTS")}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--basetemp={tmp_path / 'runs'}",
               "tests/test_lqflow_rtl.py"]
    out = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1800, check=False)
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-3000:]
    assert "3 passed" in out.stdout, out.stdout[-3000:]
    for simulator in ("verilator", "icarus"):
        results = next((tmp_path / "runs").glob(f"lqflow*/{simulator}/results.xml")).read_text()
        for test in ("logits_and_cycles_match", "random_gaps_and_backpressure", "my_stall_pattern"):
            assert f'name="{test}"' in results and "<failure" not in results


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A small model with lanes on both sides, inputs it reaches ties on, saved to a folder."""
    rng = np.random.default_rng(21)
    x = rng.integers(0, 5, size=(10, 11))
    model = random_dense_model(rng, [11, 8, 4], 3, 2, in_levels=5, inputs=x)
    folder = tmp_path_factory.mktemp("small")
    lqir.save(model, folder / "model.lqir.npz")
    np.save(folder / "x.npy", x)
    return model, x, folder


def test_assert_rtl_matches_names_the_first_mismatch(small, monkeypatch):
    model, x, folder = small
    right = Simulator(model).run(x)
    real_run = Simulator.run

    def corrupted(self, *args, **kwargs):
        out = real_run(self, *args, **kwargs).copy()
        out[3, 2] += 1
        return out

    monkeypatch.setattr(Simulator, "run", corrupted)
    with pytest.raises(AssertionError) as info:
        assert_rtl_matches(model, x, FOLDINGS, build_dir=folder / "verilator")
    message = str(info.value)
    assert message.startswith("RTL != hwsim under verilator (10 samples):\n"), message
    assert (f"clean phase: 1 of 10 samples differ from the expected values, first: sample 3\n"
            f"    sample 3: logit 2: expected {right[3, 2] + 1}, got {right[3, 2]}") in message, message
    assert "stress phase (random input gaps, output backpressure): 1 of 10 samples differ" in message, message
    assert "foldings: fc0 PE 4 SIMD 6 lanes 3 in / 2 out, fc1 PE 2 SIMD 4 lanes 2 in / 1 out" in message, message
    assert f"build folder: {folder / 'verilator'}" in message


@pytest.mark.parametrize("simulator", ["verilator", "icarus"])
def test_driver_monitor_and_scoreboard_on_rtl(small, simulator):
    model, _, folder = small
    build = folder / simulator
    verilog = write_top(model, build / "rtl", FOLDINGS)      # assert_rtl_matches's Verilog: the build is reused
    run = run_cocotb([verilog], TOP_NAME, HERE / "testbench_checks.py", build, simulator=simulator,
                     extra_env={"LQFLOW_MODEL": folder / "model.lqir.npz", "LQFLOW_INPUTS": folder / "x.npy",
                                "LQFLOW_TOP_JSON": verilog.with_suffix(".json")})
    assert run.passed and run.tests == 4
