"""``lqflow export-qonnx``: an IR model as a QONNX graph that qonnx's ``execute_onnx`` runs
to exactly the IR's integers (FINN's convention: integer weights behind ``Quant`` nodes,
``MultiThreshold`` for the threshold layers).

The graph's input is the level indices (float tensors holding integers, as ONNX carries
them) behind an identity ``Quant`` (scale 1, unsigned): ``lqflow import`` reads it back as
the input quantizer.  Each multiply-accumulate layer becomes::

    levels ─[Mul/Add, or Cast+Gather: value_in]─ Gemm/Conv(Quant(integer weights), bias) ─ MultiThreshold ─ levels

and the last one's accumulators are the output (``logit_scale`` and the classes are in the
metadata).  qonnx runs ``Quant`` and ``MultiThreshold`` in float32 (onnxruntime the rest),
so every partial sum must stay below 2**24; a layer that does not is refused by name.
"""

from __future__ import annotations

import json

import numpy as np
from onnx import TensorProto, helper, numpy_helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper

from lqir import (FORMAT, VERSION, Conv2dLayer, FlattenLayer, MacLayer, MaxPool2dLayer, atomic_write_bytes,
                  bits_for_levels, clamp_thresholds, input_values, signed_width, weight_values)

__all__ = ["QonnxExportError", "FLOAT_EXACT", "INPUT", "OUTPUT", "check_float_exact", "build_qonnx", "export_qonnx"]

#: float32 holds every integer below 2**24 exactly (a 24-bit significand).
FLOAT_EXACT = 2**24
QONNX_DOMAIN = "qonnx.custom_op.general"
ONNX_OPSET = 13
INPUT, OUTPUT = "global_in", "global_out"


class QonnxExportError(ValueError):
    """The model has no exact float32 QONNX form; the message names the layer."""


def _uint_type(levels):
    bits = bits_for_levels(levels)
    return "BINARY" if bits == 1 else f"UINT{bits}"


def check_float_exact(model):
    """Refuse a layer whose partial sums (or values, weights) reach 2**24 in magnitude."""
    for index, layer in enumerate(model.layers):
        if not isinstance(layer, MacLayer):
            continue
        values = np.abs(input_values(layer)).max()
        w = np.abs(weight_values(layer).reshape(layer.n_out, -1))
        worst = int((np.abs(layer.bias) + w.sum(axis=1) * values).max())
        if max(worst, int(w.max()), int(values)) >= FLOAT_EXACT:
            raise QonnxExportError(
                f"layers[{index}] ({layer.name}): partial sums reach {worst}, not below 2**24; float32 ONNX "
                "tensors (qonnx executes Quant and MultiThreshold in float32) cannot hold them exactly")


class _Builder:
    """Nodes, initializers, tensor shapes and datatype annotations of the graph being built."""

    def __init__(self, batch):
        self.batch = batch
        self.nodes, self.inits, self.shapes, self.types, self.datatypes = [], [], {}, {}, {}

    def const(self, name, array):
        self.inits.append(numpy_helper.from_array(np.asarray(array, dtype=np.float32), name))
        return name

    def node(self, op, inputs, output, shape, domain="", elem_type=TensorProto.FLOAT, **attrs):
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, domain=domain, **attrs))
        self.shapes[output] = (self.batch, *shape)
        self.types[output] = elem_type
        return output


def _values(b, layer, x, shape):
    """``value_in`` of the level tensor ``x``: nothing, Mul/Add when affine, else a table lookup."""
    values = input_values(layer)
    k = np.arange(len(values))
    step = int(values[1] - values[0]) if len(values) > 1 else 0
    name = layer.name
    if np.array_equal(values, k):
        return x
    if np.array_equal(values, values[0] + step * k):
        if step != 1:
            x = b.node("Mul", [x, b.const(f"{name}_step", step)], f"{name}_scaled", shape)
        if values[0] != 0:
            x = b.node("Add", [x, b.const(f"{name}_offset", values[0])], f"{name}_values", shape)
        return x
    # the table covers every index the input Quant can pass (its 2**bits codes); the extra
    # entries repeat the top value so that the table stays non-decreasing
    table = np.concatenate([values, np.full((1 << bits_for_levels(len(values))) - len(values), values[-1])])
    index = b.node("Cast", [x], f"{name}_index", shape, elem_type=TensorProto.INT64, to=TensorProto.INT64)
    return b.node("Gather", [b.const(f"{name}_table", table), index], f"{name}_values", shape, axis=0)


def _weights(b, layer):
    w = weight_values(layer)
    bits = max(2, signed_width(w.min(), w.max()))  # a 1-bit signed Quant is bipolar in qonnx
    out = b.node("Quant", [b.const(f"{layer.name}_w_int", w), b.const(f"{layer.name}_w_scale", 1.0),
                           b.const(f"{layer.name}_w_zero", 0.0), b.const(f"{layer.name}_w_bits", bits)],
                 f"{layer.name}_w", w.shape, domain=QONNX_DOMAIN, signed=1, narrow=0, rounding_mode="ROUND")
    b.shapes[out] = w.shape
    b.datatypes[out] = f"INT{bits}"
    return out


def _mac(b, layer, x, in_shape, out_shape, last):
    x = _values(b, layer, x, in_shape)
    w, bias = _weights(b, layer), b.const(f"{layer.name}_bias", layer.bias)
    acc = OUTPUT if last else f"{layer.name}_acc"
    if isinstance(layer, Conv2dLayer):
        k, s, p = layer.kernel, layer.stride, layer.padding
        b.node("Conv", [x, w, bias], acc, out_shape, kernel_shape=[k, k], strides=[s, s], pads=[p] * 4)
    else:
        b.node("Gemm", [x, w, bias], acc, out_shape, transB=1)
    if layer.output == "accumulate":
        return acc
    out = b.node("MultiThreshold", [acc, b.const(f"{layer.name}_thresholds", layer.thresholds)],
                 f"{layer.name}_levels", out_shape, domain=QONNX_DOMAIN, out_dtype=_uint_type(layer.out_levels),
                 data_layout="NCHW" if len(out_shape) == 3 else "NC")
    b.datatypes[out] = _uint_type(layer.out_levels)
    return out


def _graph(b, model):
    shapes = model.layer_shapes()
    in_bits = bits_for_levels(model.input.levels)
    x = b.node("Quant", [INPUT, b.const(f"{INPUT}_scale", 1.0), b.const(f"{INPUT}_zero", 0.0),
                         b.const(f"{INPUT}_bits", in_bits)], f"{INPUT}_levels", shapes[0],
               domain=QONNX_DOMAIN, signed=0, narrow=0, rounding_mode="ROUND")
    b.datatypes[INPUT] = b.datatypes[x] = _uint_type(model.input.levels)
    for i, layer in enumerate(model.layers):
        if isinstance(layer, MacLayer):
            x = _mac(b, layer, x, shapes[i], shapes[i + 1], last=i == len(model.layers) - 1)
        elif isinstance(layer, MaxPool2dLayer):
            k, s = layer.kernel, layer.stride
            x = b.node("MaxPool", [x], layer.name, shapes[i + 1], kernel_shape=[k, k], strides=[s, s])
        elif isinstance(layer, FlattenLayer):
            x = b.node("Flatten", [x], layer.name, shapes[i + 1], axis=1)
        else:
            raise QonnxExportError(f"layers[{i}] ({layer.name}): op {layer.op!r} has no QONNX form here")
    return x


def build_qonnx(model, batch=1):
    """The QONNX :class:`ModelWrapper` of ``model`` for inputs of ``batch`` samples."""
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch: must be a positive integer, not {batch!r}")
    model = clamp_thresholds(model)  # thresholds within reach: every one is a float32-exact integer
    check_float_exact(model)
    b = _Builder(batch)
    _graph(b, model)
    value_info = [helper.make_tensor_value_info(name, b.types[name], list(shape))
                  for name, shape in b.shapes.items() if name != OUTPUT]
    graph = helper.make_graph(
        b.nodes, "lqflow", [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, [batch, *model.input.shape])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, [batch, len(model.classes)])],
        initializer=b.inits, value_info=value_info)
    proto = helper.make_model(graph, producer_name="lqflow", opset_imports=[
        helper.make_opsetid("", ONNX_OPSET), helper.make_opsetid(QONNX_DOMAIN, 1)])
    proto.ir_version = 8  # onnxruntime, which qonnx runs standard nodes on, reads IR 8 everywhere
    meta = {"logit_scale": repr(float(model.logit_scale)), "classes": json.dumps(list(model.classes)),
            "input_levels": str(model.input.levels), "source": f"lqflow export-qonnx ({FORMAT} v{VERSION})"}
    helper.set_model_props(proto, meta)
    wrapper = ModelWrapper(proto)
    for name, dtype in b.datatypes.items():
        wrapper.set_tensor_datatype(name, DataType[dtype])
    return wrapper


def export_qonnx(model, path, batch=1):
    """Write ``model`` as a QONNX file (atomically); returns the path."""
    wrapper = build_qonnx(model, batch)
    return atomic_write_bytes(path, wrapper.model.SerializeToString())
