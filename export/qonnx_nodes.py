"""What each QONNX node means to the importer: weights, layer shapes, per-channel affine
steps, monotone activations, pools and quantizers — each read and checked, refusals naming
the node (:class:`QonnxImportError`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lqir import MaxPool2dLayer, pool_output_size

from .qonnx_graph import QonnxImportError, channel_vector, label, node_attrs
from .qonnx_quant import QuantError, make_bipolar, make_multithreshold, make_quant, make_trunc, quant_codes

__all__ = ["Mac", "Step", "QUANTIZERS", "MACS", "MONOTONE", "NON_MONOTONE", "read_quantizer", "read_mac",
           "affine_step", "monotone_step", "read_pool", "flattened_shape"]

QUANTIZERS = ("Quant", "IntQuant", "BipolarQuant", "Trunc", "MultiThreshold")
MACS = ("Gemm", "MatMul", "Conv")
#: Activations that are non-decreasing, so they fold into thresholds (evaluated in float64).
MONOTONE = ("Relu", "Clip", "LeakyRelu", "Sigmoid", "Tanh", "HardSigmoid", "Softplus")
#: Activations whose output order is not the input order: no threshold form exists.
NON_MONOTONE = ("Abs", "Gelu", "Mish", "HardSwish", "Sin", "Cos", "Pow")


@dataclass
class Mac:
    """A multiply-accumulate node read into IR terms (integer weights in IR layout)."""

    node: object
    op: str                 # "dense" or "conv2d"
    attrs: dict             # the IR layer's shape fields
    w: np.ndarray           # int64 [O, I] or [O, C, k, k]
    scale: np.ndarray       # float64 [O]: weight scale (times Gemm's alpha)
    bias: np.ndarray | None  # float64 [O] or None


@dataclass
class Step:
    """One per-channel function between a layer and the next quantizer."""

    node: object
    kind: str                       # "affine", "monotone" or "maxpool"
    slope: np.ndarray | None = None  # affine: z * slope + shift, per channel
    shift: np.ndarray | None = None
    fn: object = None               # monotone: a non-decreasing numpy function
    pool: MaxPool2dLayer | None = None


def read_quantizer(graph, node):
    """The :class:`~export.qonnx_quant.Quantizer` of an activation quantizer node."""
    a, kind = node_attrs(node), node.op_type
    try:
        if kind in ("Quant", "IntQuant"):
            return make_quant(graph.constant(node, 1, "scale"), graph.constant(node, 2, "zero point"),
                              graph.constant(node, 3, "bit width"), a.get("signed", 1), a.get("narrow", 0),
                              a.get("rounding_mode", "ROUND"))
        if kind == "BipolarQuant":
            return make_bipolar(graph.constant(node, 1, "scale"))
        if kind == "Trunc":
            if len(node.input) != 6:
                raise QuantError("Trunc v1 (five inputs, no output scale) is not supported; export Trunc v2")
            return make_trunc(graph.constant(node, 1, "scale"), graph.constant(node, 2, "zero point"),
                              graph.constant(node, 4, "output scale"), graph.constant(node, 5, "output bit width"),
                              a.get("signed", 1), a.get("narrow", 0), a.get("rounding_mode", "FLOOR"))
        if a.get("data_layout", "") not in ("", "NC", "NCHW", "NCW"):
            raise QuantError(f"data_layout {a['data_layout']!r}: only channels-first tensors are read")
        return make_multithreshold(graph.constant(node, 1, "thresholds"), a.get("out_scale", 1.0),
                                   a.get("out_bias", 0.0))
    except (QuantError, ValueError) as exc:
        if isinstance(exc, QonnxImportError):
            raise
        raise QonnxImportError(f"{label(node)}: {exc}") from None


# --- weights and multiply-accumulate layers --------------------------------------------

def _weights(graph, node, index):
    """``(w, scale)``: integer weights and their scale, both of the weight tensor's shape.

    Computed in the initializer's dtype (float32) exactly as qonnx executes the ``Quant``.
    """
    name = node.input[index]
    value = graph.initializer(name)
    if value is not None:
        value = np.asarray(value)
        if not np.array_equal(value, np.rint(value)):
            raise QonnxImportError(f"{label(node)}: the weights '{name}' are float, not quantized; put a Quant or "
                                   "BipolarQuant on them (as Brevitas' QuantLinear/QuantConv2d export)")
        return value.astype(np.int64), np.ones(value.shape)
    prod = graph.producer(name)
    if prod is None or prod.op_type not in ("Quant", "IntQuant", "BipolarQuant") or graph.is_dynamic(prod):
        raise QonnxImportError(f"{label(node)}: the weights '{name}' must be an initializer or a Quant/BipolarQuant "
                               "of one")
    w = np.asarray(graph.initializer(prod.input[0]))
    scale = np.asarray(graph.initializer(prod.input[1]))
    if not np.all(np.isfinite(scale) & (scale > 0)):
        raise QonnxImportError(f"{label(prod)}: weight scales must be positive and finite")
    if prod.op_type == "BipolarQuant":
        return np.where(w >= 0, 1, -1).astype(np.int64), np.broadcast_to(scale, w.shape).astype(np.float64)
    a = node_attrs(prod)
    zp, bits = (np.asarray(graph.constant(prod, i, what)) for i, what in ((2, "zero point"), (3, "bit width")))
    if bits.size != 1 or bits.item() != int(bits.item()) or not 1 <= bits.item() <= 16:
        raise QonnxImportError(f"{label(prod)}: the bit width must be one integer from 1 to 16, not {bits.tolist()}")
    if not np.array_equal(zp, np.rint(zp)):
        raise QonnxImportError(f"{label(prod)}: a non-integer zero point {zp.tolist()} has no integer weights")
    codes = quant_codes(w, scale, graph.initializer(prod.input[2]), int(bits.item()), bool(a.get("signed", 1)),
                        bool(a.get("narrow", 0)), a.get("rounding_mode", "ROUND"))
    w_int = np.rint(codes - zp).astype(np.int64)
    return w_int, np.broadcast_to(scale, w.shape).astype(np.float64)


def _per_output(node, scale):
    rows = scale.reshape(len(scale), -1)
    if not np.all(rows == rows[:, :1]):
        raise QonnxImportError(f"{label(node)}: the weight scale varies within an output channel; only per-tensor "
                               "or per-output-channel scales fold")
    return rows[:, 0].copy()


def _bias(graph, node, index, channels, rank, factor=1.0):
    if len(node.input) <= index or not node.input[index]:
        return None
    return factor * channel_vector(graph.constant(node, index, "bias"), rank, channels, label(node))


def read_mac(graph, node, in_shape, current):
    """A Gemm, MatMul or Conv reading ``current`` (levels of shape ``in_shape``) as a :class:`Mac`."""
    if node.input[0] != current or any(t not in graph.constants for t in node.input[1:] if t):
        raise QonnxImportError(f"{label(node)}: the activations must be the first input and the weights and bias "
                               "constants")
    if node.op_type == "Conv":
        return _read_conv(graph, node, in_shape)
    a = node_attrs(node)
    if len(in_shape) != 1:
        raise QonnxImportError(f"{label(node)}: reads a {list(in_shape)} tensor; flatten it first")
    if a.get("transA", 0):
        raise QonnxImportError(f"{label(node)}: transA = 1 is not supported")
    w, scale = _weights(graph, node, 1)
    if w.ndim != 2:
        raise QonnxImportError(f"{label(node)}: the weights must be a matrix, not {list(w.shape)}")
    if node.op_type == "MatMul" or not a.get("transB", 0):
        w, scale = w.T, scale.T  # to the IR's [out, in]
    if w.shape[1] != in_shape[0]:
        raise QonnxImportError(f"{label(node)}: weights {list(w.shape)} do not take {in_shape[0]} inputs")
    alpha = float(a.get("alpha", 1.0)) if node.op_type == "Gemm" else 1.0
    bias = _bias(graph, node, 2, len(w), 2, float(a.get("beta", 1.0))) if node.op_type == "Gemm" else None
    attrs = {"in_features": int(w.shape[1]), "out_features": int(w.shape[0])}
    return Mac(node, "dense", attrs, w, alpha * _per_output(node, scale), bias)


def _square(node, values, what):
    values = [int(v) for v in values]
    if len(set(values)) != 1:
        raise QonnxImportError(f"{label(node)}: {what} {values} must be equal on every axis")
    return values[0]


def _read_conv(graph, node, in_shape):
    a = node_attrs(node)
    w, scale = _weights(graph, node, 1)
    if w.ndim != 4 or len(in_shape) != 3 or in_shape[0] != w.shape[1]:
        raise QonnxImportError(f"{label(node)}: a 2-D convolution with weights {list(w.shape)} cannot read "
                               f"{list(in_shape)}")
    if a.get("group", 1) != 1:
        raise QonnxImportError(f"{label(node)}: grouped or depthwise convolutions (group {a['group']}) are not "
                               "supported")
    if any(d != 1 for d in a.get("dilations", [1, 1])):
        raise QonnxImportError(f"{label(node)}: dilations {a['dilations']} are not supported")
    if a.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        raise QonnxImportError(f"{label(node)}: auto_pad {a['auto_pad']!r} is not supported; give explicit pads")
    kernel = _square(node, w.shape[2:], "the kernel")
    stride = _square(node, a.get("strides", [1, 1]), "strides")
    padding = _square(node, a.get("pads", [0, 0, 0, 0]), "pads")
    attrs = {"in_channels": int(w.shape[1]), "out_channels": int(w.shape[0]), "kernel": kernel, "stride": stride,
             "padding": padding}
    # Conv's bias input is a [O] vector (not broadcast like Add's operand): read it as [1, O]
    bias = None if len(node.input) < 3 or not node.input[2] else \
        channel_vector(graph.constant(node, 2, "bias").reshape(1, -1), 2, len(w), label(node))
    return Mac(node, "conv2d", attrs, w, _per_output(node, scale), bias)


# --- steps between a layer and its quantizer -------------------------------------------

def affine_step(graph, node, current, rank, channels):
    """BatchNormalization, Neg, or Mul/Add/Sub/Div by a scalar or per-channel constant."""
    what, op = label(node), node.op_type
    if op == "Neg":
        return Step(node, "affine", -np.ones(channels), np.zeros(channels))
    if op == "BatchNormalization":
        if node_attrs(node).get("training_mode", 0):
            raise QonnxImportError(f"{what}: training_mode = 1; export the network in eval mode")
        # BatchNormalization's parameters are [C] vectors of axis 1 whatever the rank
        gamma, beta, mean, var = (channel_vector(graph.constant(node, i, n).reshape(1, -1), 2, channels, what)
                                  for i, n in ((1, "scale"), (2, "bias"), (3, "mean"), (4, "variance")))
        slope = gamma / np.sqrt(var + float(node_attrs(node).get("epsilon", 1e-5)))
        return Step(node, "affine", slope, beta - slope * mean)
    first = node.input[0] != current  # the constant comes first: c - x, c / x
    c = channel_vector(graph.constant(node, 0 if first else 1, "constant"), rank, channels, what)
    one, zero = np.ones(channels), np.zeros(channels)
    if op == "Mul":
        return Step(node, "affine", c, zero)
    if op == "Add":
        return Step(node, "affine", one, c)
    if op == "Sub":
        return Step(node, "affine", -one, c) if first else Step(node, "affine", one, -c)
    if first or np.any(c == 0):
        raise QonnxImportError(f"{what}: only division by a non-zero constant is affine")
    return Step(node, "affine", 1.0 / c, zero)


def monotone_step(graph, node):
    """A non-decreasing activation as a float64 numpy function."""
    a, op = node_attrs(node), node.op_type
    if op == "Relu":
        return Step(node, "monotone", fn=lambda z: np.maximum(z, 0.0))
    if op == "Clip":
        lo = graph.constant(node, 1, "min").item() if len(node.input) > 1 and node.input[1] else a.get("min", -np.inf)
        hi = graph.constant(node, 2, "max").item() if len(node.input) > 2 and node.input[2] else a.get("max", np.inf)
        return Step(node, "monotone", fn=lambda z: np.clip(z, lo, hi))
    if op == "LeakyRelu":
        alpha = float(a.get("alpha", 0.01))
        if alpha < 0:
            raise QonnxImportError(f"{label(node)}: alpha {alpha} < 0 makes the activation non-monotone; it has no "
                                   "threshold form")
        return Step(node, "monotone", fn=lambda z: np.where(z >= 0, z, alpha * z))
    if op == "HardSigmoid":
        alpha, beta = float(a.get("alpha", 0.2)), float(a.get("beta", 0.5))
        if alpha < 0:
            raise QonnxImportError(f"{label(node)}: alpha {alpha} < 0 makes the activation decreasing")
        return Step(node, "monotone", fn=lambda z: np.clip(alpha * z + beta, 0.0, 1.0))
    fns = {"Sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z)), "Tanh": np.tanh,
           "Softplus": lambda z: np.logaddexp(0.0, z)}
    return Step(node, "monotone", fn=fns[op])


def read_pool(node, name, in_shape):
    """An ONNX MaxPool as the IR's ``maxpool2d`` (square, no padding, floor mode) and its output shape."""
    a = node_attrs(node)
    if len(in_shape) != 3:
        raise QonnxImportError(f"{label(node)}: max-pooling needs a [C, H, W] tensor, not {list(in_shape)}")
    kernel = _square(node, a.get("kernel_shape", [1, 1]), "kernel_shape")
    stride = _square(node, a.get("strides", [1, 1]), "strides")
    if any(p != 0 for p in a.get("pads", [0, 0, 0, 0])) or a.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        raise QonnxImportError(f"{label(node)}: padded max-pooling is not supported")
    if any(d != 1 for d in a.get("dilations", [1, 1])):
        raise QonnxImportError(f"{label(node)}: dilated max-pooling is not supported")
    if a.get("ceil_mode", 0) and any((s - kernel) % stride for s in in_shape[1:]):
        raise QonnxImportError(f"{label(node)}: ceil_mode = 1 adds partial windows the IR's floor-mode pool lacks")
    layer = MaxPool2dLayer(name=name, kernel=kernel, stride=stride)
    return layer, (in_shape[0],) + tuple(pool_output_size(s, kernel, stride) for s in in_shape[1:])


def flattened_shape(graph, node, in_shape):
    """The shape after a Flatten/Reshape: unchanged, or ``[C*H*W]`` (C order) — else refused."""
    out = graph.wrapper.get_tensor_shape(node.output[0])
    size = int(np.prod(in_shape))
    if out is not None and tuple(out[1:]) == tuple(in_shape):
        return tuple(in_shape)
    if out is None or len(out) != 2 or out[1] != size:
        raise QonnxImportError(f"{label(node)}: reshapes {list(in_shape)} to {out}; only flattening to "
                               f"[N, {size}] has an IR form")
    return (size,)
