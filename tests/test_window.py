"""The window and max units in Amaranth's simulator: every beat against a numpy im2col,
every transfer cycle against hwsim's cycle model, with random gaps and backpressure."""

import numpy as np
import pytest

from hwsim.cycles import MaxModel, WindowModel
from hwsim.stages import MaxStage, WindowStage
from rtl.maxunit import MaxUnit
from rtl.window import WindowUnit
from tests.stream_bench import drive, model_transfers, pack, unpack


def im2col(frame, stage):
    """Reference windows of one ``[C, H, W]`` frame: ``[beats, lanes]`` in the stage's order."""
    c, h, w = stage.shape
    k, s, p = stage.kernel, stage.stride, stage.padding
    padded = np.full((c, h + 2 * p, w + 2 * p), stage.pad_level if p else -1, np.int64)
    padded[:, p:p + h, p:p + w] = frame
    oh, ow = stage.out_size
    beats = []
    for oy in range(oh):
        for ox in range(ow):
            win = padded[:, oy * s:oy * s + k, ox * s:ox * s + k]           # [C, k, k]
            words = win.reshape(stage.words, stage.lanes, k, k)             # channel words
            if stage.taps_inner:
                beats += [words[cw, :, ky, kx] for cw in range(stage.words) for ky in range(k) for kx in range(k)]
            else:
                beats += [words[cw, :, ky, kx] for ky in range(k) for kx in range(k) for cw in range(stage.words)]
    return np.array(beats)


def stream_of(frames, lanes, width):
    """Frames ``[B, C, H, W]`` → channels-last beats of ``lanes`` values."""
    pixels = np.asarray(frames).transpose(0, 2, 3, 1).reshape(-1, lanes)
    return [pack(row, width) for row in pixels]


def _patterns(seed, stress):
    if not stress:
        return (lambda k: True), (lambda k: False)
    rng = np.random.default_rng(seed)
    ready, gap = rng.random(100_000) < 0.6, rng.random(100_000) < 0.3
    return (lambda k: bool(ready[k])), (lambda k: bool(gap[k]))


def check_window(stage, frames, seed, stress):
    unit = WindowUnit(stage)
    beats = stream_of(frames, stage.lanes, stage.in_width)
    n_out = len(frames) * stage.out_beats
    ready, gap = _patterns(seed, stress)
    got, ins, outs = drive(unit, beats, n_out, ready=ready, gap=gap)
    expected = np.concatenate([im2col(f, stage) for f in frames])
    values = np.array([unpack(word, stage.lanes, stage.out_width) for word in got])
    np.testing.assert_array_equal(values, expected)
    model_ins, model_outs = model_transfers(WindowModel(stage), len(beats), n_out, ready=ready, gap=gap)
    assert (ins, outs) == (model_ins, model_outs)


CASES = [  # (C, H, W, kernel, stride, padding, lanes, taps_inner)
    (1, 8, 8, 3, 1, 1, 1, False),          # the digits CNN's first window
    (16, 4, 4, 3, 1, 1, 4, False),         # its second
    (4, 8, 8, 2, 2, 0, 2, True),           # a 2×2 max-pool
    (3, 5, 7, 5, 2, 2, 3, False),          # odd sizes, kernel 5
    (2, 3, 3, 1, 1, 0, 1, False),          # 1×1
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("stress", [False, True])
def test_window_unit_hand_picked(case, stress):
    c, h, w, k, s, p, lanes, taps_inner = case
    levels = 5
    stage = WindowStage("win", (c, h, w), k, s, p, lanes, levels, taps_inner)
    frames = np.random.default_rng(c * h + k).integers(0, levels, size=(3, c, h, w))
    check_window(stage, frames, seed=k + s, stress=stress)


@pytest.mark.parametrize("seed", range(6))
def test_window_unit_random(seed):
    rng = np.random.default_rng(100 + seed)
    k, s, p = int(rng.integers(1, 6)), int(rng.integers(1, 3)), int(rng.integers(0, 3))
    lanes = int(rng.choice([1, 2, 3]))
    c = lanes * int(rng.integers(1, 3))
    h, w = (int(v) for v in rng.integers(max(1, k - 2 * p), k + 4, size=2))
    levels = int(rng.integers(2, 9))
    stage = WindowStage("win", (c, h, w), k, s, p, lanes, levels, bool(rng.integers(0, 2)))
    frames = rng.integers(0, levels, size=(2, c, h, w))
    check_window(stage, frames, seed=seed, stress=True)


def test_window_lanes_must_divide_channels():
    with pytest.raises(ValueError, match="3 lanes do not divide"):
        WindowStage("win", (4, 4, 4), 3, 1, 1, 3, 4, False)


@pytest.mark.parametrize("taps,lanes,stress", [(4, 2, False), (4, 2, True), (9, 1, True), (1, 3, True)])
def test_max_unit(taps, lanes, stress):
    levels, groups = 7, 12
    stage = MaxStage("pool", taps, lanes, levels, beats=groups)
    rng = np.random.default_rng(taps * 10 + lanes)
    values = rng.integers(0, levels, size=(groups, taps, lanes))
    beats = [pack(v, stage.width) for v in values.reshape(-1, lanes)]
    ready, gap = _patterns(taps, stress)
    got, ins, outs = drive(MaxUnit(stage), beats, groups, ready=ready, gap=gap)
    np.testing.assert_array_equal(np.array([unpack(word, lanes, stage.width) for word in got]), values.max(axis=1))
    assert (ins, outs) == model_transfers(MaxModel(stage), len(beats), groups, ready=ready, gap=gap)
