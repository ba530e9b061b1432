"""Reading a QONNX file for the importer: checks, qonnx's clean-up, constants and attributes.

:func:`read_graph` refuses what is not a well-formed ONNX graph (naming the file, or the
node and its missing input), then runs qonnx's ``cleanup_model`` (shape inference,
constant folding that keeps ``Quant``/``BipolarQuant``, unique names such as ``Conv_3``)
and wraps the result in a :class:`Graph` the importer walks node by node.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.util.cleanup import cleanup_model

from lqir.fileio import require_file

__all__ = ["QonnxImportError", "Graph", "read_graph", "label", "node_attrs", "channel_vector"]


class QonnxImportError(ValueError):
    """The file is no QONNX graph the IR can express; the message names the file or the node."""


def label(node):
    """``node 'Conv_3' (Conv)``: how every message names a node."""
    return f"node '{node.name}' ({node.op_type})"


def node_attrs(node):
    """A node's attributes as Python values (strings decoded)."""
    out = {}
    for attr in node.attribute:
        value = helper.get_attribute_value(attr)
        out[attr.name] = value.decode() if isinstance(value, bytes) else value
    return out


def channel_vector(value, rank, channels, what):
    """The ``[channels]`` float64 vector of a constant that broadcasts per channel (axis 1)
    over a rank-``rank`` tensor: a scalar, ``[C]`` (rank 2), ``[C, 1, 1]``, ``[1, C, 1, 1]``..."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim > rank:
        raise QonnxImportError(f"{what}: a constant of shape {list(arr.shape)} does not fit a rank-{rank} tensor")
    shape = (1,) * (rank - arr.ndim) + arr.shape
    if any(size != 1 for axis, size in enumerate(shape) if axis != 1) or shape[1] not in (1, channels):
        raise QonnxImportError(f"{what}: a constant of shape {list(arr.shape)} is not one value per channel "
                               f"({channels} channels on axis 1); only scalar or per-channel constants fold")
    return np.broadcast_to(arr.reshape(-1), (channels,)).astype(np.float64)


def _parse(path):
    path = require_file(path, f"{path}: is a folder, not an ONNX file", f"{path}: no such file", QonnxImportError)
    data = path.read_bytes()
    try:
        proto = onnx.load_model_from_string(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise QonnxImportError(f"{path}: not an ONNX model (or a truncated one): {exc}") from None
    if not proto.HasField("graph") or not proto.graph.node:
        raise QonnxImportError(f"{path}: not an ONNX model (or a truncated one): the file holds no graph nodes")
    return proto


def _check_wiring(path, graph):
    """Every node input exists before the node (inputs, initializers, earlier outputs)."""
    known = {t.name for t in graph.input} | {t.name for t in graph.initializer}
    for index, node in enumerate(graph.node):
        name = node.name or f"#{index}"
        for tensor in node.input:
            if tensor and tensor not in known:
                raise QonnxImportError(
                    f"{path}: node '{name}' ({node.op_type}): input '{tensor}' is produced by no earlier node and "
                    "is no initializer or graph input (missing or misordered nodes)")
        known.update(node.output)
    for out in graph.output:
        if out.name not in known:
            raise QonnxImportError(f"{path}: graph output '{out.name}' is produced by no node")


@dataclass
class Graph:
    """A cleaned-up QONNX graph: one input, one output, nodes in topological order."""

    path: Path
    wrapper: ModelWrapper
    input_name: str
    input_shape: tuple            # without the batch axis
    output_name: str
    constants: set                # tensor names computed from initializers alone

    @property
    def nodes(self):
        return list(self.wrapper.graph.node)

    def initializer(self, name):
        return self.wrapper.get_initializer(name)

    def producer(self, name):
        return self.wrapper.find_producer(name)

    def constant(self, node, index, what):
        """Input ``index`` of ``node`` as a float64 array (it must be an initializer)."""
        if index >= len(node.input) or not node.input[index]:
            raise QonnxImportError(f"{label(node)}: the {what} (input {index}) is missing")
        value = self.initializer(node.input[index])
        if value is None:
            raise QonnxImportError(f"{label(node)}: the {what} '{node.input[index]}' must be a constant (initializer)")
        return np.asarray(value, dtype=np.float64)

    def is_dynamic(self, node):
        return any(t and t not in self.constants for t in node.input)


def _constants(graph):
    names = {t.name for t in graph.initializer}
    for node in graph.node:
        if all(not t or t in names for t in node.input):
            names.update(node.output)
    return names


def read_graph(path):
    """Parse, check and clean up ``path``; raise :class:`QonnxImportError` naming what is wrong."""
    proto = _parse(path)
    _check_wiring(path, proto.graph)
    try:
        wrapper = cleanup_model(ModelWrapper(proto))
    except Exception as exc:  # qonnx raises anything from AssertionError to KeyError on odd graphs
        raise QonnxImportError(f"{path}: qonnx could not clean up the graph ({type(exc).__name__}: {exc})") from None
    graph = wrapper.graph
    inputs = [t for t in graph.input if wrapper.get_initializer(t.name) is None]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise QonnxImportError(f"{path}: the graph needs exactly one input and one output, not "
                               f"{[t.name for t in inputs]} and {[t.name for t in graph.output]}")
    shape = wrapper.get_tensor_shape(inputs[0].name)
    if shape is None or len(shape) not in (2, 4) or any(not isinstance(s, int) or s < 1 for s in shape[1:]):
        raise QonnxImportError(f"{path}: input '{inputs[0].name}' has shape {shape}; the importer needs "
                               "[N, features] or [N, C, H, W] with known sizes")
    return Graph(Path(path), wrapper, inputs[0].name, tuple(int(s) for s in shape[1:]), graph.output[0].name,
                 _constants(graph))
