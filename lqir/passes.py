"""IR → IR passes: each returns a new model whose every simulated integer is unchanged."""

from dataclasses import replace

import numpy as np

from .model import accumulator_bounds, signed_width

__all__ = ["clamp_thresholds", "fit_acc_bits"]


def clamp_thresholds(model):
    """Clamp thresholds into ``[lo, hi + 1]`` of the reachable accumulators."""
    layers = []
    for layer in model.layers:
        if getattr(layer, "thresholds", None) is not None:
            lo, hi = accumulator_bounds(layer)
            layer = replace(layer, thresholds=np.clip(layer.thresholds, lo[:, None], hi[:, None] + 1))
        layers.append(layer)
    return replace(model, layers=tuple(layers))


def fit_acc_bits(model):
    """Set each layer's ``acc_bits`` to the narrowest width holding accumulators and thresholds."""
    layers = []
    for layer in model.layers:
        if hasattr(layer, "acc_bits"):
            lo, hi = accumulator_bounds(layer)
            lo, hi = int(lo.min()), int(hi.max())
            if layer.thresholds is not None and layer.thresholds.size:
                lo, hi = min(lo, int(layer.thresholds.min())), max(hi, int(layer.thresholds.max()))
            layer = replace(layer, acc_bits=max(2, signed_width(lo, hi)))
        layers.append(layer)
    return replace(model, layers=tuple(layers))
