"""lqflow.testing without a simulator: the scoreboard's verdicts and messages, lane layouts,
stall patterns, the network ports, the public names and the README's examples.

The driver, monitor and the one-call helper run on real RTL in tests/cosim/test_testing_api.py.
"""

import ast
import importlib
import itertools
import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import lqflow.testing as testing
import rtl.testbench
from hwsim import Simulator
from hwsim.cycles import Folding, network_timing
from lqir.random_models import random_dense_model
from rtl.testbench import Beat, LaneLayout, NetworkPorts, Scoreboard, random_stalls, stall_pattern
from rtl.top import input_stream

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## Co-simulation in your own tests"


def readme_files():
    """``{file name: code}`` of the python blocks of the README's section that start with
    ``# <name>.py``: the files a user copies."""
    text = README.read_text()
    section = text[text.index(SECTION):]
    section = section[:section.find("\n## ", len(SECTION))]
    return {m.group(1): m.group(0)[len("```python\n"):-len("```")]
            for m in re.finditer(r"```python\n# (\w+\.py)\b.*?```", section, re.S)}


def _model_and_inputs(seed=3, samples=6):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 5, size=(samples, 9))
    model = random_dense_model(rng, [9, 6, 4], 2, 2, in_levels=5, inputs=x)
    return model, x


def _board(expected, **kw):
    return Scoreboard(expected, labels=[f"logit {k}" for k in range(expected.shape[1] - 1)] + ["class"],
                      context="foldings: fc0 PE 2", **kw)


def _feed(board, rows, cycles=None):
    for k, row in enumerate(rows):
        board.add(Beat(cycles[k] if cycles else 10 * k, None, tuple(row)))


# -- the scoreboard -----------------------------------------------------------------------

EXPECTED = np.array([[3, -1, 0, 0], [5, 7, -2, 1], [0, 0, 0, 0], [-4, 2, 9, 2], [1, 1, 1, 0]])


def test_scoreboard_passes_on_every_beat_equal():
    board = _board(EXPECTED)
    _feed(board, EXPECTED)
    board.check()
    assert board.mismatches == [] and board.missing == 0 and board.extra == []
    np.testing.assert_array_equal(board.outputs, EXPECTED)


def test_scoreboard_names_the_first_mismatching_sample_and_logit():
    corrupted = EXPECTED.copy()
    corrupted[1, 2] += 1          # the expectation is wrong, the "RTL" is right: the board must say so
    corrupted[3, 3] = 0
    board = _board(corrupted, name="clean phase")
    _feed(board, EXPECTED)
    assert board.mismatches == [1, 3]
    with pytest.raises(AssertionError) as info:
        board.check()
    message = str(info.value)
    assert "clean phase: 1 problem(s)" in message
    assert "2 of 5 samples differ from the expected values, first: sample 1" in message
    assert "sample 1: logit 2: expected -1, got -2" in message
    assert "sample 3: class: expected 0, got 2" in message
    assert message.endswith("foldings: fc0 PE 2")


def test_scoreboard_reports_a_dropped_beat():
    board = _board(EXPECTED)
    _feed(board, EXPECTED[:4])
    assert board.missing == 1 and board.mismatches == [4]
    assert board.outputs[4].tolist() == [0, 0, 0, 0]
    with pytest.raises(AssertionError, match=r"1 of 5 expected beats never came \(dropped or stuck\): "
                                             r"the first missing is sample 4"):
        board.check()


def test_scoreboard_reports_an_extra_beat():
    board = _board(EXPECTED)
    _feed(board, list(EXPECTED) + [[6, 6, 6, 0]], cycles=[10, 20, 30, 40, 50, 77])
    assert board.mismatches == [] and len(board.extra) == 1
    with pytest.raises(AssertionError, match=r"1 extra beat\(s\) after the last expected one, first at cycle 77: "
                                             r"\[6, 6, 6, 0\]"):
        board.check()


def test_scoreboard_checks_the_cycle_model():
    timing = SimpleNamespace(latency=12, ii=10, cycles=52)
    board = _board(EXPECTED, timing=timing)
    _feed(board, EXPECTED, cycles=[14, 24, 34, 44, 54])        # first input at cycle 2
    assert board.measured(2) == (12, 10, 52)
    board.check(first_input=2)
    assert board.timing_errors(first_input=1) == [
        "latency: 13 cycles measured, the cycle model says 12",
        "whole run (first input to last output): 53 cycles measured, the cycle model says 52"]
    assert board.timing_errors() == []              # without the first input only the II is measured
    late = _board(EXPECTED, timing=timing)
    _feed(late, EXPECTED, cycles=[14, 24, 34, 44, 55])
    with pytest.raises(AssertionError, match=r"initiation interval \(II\): 11 cycles measured, the cycle model "
                                             r"says 10"):
        late.check()


def test_scoreboard_with_several_beats_per_sample_and_a_mask():
    expected = np.arange(2 * 3 * 2).reshape(2, 3, 2)            # 2 samples, 3 beats of 2 lanes
    mask = np.ones_like(expected, bool)
    mask[:, 2, 1] = False                                       # the last lane is past the last channel
    board = Scoreboard(expected, mask=mask, labels=[f"channel {c}" for c in range(6)])
    got = expected.reshape(-1, 2).copy()
    got[2, 1] = 99                                              # masked: not a fault
    got[4, 0] = -1                                              # sample 1, beat 1, lane 0 = channel 2
    _feed(board, got)
    assert board.mismatches == [1]
    with pytest.raises(AssertionError, match="sample 1: channel 2: expected 8, got -1"):
        board.check()


def test_scoreboard_reports_x_payloads_and_refuses_bad_expectations():
    board = Scoreboard(EXPECTED)
    board.add(Beat(5, None, None))
    _feed(board, EXPECTED[1:])
    with pytest.raises(AssertionError, match="1 beats carried X or Z, first: sample 0, beat 0"):
        board.check()
    with pytest.raises(ValueError, match="expected must be integers"):
        Scoreboard(EXPECTED.astype(float))
    with pytest.raises(ValueError, match="3 labels for 4 values"):
        Scoreboard(EXPECTED, labels=["a", "b", "c"])
    with pytest.raises(ValueError, match="a beat of 3 values, expected 4"):
        Scoreboard(EXPECTED).add([1, 2, 3])


# -- lanes and stall patterns ---------------------------------------------------------------

@pytest.mark.parametrize("layout", [LaneLayout(3, 4), LaneLayout(4, 7, signed=True, tail=2), LaneLayout(1, 64)])
def test_lane_layout_round_trip(layout, rng):
    for _ in range(50):
        lo, hi = (-(1 << (layout.width - 1)), 1 << (layout.width - 1)) if layout.signed else (0, 1 << layout.width)
        values = [int(v) for v in rng.integers(lo, hi, size=layout.count, dtype=np.int64 if layout.width < 64
                                               else np.uint64)]
        values += [int(rng.integers(0, 1 << layout.tail))] if layout.tail else []
        word = layout.pack(values)
        assert 0 <= word < 1 << layout.bits
        assert layout.unpack(word) == tuple(values)


def test_lane_layout_refuses_what_does_not_fit():
    assert LaneLayout(3, 4).pack([1, 2]) == 1 | 2 << 4            # a partly empty last beat
    with pytest.raises(ValueError, match="value 1 of the beat, 16, does not fit 4 unsigned bits"):
        LaneLayout(3, 4).pack([1, 16])
    with pytest.raises(ValueError, match="value 0 of the beat, -9, does not fit 4 signed bits"):
        LaneLayout(3, 4, signed=True).pack([-9])
    with pytest.raises(ValueError, match="4 values do not fit a beat of 3"):
        LaneLayout(3, 4).pack([0, 0, 0, 0])
    with pytest.raises(ValueError, match="width must be an integer >= 1"):
        LaneLayout(3, 0)


def test_stall_patterns():
    first = list(itertools.islice(random_stalls(0.3, seed=4), 2000))
    assert first == list(itertools.islice(random_stalls(0.3, seed=4), 2000))     # a seed reproduces
    assert 0.25 < np.mean(first) < 0.35
    bursts = list(itertools.islice(random_stalls(0.2, seed=1, longest=4), 4000))
    runs = [len(list(g)) for k, g in itertools.groupby(bursts) if k]
    assert max(runs) >= 4
    assert stall_pattern(None) is None and stall_pattern(0) is None and stall_pattern(0.0) is None
    decide = stall_pattern([True, False, True])
    assert [decide() for _ in range(5)] == [True, False, True, False, False]     # then no more stalls
    decide = stall_pattern(lambda n: n % 3 == 0)
    assert [decide() for _ in range(6)] == [True, False, False, True, False, False]
    decide = stall_pattern(0.5, seed=9)
    assert [decide() for _ in range(50)] == list(itertools.islice(random_stalls(0.5, 9), 50))
    with pytest.raises(ValueError, match=r"in \[0, 1\)"):
        next(random_stalls(1.0))
    with pytest.raises(TypeError, match="a stall pattern is None, a probability"):
        stall_pattern("often")


# -- the network's ports --------------------------------------------------------------------

FOLDINGS = [Folding(2, 4, 2, 2), Folding(2, 2, 1, 2)]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """A small model's lqflow_top.v and .json (written once: Verilog takes seconds)."""
    model, _ = _model_and_inputs()
    return model, testing.write_top(model, tmp_path_factory.mktemp("top"), FOLDINGS)


def test_network_ports(written):
    model, x = _model_and_inputs()
    foldings = FOLDINGS
    ports = NetworkPorts(model, foldings)
    assert ports.input == LaneLayout(2, 3)
    assert ports.output == LaneLayout(4, model.mac_layers()[-1].acc_bits, signed=True, tail=2)
    assert ports.labels == ["logit 0", "logit 1", "logit 2", "logit 3", "class"]
    beats = ports.input_beats(x)
    assert beats.shape == (6, 5, 2)
    np.testing.assert_array_equal(beats.reshape(6, -1)[:, :9], input_stream(model, x))
    assert (beats.reshape(6, -1)[:, 9:] == 0).all()
    words = ports.input_words(x)
    assert len(words) == 30 and words[0] == beats[0, 0, 0] | beats[0, 0, 1] << 3
    logits = Simulator(model).run(x)
    np.testing.assert_array_equal(ports.expected(x), np.c_[logits, logits.argmax(axis=1)])
    assert ports.timing(6) == network_timing(model, foldings, inferences=6)
    board = ports.scoreboard(ports.expected(x))
    assert board.labels == ports.labels and "fc" in board.context
    description = written[1].with_suffix(".json")
    info = json.loads(description.read_text())
    again = NetworkPorts.from_description(model, description)
    assert again.foldings == foldings and NetworkPorts.from_description(model, info).foldings == foldings
    deeper = random_dense_model(np.random.default_rng(4), [9, 6, 5, 4], 2, 2)
    with pytest.raises(ValueError, match=r"describes layers \['fc0', 'fc1'\], but the model has \['fc0', 'fc1', "):
        NetworkPorts.from_description(deeper, info)
    with pytest.raises(ValueError, match="not a description written by 'lqflow verilog'"):
        NetworkPorts.from_description(model, {"layers": [{"name": "fc0"}]})


def test_foldings_for(tmp_path):
    model, _ = _model_and_inputs()
    assert testing.foldings_for(model, Folding(2, 3)) == [Folding(2, 3)] * 2
    given = [Folding(2, 4, 2, 2), Folding(2, 2, 1, 2)]
    assert testing.foldings_for(model, given) == given
    verilog = testing.write_top(model, tmp_path, given)
    assert verilog.name == "lqflow_top.v" and testing.foldings_for(model, verilog.with_suffix(".json")) == given
    assert len(testing.foldings_for(model)) == 2
    with pytest.raises(TypeError, match="folding: None, a hwsim.cycles.Folding"):
        testing.foldings_for(model, [(2, 3), (1, 1)])


# -- the public API -------------------------------------------------------------------------

def test_lqflow_testing_is_rtl_testbench():
    """One implementation: the public names are rtl.testbench's own objects."""
    for name in testing.__all__:
        assert hasattr(testing, name), name
        if name in rtl.testbench.__all__:
            assert getattr(testing, name) is getattr(rtl.testbench, name)
    for module in ("bus", "driver", "monitor", "scoreboard", "stalls", "lanes", "reset", "network", "runner"):
        mod = importlib.import_module(f"rtl.testbench.{module}")
        assert mod.__all__ and all(hasattr(mod, n) for n in mod.__all__)
    bench = (Path(rtl.testbench.__file__).parents[1] / "bench.py").read_text()
    assert "from rtl.testbench import" in bench and "async def drive" not in bench


def test_readme_examples_use_public_names_only():
    files = readme_files()
    assert set(files) == {"bench_lqflow_top.py", "test_lqflow_rtl.py"}
    for name, code in files.items():
        tree = ast.parse(code, filename=name)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in (
                    "rtl", "hwsim", "export", "models", "lqflow"):
                assert node.module == "lqflow.testing", f"{name} imports {node.module}"
                assert {a.name for a in node.names} <= set(testing.__all__)
