"""Lowering a trained :class:`models.QuantNet` to the integer IR.

A list of small, pure, verb-named steps over :class:`Stage` records::

    read_network → integerize_bases → fold_thresholds → fold_logits → emit_model
    → clamp_thresholds → fit_acc_bits          (the last two: IR → IR passes, :mod:`lqir.passes`)

Only :func:`read_network` touches PyTorch; every later step is numpy on frozen records.
Real-valued pre-activation of a multiply-accumulate layer, after integerization::

    z[o] = c[o] * acc'[o] + d[o]      c = weight_scale[o] * in_scale
                                       d = weight_scale[o] * in_offset * sum_n w[o, n] + bias[o]

Batch-norm ``y = g z + h`` and ReLU + activation quantizer (``y > t_m``) fold into
integer thresholds ``acc >= T``; a negative slope negates the channel.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from torch import nn

from lqir import (DEFAULT_COEF_BITS, Conv2dLayer, DenseLayer, FlattenLayer, InputSpec,
                  MaxPool2dLayer, Model, accumulator_bounds, bits_for_levels, clamp_thresholds,
                  fit_acc_bits, weight_values)
from models.nets import ConvBlock, DenseBlock

__all__ = ["Stage", "LoweringError", "lower", "read_network", "integerize_bases",
           "fold_thresholds", "fold_logits", "emit_model"]

class LoweringError(ValueError):
    """The network cannot be expressed exactly in the IR; the message names the layer."""


@dataclass(frozen=True)
class Stage:
    """One layer on its way to the IR (numpy only)."""

    op: str
    name: str
    attrs: dict
    weight_code: np.ndarray | None = None    # uint8, IR layout
    weight_basis: np.ndarray | None = None   # float [O, K_w]
    weight_shared: bool = False              # one basis (and scale) for all channels
    bias: np.ndarray | None = None           # float [O]
    bn_slope: np.ndarray | None = None       # float [O]: y = slope * z + shift
    bn_shift: np.ndarray | None = None
    out_midpoints: np.ndarray | None = None  # float [L_out - 1]: ReLU + quantizer thresholds
    in_code: np.ndarray | None = None        # uint16 [L_in]
    in_basis: np.ndarray | None = None       # float [K_a]: real value = in_scale-free basis
    in_offset: float = 0.0
    in_exact_scale: float | None = None      # raw input: in_coef = 2**j exactly, this scale
    # set by integerize_bases
    weight_coef: np.ndarray | None = None
    weight_scale: np.ndarray | None = None
    in_coef: np.ndarray | None = None
    in_scale: float | None = None
    # set by fold_thresholds / fold_logits
    negate: np.ndarray | None = None
    thresholds: np.ndarray | None = None
    bias_int: np.ndarray | None = None
    logit_scale: float | None = None


# --- step 1: read the trained network (the only PyTorch-aware step) -------------------

def read_network(net):
    """Stages of a :class:`models.QuantNet`: codes, bases, biases, BN and thresholds."""
    cfg = net.config
    if cfg.quant.method == "float":
        raise LoweringError("network: a float model has no integer form; train it with --quantizer lq or uniform")
    net.eval()
    _check_finite(net)
    levels = cfg.in_levels
    in_bits = bits_for_levels(levels)
    # The raw input: level k has integer value k; its real value is k/std - mean/std.
    in_code = np.arange(levels, dtype=np.uint16)
    in_basis = (2.0 ** np.arange(in_bits)) / cfg.in_std
    in_offset = -cfg.in_mean / cfg.in_std
    stages, counts = [], {}
    for block in net.blocks:
        if isinstance(block, nn.Flatten):
            stages.append(Stage("flatten", _name(counts, "flatten"), {}))
            continue
        if not isinstance(block, (DenseBlock, ConvBlock)):
            raise LoweringError(f"network: unsupported block {type(block).__name__}")
        stage, act = _read_mac(block, _name(counts, "fc" if isinstance(block, DenseBlock) else "conv"))
        stages.append(replace(stage, in_code=in_code, in_basis=in_basis, in_offset=in_offset,
                              in_exact_scale=1.0 / cfg.in_std if not stages or _first_mac(stages) else None))
        if act is not None:
            levels_sorted, order = (t[0].detach().double().numpy() for t in act.sorted_levels())
            stages[-1] = replace(stages[-1], out_midpoints=(levels_sorted[1:] + levels_sorted[:-1]) / 2)
            in_code = order.astype(np.uint16)
            in_basis, in_offset = act.effective_basis()[0].detach().double().numpy(), 0.0
        if getattr(block, "pool", None) is not None:
            pool = block.pool
            stages.append(Stage("maxpool2d", _name(counts, "pool"),
                                {"kernel": _int(pool.kernel_size), "stride": _int(pool.stride)}))
    return stages


def _check_finite(net):
    """Refuse NaN/inf anywhere (a diverged or damaged network) and negative batch-norm variances."""
    for name, tensor in [*net.named_parameters(), *net.named_buffers()]:
        if tensor.is_floating_point() and not bool(tensor.detach().isfinite().all()):
            raise LoweringError(f"{name}: holds NaN or inf values (the network diverged or its checkpoint "
                                "is damaged); retrain it")
        if name.endswith("running_var") and bool((tensor < 0).any()):
            raise LoweringError(f"{name}: a batch-norm variance is negative (the checkpoint is damaged)")


def _first_mac(stages):
    return all(s.weight_basis is None for s in stages)


def _name(counts, prefix):
    counts[prefix] = counts.get(prefix, -1) + 1
    return f"{prefix}{counts[prefix]}"


def _int(value):
    return value[0] if isinstance(value, tuple) else int(value)


def _read_mac(block, name):
    layer = getattr(block, "linear", None) or block.conv
    wq = layer.weight_quant
    _, _, bits = wq.encode(layer.weight.detach())
    bits = (bits > 0).numpy().astype(np.int64)
    code = (bits << np.arange(wq.bits)).sum(axis=-1).reshape(layer.weight.shape).astype(np.uint8)
    basis = wq.effective_basis().detach().double().numpy()
    out = layer.weight.shape[0]
    if layer.bias is not None:
        bias = layer.bias.detach().double().numpy()
    else:
        bias = np.zeros(out)
    slope, shift = np.ones(out), np.zeros(out)
    if block.bn is not None:
        bn = block.bn
        slope = (bn.weight / (bn.running_var + bn.eps).sqrt()).detach().double().numpy()
        shift = bn.bias.detach().double().numpy() - slope * bn.running_mean.double().numpy()
    if hasattr(block, "conv"):
        attrs = {"in_channels": layer.in_channels, "out_channels": out, "kernel": _int(layer.kernel_size),
                 "stride": _int(layer.stride), "padding": _int(layer.padding)}
        op = "conv2d"
    else:
        attrs = {"in_features": layer.in_features, "out_features": out}
        op = "dense"
    attrs.update(weight_bits=wq.bits, weight_encoding=wq.encoding)
    stage = Stage(op, name, attrs, weight_code=code, weight_basis=np.broadcast_to(basis, (out, wq.bits)).copy(),
                  weight_shared=basis.shape[0] == 1, bias=bias, bn_slope=slope, bn_shift=shift)
    act = block.act.act_quant if block.act is not None else None
    return stage, act


# --- step 2: integer coefficients ------------------------------------------------------

def _to_coef(basis, coef_bits, axis):
    """Integer coefficients within ``coef_bits`` (signed) and their scale, per row or shared.

    The top coefficient may land anywhere in the upper half of the range; the scale
    with the smallest squared rounding error of the basis wins.
    """
    rows = basis.reshape(1, -1) if axis is None else basis
    top = np.abs(rows).max(axis=1, keepdims=True)
    top = np.where(top > 0, top, 1.0)
    candidates = np.arange(2 ** (coef_bits - 2), 2 ** (coef_bits - 1), dtype=np.float64)  # top coefficient
    scales = top / candidates[None, :]                                     # [R, M]
    err = ((np.rint(rows[:, None, :] / scales[..., None]) * scales[..., None] - rows[:, None, :]) ** 2).sum(-1)
    scale = scales[np.arange(len(rows)), err.argmin(axis=1)][:, None]      # [R, 1]
    coef = np.rint(rows / scale).astype(np.int64)
    return coef.reshape(basis.shape), (scale if axis is not None else scale[0])


def integerize_bases(stages, coef_bits=DEFAULT_COEF_BITS):
    """Integer ``weight_coef`` per channel (shared for a shared basis) and ``in_coef`` per layer."""
    if not isinstance(coef_bits, int) or not 2 <= coef_bits <= 24:
        raise LoweringError(f"coef_bits: must be an integer from 2 to 24, not {coef_bits!r}")
    out = []
    for st in stages:
        if st.weight_basis is None:
            out.append(st)
            continue
        w_coef, w_scale = _to_coef(st.weight_basis, coef_bits, axis=None if st.weight_shared else 1)
        if st.in_exact_scale is not None:
            # the raw input: level k is the integer k exactly, at scale 1/std
            in_scale = st.in_exact_scale
            in_coef = (1 << np.arange(len(st.in_basis))).astype(np.int64)
        else:
            in_coef, scale = _to_coef(st.in_basis, coef_bits, axis=None)
            in_scale = float(scale.ravel()[0])
        values = ((st.in_code.astype(np.int64)[:, None] >> np.arange(len(in_coef))) & 1) @ in_coef
        if np.any(np.diff(values) < 0):
            raise LoweringError(f"{st.name}: with {coef_bits}-bit coefficients the input levels are no longer "
                                "in order; export with more --coef-bits")
        out.append(replace(st, weight_coef=w_coef, weight_scale=np.broadcast_to(w_scale.ravel(), (len(w_coef),)),
                           in_coef=in_coef, in_scale=in_scale))
    return out


def _affine(st):
    """``(c, d)`` with ``z = c * acc' + d`` per output channel."""
    w = weight_values(_draft(st)).reshape(len(st.weight_coef), -1)
    c = st.weight_scale * st.in_scale
    d = st.weight_scale * st.in_offset * w.sum(axis=1) + st.bias
    return c, d


def _draft(st, negate=None, bias=None, acc_bits=64):
    """The stage as an IR accumulate layer (for bounds and weight values)."""
    coef = st.weight_coef if negate is None else np.where(negate[:, None], -st.weight_coef, st.weight_coef)
    common = dict(name=st.name, weight_bits=st.attrs["weight_bits"], weight_encoding=st.attrs["weight_encoding"],
                  in_bits=len(st.in_coef), in_levels=len(st.in_code), output="accumulate", acc_bits=acc_bits,
                  weight_code=st.weight_code, weight_coef=coef.astype(np.int64),
                  bias=np.zeros(len(coef), np.int64) if bias is None else bias,
                  in_code=st.in_code, in_coef=st.in_coef)
    shape = {k: v for k, v in st.attrs.items() if k not in ("weight_bits", "weight_encoding")}
    return (DenseLayer if st.op == "dense" else Conv2dLayer)(**common, **shape)


# --- step 3: thresholds ----------------------------------------------------------------

def fold_thresholds(stages):
    """Fold scales, bias, input offset, batch-norm and ReLU into ``acc >= T`` thresholds."""
    out = []
    for st in stages:
        if st.out_midpoints is None:
            out.append(st)
            continue
        c, d = _affine(st)
        slope = st.bn_slope * c          # y = slope * acc' + offset
        offset = st.bn_slope * d + st.bn_shift
        negate = slope < 0
        lo, hi = accumulator_bounds(_draft(st, negate))
        t = st.out_midpoints[None, :]
        # With the channel negated where slope < 0: y = |slope| * acc + offset, so
        # y > t  <=>  acc > (t - offset) / |slope|  <=>  acc >= floor(that) + 1.
        with np.errstate(divide="ignore", invalid="ignore"):
            tau = (t - offset[:, None]) / np.abs(slope)[:, None]
        thr = np.floor(np.clip(tau, lo[:, None] - 1, hi[:, None] + 1)) + 1
        constant_true = (offset[:, None] > t)  # slope == 0: y is the constant `offset`
        thr = np.where((slope == 0)[:, None], np.where(constant_true, lo[:, None], hi[:, None] + 1), thr)
        thr = np.where(t < 0, lo[:, None], thr)  # ReLU output >= 0 always exceeds a negative midpoint
        thr = np.clip(thr, lo[:, None], hi[:, None] + 1).astype(np.int64)
        out.append(replace(st, negate=negate, thresholds=np.maximum.accumulate(thr, axis=1)))
    return out


# --- step 4: logits --------------------------------------------------------------------

def fold_logits(stages):
    """The last layer: integer bias ``round(d / c)``, one shared ``logit_scale = c``."""
    st = next(s for s in reversed(stages) if s.weight_basis is not None)
    if not st.weight_shared or st.out_midpoints is not None:
        raise LoweringError(f"{st.name}: the last layer needs one shared weight basis and no activation quantizer")
    if np.any(st.bn_slope != 1) or np.any(st.bn_shift != 0):
        raise LoweringError(f"{st.name}: batch-norm on the last layer is not supported (it breaks the shared scale)")
    c, d = _affine(st)
    bias_int = np.rint(d / c[0]).astype(np.int64)
    return [replace(s, bias_int=bias_int, logit_scale=float(c[0])) if s is st else s for s in stages]


# --- step 5: the IR model --------------------------------------------------------------

def emit_model(stages, in_shape, in_levels, classes, meta=None):
    """IR layers from folded stages (``acc_bits`` = 64 until :func:`fit_acc_bits`)."""
    layers, logit_scale = [], None
    for st in stages:
        if st.op == "flatten":
            layers.append(FlattenLayer(name=st.name))
        elif st.op == "maxpool2d":
            layers.append(MaxPool2dLayer(name=st.name, **st.attrs))
        elif st.thresholds is not None:
            draft = _draft(st, st.negate)
            layers.append(replace(draft, output="threshold", out_levels=st.thresholds.shape[1] + 1,
                                  thresholds=st.thresholds))
        else:
            layers.append(_draft(st, bias=st.bias_int))
            logit_scale = st.logit_scale
    return Model(InputSpec(tuple(in_shape), in_levels), tuple(layers), tuple(classes), logit_scale, meta or {})


def lower(net, classes, coef_bits=DEFAULT_COEF_BITS, meta=None):
    """The whole lowering of a trained network to a validated IR :class:`Model`."""
    stages = read_network(net)
    stages = integerize_bases(stages, coef_bits)
    stages = fold_thresholds(stages)
    stages = fold_logits(stages)
    model = emit_model(stages, net.config.input_shape, net.config.in_levels, classes,
                       {"coef_bits": coef_bits, **(meta or {})})
    return fit_acc_bits(clamp_thresholds(model))
