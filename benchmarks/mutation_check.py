"""Mutation check: do the tests catch the bugs they claim to?

Each mutation is one deliberate bug, written as a regular-expression substitution of the
source (so that it fails loudly, as "n/a", when the source it targets has changed).  The
repository is copied to a temporary directory once; each mutation is applied there alone,
the test files that should catch it are run with pytest, and the source is restored.  A
mutation is *killed* when pytest reports failing tests.  Before any mutation the same tests
run unmutated and must pass, else a kill would mean nothing.

    python benchmarks/mutation_check.py              # the cheap tests (about two minutes)
    python benchmarks/mutation_check.py --full       # plus cocotb/Verilator, hls4ml, trainings
    python benchmarks/mutation_check.py --only rtl_threshold hls_drop_v0
    python benchmarks/mutation_check.py --list

Prints a table (mutation, tests run, killed, the failing tests) and exits 1 if any
mutation survives, 2 if one no longer applies, 3 if the unmutated tests fail.  A
benchmark-style script, not part of CI: it takes minutes (``--full``: most of an hour).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# cheap selections, shared by several mutations
TIES_HWSIM = ["tests/test_ties.py::test_hwsim_counts_ties", "tests/test_ties.py::test_run_layer_counts_ties"]
TIES_RTL = ["tests/test_ties.py::test_engine_counts_ties", "tests/test_ties.py::test_network_top_counts_ties"]
TIES_HLS = ["tests/test_ties.py::test_hls_plan_counts_ties"]
HLS_PLAN = ["tests/test_hls.py::test_plan_folds_affine_inputs_exactly", "tests/test_hls.py::test_plan_equals_hwsim"]
LOWER_HAND = ["tests/test_lower.py::test_lowering_by_hand"]
COSIM = ["tests/cosim/test_cosim.py", "tests/test_ties.py::test_cocotb_network_counts_ties"]


@dataclass
class Mutation:
    name: str
    what: str
    file: str
    pattern: str           # regular expression; every match is replaced
    repl: str
    tests: list            # cheap pytest selections that should kill it
    full: list = field(default_factory=list)   # expensive ones, with --full


def _plus_one(match):
    return match.group(0) + " + 1"


MUTATIONS = [
    Mutation("rtl_threshold", "RTL threshold test d = acc − T ≥ 0 written d > 0", "rtl/engine.py",
             r"sum\(~d\[-1\] for d in accs\[u\]\)", "sum(~d[-1] & (d != 0) for d in accs[u])",
             TIES_RTL + ["tests/test_rtl_units.py"], COSIM),
    Mutation("hwsim_fast_threshold", "hwsim fast mode (linear search) compares with >", "hwsim/fast.py",
             r"np\.greater_equal\(", "np.greater(", TIES_HWSIM + ["tests/test_hwsim.py"],
             ["tests/test_hwsim_kernels.py"]),
    Mutation("hwsim_binary_search", "hwsim fast mode (binary search, > 4 thresholds) compares with >",
             "hwsim/fast.py", r"np\.where\(acc >= padded", "np.where(acc > padded",
             TIES_HWSIM + ["tests/test_hwsim.py"], ["tests/test_hwsim_kernels.py"]),
    Mutation("hwsim_numba_threshold", "hwsim numba kernel compares with >", "hwsim/kernels.py",
             r"acc\[i, j\] >= thresholds\[m, j\]", "acc[i, j] > thresholds[m, j]",
             TIES_HWSIM + ["tests/test_hwsim.py"], ["tests/test_hwsim_kernels.py"]),
    Mutation("hwsim_bitplane_threshold", "hwsim bit-plane mode / run_layer count thresholds < acc",
             "hwsim/layout.py", r'side="right"', 'side="left"', TIES_HWSIM + ["tests/test_hwsim.py"]),
    Mutation("lower_coef_floor", "lowering: basis coefficients floor() instead of rint()", "export/lower.py",
             r"coef = np\.rint\(rows / scale\)", "coef = np.floor(rows / scale)", LOWER_HAND,
             ["tests/test_lower.py"]),
    Mutation("lower_bias_floor", "lowering: logit bias floor() instead of rint()", "export/lower.py",
             r"bias_int = np\.rint\(d / c\[0\]\)", "bias_int = np.floor(d / c[0])", LOWER_HAND,
             ["tests/test_lower.py"]),
    Mutation("lower_threshold_ceil", "lowering: thresholds ceil(tau) instead of floor(tau) + 1",
             "export/lower.py", r"np\.floor\((np\.clip\(tau, [^\n]*?\))\) \+ 1", r"np.ceil(\1)", LOWER_HAND,
             ["tests/test_lower.py"]),
    Mutation("hls_drop_v0", "hls4ml affine fold drops v0 * sum(w)", "export/hls_plan.py",
             r"bias \+ affine\[0\] \* weight\.sum\(axis=fan_in\)", "bias", HLS_PLAN,
             ["tests/test_hls.py"]),
    Mutation("hls_drop_slope", "hls4ml affine fold drops the slope", "export/hls_plan.py",
             r"weight \* affine\[1\]", "weight", HLS_PLAN, ["tests/test_hls.py"]),
    Mutation("hls_threshold", "hls4ml threshold step counts acc > T", "export/hls_plan.py",
             r"np\.stack\(\[-thresholds \+ 1, -thresholds\]", "np.stack([-thresholds, -thresholds - 1]",
             TIES_HLS + HLS_PLAN, ["tests/test_hls.py", "tests/test_ties.py::test_hls4ml_counts_ties"]),
    Mutation("cycles_latency", "cycle model: network latency one cycle long", "hwsim/cycles.py",
             r"latency=outs\[0\] - starts\[0\]", _plus_one,
             ["tests/test_rtl_units.py", "tests/test_ties.py::test_network_top_counts_ties"], COSIM),
    Mutation("cycles_ii", "cycle model: network II one cycle long", "hwsim/cycles.py",
             r"(?<![\w.])outs\[-1\] - outs\[-2\]", _plus_one,
             ["tests/test_rtl_units.py", "tests/test_ties.py::test_network_top_counts_ties"], COSIM),
    Mutation("window_delay", "cycle model: a window unit's read reaches its FIFO a cycle late", "hwsim/cycles.py",
             r"(?m)^WINDOW_DELAY = 3", "WINDOW_DELAY = 4", ["tests/test_window.py", "tests/test_cnn_top.py"],
             ["tests/cosim/test_cnn.py"]),
    Mutation("max_compare", "max unit keeps the smaller level", "rtl/maxunit.py",
             r"\(value > best\[k\]\)", "(value < best[k])", ["tests/test_window.py", "tests/test_cnn_top.py"],
             ["tests/cosim/test_cnn.py"]),
    Mutation("window_pad", "window unit pads with level 0 instead of the pad level", "rtl/window.py",
             r"C\(st\.pad_level or 0, st\.out_width\)", "C(0, st.out_width)",
             ["tests/test_window.py", "tests/test_cnn_top.py"], ["tests/cosim/test_cnn.py"]),
]


def copy_tree(dest):
    ignore = shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.egg-info", ".pytest_cache",
                                    ".hypothesis", "build", "*.pyc")
    shutil.copytree(ROOT, dest, ignore=ignore, symlinks=True)


def run_pytest(tree, selections, timeout):
    """(returncode, failing test ids, seconds) of pytest on ``selections`` inside ``tree``."""
    env = dict(os.environ)
    # The copy first on the path, for pytest and for the cocotb bench's own Python process.
    env["PYTHONPATH"] = os.pathsep.join([str(tree)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["LQFLOW_HYPOTHESIS_PROFILE"] = "lqflow-noshrink"   # a failing example is enough: no shrinking
    cmd = [sys.executable, "-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider", "--no-header", *selections]
    t0 = time.perf_counter()
    try:
        out = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, ["(timeout)"], time.perf_counter() - t0, ""
    failed = sorted({m.group(1) for m in re.finditer(r"^(?:FAILED|ERROR) (\S+)", out.stdout, re.M)})
    return out.returncode, failed, time.perf_counter() - t0, out.stdout[-3000:]


def apply(tree, mutation):
    """Patch the copy; returns the original text, or None if the pattern matches nothing."""
    path = Path(tree) / mutation.file
    if not path.is_file():
        return None
    text = path.read_text()
    new, count = re.subn(mutation.pattern, mutation.repl, text)
    if count == 0:
        return None
    path.write_text(new)
    return text


def short(selections):
    return ", ".join(s.replace("tests/", "").replace(".py::", "::") for s in selections)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run these mutations only")
    parser.add_argument("--full", action="store_true", help="also the expensive tests (cocotb, hls4ml, trainings)")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per pytest run (default 3600)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary copy")
    parser.add_argument("--skip-baseline", action="store_true",
                        help="do not run the tests unmutated first (when they are known to pass)")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTATIONS if not args.only or m.name in args.only]
    if args.only and len(chosen) != len(set(args.only)):
        parser.error(f"unknown mutation in {args.only}; --list shows them")
    if args.list:
        for m in chosen:
            print(f"{m.name:26} {m.file:18} {m.what}")
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="lqflow-mutants-"))
    tree = tmp / "repo"
    try:
        copy_tree(tree)
        plan = [(m, m.tests + (m.full if args.full else [])) for m in chosen]
        baseline = sorted({s for _, sel in plan for s in sel})
        print(f"copy: {tree}", flush=True)
        if not args.skip_baseline:
            print(f"baseline: {len(baseline)} selections, unmutated ...", flush=True)
            rc, failed, secs, tail = run_pytest(tree, baseline, args.timeout)
            if rc != 0:
                print(f"the unmutated tests do not pass (pytest exit {rc}, {secs:.0f} s): {failed}\n{tail}")
                return 3
            print(f"baseline passes ({secs:.0f} s)\n", flush=True)
        rows = []
        for m, selections in plan:
            original = apply(tree, m)
            if original is None:
                rows.append((m, selections, "n/a", [], 0.0))
                print(f"{m.name}: n/a (pattern not found in {m.file})", flush=True)
                continue
            try:
                rc, failed, secs, tail = run_pytest(tree, selections, args.timeout)
            finally:
                (tree / m.file).write_text(original)
            verdict = {0: "no", 1: "yes", None: "timeout"}.get(rc, f"rc={rc}")
            if verdict.startswith("rc="):
                print(tail)
            rows.append((m, selections, verdict, failed, secs))
            print(f"{m.name}: killed {verdict} in {secs:.0f} s", flush=True)
        print()
        print(f"{'mutation':26} {'killed':7} {'time':>6}  tests run  →  failing tests")
        for m, selections, verdict, failed, secs in rows:
            print(f"{m.name:26} {verdict:7} {secs:5.0f}s  {short(selections)}")
            if failed:
                print(f"{'':42}→ {short(failed)}")
        survived = [r[0].name for r in rows if r[2] in ("no", "timeout") or r[2].startswith("rc=")]
        missing = [r[0].name for r in rows if r[2] == "n/a"]
        if survived:
            print(f"\nSURVIVED: {', '.join(survived)}")
            return 1
        if missing:
            print(f"\nNOT APPLICABLE (the source changed; update the pattern): {', '.join(missing)}")
            return 2
        print(f"\nall {len(rows)} mutations killed")
        return 0
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
