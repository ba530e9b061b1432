"""The streaming engine and the network top in Amaranth's simulator: every integer equals
hwsim's, and every input and output transfer happens on the cycle the model predicts."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim import Simulator, run_layer
from hwsim.cycles import Folding, engine_schedule, layer_timing, network_timing
from lqir import DenseLayer
from lqir.random_models import random_dense_model, random_mac_layer
from rtl import ArgmaxCollector, DenseEngine, NetworkTop
from tests.stream_bench import beats_of, drive, engine_outputs, model_transfers, pack, unpack

STALLS = dict(ready=lambda k: k % 3 != 1, gap=lambda k: k % 5 == 2)


def _layer(rng, output, encoding, wbits, abits, in_f, out_f, inputs=None):
    """A random layer; with ``inputs``, thresholds on accumulators those inputs reach (ties)."""
    return random_mac_layer(rng, DenseLayer, "fc", weight_bits=wbits, in_bits=abits, in_levels=1 << abits,
                            output=output, out_levels=4 if output == "threshold" else None,
                            weight_encoding=encoding, in_features=in_f, out_features=out_f, inputs=inputs)


def _run_engine(layer, folding, x, stalls):
    dut = DenseEngine(layer, folding)
    schedule = engine_schedule(layer, folding)
    beats = beats_of(x, folding.in_lanes, dut.geometry.in_width)
    kwargs = STALLS if stalls else {}
    got, ins, outs = drive(dut, beats, len(x) * schedule.out_beats, **kwargs)
    model = model_transfers(schedule, len(beats), len(x) * schedule.out_beats, **kwargs)
    values = engine_outputs(got, schedule, folding, layer.out_features, dut.field, layer.output == "accumulate")
    return values, (ins, outs), model


CASES = [
    ("accumulate", "pm1", 2, 2, 13, 5, Folding(2, 4)),
    ("threshold", "bin", 2, 2, 16, 8, Folding(8, 16, 2, 2)),
    ("threshold", "pm1", 1, 3, 7, 6, Folding(4, 2, 2, 1)),
    ("accumulate", "bin", 3, 1, 9, 4, Folding(2, 3, 1, 3)),
    ("accumulate", "pm1", 1, 1, 1, 1, Folding(1, 1)),
    ("threshold", "pm1", 2, 2, 20, 12, Folding(6, 8, 3, 4)),
    ("threshold", "pm1", 4, 2, 10, 7, Folding(7, 5, 7, 5)),     # 4-bit weights, one group, one beat in
    ("threshold", "bin", 1, 3, 1, 1, Folding(1, 1)),            # one-cycle groups: compute laps the sum buffers
    ("threshold", "pm1", 2, 2, 11, 70, Folding(1, 2, 1, 2)),    # 840 weight words: two banks of 512
]


@pytest.mark.parametrize("stalls", [False, True], ids=["clean", "stalls"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}-W{c[2]}A{c[3]}-{c[4]}x{c[5]}-{c[6]}")
def test_engine_equals_hwsim_on_the_modelled_cycles(rng, case, stalls):
    *shape, folding = case
    x = rng.integers(0, 1 << shape[3], size=(10, shape[4]))
    layer = _layer(rng, *shape, inputs=x)
    values, transfers, model = _run_engine(layer, folding, x, stalls)
    np.testing.assert_array_equal(values, run_layer(layer, x)[1])
    assert transfers == model


@given(seed=st.integers(0, 2**32 - 1), wbits=st.integers(1, 4), abits=st.integers(1, 3),
       in_f=st.integers(1, 14), out_f=st.integers(1, 9), pe=st.integers(1, 6), simd=st.integers(1, 8),
       units=st.integers(1, 3), lanes=st.integers(1, 4), output=st.sampled_from(["threshold", "accumulate"]),
       encoding=st.sampled_from(["pm1", "bin"]))
@settings(max_examples=12, deadline=None)
def test_random_engines_and_foldings(seed, wbits, abits, in_f, out_f, pe, simd, units, lanes, output, encoding):
    rng = np.random.default_rng(seed)
    pe = min(pe, out_f) // units * units or units
    simd = max(simd, lanes) // lanes * lanes
    x = rng.integers(0, 1 << abits, size=(3, in_f))
    layer = _layer(rng, output, encoding, wbits, abits, in_f, out_f, inputs=x)
    folding = Folding(pe, simd, units, lanes)
    values, transfers, model = _run_engine(layer, folding, x, stalls=bool(seed & 1))
    np.testing.assert_array_equal(values, run_layer(layer, x)[1])
    assert transfers == model


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_deep_weight_memories_are_banked(rng):
    """The case above that needs two weight banks has them: the test covers the bank select."""
    from rtl.engine import WEIGHT_BANK
    from rtl.images import weight_image

    layer = _layer(rng, "threshold", "pm1", 2, 2, 11, 70)
    dut = DenseEngine(layer, Folding(1, 2, 1, 2))
    assert WEIGHT_BANK < len(weight_image(layer, dut.geometry)) <= 2 * WEIGHT_BANK


def test_engine_overlaps_loading_computing_and_emitting(rng):
    """II is the busiest process, not the sum: the next vector loads while this one computes."""
    layer = _layer(rng, "threshold", "pm1", 2, 2, 32, 16)
    timing = layer_timing(layer, Folding(4, 8, 2, 1))
    assert timing.ii == max(timing.in_beats, timing.compute_cycles, timing.finalize_cycles)
    assert timing.latency > timing.ii


def test_collector_takes_the_first_index_on_ties_across_lanes():
    dut = ArgmaxCollector(5, 8, lanes=2)
    rows = [[3, 7, 7, -2, 1], [-5, -5, -9, -5, -6], [0, 0, 0, 1, 1]]
    beats = [pack(row[k:k + 2], 8) for row in rows for k in range(0, 5, 2)]
    got, _, _ = drive(dut, beats, 3)
    for word, row in zip(got, rows):
        assert unpack(word, 5, 8, signed=True) == row
        assert word >> 40 == int(np.argmax(row))


@given(seed=st.integers(0, 2**32 - 1), wbits=st.integers(1, 4), abits=st.integers(1, 3),
       sizes=st.lists(st.integers(1, 12), min_size=2, max_size=4), pe=st.integers(1, 5), simd=st.integers(1, 7),
       units=st.integers(1, 2))
@settings(max_examples=8, deadline=None)
def test_network_top_equals_hwsim_and_the_cycle_model(seed, wbits, abits, sizes, pe, simd, units):
    rng = np.random.default_rng(seed)
    model = random_dense_model(rng, sizes, wbits, abits)
    foldings, lanes = [], 1
    for layer in model.mac_layers():
        p = max(min(pe, layer.out_features) // units * units, units)
        s = -(-min(simd, layer.in_features) // lanes) * lanes
        foldings.append(Folding(p, s, units, lanes))
        lanes = units
    x = rng.integers(0, model.input.levels, size=(3, sizes[0]))
    expected = Simulator(model).run(x)
    top = NetworkTop(model, foldings)
    acc_bits, classes = model.layers[-1].acc_bits, len(model.classes)
    got, ins, outs = drive(top, beats_of(x, foldings[0].in_lanes, top.in_width), 3)
    np.testing.assert_array_equal([unpack(w, classes, acc_bits, signed=True) for w in got], expected)
    assert [w >> (classes * acc_bits) for w in got] == expected.argmax(axis=1).tolist()
    timing = network_timing(model, foldings, inferences=3)
    assert outs[0] - ins[0] == timing.latency
    assert outs[2] - outs[1] == timing.ii


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_lanes_must_chain(rng):
    model = random_dense_model(rng, [6, 4, 3], 2, 2)
    with pytest.raises(ValueError, match="out_lanes must equal the next in_lanes"):
        NetworkTop(model, [Folding(4, 6, 2, 1), Folding(3, 4, 1, 1)])


@pytest.mark.parametrize("bad, message", [
    (dict(pe=4, simd=4, out_lanes=3), "out_lanes must divide pe"),
    (dict(pe=4, simd=6, in_lanes=4), "in_lanes must divide simd"),
    (dict(pe=0, simd=4), "pe must be a positive integer"),
])
def test_folding_is_validated(bad, message):
    with pytest.raises(ValueError, match=message):
        Folding(**bad)


@given(seed=st.integers(0, 2**32 - 1), sizes=st.lists(st.integers(2, 40), min_size=2, max_size=4),
       wbits=st.integers(1, 3), abits=st.integers(1, 3), target=st.integers(8, 400))
@settings(max_examples=15, deadline=None)
def test_folding_search_meets_its_target_by_the_cycle_model(seed, sizes, wbits, abits, target):
    from rtl.folding import fold_network

    model = random_dense_model(np.random.default_rng(seed), sizes, wbits, abits)
    try:
        foldings = fold_network(model, target)
    except ValueError as exc:
        assert "no folding reaches" in str(exc)
        return
    assert network_timing(model, foldings).ii <= target
    for a, b in zip(foldings, foldings[1:]):
        assert a.out_lanes == b.in_lanes


def test_folding_search_is_balanced_not_overprovisioned(rng):
    """The cheapest folding per layer: more parallelism than the target needs is never chosen."""
    from rtl.folding import engine_cost, fold_network

    model = random_dense_model(rng, [64, 32, 10], 2, 2)
    loose, tight = fold_network(model, 400), fold_network(model, 60)
    cost = lambda fs: sum(engine_cost(layer, f).lut4 for layer, f in zip(model.mac_layers(), fs))  # noqa: E731
    assert cost(loose) < cost(tight)
    assert all(layer_timing(layer, f).ii <= 400 for layer, f in zip(model.mac_layers(), loose))
