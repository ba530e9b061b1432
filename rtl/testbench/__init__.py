"""cocotb building blocks for lqflow's stream ports, public as :mod:`lqflow.testing`.

One concept per module:

* :mod:`.bus` — :class:`StreamBus`, a port's payload/valid/ready handles;
* :mod:`.lanes` — :class:`LaneLayout`, values in lanes of a payload word;
* :mod:`.stalls` — stall patterns: :func:`random_stalls` from a seed, iterables, callables;
* :mod:`.cycles` — :class:`CycleCounter`, cycle numbers shared by drivers and monitors;
* :mod:`.driver` — :class:`StreamDriver`, beats into the DUT, with gaps;
* :mod:`.monitor` — :class:`StreamMonitor` and :class:`Beat`, beats out of the DUT, with backpressure;
* :mod:`.scoreboard` — :class:`Scoreboard`, every beat, the count and the cycle model;
* :mod:`.reset` — :func:`reset` and :func:`unresolved` (X or Z after reset);
* :mod:`.network` — :class:`NetworkPorts`, ``lqflow_top``'s payloads and hwsim's answers;
* :mod:`.runner` — :func:`run_cocotb`, Verilator or Icarus builds and runs.

``rtl/bench.py`` (``lqflow cosim``) is built from these.
"""

from .bus import StreamBus
from .cycles import CycleCounter
from .driver import StreamDriver
from .lanes import LaneLayout
from .monitor import Beat, StreamMonitor
from .network import NetworkPorts, folding_note
from .reset import reset, unresolved
from .runner import SIMULATORS, VERILATOR_WARNINGS, CocotbRun, run_cocotb
from .scoreboard import Scoreboard
from .stalls import random_stalls, stall_pattern

__all__ = ["Beat", "CocotbRun", "CycleCounter", "LaneLayout", "NetworkPorts", "SIMULATORS", "Scoreboard",
           "StreamBus", "StreamDriver", "StreamMonitor", "VERILATOR_WARNINGS", "folding_note", "random_stalls",
           "reset", "run_cocotb", "stall_pattern", "unresolved"]
