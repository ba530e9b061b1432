"""Random valid IR models, for property tests and fuzzing of every lowering (numpy only)."""

import numpy as np

from .ir import (Conv2dLayer, DenseLayer, FlattenLayer, InputSpec, MaxPool2dLayer, Model,
                 accumulator_bounds, signed_width)

__all__ = ["random_mac_layer", "random_dense_model", "random_conv_model"]


def _random_in_code(rng, in_bits, in_levels, in_coef):
    """Distinct codes sorted so that value_in is non-decreasing."""
    codes = rng.choice(1 << in_bits, size=in_levels, replace=False)
    values = ((codes[:, None] >> np.arange(in_bits)) & 1) @ in_coef
    return codes[np.argsort(values, kind="stable")].astype(np.uint16)


def random_mac_layer(rng, cls, name, *, weight_bits, in_bits, in_levels, output,
                     out_levels=None, coef_max=100, **shape):
    """A random ``cls`` (DenseLayer or Conv2dLayer) layer with consistent widths."""
    o, wshape = _n_out(cls, shape), _weight_shape(cls, shape)
    in_coef = rng.integers(-coef_max, coef_max + 1, size=in_bits).astype(np.int64)
    fields = dict(
        name=name, weight_bits=weight_bits, weight_encoding=str(rng.choice(["pm1", "bin"])),
        in_bits=in_bits, in_levels=in_levels, output=output,
        weight_code=rng.integers(0, 1 << weight_bits, size=wshape).astype(np.uint8),
        weight_coef=rng.integers(-coef_max, coef_max + 1, size=(o, weight_bits)).astype(np.int64),
        bias=rng.integers(-coef_max * 10, coef_max * 10 + 1, size=o).astype(np.int64),
        in_code=_random_in_code(rng, in_bits, in_levels, in_coef), in_coef=in_coef, **shape)
    draft = cls(acc_bits=64, **{**fields, "output": "accumulate"})
    lo, hi = accumulator_bounds(draft)
    if output == "threshold":
        span = rng.integers(lo[:, None], hi[:, None] + 2, size=(o, out_levels - 1))
        fields.update(out_levels=out_levels, thresholds=np.sort(span, axis=1).astype(np.int64))
        width = signed_width(min(lo.min(), span.min()), max(hi.max() + 1, span.max()))
    else:
        width = signed_width(lo.min(), hi.max())
    return cls(acc_bits=width, **fields)


def _n_out(cls, shape):
    return shape["out_features"] if cls is DenseLayer else shape["out_channels"]


def _weight_shape(cls, shape):
    if cls is DenseLayer:
        return (shape["out_features"], shape["in_features"])
    return (shape["out_channels"], shape["in_channels"], shape["kernel"], shape["kernel"])


def random_dense_model(rng, sizes, weight_bits, act_bits, in_levels=None, classes=None):
    """An MLP over a flat input: ``sizes = [in, hidden..., classes]``."""
    in_levels = in_levels or int(rng.integers(2, 17))
    in_bits = max(1, int(np.ceil(np.log2(in_levels))))
    layers, levels = [], in_levels
    for k, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        last = k == len(sizes) - 2
        out_levels = None if last else 1 << act_bits
        layers.append(random_mac_layer(
            rng, DenseLayer, f"fc{k}", weight_bits=weight_bits, in_bits=in_bits, in_levels=levels,
            output="accumulate" if last else "threshold", out_levels=out_levels,
            in_features=fan_in, out_features=fan_out))
        levels, in_bits = out_levels, act_bits
    classes = classes or [str(c) for c in range(sizes[-1])]
    return Model(InputSpec((sizes[0],), in_levels), tuple(layers), tuple(classes), 1.0, {"source": "random"})


def random_conv_model(rng, in_shape, channels, weight_bits, act_bits, classes=3, in_levels=5):
    """conv 3×3 → maxpool 2×2 (if it fits) → conv 1×1 → flatten → dense; random padding."""
    in_bits = max(1, int(np.ceil(np.log2(in_levels))))
    c, h, w = in_shape
    pad = int(rng.integers(0, 2))
    conv0 = random_mac_layer(rng, Conv2dLayer, "conv0", weight_bits=weight_bits, in_bits=in_bits,
                             in_levels=in_levels, output="threshold", out_levels=1 << act_bits,
                             in_channels=c, out_channels=channels, kernel=3, stride=1, padding=pad)
    pool = MaxPool2dLayer(name="pool0", kernel=2, stride=2)
    conv1 = random_mac_layer(rng, Conv2dLayer, "conv1", weight_bits=weight_bits, in_bits=act_bits,
                             in_levels=1 << act_bits, output="threshold", out_levels=1 << act_bits,
                             in_channels=channels, out_channels=channels, kernel=1, stride=1, padding=0)
    conv_hw = (h + 2 * pad - 2, w + 2 * pad - 2)
    pooled = min(conv_hw) >= 2
    hp = tuple(s // 2 for s in conv_hw) if pooled else conv_hw
    fc = random_mac_layer(rng, DenseLayer, "fc", weight_bits=weight_bits, in_bits=act_bits,
                          in_levels=1 << act_bits, output="accumulate",
                          in_features=channels * hp[0] * hp[1], out_features=classes)
    layers = (conv0,) + ((pool,) if pooled else ()) + (conv1, FlattenLayer(name="flat"), fc)
    return Model(InputSpec(in_shape, in_levels), layers,
                 tuple(str(k) for k in range(classes)), 1.0, {"source": "random"})
