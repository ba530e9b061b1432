"""lqflow.priority: work beside synthesis runs nicer, in its own thread, and says what it did."""

import os
import subprocess
import sys
import threading

import pytest

from lqflow.priority import BESIDE_SYNTHESIS_NICENESS, at_lower_priority

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="niceness is per thread on Linux only")


def _niceness():
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def _child_niceness():
    out = subprocess.run([sys.executable, "-c", "import os; print(os.getpriority(os.PRIO_PROCESS, 0))"],
                         capture_output=True, text=True, check=True)
    return int(out.stdout)


@linux_only
def test_work_and_the_processes_it_starts_run_nicer_and_the_caller_does_not():
    before = _niceness()
    seen = at_lower_priority(lambda: (_niceness(), _child_niceness(), threading.get_native_id()))
    expected = min(before + BESIDE_SYNTHESIS_NICENESS, 19)
    assert seen[:2] == (expected, expected)
    assert seen[2] != threading.get_native_id()
    assert _niceness() == before and _child_niceness() == before


@linux_only
def test_niceness_is_capped_at_19():
    assert at_lower_priority(_niceness, steps=19) == 19


def test_result_and_exception_come_back():
    assert at_lower_priority(lambda a, b=0: a + b, 2, b=3) == 5
    with pytest.raises(KeyError, match="missing"):
        at_lower_priority(lambda: {}["missing"])


def test_zero_steps_runs_in_this_thread():
    assert at_lower_priority(threading.get_native_id, steps=0) == threading.get_native_id()


@pytest.mark.parametrize("steps", [-1, 20, 2.5, True, "10"])
def test_bad_steps_are_refused(steps):
    with pytest.raises(ValueError, match=r"Niceness steps must be an integer from 0 to 19, not"):
        at_lower_priority(int, steps=steps)
