"""The generated Verilog under a second, 4-state, event-driven simulator (Icarus Verilog):
the same integers and cycles as under Verilator, and no X on any port after reset."""

import numpy as np
import pytest
from amaranth.back import verilog as amaranth_verilog

from export.lower import lower
from hwsim.cycles import Folding
from lqir.random_models import random_dense_model
from rtl.cosim import cosim_network
from rtl.folding import fold_for_rate


def _check(res):
    assert res.unresolved == []
    assert res.mismatches == [] and res.stress_mismatches == []
    np.testing.assert_array_equal(res.outputs, res.reference)
    assert (res.latency, res.ii, res.clean_cycles) == (res.model_latency, res.model_ii, res.model_clean_cycles)
    assert res.extra_beats == {"clean": 0, "stress": 0} and res.timing_errors == []


def test_digits_network_at_a_million_per_second_under_icarus(tmp_path, trained_mlp, digits):
    _, qat_net = trained_mlp
    model = lower(qat_net, digits.classes)
    foldings, _ = fold_for_rate(model, 1_000_000, 150, "25k")
    res = cosim_network(model, digits.x_test[:40], foldings, tmp_path, stress=True, seed=5, simulator="icarus")
    _check(res)


def test_random_model_with_wide_lanes_under_icarus(tmp_path):
    rng = np.random.default_rng(5)
    model = random_dense_model(rng, [12, 8, 4], 4, 2)
    x = rng.integers(0, model.input.levels, size=(20, 12))
    _check(cosim_network(model, x, [Folding(4, 6, 2, 3), Folding(2, 4, 1, 2)], tmp_path, simulator="icarus"))


def test_x_after_reset_is_caught(tmp_path, monkeypatch):
    """Amaranth's own writer keeps `always @*` blocks that Icarus never runs: the bench says so."""
    import rtl.verilog

    monkeypatch.setattr(rtl.verilog, "to_verilog",
                        lambda component, name: amaranth_verilog.convert(component, name=name, emit_src=False))
    rng = np.random.default_rng(5)
    model = random_dense_model(rng, [12, 8, 4], 2, 2)
    x = rng.integers(0, model.input.levels, size=(4, 12))
    res = cosim_network(model, x, [Folding(4, 6, 2, 2), Folding(2, 4, 1, 2)], tmp_path, stress=False,
                        simulator="icarus")
    assert "o__valid" in res.unresolved


def test_missing_icarus_is_a_clear_error(tmp_path, monkeypatch):
    from rtl import toolchain

    monkeypatch.setattr(toolchain.shutil, "which", lambda name, *a, **k: None)
    model = random_dense_model(np.random.default_rng(0), [4, 3], 1, 1)
    with pytest.raises(toolchain.ToolchainError, match="apt-get install iverilog"):
        cosim_network(model, np.zeros((2, 4), np.int64), [Folding(1, 1)], tmp_path, simulator="icarus")
