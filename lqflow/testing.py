"""Co-simulation in your own tests: cocotb drivers, monitors and a scoreboard, and a pytest helper.

Everything ``rtl/bench.py`` and ``lqflow cosim`` use, public (the classes live in
:mod:`rtl.testbench`, below the app in the package layers):

* :class:`StreamBus` — a port's ``payload``/``valid``/``ready``
  (``StreamBus.from_prefix(dut, "i")`` for ``lqflow_top``'s ``i__payload``, ...);
* :class:`StreamDriver` — beats into the DUT, with gaps from a stall pattern;
* :class:`StreamMonitor` (and :class:`Beat`) — beats out of the DUT, with backpressure;
* :func:`random_stalls` — a seeded stall pattern; iterables and callables work too;
* :class:`Scoreboard` — every beat against the expected integers, nothing dropped,
  nothing extra, and the cycle model's latency and II;
* :class:`NetworkPorts` — ``lqflow_top``'s payload layouts, input beats and hwsim's answers;
* :func:`reset`, :func:`unresolved` — reset, and no X or Z on the outputs after it;
* :func:`run_cocotb` — build Verilog with Verilator or Icarus and run cocotb test modules;
* :func:`write_top` — ``lqflow_top.v`` and its ``lqflow_top.json`` for a model;
* :func:`assert_rtl_matches` — all of it in one call, for pytest.

README.md, "Co-simulation in your own tests", has a cocotb module and a pytest module to copy.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import lqir
from hwsim.cycles import Folding
from rtl.cosim import CosimResult, cosim_network
from rtl.folding import fold_for_rate
from rtl.testbench import (SIMULATORS, Beat, CocotbRun, CycleCounter, LaneLayout, NetworkPorts, Scoreboard,
                           StreamBus, StreamDriver, StreamMonitor, folding_note, random_stalls, reset, run_cocotb,
                           unresolved)
from rtl.verilog import TOP_NAME, write_network

__all__ = ["Beat", "CocotbRun", "CosimResult", "CycleCounter", "LaneLayout", "NetworkPorts", "SIMULATORS",
           "Scoreboard", "StreamBus", "StreamDriver", "StreamMonitor", "TOP_NAME", "assert_rtl_matches",
           "foldings_for", "random_stalls", "reset", "run_cocotb", "unresolved", "write_top"]


def _model(model):
    return model if isinstance(model, lqir.Model) else lqir.load(model)


def foldings_for(model, folding=None):
    """One :class:`~hwsim.cycles.Folding` per MAC layer of ``model``, from ``folding``:

    * ``None``: ``lqflow verilog``'s default (the cheapest folding reaching 1,000,000
      inferences/s at 150 MHz on an ECP5 25k, else the fastest that fits);
    * a ``Folding``: the same for every layer;
    * a list of them, one per MAC layer;
    * the path of a ``lqflow_top.json`` that ``lqflow verilog`` wrote: its foldings.
    """
    model = _model(model)
    if folding is None:
        return fold_for_rate(model, 1_000_000, 150, "25k")[0]
    if isinstance(folding, Folding):
        return [folding] * len(model.mac_layers())
    if isinstance(folding, (str, Path)):
        return NetworkPorts.from_description(model, folding).foldings
    foldings = list(folding)
    if not all(isinstance(f, Folding) for f in foldings):
        raise TypeError(f"folding: None, a hwsim.cycles.Folding, a list of them or a lqflow_top.json path, "
                        f"not {folding!r}")
    return foldings


def write_top(model, out_dir, folding=None):
    """Write ``lqflow_top.v`` and ``lqflow_top.json`` for ``model`` (an ``lqir.Model`` or
    its ``.lqir.npz`` path) into ``out_dir``, at ``folding`` (:func:`foldings_for`);
    return the Verilog's path (the description sits beside it, ``.json``)."""
    model = _model(model)
    verilog, _ = write_network(model, foldings_for(model, folding), out_dir)
    return verilog


def assert_rtl_matches(model, x, folding=None, simulator="verilator", build_dir=None, *, stress=True, seed=0,
                       timing=True):
    """Build ``model``'s RTL, run ``x`` through it and raise ``AssertionError`` unless it
    answers exactly as hwsim does.

    ``model``: an ``lqir.Model`` or the path of its ``.lqir.npz`` (``lqflow export``);
    ``x``: level indices ``[B, *input.shape]``, at least 2 samples; ``folding``: see
    :func:`foldings_for`; ``simulator``: ``"verilator"`` or ``"icarus"``; ``build_dir``:
    where the build goes, with the Verilog in ``build_dir/rtl/lqflow_top.v`` (default: a
    temporary folder, removed when the check passes; a build of the same Verilog in the
    same folder is skipped, so tests can share one). The run is ``lqflow cosim``'s: a clean phase whose every logit and
    predicted class must equal hwsim's and, with ``timing``, whose latency, II and
    whole-run cycles must equal the cycle model's; then (``stress``) the same inputs
    with random input gaps and output backpressure from ``seed``. No beat may be missing
    or extra, no output X or Z after reset.

    The message names the first mismatching sample and logit (and the others, up to
    five), the layer foldings and the build folder. Returns the
    :class:`~rtl.cosim.CosimResult` when all is well.
    """
    model = _model(model)
    foldings = foldings_for(model, folding)
    temporary = build_dir is None
    build_dir = Path(tempfile.mkdtemp(prefix="lqflow-rtl-") if temporary else build_dir)
    res = cosim_network(model, x, foldings, build_dir, stress=stress, seed=seed, simulator=simulator)
    problems = list(res.errors)
    if not timing:
        problems = [p for p in problems if not any(p.endswith(t) for t in res.timing_errors)]
    elif not problems and (res.timing_errors or res.mismatches or res.stress_mismatches or res.unresolved
                           or any(res.extra_beats.values())):
        problems = ["the bench reported a fault (see sim.log)"]
    if problems:
        raise AssertionError(f"RTL != hwsim under {simulator} ({res.samples} samples):\n"
                             + "\n".join(problems)
                             + f"\n{folding_note(model.mac_layers(), foldings)}\nbuild folder: {build_dir}")
    if temporary:
        shutil.rmtree(build_dir, ignore_errors=True)
    return res
