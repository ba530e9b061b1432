"""Quantized layers that drop into ordinary ``nn.Module`` code."""

from dataclasses import dataclass

import torch.nn.functional as F
from torch import nn

from .quantizers import (LQActQuantizer, LQWeightQuantizer, UniformActQuantizer,
                         UniformWeightQuantizer)

__all__ = ["QuantConfig", "QuantLinear", "QuantConv2d", "QuantReLU"]

METHODS = ("lq", "uniform", "float")


@dataclass(frozen=True)
class QuantConfig:
    """How a network is quantized.

    ``method``: 'lq' (LQ-Nets learned basis), 'uniform' (power-of-two basis) or 'float'
    (no quantization).  ``scale``: the uniform quantizer's scale, 'max' or 'learned'.
    """

    method: str = "lq"
    weight_bits: int = 2
    act_bits: int = 2
    scale: str = "max"

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"Quantization method must be one of {', '.join(METHODS)}, not {self.method!r}")
        for name in ("weight_bits", "act_bits"):
            bits = getattr(self, name)
            if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 8:
                raise ValueError(f"{name} must be an integer from 1 to 8, not {bits!r}")
        if self.scale not in ("max", "learned"):
            raise ValueError(f"Uniform scale must be 'max' or 'learned', not {self.scale!r}")

    def weight_quantizer(self, channels, fan):
        if self.method == "lq":
            return LQWeightQuantizer(self.weight_bits, channels, fan)
        if self.method == "uniform":
            return UniformWeightQuantizer(self.weight_bits, channels, self.scale)
        return None

    def act_quantizer(self):
        if self.method == "lq":
            return LQActQuantizer(self.act_bits)
        if self.method == "uniform":
            return UniformActQuantizer(self.act_bits, self.scale)
        return None


class _QuantizedWeight:
    """Mixin: the weight as the forward pass sees it (through ``weight_quant`` if any)."""

    def quantized_weight(self):
        return self.weight if self.weight_quant is None else self.weight_quant(self.weight)


class QuantLinear(_QuantizedWeight, nn.Linear):
    """``nn.Linear`` whose weight passes through ``weight_quant`` (None: float)."""

    def __init__(self, in_features, out_features, bias=True, weight_quant=None):
        super().__init__(in_features, out_features, bias=bias)
        self.weight_quant = weight_quant

    def forward(self, x):
        return F.linear(x, self.quantized_weight(), self.bias)


class QuantConv2d(_QuantizedWeight, nn.Conv2d):
    """``nn.Conv2d`` (square kernel, zero padding) whose weight passes through ``weight_quant``."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True,
                 weight_quant=None):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias)
        self.weight_quant = weight_quant

    def forward(self, x):
        return self._conv_forward(x, self.quantized_weight(), self.bias)


class QuantReLU(nn.Module):
    """ReLU followed by an activation quantizer (None: plain ReLU)."""

    def __init__(self, act_quant=None):
        super().__init__()
        self.act_quant = act_quant

    def forward(self, x):
        x = F.relu(x)
        return x if self.act_quant is None else self.act_quant(x)
