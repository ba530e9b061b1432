"""``lqflow import``: a QONNX graph, as Brevitas exports it, to a validated IR model.

The graph is read as one chain of nodes (:mod:`export.qonnx_graph`) in three states::

    input ──Quant/BipolarQuant──▶ levels ──Gemm/MatMul/Conv──▶ pending layer ──quantizer──▶ levels …
                                (MaxPool, Flatten, Relu,      (bias, BatchNormalization,      the last layer
                                 re-quantizing: IR layers      Mul/Add/Sub/Div, Relu & other   folds its affine
                                 or level-table updates)       monotone activations, MaxPool)  steps into logits

The input quantizer's codes are the IR's input level indices (``level = code - min code``;
:func:`input_levels` computes them from real inputs exactly as qonnx does).  A pending layer
becomes an IR threshold layer when the next quantizer arrives (thresholds found by exact
search, :mod:`export.qonnx_fold`), and the last one an ``accumulate`` layer with one
``logit_scale`` (times a ``logit_scale`` in the file's metadata, which ``lqflow export-qonnx``
writes: its graph outputs accumulators).  Whatever has no IR form is refused with the node's
name and the reason (:class:`QonnxImportError`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace

import numpy as np

from lqir import (DEFAULT_COEF_BITS, Conv2dLayer, DenseLayer, FlattenLayer, InputSpec, Model, accumulator_bounds,
                  clamp_thresholds, conv_output_size, fit_acc_bits)

from .qonnx_fold import FoldError, encode_levels, encode_weights, logit_integers, search_thresholds
from .qonnx_graph import QonnxImportError, label, node_attrs, read_graph
from .qonnx_nodes import (MACS, MONOTONE, NON_MONOTONE, QUANTIZERS, Step, affine_step, flattened_shape,
                          monotone_step, read_mac, read_pool, read_quantizer)
from .qonnx_quant import QuantError, Quantizer, integer_grid

__all__ = ["QonnxImportError", "import_qonnx", "input_levels"]

NO_OPS = ("Identity", "Dropout")
AFFINE = ("BatchNormalization", "Mul", "Add", "Sub", "Div", "Neg")
SUPPORTED = ("Quant, BipolarQuant, Trunc, MultiThreshold, Gemm, MatMul, Conv, BatchNormalization, Relu (and other "
             "monotone activations), MaxPool, Flatten, Reshape, scalar or per-channel Mul/Add/Sub/Div")


@dataclass
class Levels:
    """Level indices of real value ``scale * q[level]`` (``q`` int64, non-decreasing)."""

    shape: tuple
    scale: float
    q: np.ndarray


@dataclass
class Pending:
    """A multiply-accumulate layer waiting for its quantizer (or the graph's end)."""

    mac: object                 # qonnx_nodes.Mac
    levels: Levels              # what it reads
    shape: tuple                # its output shape (after any pools among the steps)
    steps: list = field(default_factory=list)

    @property
    def gain(self):
        """Real value of one accumulator unit per channel: weight scale × input scale."""
        return self.mac.scale * self.levels.scale


def _ir_name(node, used):
    """An IR layer name from the node name (letters, digits, '_', '-'), unique."""
    base = re.sub(r"[^A-Za-z0-9_\-]", "_", node.name) or node.op_type
    name, k = base, 1
    while name in used:
        name, k = f"{base}_{k}", k + 1
    used.add(name)
    return name


class _Walk:
    """The state machine over the chain; ``layers`` collects the IR layers in order."""

    def __init__(self, graph, coef_bits):
        self.graph, self.coef_bits = graph, coef_bits
        self.layers, self.names = [], set()
        self.input_quantizer = None
        self.state = graph.input_shape  # a plain tuple until the input quantizer
        self.current = graph.input_name

    def run(self):
        for node in self.graph.nodes:
            if not self.graph.is_dynamic(node):
                continue  # weight quantizers and other constants: read by the layer that uses them
            self._check_chain(node)
            self.state = self._step(node)
            self.current = node.output[0]
        if self.current != self.graph.output_name:
            raise QonnxImportError(f"{self.graph.path}: the chain ends at '{self.current}', not at the graph output "
                                   f"'{self.graph.output_name}'")
        if not isinstance(self.state, Pending):
            raise QonnxImportError(f"{self.graph.path}: the graph ends without a final Gemm/MatMul layer; the IR's "
                                   "last layer yields the logits")
        return self._close_logits(self.state)

    def _check_chain(self, node):
        dynamic = [t for t in node.input if t and t not in self.graph.constants]
        if len(dynamic) > 1:
            raise QonnxImportError(f"{label(node)}: combines two computed tensors {dynamic} (a branch, skip "
                                   "connection or product of activations); the importer reads one chain")
        if dynamic[0] != self.current:
            raise QonnxImportError(f"{label(node)}: reads '{dynamic[0]}', not the previous node's output "
                                   f"'{self.current}'; the importer reads one chain (no branches)")

    def _step(self, node):
        op = node.op_type
        if op in NO_OPS:
            return self.state
        if op in NON_MONOTONE:
            raise QonnxImportError(f"{label(node)}: a non-monotone activation has no threshold form")
        if isinstance(self.state, Pending):
            return self._on_pending(node, self.state)
        if isinstance(self.state, Levels):
            return self._on_levels(node, self.state)
        return self._on_input(node, self.state)

    # --- before the input quantizer ---------------------------------------------------

    def _on_input(self, node, shape):
        if node.op_type in ("Flatten", "Reshape"):
            return self._flatten(node, shape)
        if node.op_type not in ("Quant", "IntQuant", "BipolarQuant"):
            raise QonnxImportError(f"{label(node)}: the graph's input must pass through a quantizer first (a Quant, "
                                   "as Brevitas' QuantIdentity exports it); its codes become the IR's input levels")
        self.input_quantizer = read_quantizer(self.graph, node)
        return Levels(shape, self.input_quantizer.scale, self.input_quantizer.q)

    def _flatten(self, node, shape):
        out = flattened_shape(self.graph, node, shape)
        if out != tuple(shape):
            self.layers.append(FlattenLayer(name=_ir_name(node, self.names)))
        return out

    # --- quantized activations --------------------------------------------------------

    def _on_levels(self, node, lv):
        op = node.op_type
        if op in MACS:
            mac = read_mac(self.graph, node, lv.shape, self.current)
            out = (mac.attrs["out_features"],) if mac.op == "dense" else _conv_shape(mac.attrs, lv.shape)
            steps = [] if mac.bias is None else [Step(node, "affine", np.ones(len(mac.bias)), mac.bias)]
            return Pending(mac, lv, out, steps)
        if op == "MaxPool":
            layer, shape = read_pool(node, _ir_name(node, self.names), lv.shape)
            self.layers.append(layer)
            return replace(lv, shape=shape)
        if op in ("Flatten", "Reshape"):
            return replace(lv, shape=self._flatten(node, lv.shape))
        if op == "Relu":
            return replace(lv, q=np.maximum(lv.q, 0))
        if op in QUANTIZERS:
            return self._requantize(node, lv)
        return self._level_arithmetic(node, lv)

    def _requantize(self, node, lv):
        quant = read_quantizer(self.graph, node)
        if quant.kind == "MultiThreshold" and len(quant.params["thresholds"]) > 1:
            raise QonnxImportError(f"{label(node)}: per-channel thresholds on quantized activations have no IR form")
        index = quant.level(lv.scale * lv.q.astype(np.float64))
        return replace(lv, scale=quant.scale, q=quant.q[index])

    def _level_arithmetic(self, node, lv):
        """Per-tensor arithmetic on quantized values: the level table changes, not the levels."""
        op, what = node.op_type, label(node)
        values = lv.scale * lv.q.astype(np.float64)
        if op == "Cast":
            return replace(lv, **_grid(values, lv.scale, what))
        if op == "Gather":
            return replace(lv, **self._gather(node, values))
        if op not in ("Mul", "Div", "Add", "Sub"):
            raise QonnxImportError(f"{what}: not supported on quantized activations (the importer reads {SUPPORTED})")
        first = node.input[0] != self.current  # the constant comes first
        if first and op in ("Sub", "Div"):
            raise QonnxImportError(f"{what}: c - x and c / x reverse or bend the levels; only x - c and x / c fold")
        c = np.asarray(self.graph.constant(node, 0 if first else 1, "constant"))
        if c.size != 1:
            raise QonnxImportError(f"{what}: a per-channel constant on quantized activations has no IR form "
                                   "(the next layer's levels need one scale)")
        c = float(c.reshape(-1)[0])
        if op in ("Add", "Sub"):
            return replace(lv, **_grid(values + (c if op == "Add" else -c), lv.scale, what))
        if not (np.isfinite(c) and c > 0):
            raise QonnxImportError(f"{what}: only a positive finite factor keeps the levels in order")
        factor = c if op == "Mul" else 1.0 / c
        return replace(lv, **_grid(values * factor, lv.scale * factor, what))

    def _gather(self, node, values):
        """A lookup ``table[level value]`` (our own export's non-affine input values)."""
        what = label(node)
        if node.input[1] != self.current or node_attrs(node).get("axis", 0) != 0:
            raise QonnxImportError(f"{what}: only a lookup of the activations in a constant 1-D table is read")
        table = self.graph.constant(node, 0, "table")
        index = np.rint(values).astype(np.int64)
        if table.ndim != 1 or np.any(index != values) or np.any(index < 0) or np.any(index >= len(table)):
            raise QonnxImportError(f"{what}: the level values {values.tolist()} are not indices into the table")
        looked = table[index]
        if np.any(np.diff(looked) < 0):
            raise QonnxImportError(f"{what}: the table is not non-decreasing over the levels (no threshold form)")
        return _grid(looked, 1.0, what)

    # --- a pending multiply-accumulate layer ----------------------------------------------

    def _on_pending(self, node, pend):
        op = node.op_type
        rank, channels = 1 + len(pend.shape), len(pend.gain)
        if op in AFFINE:
            step = affine_step(self.graph, node, self.current, rank, channels)
            if not (np.all(np.isfinite(step.slope)) and np.all(np.isfinite(step.shift))):
                raise QonnxImportError(f"{label(node)}: its per-channel scale or offset is not finite")
            pend.steps.append(step)
        elif op in MONOTONE:
            pend.steps.append(monotone_step(self.graph, node))
        elif op == "MaxPool":
            layer, pend.shape = read_pool(node, _ir_name(node, self.names), pend.shape)
            pend.steps.append(Step(node, "maxpool", pool=layer))
        elif op in QUANTIZERS:
            return self._close_threshold(pend, node)
        elif op in ("Flatten", "Reshape") and flattened_shape(self.graph, node, pend.shape) == pend.shape:
            pass
        elif op in MACS + ("Flatten", "Reshape"):
            raise QonnxImportError(f"{label(node)}: reads activations that are not quantized; put a quantizer "
                                   "(QuantReLU, QuantIdentity) after the previous layer's activation")
        else:
            raise QonnxImportError(f"{label(node)}: unsupported node (the importer reads {SUPPORTED})")
        return pend

    def _close_threshold(self, pend, node):
        """The pending layer as an IR threshold layer, then its pools; the quantizer's levels next."""
        quant = read_quantizer(self.graph, node)
        rows = len(quant.params.get("thresholds", [0]))
        if rows not in (1, len(pend.gain)):
            raise QonnxImportError(f"{label(node)}: {rows} threshold rows for {len(pend.gain)} channels")
        sign = _direction(pend)
        _check_pools(pend)
        draft = self._draft(pend, sign[:, None], sign)
        lo, hi = accumulator_bounds(draft)
        gain = pend.gain

        def level_of(acc, channel):
            z = gain[channel] * (sign[channel] * acc).astype(np.float64)
            for step in pend.steps:
                if step.kind == "affine":
                    z = z * step.slope[channel] + step.shift[channel]
                elif step.kind == "monotone":
                    z = step.fn(z)
            return quant.level(z, channel)

        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            thresholds = search_thresholds(level_of, lo, hi, quant.levels - 1)
        self.layers.append(replace(draft, output="threshold", out_levels=quant.levels, thresholds=thresholds))
        self.layers += [step.pool for step in pend.steps if step.kind == "maxpool"]
        return Levels(pend.shape, quant.scale, quant.q)

    def _close_logits(self, pend):
        """The last layer: affine steps fold into integer multipliers, bias and one logit scale."""
        gain, shift = pend.gain.copy(), np.zeros(len(pend.gain))
        for step in pend.steps:
            if step.kind != "affine":
                raise QonnxImportError(f"{label(step.node)}: an activation after the last layer; the IR's last layer "
                                       "yields accumulators (the logits), so it must end in Gemm/MatMul and affine "
                                       "steps only")
            gain, shift = gain * step.slope, shift * step.slope + step.shift
        if pend.mac.op != "dense":
            raise QonnxImportError(f"{label(pend.mac.node)}: the last layer must be a Gemm or MatMul (the logits)")
        w = pend.mac.w.reshape(len(gain), -1)
        bound = float((np.abs(w).sum(axis=1) * np.abs(pend.levels.q).max()).max())
        try:
            multiplier, bias, logit_scale = logit_integers(gain, shift, bound, self.coef_bits)
        except FoldError as exc:
            raise QonnxImportError(f"{label(pend.mac.node)}: {exc}") from None
        layer = self._draft(pend, multiplier[:, None], multiplier)
        return replace(layer, bias=layer.bias + bias), logit_scale

    def _draft(self, pend, coef_factor, bias_factor):
        """The IR accumulate layer of ``pend``: ``weight_coef = coef_factor * coef`` and, as bias, the
        input offset's ``offset * sum w`` (see :func:`~export.qonnx_fold.encode_levels`) times ``bias_factor``."""
        mac, what = pend.mac, label(pend.mac.node)
        try:
            in_bits, in_code, in_coef, offset = encode_levels(
                pend.levels.q, exact_zero=mac.op == "conv2d" and mac.attrs["padding"] > 0)
            bits, encoding, code, coef = encode_weights(mac.w)
        except FoldError as exc:
            raise QonnxImportError(f"{what}: {exc}") from None
        base = offset * mac.w.reshape(len(mac.w), -1).sum(axis=1)
        cls = DenseLayer if mac.op == "dense" else Conv2dLayer
        try:
            layer = cls(name=_ir_name(mac.node, self.names), weight_bits=bits, weight_encoding=encoding,
                        in_bits=in_bits, in_levels=len(pend.levels.q), output="accumulate", acc_bits=64,
                        weight_code=code, weight_coef=(coef_factor * coef).astype(np.int64),
                        bias=(bias_factor * base).astype(np.int64), in_code=in_code, in_coef=in_coef, **mac.attrs)
        except ValueError as exc:
            raise QonnxImportError(f"{what}: no IR layer holds it: {exc}") from None
        return layer


def _conv_shape(attrs, in_shape):
    size = [conv_output_size(s, attrs["kernel"], attrs["stride"], attrs["padding"]) for s in in_shape[1:]]
    return (attrs["out_channels"], *size)


def _grid(values, scale, what):
    """New level table ``{scale, q}``: integer values keep scale 1 (so an exported IR model comes
    back with the same integers), else ``values / scale`` must be integers."""
    try:
        s, q = integer_grid(values, 1.0, "")
    except QuantError:
        try:
            s, q = integer_grid(values, scale, f"the level values after {what}")
        except QuantError as exc:
            raise QonnxImportError(str(exc)) from None
    return {"scale": s, "q": q}


def _direction(pend):
    """+1 where the level rises with the accumulator, -1 where it falls (that channel is negated)."""
    sign = np.sign(pend.gain)
    for step in pend.steps:
        if step.kind == "affine":
            sign = sign * np.sign(step.slope)
    return np.where(sign < 0, -1, 1).astype(np.int64)


def _check_pools(pend):
    """Max-pooling commutes with what follows it only where that is non-decreasing."""
    for k, step in enumerate(pend.steps):
        if step.kind != "maxpool":
            continue
        for later in pend.steps[k + 1:]:
            if later.kind == "affine" and np.any(later.slope < 0):
                channel = int(np.argmax(later.slope < 0))
                raise QonnxImportError(f"{label(step.node)}: {label(later.node)} after it scales channel {channel} "
                                       "by a negative factor, which does not commute with the max")


def _metadata(graph):
    """``logit_scale`` and ``classes`` from the metadata (``lqflow export-qonnx`` writes them: the
    graph's outputs are accumulators that ``logit_scale`` turns into logits); absent or odd: ignored."""
    props = {p.key: p.value for p in graph.wrapper.model.metadata_props}
    out = {}
    try:
        scale = float(props.get("logit_scale", "1"))
        if np.isfinite(scale) and scale > 0:
            out["logit_scale"] = scale
        names = json.loads(props.get("classes", "null"))
        if isinstance(names, list) and all(isinstance(n, str) for n in names):
            out["classes"] = names
    except ValueError:
        pass
    return out


def import_qonnx(path, classes=None, coef_bits=DEFAULT_COEF_BITS):
    """The IR :class:`~lqir.Model` of the QONNX file ``path`` (raises :class:`QonnxImportError`)."""
    if not isinstance(coef_bits, int) or not 2 <= coef_bits <= 24:
        raise ValueError(f"coef_bits: must be an integer from 2 to 24, not {coef_bits!r}")
    graph = read_graph(path)
    walk = _Walk(graph, coef_bits)
    last, logit_scale = walk.run()
    layers = walk.layers + [last]
    n_out = last.n_out
    props = _metadata(graph)
    logit_scale *= props.get("logit_scale", 1.0)
    if classes is None:
        classes = props.get("classes") or [str(k) for k in range(n_out)]
    if len(classes) != n_out:
        raise ValueError(f"classes: {len(classes)} names for {n_out} outputs")
    meta = {"source": "qonnx", "onnx": graph.path.name, "qonnx": {
        "input_quantizer": walk.input_quantizer.describe(),
        "producer": f"{graph.wrapper.model.producer_name} {graph.wrapper.model.producer_version}".strip()}}
    try:
        model = Model(InputSpec(graph.input_shape, walk.input_quantizer.levels), tuple(layers), tuple(classes),
                      float(logit_scale), meta)
    except ValueError as exc:
        raise QonnxImportError(f"{graph.path}: the imported layers do not form a valid IR model: {exc}") from None
    return fit_acc_bits(clamp_thresholds(model))


def input_levels(model, x):
    """The IR input (level indices, int64) of real inputs ``x`` for a model imported from QONNX:
    its input quantizer's codes minus the smallest code, computed in float32 as qonnx does."""
    desc = model.meta.get("qonnx", {}).get("input_quantizer") if isinstance(model.meta, dict) else None
    if desc is None:
        raise ValueError("model: was not imported from QONNX (its meta has no qonnx.input_quantizer)")
    x = np.asarray(x, dtype=np.float32)
    if tuple(x.shape[1:]) != model.input.shape:
        raise ValueError(f"x: shape {list(x.shape)} does not match the model input [B, {model.input.shape}]")
    return Quantizer.from_description(desc).level(x)
