"""Lowering a self-compressed network (:mod:`models.selfcompress`) to the IR, pruned and reordered.

The steps of :mod:`export.lower`, with two of their own and three IR passes::

    read_network → integerize_bases → integerize_exponents → fold_thresholds → silence_pruned
    → fold_logits → emit_model → clamp_thresholds → fit_acc_bits
    → remove_constant_channels → trim_planes → reorder_by_bits → fit_acc_bits      (lqir.prune)

:func:`read_network` reads the self-compressing quantizers through the same interface as
LQ-Nets' (``encode``/``effective_basis``): channel ``o`` with integer depth ``B_o`` and
exponent ``E_o`` is a ``B_o``-bit two's-complement integer on ``bin`` planes.
:func:`integerize_exponents` then sets exact coefficients instead of
:func:`integerize_bases`' fitted ones:

    weight_coef[o] = 2^(E_o − E_min) · [1, 2, …, 2^(B_o−2), −2^(B_o−1)],  0 from plane B_o on
    weight_scale   = 2^E_min   (the layer's smallest exponent, folded into the thresholds)

— no rounding anywhere, and one scale for the whole layer, which the logit layer needs.
A pruned channel (``B_o = 0``) has zero weights; the network masks its activation to 0,
and :func:`silence_pruned` makes the IR channel output level 0 (value 0) to match,
before :func:`lqir.prune.remove_constant_channels` removes it with the next layer's inputs.
"""

from __future__ import annotations

from dataclasses import replace
from math import gcd

import numpy as np

from lqir import DEFAULT_COEF_BITS, clamp_thresholds, fit_acc_bits
from lqir.model import MAX_COEF
from lqir.prune import remove_constant_channels, reorder_by_bits, trim_planes
from models.selfcompress import SelfCompressQuantizer, compress_quantizers

from .lower import LoweringError, emit_model, fold_logits, fold_thresholds, integerize_bases, read_network

__all__ = ["lower_compressed", "integerize_exponents", "silence_pruned", "prune_model"]


def _mac_indices(stages):
    return [i for i, st in enumerate(stages) if st.weight_basis is not None]


def integerize_exponents(stages, quantizers):
    """Exact power-of-two weight coefficients and one scale ``2^E_min`` per layer (see the module doc).

    Also divides each layer's input coefficients by their common factor (scaling
    ``in_scale`` up by it): the same real values with the smallest integers.
    """
    macs = _mac_indices(stages)
    if len(macs) != len(quantizers) or not all(isinstance(q, SelfCompressQuantizer) for q in quantizers):
        raise LoweringError("network: every multiply-accumulate layer needs a self-compressing weight quantizer")
    out = list(stages)
    for k, (index, quant) in enumerate(zip(macs, quantizers)):
        st = stages[index]
        depth, exponent = quant.int_depth().numpy(), quant.int_exponent().numpy()
        alive = depth > 0
        e_min = int(exponent[alive].min()) if alive.any() else 0
        shift = np.where(alive, exponent - e_min, 0).astype(np.int64)
        coef = quant.plane_coefficients().numpy().astype(np.int64) * (np.int64(1) << shift)[:, None]
        if np.abs(coef).max(initial=0) >= MAX_COEF:
            raise LoweringError(f"{st.name}: channel exponents span {int(shift.max())} octaves; the coefficients "
                                "would exceed 2**31")
        common = 0
        for c in st.in_coef:
            common = gcd(common, abs(int(c)))
        common = max(common, 1)
        out[index] = replace(st, weight_coef=coef, weight_scale=np.full(len(coef), 2.0**e_min),
                             # The last layer's basis is per channel but its scale is one:
                             # fold_logits checks exactly that the logits share a scale.
                             weight_shared=st.weight_shared or k == len(macs) - 1,
                             in_coef=st.in_coef // common, in_scale=st.in_scale * common)
    return out


def silence_pruned(stages, quantizers):
    """A pruned channel's thresholds become 1: its accumulator is 0 (zero weights, no bias), so it
    outputs level 0 — the masked 0 of the network, as the next layer's level-0 value is 0."""
    macs = _mac_indices(stages)
    out = list(stages)
    for k, (index, quant) in enumerate(zip(macs, quantizers)):
        st = stages[index]
        pruned = ~quant.alive().numpy()
        if st.thresholds is None or not pruned.any():
            continue
        reader = stages[macs[k + 1]]
        values = ((reader.in_code.astype(np.int64)[:, None] >> np.arange(len(reader.in_coef))) & 1) @ reader.in_coef
        if values[0] != 0:
            raise LoweringError(f"{reader.name}: input level 0 has value {int(values[0])}, not 0; a pruned "
                                f"channel of {st.name} outputs 0 (use the uniform activation quantizer)")
        thresholds = np.where(pruned[:, None], 1, st.thresholds).astype(np.int64)
        out[index] = replace(st, thresholds=thresholds, negate=st.negate & ~pruned)
    return out


def prune_model(model):
    """The IR passes: remove pruned channels, drop unused planes, sort channels by depth, fit ``acc_bits``."""
    return fit_acc_bits(clamp_thresholds(reorder_by_bits(trim_planes(remove_constant_channels(model)))))


def lower_compressed(net, classes, coef_bits=DEFAULT_COEF_BITS, meta=None, prune=True):
    """The IR :class:`lqir.Model` of a self-compressed network; ``prune=False`` keeps pruned channels in place."""
    quantizers = compress_quantizers(net)
    stages = read_network(net)
    stages = integerize_bases(stages, coef_bits)
    stages = integerize_exponents(stages, quantizers)
    stages = fold_thresholds(stages)
    stages = silence_pruned(stages, quantizers)
    stages = fold_logits(stages)
    meta = {"coef_bits": coef_bits, "self_compressed": True, **(meta or {})}
    model = emit_model(stages, net.config.input_shape, net.config.in_levels, classes, meta)
    model = fit_acc_bits(clamp_thresholds(model))
    return prune_model(model) if prune else model

