"""lqflow models: quantizers, quantized layers, reference networks, datasets, training."""

from .layers import QuantConfig, QuantConv2d, QuantLinear, QuantReLU
from .nets import ConvBlock, DenseBlock, NetConfig, QuantNet, build
from .quantizers import (BasisQuantizer, LQActQuantizer, LQWeightQuantizer,
                         UniformActQuantizer, UniformWeightQuantizer)

__all__ = [
    "BasisQuantizer", "ConvBlock", "DenseBlock", "LQActQuantizer", "LQWeightQuantizer",
    "NetConfig", "QuantConfig", "QuantConv2d", "QuantLinear", "QuantNet", "QuantReLU",
    "UniformActQuantizer", "UniformWeightQuantizer", "build",
]
