"""Random valid IR models, for property tests and fuzzing of every lowering (numpy only).

Two options make the models catch what plain random ones cannot:

* ``inputs=`` (level indices the test will feed): a threshold layer then takes most of
  its thresholds from accumulators those inputs reach, at least one per channel, so
  that ``acc >= T`` and ``acc > T`` give different answers on the test's own inputs.
  The accumulators come from :func:`reference_accumulators`, plain numpy independent of
  hwsim; each later layer gets the levels the earlier ones produce.
* ``in_affine=`` (``(offset, slope)`` or ``"random"``): the first layer's input values
  are ``slope · (offset + k)`` for level ``k``, affine with ``v0 = slope · offset``,
  through a code table and coefficients a hardware datapath sees like any other.

Without them the draws are exactly the ones earlier versions made (same rng stream).
"""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .helpers import bits_for_levels
from .model import (Conv2dLayer, DenseLayer, FlattenLayer, InputSpec, MaxPool2dLayer, Model,
                    accumulator_bounds, input_values, signed_width, weight_values)

__all__ = ["random_mac_layer", "random_dense_model", "random_conv_model", "random_cnn_model", "affine_input",
           "reference_accumulators", "reference_levels"]

# Of the thresholds drawn with ``inputs``, this share stays anywhere in [lo, hi + 1]
# (far-away and never-reached thresholds stay covered); the rest sit on reached values.
_FREE_SHARE = 0.25


def _random_in_code(rng, in_bits, in_levels, in_coef):
    """Distinct codes sorted so that value_in is non-decreasing."""
    codes = rng.choice(1 << in_bits, size=in_levels, replace=False)
    values = ((codes[:, None] >> np.arange(in_bits)) & 1) @ in_coef
    return codes[np.argsort(values, kind="stable")].astype(np.uint16)


def affine_input(offset, slope, levels):
    """``(in_bits, in_code, in_coef)`` with ``value_in[k] = slope · (offset + k)``.

    Level ``k`` has code ``offset + k`` in ``in_bits`` bits: unsigned when ``offset >= 0``,
    else two's complement (the top coefficient is ``-slope · 2**(in_bits - 1)``).
    """
    offset, slope, levels = int(offset), int(slope), int(levels)
    if slope < 0:
        raise ValueError(f"in_affine: slope must be >= 0 (values non-decreasing), not {slope}")
    lo, hi = offset, offset + levels - 1
    bits = max(1, hi.bit_length()) if lo >= 0 else signed_width(lo, hi)
    if bits > 16:
        raise ValueError(f"in_affine: offset {offset} needs {bits} code bits, more than 16")
    coef = slope * (1 << np.arange(bits, dtype=np.int64))
    if lo < 0:
        coef[-1] = -coef[-1]
    code = (np.arange(lo, hi + 1) % (1 << bits)).astype(np.uint16)
    return bits, code, coef


def random_mac_layer(rng, cls, name, *, weight_bits, in_bits, in_levels, output,
                     out_levels=None, coef_max=100, inputs=None, in_affine=None, weight_encoding=None,
                     **shape):
    """A random ``cls`` (DenseLayer or Conv2dLayer) layer with consistent widths.

    ``weight_encoding``: 'pm1' or 'bin' instead of a random one (drawn all the same, so
    the rest of the layer does not change).

    ``inputs``: level indices ``[B, in_features]`` or ``[B, C, H, W]`` the test will feed;
    a threshold layer then puts its thresholds on accumulators they reach (see the module
    docstring). ``in_affine``: ``(offset, slope)`` for affine input values; ``in_bits`` is
    then :func:`affine_input`'s.
    """
    o, wshape = _n_out(cls, shape), _weight_shape(cls, shape)
    if in_affine is not None:
        in_bits, in_code, in_coef = affine_input(*in_affine, in_levels)
    else:
        in_coef = rng.integers(-coef_max, coef_max + 1, size=in_bits).astype(np.int64)
    encoding = str(rng.choice(["pm1", "bin"]))
    fields = dict(
        name=name, weight_bits=weight_bits, weight_encoding=weight_encoding or encoding,
        in_bits=in_bits, in_levels=in_levels, output=output,
        weight_code=rng.integers(0, 1 << weight_bits, size=wshape).astype(np.uint8),
        weight_coef=rng.integers(-coef_max, coef_max + 1, size=(o, weight_bits)).astype(np.int64),
        bias=rng.integers(-coef_max * 10, coef_max * 10 + 1, size=o).astype(np.int64),
        in_code=in_code if in_affine is not None else _random_in_code(rng, in_bits, in_levels, in_coef),
        in_coef=in_coef, **shape)
    draft = cls(acc_bits=64, **{**fields, "output": "accumulate"})
    lo, hi = accumulator_bounds(draft)
    if output == "threshold":
        span = rng.integers(lo[:, None], hi[:, None] + 2, size=(o, out_levels - 1))
        if inputs is not None:
            span = _tie_thresholds(rng, span, reference_accumulators(draft, inputs))
        fields.update(out_levels=out_levels, thresholds=np.sort(span, axis=1).astype(np.int64))
        width = signed_width(min(lo.min(), span.min()), max(hi.max() + 1, span.max()))
    else:
        width = signed_width(lo.min(), hi.max())
    return cls(acc_bits=width, **fields)


def _tie_thresholds(rng, span, acc):
    """Replace most of ``span`` ``[O, M]`` by accumulators reached (``acc``: channels on axis 1).

    Every channel gets at least one threshold equal to a reached accumulator.
    """
    o, m = span.shape
    reached = np.moveaxis(acc, 1, -1).reshape(-1, o)           # [samples × positions, O]
    if len(reached) == 0 or m == 0:
        return span
    rows = rng.integers(0, len(reached), size=(o, m))
    picked = reached[rows, np.arange(o)[:, None]]
    free = rng.random((o, m)) < _FREE_SHARE
    free[np.arange(o), rng.integers(0, m, size=o)] = False
    return np.where(free, span, picked)


def reference_accumulators(layer, x):
    """Accumulators of a dense/conv IR layer on level indices ``x``, in plain int64 numpy.

    ``[B, O]`` for dense (``x``: ``[B, in_features]``), ``[B, O, H', W']`` for conv (``x``:
    ``[B, C, H, W]``; a padded tap contributes value 0). Independent of hwsim.
    """
    vals = input_values(layer)[np.asarray(x, dtype=np.int64)]
    w = weight_values(layer)
    if isinstance(layer, DenseLayer):
        return vals @ w.T + layer.bias
    p, k, s = layer.padding, layer.kernel, layer.stride
    vals = np.pad(vals, ((0, 0), (0, 0), (p, p), (p, p)))
    win = sliding_window_view(vals, (k, k), axis=(2, 3))[:, :, ::s, ::s]   # [B, C, H', W', k, k]
    return np.einsum("bchwij,ocij->bohw", win, w) + layer.bias[None, :, None, None]


def reference_levels(layer, acc):
    """``#{m : acc >= thresholds[o, m]}`` for accumulators with channels on axis 1."""
    thr = layer.thresholds.reshape((1, layer.n_out) + (1,) * (acc.ndim - 2) + (-1,))
    return (acc[..., None] >= thr).sum(axis=-1).astype(np.int64)


def _maxpool(x, kernel, stride):
    return sliding_window_view(x, (kernel, kernel), axis=(2, 3))[:, :, ::stride, ::stride].max(axis=(-1, -2))


def _n_out(cls, shape):
    return shape["out_features"] if cls is DenseLayer else shape["out_channels"]


def _weight_shape(cls, shape):
    if cls is DenseLayer:
        return (shape["out_features"], shape["in_features"])
    return (shape["out_channels"], shape["in_channels"], shape["kernel"], shape["kernel"])


def _check_inputs(inputs, in_levels, shape):
    if inputs is None:
        return None
    if in_levels is None:
        raise ValueError("in_levels: give the input levels with inputs (they index level values)")
    inputs = np.asarray(inputs)
    if inputs.dtype.kind not in "iu" or inputs.shape[1:] != tuple(shape):
        raise ValueError(f"inputs: must be integer level indices of shape [B, {', '.join(map(str, shape))}]")
    if inputs.size and (inputs.min() < 0 or inputs.max() >= in_levels):
        raise ValueError(f"inputs: level indices must lie in [0, {in_levels})")
    return inputs.astype(np.int64)


def _affine_args(rng, in_affine, in_levels):
    """``(offset, slope)`` from a tuple, or drawn for ``"random"`` (slope ≥ 2, offset ≠ 0)."""
    if in_affine is None or not isinstance(in_affine, str):
        return in_affine
    if in_affine != "random":
        raise ValueError(f"in_affine: must be (offset, slope) or 'random', not {in_affine!r}")
    slope = int(rng.integers(2, 13))
    offset = int(rng.integers(-in_levels, in_levels))
    return (offset if offset != 0 else in_levels, slope)


def random_dense_model(rng, sizes, weight_bits, act_bits, in_levels=None, classes=None, inputs=None,
                       in_affine=None):
    """An MLP over a flat input: ``sizes = [in, hidden..., classes]``.

    ``inputs`` (``[B, sizes[0]]`` level indices, needs ``in_levels``): thresholds on
    accumulators these inputs reach, layer after layer. ``in_affine``: ``(offset, slope)``
    or ``"random"``: the first layer's input values are ``slope · (offset + k)``.
    """
    in_levels = in_levels or int(rng.integers(2, 17))
    x = _check_inputs(inputs, in_levels, (sizes[0],))
    in_affine = _affine_args(rng, in_affine, in_levels)
    in_bits = bits_for_levels(in_levels)
    layers, levels = [], in_levels
    for k, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        last = k == len(sizes) - 2
        out_levels = None if last else 1 << act_bits
        layer = random_mac_layer(
            rng, DenseLayer, f"fc{k}", weight_bits=weight_bits, in_bits=in_bits, in_levels=levels,
            output="accumulate" if last else "threshold", out_levels=out_levels,
            in_features=fan_in, out_features=fan_out, inputs=x, in_affine=in_affine if k == 0 else None)
        layers.append(layer)
        if x is not None and not last:
            x = reference_levels(layer, reference_accumulators(layer, x))
        levels, in_bits = out_levels, act_bits
    classes = classes or [str(c) for c in range(sizes[-1])]
    return Model(InputSpec((sizes[0],), in_levels), tuple(layers), tuple(classes), 1.0, {"source": "random"})


def random_conv_model(rng, in_shape, channels, weight_bits, act_bits, classes=3, in_levels=5, inputs=None):
    """conv 3×3 → maxpool 2×2 (if it fits) → conv 1×1 → flatten → dense; random padding.

    ``inputs`` (``[B, *in_shape]`` level indices): thresholds on reached accumulators.
    """
    x = _check_inputs(inputs, in_levels, tuple(in_shape))
    in_bits = bits_for_levels(in_levels)
    c, h, w = in_shape
    pad = int(rng.integers(0, 2))
    conv0 = random_mac_layer(rng, Conv2dLayer, "conv0", weight_bits=weight_bits, in_bits=in_bits,
                             in_levels=in_levels, output="threshold", out_levels=1 << act_bits,
                             in_channels=c, out_channels=channels, kernel=3, stride=1, padding=pad, inputs=x)
    pool = MaxPool2dLayer(name="pool0", kernel=2, stride=2)
    conv_hw = (h + 2 * pad - 2, w + 2 * pad - 2)
    pooled = min(conv_hw) >= 2
    if x is not None:
        x = reference_levels(conv0, reference_accumulators(conv0, x))
        x = _maxpool(x, 2, 2) if pooled else x
    conv1 = random_mac_layer(rng, Conv2dLayer, "conv1", weight_bits=weight_bits, in_bits=act_bits,
                             in_levels=1 << act_bits, output="threshold", out_levels=1 << act_bits,
                             in_channels=channels, out_channels=channels, kernel=1, stride=1, padding=0, inputs=x)
    hp = tuple(s // 2 for s in conv_hw) if pooled else conv_hw
    fc = random_mac_layer(rng, DenseLayer, "fc", weight_bits=weight_bits, in_bits=act_bits,
                          in_levels=1 << act_bits, output="accumulate",
                          in_features=channels * hp[0] * hp[1], out_features=classes)
    layers = (conv0,) + ((pool,) if pooled else ()) + (conv1, FlattenLayer(name="flat"), fc)
    return Model(InputSpec(in_shape, in_levels), layers,
                 tuple(str(k) for k in range(classes)), 1.0, {"source": "random"})


def random_cnn_model(rng, in_shape, blocks, weight_bits, act_bits, classes=3, in_levels=5, inputs=None,
                     weight_encoding=None, hidden=()):
    """Conv blocks → flatten → dense (``hidden`` threshold layers, then the logits).
    ``blocks``: ``(channels, kernel, stride, padding, pool)`` each, ``pool`` a max-pool
    ``(kernel, stride)`` after the conv or None.

    ``inputs`` (``[B, *in_shape]`` level indices): thresholds on reached accumulators.
    """
    x = _check_inputs(inputs, in_levels, tuple(in_shape))
    layers, shape, levels, in_bits = [], tuple(in_shape), in_levels, bits_for_levels(in_levels)
    for k, (channels, kernel, stride, padding, pool) in enumerate(blocks):
        conv = random_mac_layer(rng, Conv2dLayer, f"conv{k}", weight_bits=weight_bits, in_bits=in_bits,
                                in_levels=levels, output="threshold", out_levels=1 << act_bits,
                                in_channels=shape[0], out_channels=channels, kernel=kernel, stride=stride,
                                padding=padding, inputs=x, weight_encoding=weight_encoding)
        layers.append(conv)
        shape = conv.output_shape(shape)
        if x is not None:
            x = reference_levels(conv, reference_accumulators(conv, x))
        if pool is not None:
            layers.append(MaxPool2dLayer(name=f"pool{k}", kernel=pool[0], stride=pool[1]))
            shape = layers[-1].output_shape(shape)
            if x is not None:
                x = _maxpool(x, *pool)
        levels, in_bits = 1 << act_bits, act_bits
    layers.append(FlattenLayer(name="flat"))
    fan_in = int(np.prod(shape))
    x = None if x is None else x.reshape(len(x), -1)
    for k, width in enumerate(hidden):
        layers.append(random_mac_layer(rng, DenseLayer, f"hidden{k}", weight_bits=weight_bits, in_bits=in_bits,
                                       in_levels=levels, output="threshold", out_levels=1 << act_bits,
                                       in_features=fan_in, out_features=width, inputs=x,
                                       weight_encoding=weight_encoding))
        if x is not None:
            x = reference_levels(layers[-1], reference_accumulators(layers[-1], x))
        fan_in = width
    layers.append(random_mac_layer(rng, DenseLayer, "fc", weight_bits=weight_bits, in_bits=in_bits,
                                   in_levels=levels, output="accumulate", in_features=fan_in,
                                   out_features=classes, weight_encoding=weight_encoding))
    return Model(InputSpec(tuple(in_shape), in_levels), tuple(layers),
                 tuple(str(k) for k in range(classes)), 1.0, {"source": "random"})
