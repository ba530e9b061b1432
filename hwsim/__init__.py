"""hwsim — bit-exact NumPy simulator of the lqflow integer IR (numpy only, no torch).

Public API: this package's names, :mod:`hwsim.cycles` (the RTL's cycle model) and
:mod:`hwsim.stages` (the RTL's streaming stages, which the cycle model steps).
"""

from lqir import Model, load, save

from .simulator import MODES, Simulator, Trace, accuracy, predict, run_layer, simulate

__all__ = ["MODES", "Model", "Simulator", "Trace", "accuracy", "load", "predict", "run_layer", "save",
           "simulate"]
