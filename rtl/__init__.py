"""lqflow rtl: Amaranth popcount-accumulate engines, the network top, Verilog and FPGA reports."""

from hwsim.cycles import Folding

from .collector import ArgmaxCollector
from .engine import DenseEngine
from .popcount import Popcount
from .top import NetworkTop

__all__ = ["ArgmaxCollector", "DenseEngine", "Folding", "NetworkTop", "Popcount"]
