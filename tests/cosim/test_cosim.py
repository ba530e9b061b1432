"""cocotb benches under Verilator: the generated Verilog against hwsim, integer for integer.

Each build gets its own build_dir. The digits test set runs in full, with random input
gaps and output backpressure after a clean phase whose cycles must equal the model:
latency, II and the whole phase (first input to last output: latency + (n - 1)·II).
The bench itself fails on any extra output beat after the last expected one. Random
models put thresholds on accumulators the bench's inputs reach (ties), with 4-bit
weights among them.
"""

import os
import subprocess

import numpy as np
import pytest

from lqir import DenseLayer
from export.lower import lower
from lqir.random_models import random_dense_model, random_mac_layer
from hwsim import Simulator
from hwsim.cycles import Folding
from rtl.cosim import VERILATOR_WARNINGS, cosim_engine, cosim_network
from rtl.folding import fold_for_rate
from rtl.toolchain import verilator_env
from rtl.verilog import choose_foldings, write_network


def _check(res):
    assert res.mismatches == [] and res.stress_mismatches == []
    np.testing.assert_array_equal(res.outputs, res.reference)
    assert res.latency == res.model_latency
    assert res.ii == res.model_ii
    assert res.clean_cycles == res.model_clean_cycles
    assert res.extra_beats == {"clean": 0, "stress": 0} and res.timing_errors == []


@pytest.mark.parametrize("case", [
    dict(out="threshold", wbits=4, abits=2, in_f=37, out_f=11, pe=4, simd=8, lanes=2, in_lanes=4),
    dict(out="accumulate", wbits=3, abits=1, in_f=20, out_f=7, pe=3, simd=5, lanes=1, in_lanes=1),
])
def test_engine_bench(tmp_path, case):
    rng = np.random.default_rng(case["in_f"])
    x = rng.integers(0, 1 << case["abits"], size=(40, case["in_f"]))
    layer = random_mac_layer(rng, DenseLayer, "fc", weight_bits=case["wbits"], in_bits=case["abits"],
                             in_levels=1 << case["abits"], output=case["out"],
                             out_levels=4 if case["out"] == "threshold" else None,
                             in_features=case["in_f"], out_features=case["out_f"], inputs=x)
    res = cosim_engine(layer, Folding(case["pe"], case["simd"], case["lanes"], case["in_lanes"]), x, tmp_path)
    _check(res)


def test_digits_network_full_test_set(tmp_path, trained_mlp, digits):
    _, qat_net = trained_mlp
    model = lower(qat_net, digits.classes)
    foldings, _ = fold_for_rate(model, 1_000_000, 150, "25k")      # lqflow run's default target
    # as lqflow run does: the Verilog written once, for synthesis and co-simulation both
    verilog, _ = write_network(model, foldings, tmp_path / "rtl")
    res = cosim_network(model, digits.x_test, foldings, tmp_path / "build", stress=True, seed=3, verilog=verilog)
    assert res.samples == len(digits.y_test) == 360
    _check(res)
    hw = Simulator(model).run(digits.x_test)
    np.testing.assert_array_equal(res.outputs[:, :-1], hw)                 # every logit
    np.testing.assert_array_equal(res.outputs[:, -1], hw.argmax(axis=1))  # predicted class


@pytest.mark.parametrize("seed, wbits, in_affine", [(17, 4, "random"), (12, 1, None), (13, 3, None)])
def test_fuzz_random_models(tmp_path, seed, wbits, in_affine):
    rng = np.random.default_rng(seed)
    sizes = [int(s) for s in rng.integers(1, 24, size=int(rng.integers(2, 4)))]
    levels = int(rng.integers(2, 17))
    x = rng.integers(0, levels, size=(25, sizes[0]))
    model = random_dense_model(rng, sizes, wbits, int(rng.integers(1, 5)), in_levels=levels, inputs=x,
                               in_affine=in_affine)
    foldings = [Folding(int(rng.integers(1, layer.out_features + 1)), int(rng.integers(1, layer.in_features + 1)))
                for layer in model.mac_layers()]
    _check(cosim_network(model, x, foldings, tmp_path, stress=True, seed=seed))


def test_generated_verilog_lints_clean(tmp_path, rng):
    model = random_dense_model(rng, [30, 12, 5], 2, 3)
    path, _ = write_network(model, choose_foldings(model), tmp_path)
    env = {**os.environ, **verilator_env()}
    # -Wall less PROCASSINIT (Yosys gives registers their FPGA power-up value in the declaration)
    # and less the style warnings the build silences too (VERILATOR_WARNINGS).
    out = subprocess.run(["verilator", "--lint-only", "-Wall", "-Wno-PROCASSINIT", *VERILATOR_WARNINGS, str(path)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
