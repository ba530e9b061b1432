"""The integer IR's types: input spec, layers and model, each validated on construction.

The semantics of every field are in ``docs/architecture.md`` (section "The integer
IR"); :mod:`lqir.fileio` reads and writes them.  Every object validates itself on
construction and raises a ``ValueError`` that names the field, for example
``thresholds: rows must be non-decreasing``; the file reader prefixes ``layers[i].``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields

import numpy as np

from .helpers import conv_output_size, pool_output_size

__all__ = [
    "InputSpec", "DenseLayer", "Conv2dLayer", "MaxPool2dLayer", "FlattenLayer", "Model",
    "MacLayer", "LAYER_TYPES", "bit_planes", "input_values", "weight_values", "accumulator_bounds",
    "signed_width",
]

MAX_BITS = 8
# Coefficients and biases beyond this cannot be summed over a layer without risking
# int64 overflow; real exports use 8..16-bit coefficients.
MAX_COEF = 2**31
# Elements of one input sample: far beyond any network this flow builds, and small
# enough that shape arithmetic never overflows int64.
MAX_INPUT_SIZE = 2**31 - 1
_NAME = re.compile(r"^[A-Za-z0-9_\-]+$")


def _check_int(name, value, lo=None, hi=None):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name}: must be an integer, not {value!r}")
    if lo is not None and value < lo:
        raise ValueError(f"{name}: must be at least {lo}, not {value}")
    if hi is not None and value > hi:
        raise ValueError(f"{name}: must be at most {hi}, not {value}")
    return int(value)


def _check_array(name, arr, dtype, shape):
    if not isinstance(arr, np.ndarray):
        raise ValueError(f"{name}: must be a numpy array, not {type(arr).__name__}")
    if arr.dtype != np.dtype(dtype):
        raise ValueError(f"{name}: dtype must be {np.dtype(dtype)}, not {arr.dtype}")
    if tuple(arr.shape) != tuple(shape):
        raise ValueError(f"{name}: shape must be {list(shape)}, not {list(arr.shape)}")


def _freeze(arr):
    arr = np.array(arr, copy=True)
    arr.setflags(write=False)
    return arr


def bit_planes(code, bits):
    """Bits 0..bits-1 of an integer array, as uint8, on a new last axis."""
    shifts = np.arange(bits, dtype=np.int64)
    return ((np.asarray(code, dtype=np.int64)[..., None] >> shifts) & 1).astype(np.uint8)


def signed_width(lo, hi):
    """Smallest two's-complement width holding every integer in [lo, hi]."""
    lo, hi = int(lo), int(hi)
    width = 1
    while not (-(1 << (width - 1)) <= lo and hi <= (1 << (width - 1)) - 1):
        width += 1
    return width


@dataclass(frozen=True)
class InputSpec:
    """Network input: level indices in ``[0, levels)`` of the given shape."""

    shape: tuple
    levels: int

    def __post_init__(self):
        shape = tuple(self.shape)
        if len(shape) not in (1, 3):
            raise ValueError(f"input.shape: must be [C, H, W] or [N], not {list(shape)}")
        for i, size in enumerate(shape):
            _check_int(f"input.shape[{i}]", size, lo=1)
        object.__setattr__(self, "shape", tuple(int(s) for s in shape))
        if int(np.prod(self.shape, dtype=object)) > MAX_INPUT_SIZE:
            raise ValueError(f"input.shape: {list(self.shape)} has more than {MAX_INPUT_SIZE} elements")
        _check_int("input.levels", self.levels, lo=2, hi=2**16)


@dataclass(frozen=True, kw_only=True)
class MacLayer:
    """Fields shared by ``dense`` and ``conv2d``: the multiply-accumulate layers."""

    name: str
    weight_bits: int
    weight_encoding: str
    in_bits: int
    in_levels: int
    output: str
    acc_bits: int
    weight_code: np.ndarray
    weight_coef: np.ndarray
    bias: np.ndarray
    in_code: np.ndarray
    in_coef: np.ndarray
    out_levels: int | None = None
    thresholds: np.ndarray | None = None

    def __post_init__(self):
        _check_name(self.name)
        _check_int("weight_bits", self.weight_bits, 1, MAX_BITS)
        _check_int("in_bits", self.in_bits, 1, 16)
        _check_int("in_levels", self.in_levels, 2, 2**self.in_bits)
        if self.weight_encoding not in ("pm1", "bin"):
            raise ValueError(f"weight_encoding: must be 'pm1' or 'bin', not {self.weight_encoding!r}")
        self._check_arrays()  # checks `output` too (array_specs: a file reader calls it first)
        self._check_values()

    @property
    def n_out(self):
        """Number of output channels (features)."""
        return self.weight_shape[0]

    @classmethod
    def array_specs(cls, attrs):
        """``{field: (dtype, shape)}`` of the arrays a layer with these manifest attributes holds.

        Checks only the attributes the shapes depend on, so that a file reader can check
        each array's declared dtype and shape before reading it.
        """
        if attrs.get("output") not in ("threshold", "accumulate"):
            raise ValueError(f"output: must be 'threshold' or 'accumulate', not {attrs.get('output')!r}")
        weight_bits = _check_int("weight_bits", attrs.get("weight_bits"), 1, MAX_BITS)
        in_bits = _check_int("in_bits", attrs.get("in_bits"), 1, 16)
        in_levels = _check_int("in_levels", attrs.get("in_levels"), 2, 2**in_bits)
        shape = cls._weight_shape_of(attrs)
        o = shape[0]
        specs = {"weight_code": (np.dtype(np.uint8), shape), "weight_coef": (np.dtype(np.int64), (o, weight_bits)),
                 "bias": (np.dtype(np.int64), (o,)), "in_code": (np.dtype(np.uint16), (in_levels,)),
                 "in_coef": (np.dtype(np.int64), (in_bits,))}
        if attrs.get("output") == "threshold":
            out_levels = _check_int("out_levels", attrs.get("out_levels"), 2, 2**16)
            specs["thresholds"] = (np.dtype(np.int64), (o, out_levels - 1))
        return specs

    def _check_arrays(self):
        attrs = {f.name: getattr(self, f.name) for f in fields(self)}
        for name, (dtype, shape) in self.array_specs(attrs).items():
            _check_array(name, getattr(self, name), dtype, shape)
        if self.output != "threshold" and (self.out_levels is not None or self.thresholds is not None):
            raise ValueError("out_levels: an 'accumulate' layer has no out_levels or thresholds")
        for name in ("weight_code", "weight_coef", "bias", "in_code", "in_coef", "thresholds"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, _freeze(getattr(self, name)))

    def _check_values(self):
        if int(self.weight_code.max(initial=0)) >= 1 << self.weight_bits:
            raise ValueError(f"weight_code: codes must be below 2**weight_bits = {1 << self.weight_bits}")
        if int(self.in_code.max(initial=0)) >= 1 << self.in_bits:
            raise ValueError(f"in_code: codes must be below 2**in_bits = {1 << self.in_bits}")
        for name in ("weight_coef", "in_coef", "bias"):
            arr = getattr(self, name)  # min and max: np.abs(-2**63) overflows to -2**63
            if arr.max(initial=0) >= MAX_COEF or arr.min(initial=0) <= -MAX_COEF:
                raise ValueError(f"{name}: magnitudes must be below 2**31 (int64 accumulation would overflow)")
        if np.any(np.diff(input_values(self)) < 0):
            raise ValueError("in_code: input values must be non-decreasing in the level index")
        if self.thresholds is not None and np.any(np.diff(self.thresholds, axis=1) < 0):
            raise ValueError("thresholds: rows must be non-decreasing")
        _check_int("acc_bits", self.acc_bits, 2, 64)
        lo, hi = accumulator_bounds(self)
        need = signed_width(lo.min(), hi.max())
        if self.acc_bits < need:
            raise ValueError(
                f"acc_bits: {self.acc_bits} cannot hold the accumulator range "
                f"[{lo.min()}, {hi.max()}] (needs {need})")
        if self.thresholds is not None and self.thresholds.size:
            tneed = signed_width(self.thresholds.min(), self.thresholds.max())
            if tneed > self.acc_bits:
                raise ValueError(f"thresholds: values need {tneed} bits, more than acc_bits = {self.acc_bits}")

    def fan_in(self):
        return int(np.prod(self.weight_shape[1:]))

    def attributes(self):
        """The manifest attributes (everything but the arrays)."""
        out = {"name": self.name, "op": self.op}
        out.update(self._shape_attributes())
        for key in ("weight_bits", "weight_encoding", "in_bits", "in_levels", "output",
                    "out_levels", "acc_bits"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out

    def arrays(self):
        names = ["weight_code", "weight_coef", "bias", "in_code", "in_coef"]
        if self.thresholds is not None:
            names.append("thresholds")
        return {n: getattr(self, n) for n in names}


def _check_name(name):
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"name: must be a non-empty string of letters, digits, '_' or '-', not {name!r}")


@dataclass(frozen=True, kw_only=True)
class DenseLayer(MacLayer):
    """``acc[o] = bias[o] + sum_n w[o, n] * value_in[x[n]]`` over a flat input."""

    in_features: int
    out_features: int
    op = "dense"

    def __post_init__(self):
        _check_int("in_features", self.in_features, 1)
        _check_int("out_features", self.out_features, 1)
        super().__post_init__()

    @property
    def weight_shape(self):
        return (self.out_features, self.in_features)

    @staticmethod
    def _weight_shape_of(attrs):
        return (_check_int("out_features", attrs.get("out_features"), 1),
                _check_int("in_features", attrs.get("in_features"), 1))

    def _shape_attributes(self):
        return {"in_features": self.in_features, "out_features": self.out_features}

    def output_shape(self, in_shape):
        if tuple(in_shape) != (self.in_features,):
            raise ValueError(f"in_features: layer expects input shape [{self.in_features}], gets {list(in_shape)}")
        return (self.out_features,)


@dataclass(frozen=True, kw_only=True)
class Conv2dLayer(MacLayer):
    """2-D convolution (square kernel, stride, zero padding that contributes 0)."""

    in_channels: int
    out_channels: int
    kernel: int
    stride: int = 1
    padding: int = 0
    op = "conv2d"

    def __post_init__(self):
        for key in ("in_channels", "out_channels", "kernel", "stride"):
            _check_int(key, getattr(self, key), 1)
        _check_int("padding", self.padding, 0)
        super().__post_init__()

    @property
    def weight_shape(self):
        return (self.out_channels, self.in_channels, self.kernel, self.kernel)

    @staticmethod
    def _weight_shape_of(attrs):
        out_channels, in_channels, kernel = (_check_int(key, attrs.get(key), 1)
                                             for key in ("out_channels", "in_channels", "kernel"))
        return (out_channels, in_channels, kernel, kernel)

    def _shape_attributes(self):
        return {k: getattr(self, k) for k in ("in_channels", "out_channels", "kernel", "stride", "padding")}

    def output_shape(self, in_shape):
        if len(in_shape) != 3 or in_shape[0] != self.in_channels:
            raise ValueError(f"in_channels: layer expects input [{self.in_channels}, H, W], gets {list(in_shape)}")
        h, w = (conv_output_size(s, self.kernel, self.stride, self.padding) for s in in_shape[1:])
        if h < 1 or w < 1:
            raise ValueError(f"kernel: {self.kernel} does not fit input {list(in_shape)}")
        return (self.out_channels, h, w)


@dataclass(frozen=True, kw_only=True)
class MaxPool2dLayer:
    """Max of level indices over each window (no padding, floor mode)."""

    name: str
    kernel: int
    stride: int
    op = "maxpool2d"

    def __post_init__(self):
        _check_name(self.name)
        _check_int("kernel", self.kernel, 1)
        _check_int("stride", self.stride, 1)

    def output_shape(self, in_shape):
        if len(in_shape) != 3:
            raise ValueError(f"op: maxpool2d needs a [C, H, W] input, gets {list(in_shape)}")
        h, w = (pool_output_size(s, self.kernel, self.stride) for s in in_shape[1:])
        if h < 1 or w < 1:
            raise ValueError(f"kernel: {self.kernel} does not fit input {list(in_shape)}")
        return (in_shape[0], h, w)

    def attributes(self):
        return {"name": self.name, "op": self.op, "kernel": self.kernel, "stride": self.stride}

    def arrays(self):
        return {}


@dataclass(frozen=True, kw_only=True)
class FlattenLayer:
    """C-order flattening of ``[C, H, W]`` (PyTorch order)."""

    name: str
    op = "flatten"

    def __post_init__(self):
        _check_name(self.name)

    def output_shape(self, in_shape):
        return (int(np.prod(in_shape)),)

    def attributes(self):
        return {"name": self.name, "op": self.op}

    def arrays(self):
        return {}


LAYER_TYPES = {cls.op: cls for cls in (DenseLayer, Conv2dLayer, MaxPool2dLayer, FlattenLayer)}


@dataclass(frozen=True)
class Model:
    """A whole network: input spec, layers in order, class names and logit scale."""

    input: InputSpec
    layers: tuple
    classes: tuple
    logit_scale: float
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
        if not self.layers:
            raise ValueError("layers: a model needs at least one layer")
        names = [layer.name for layer in self.layers]
        for i, name in enumerate(names):
            if names.index(name) != i:
                raise ValueError(f"layers[{i}].name: {name!r} is used twice")
        shape, levels = self.input.shape, self.input.levels
        for i, layer in enumerate(self.layers):
            try:
                shape, levels = _chain(layer, shape, levels, last=i == len(self.layers) - 1)
            except ValueError as exc:
                raise ValueError(f"layers[{i}].{exc}") from None
        if shape != (len(self.classes),):
            raise ValueError(f"output.classes: {len(self.classes)} classes, but the network outputs {list(shape)}")
        if (isinstance(self.logit_scale, bool) or not isinstance(self.logit_scale, (int, float))
                or not np.isfinite(self.logit_scale) or not self.logit_scale > 0):
            raise ValueError(f"output.logit_scale: must be a positive finite number, not {self.logit_scale!r}")

    def layer_shapes(self):
        """Input shape of every layer, then the output shape."""
        shapes = [self.input.shape]
        for layer in self.layers:
            shapes.append(layer.output_shape(shapes[-1]))
        return shapes

    def mac_layers(self):
        return [layer for layer in self.layers if isinstance(layer, MacLayer)]


def _chain(layer, shape, levels, last):
    out_shape = layer.output_shape(shape)
    if not isinstance(layer, MacLayer):
        return out_shape, levels
    if layer.in_levels != levels:
        raise ValueError(f"in_levels: {layer.in_levels}, but the previous layer produces {levels} levels")
    if last and layer.output != "accumulate":
        raise ValueError("output: the last layer must be 'accumulate' (it yields the logits)")
    if not last and layer.output != "threshold":
        raise ValueError("output: only the last layer may be 'accumulate'; inner layers produce level indices")
    return out_shape, layer.out_levels


def input_values(layer):
    """``value_in[k] = sum_j in_coef[j] * bit_j(in_code[k])`` as int64 ``[L_in]``."""
    return bit_planes(layer.in_code, layer.in_bits).astype(np.int64) @ layer.in_coef


def weight_values(layer):
    """``w = sum_i weight_coef[o, i] * s(bit_i(weight_code))``, int64, weight shape."""
    planes = bit_planes(layer.weight_code, layer.weight_bits).astype(np.int64)
    if layer.weight_encoding == "pm1":
        planes = 2 * planes - 1
    coef = layer.weight_coef.reshape((layer.weight_coef.shape[0],) + (1,) * (planes.ndim - 2) + (-1,))
    return (planes * coef).sum(axis=-1)


def accumulator_bounds(layer):
    """Per-channel (lo, hi) int64 bounds of every reachable accumulator."""
    values = input_values(layer)
    vmin, vmax = int(values.min()), int(values.max())
    if isinstance(layer, Conv2dLayer) and layer.padding > 0:
        vmin, vmax = min(vmin, 0), max(vmax, 0)  # a padded tap contributes 0
    w = weight_values(layer).reshape(layer.n_out, -1)
    extreme = float(np.abs(w).astype(np.float64).sum(axis=1).max()) * max(abs(vmin), abs(vmax))
    if extreme + MAX_COEF >= 2.0**62:
        raise ValueError("weight_coef: the accumulator range overflows int64")
    lo = layer.bias + np.minimum(w * vmin, w * vmax).sum(axis=1)
    hi = layer.bias + np.maximum(w * vmin, w * vmax).sum(axis=1)
    return lo, hi
