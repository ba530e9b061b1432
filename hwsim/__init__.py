"""hwsim — bit-exact NumPy simulator of the lqflow integer IR (numpy only, no torch)."""

from export.ir import Model, load, save

from .simulator import MODES, Simulator, Trace, accuracy, predict, simulate

__all__ = ["MODES", "Model", "Simulator", "Trace", "accuracy", "load", "predict", "save", "simulate"]
