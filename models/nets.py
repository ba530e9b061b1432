"""Reference networks: an MLP and a small CNN (conv–BN–act–pool), any input size.

A network is a list of blocks that the exporter reads one by one:
:class:`DenseBlock`, :class:`ConvBlock` and :class:`nn.Flatten`.  Its input is level
indices (raw pixels) normalized by ``(x - in_mean) / in_std``.
"""

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from .layers import QuantConfig, QuantConv2d, QuantLinear, QuantReLU

__all__ = ["NetConfig", "DenseBlock", "ConvBlock", "QuantNet", "build"]

ARCHS = ("mlp", "cnn")


@dataclass(frozen=True)
class NetConfig:
    """Architecture, input and quantization of a reference network (JSON-serializable)."""

    arch: str
    input_shape: tuple
    in_levels: int
    classes: int
    widths: tuple = ()
    quant: QuantConfig = field(default_factory=QuantConfig)
    in_mean: float = 0.0
    in_std: float = 1.0

    def __post_init__(self):
        if self.arch not in ARCHS:
            raise ValueError(f"Architecture must be one of {', '.join(ARCHS)}, not {self.arch!r}")
        object.__setattr__(self, "input_shape", tuple(int(s) for s in self.input_shape))
        if len(self.input_shape) != 3:
            raise ValueError(f"input_shape must be [C, H, W], not {list(self.input_shape)}")
        if not self.widths:
            object.__setattr__(self, "widths", (128, 128) if self.arch == "mlp" else (16, 32))
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        if isinstance(self.quant, dict):
            object.__setattr__(self, "quant", QuantConfig(**self.quant))
        if self.arch == "cnn" and self.in_mean != 0.0:
            # Zero padding is value 0 in the IR; a shifted input would pad with -mean/std.
            raise ValueError("A CNN's in_mean must be 0 so that zero padding means pixel level 0")
        if not self.in_std > 0:
            raise ValueError(f"in_std must be positive, not {self.in_std!r}")

    def to_json(self):
        return asdict(self)

    def with_quant(self, quant):
        return NetConfig(**{**asdict(self), "quant": quant})


class DenseBlock(nn.Module):
    """Linear → [BatchNorm1d] → [ReLU + activation quantizer]; the last block has neither."""

    def __init__(self, in_features, out_features, quant, last=False):
        super().__init__()
        # The last layer shares one weight basis so that all logits share one scale.
        wq = quant.weight_quantizer(1 if last else out_features, out_features)
        self.linear = QuantLinear(in_features, out_features, bias=last, weight_quant=wq)
        self.bn = None if last else nn.BatchNorm1d(out_features)
        self.act = None if last else QuantReLU(quant.act_quantizer())

    def forward(self, x):
        x = self.linear(x)
        return x if self.act is None else self.act(self.bn(x))


class ConvBlock(nn.Module):
    """Conv2d (3×3, padding 1) → BatchNorm2d → ReLU + activation quantizer → [MaxPool 2×2]."""

    def __init__(self, in_channels, out_channels, quant, pool=True):
        super().__init__()
        wq = quant.weight_quantizer(out_channels, 9 * out_channels)
        self.conv = QuantConv2d(in_channels, out_channels, 3, padding=1, bias=False, weight_quant=wq)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = QuantReLU(quant.act_quantizer())
        self.pool = nn.MaxPool2d(2) if pool else None

    def forward(self, x):
        x = self.act(self.bn(self.conv(x)))
        return x if self.pool is None else self.pool(x)


class QuantNet(nn.Module):
    """A reference network built from a :class:`NetConfig`."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.register_buffer("in_mean", torch.tensor(float(config.in_mean)))
        self.register_buffer("in_std", torch.tensor(float(config.in_std)))
        self.blocks = nn.ModuleList(_mlp(config) if config.arch == "mlp" else _cnn(config))

    def forward(self, x):
        x = (x.float() - self.in_mean) / self.in_std
        for block in self.blocks:
            x = block(x)
        return x


def _mlp(cfg):
    c, h, w = cfg.input_shape
    sizes = [c * h * w, *cfg.widths, cfg.classes]
    blocks = [nn.Flatten()]
    for k, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        blocks.append(DenseBlock(fan_in, fan_out, cfg.quant, last=k == len(sizes) - 2))
    return blocks


def _cnn(cfg):
    c, h, w = cfg.input_shape
    blocks = []
    for width in cfg.widths:
        pool = h >= 2 and w >= 2
        blocks.append(ConvBlock(c, width, cfg.quant, pool=pool))
        c, h, w = width, (h // 2 if pool else h), (w // 2 if pool else w)
    blocks += [nn.Flatten(), DenseBlock(c * h * w, cfg.classes, cfg.quant, last=True)]
    return blocks


def build(config):
    return QuantNet(config)
