"""Helpers to run rtl components in Amaranth's own simulator (fast unit tests)."""

import numpy as np

from tests.stream_bench import drive


def run_stream(dut, rows, beats_out, ready=lambda k: True, gap=lambda k: False, max_cycles=200_000):
    """Feed ``rows`` (one beat per element) into ``dut.i``; collect ``beats_out`` beats of ``dut.o``.

    Returns (payloads, cycle of each input transfer, cycle of each output transfer).
    """
    beats = [int(v) for row in rows for v in row]
    return drive(dut, beats, beats_out, ready=ready, gap=gap, max_cycles=max_cycles)


def signed(values, width):
    values = np.asarray(values, dtype=np.int64)
    return np.where(values >> (width - 1), values - (1 << width), values)
