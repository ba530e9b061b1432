"""Fast mode: the IR's integer arithmetic at BLAS speed.

Each multiply-accumulate layer is one matrix product over the integer weights
``w[o, n]`` and the integer input values ``value_in[x[n]]``.  A load-time bound
``max_o sum_n |w[o, n]| * max|value_in| + |bias|`` proves which arithmetic is exact:
below 2**24 every partial sum is an integer float32 represents exactly, below 2**53
float64 does; otherwise the product falls back to int64.  Thresholds are compared in
the same arithmetic after clamping them to the reachable accumulator range (which
changes no result and keeps them exactly representable).

Where a layer's input values are a multiple of the level index (``value = step * k``,
as for uniform quantizers and raw pixels), the step is folded into the weights and the
product reads the level index itself: a cast instead of a table lookup, which is the
slowest pass numpy makes here.  The bound, and so the proof, is unchanged.
"""

import numpy as np

from lqir import Conv2dLayer, accumulator_bounds, input_values, weight_values

from .layout import conv_columns_nhwc

__all__ = ["PreparedLayer", "prepare", "index_step", "layer_input", "mac_fast", "mac_operand",
           "threshold_fast"]

FLOAT32_EXACT = 2**24
FLOAT64_EXACT = 2**53
# Up to this many thresholds per channel, one compare pass each beats a binary search.
_LINEAR_SEARCH_MAX = 4


class PreparedLayer:
    """Per-layer tables computed once: exact dtype, weight matrix, values, thresholds."""

    def __init__(self, layer):
        self.layer = layer
        values = input_values(layer)
        weights = weight_values(layer)
        if isinstance(layer, Conv2dLayer):  # (kh, kw, C) order, matching conv_columns_nhwc
            weights = weights.transpose(0, 2, 3, 1)
        weights = weights.reshape(layer.n_out, -1)  # [O, F]
        step = index_step(values)
        self.reads_index = step is not None
        self.bound = int(np.abs(weights).sum(axis=1).max()) * int(np.abs(values).max())
        self.bound += int(np.abs(layer.bias).max())
        if self.bound < FLOAT32_EXACT:
            self.dtype = np.dtype(np.float32)
        elif self.bound < FLOAT64_EXACT:
            self.dtype = np.dtype(np.float64)
        else:
            self.dtype = np.dtype(np.int64)
        if self.reads_index:
            weights = weights * step
        self.weights_t = np.ascontiguousarray(weights.T.astype(self.dtype))
        # What the product reads for each level index: the index itself or its value.
        self.input_table = (np.arange(len(values)) if self.reads_index else values).astype(self.dtype)
        self.bias = layer.bias.astype(self.dtype)
        self.out_dtype = None
        if layer.thresholds is not None:
            lo, hi = accumulator_bounds(layer)
            clamped = np.clip(layer.thresholds, lo[:, None], hi[:, None] + 1)
            # acc >= T  <=>  acc - bias >= T - bias: the bias folds into the thresholds,
            # and T - bias stays within the proven bound.
            self.thresholds_t = np.ascontiguousarray((clamped - layer.bias[:, None]).T.astype(self.dtype))
            self.out_dtype = np.uint8 if layer.out_levels <= 256 else np.uint16

    @property
    def float_exact(self):
        return self.dtype != np.int64


def index_step(values):
    """``step`` if ``values == step * arange(len(values))`` with ``step > 0``, else None.

    Level 0 must be value 0, so that a padded convolution tap (value 0) stays index 0.
    """
    if len(values) < 2 or values[1] <= 0:
        return None
    step = int(values[1])
    return step if np.array_equal(values, step * np.arange(len(values))) else None


def prepare(layer):
    return PreparedLayer(layer)


def layer_input(prep, x, workspace=None):
    """The product's operand for level indices ``x``: ``prep.input_table[x]``."""
    if not prep.reads_index:
        return np.take(prep.input_table, x)
    if workspace is None:
        return x.astype(prep.dtype)
    out = workspace.get((prep.layer.name, "in"), x.shape, prep.dtype)
    np.copyto(out, x, casting="unsafe")
    return out


def mac_fast(prep, x, with_bias=True):
    """Accumulators (in ``prep.dtype``, exact integers) of one dense/conv layer.

    Fast mode keeps images channels-last: conv input ``[B, H, W, C]``, output
    ``[B, H', W', O]``.  ``with_bias=False`` leaves the bias out, for
    :func:`threshold_fast`, which folded it into the thresholds.
    """
    return mac_operand(prep, layer_input(prep, x), with_bias)


def mac_operand(prep, vals, with_bias=True, workspace=None):
    """:func:`mac_fast` on the operand :func:`layer_input` makes of the level indices.

    With a :class:`~hwsim.workspace.Workspace`, the accumulators land in one of its
    buffers (valid until the next call for this layer on this thread).
    """
    layer = prep.layer
    lhs = vals
    if isinstance(layer, Conv2dLayer):
        cols = None
        if workspace is not None:  # zeroed once: the padded taps are never written
            b, h, w, c = vals.shape
            _, out_h, out_w = layer.output_shape((c, h, w))
            cols = workspace.get((layer.name, "columns"), (b, out_h, out_w, prep.weights_t.shape[0]),
                                 prep.dtype, zeroed=True)
        lhs = conv_columns_nhwc(vals, layer.kernel, layer.stride, layer.padding, out=cols)
    rows = lhs.reshape(-1, lhs.shape[-1])
    out = None if workspace is None else workspace.get((layer.name, "acc"), (len(rows), layer.n_out), prep.dtype)
    acc = np.matmul(rows, prep.weights_t, out=out).reshape(lhs.shape[:-1] + (layer.n_out,))
    if with_bias:
        acc += prep.bias
    return acc


def threshold_fast(prep, acc):
    """Level indices ``#{m : acc + bias >= T[o, m]}`` for bias-free accumulators ``[..., O]``."""
    thr = prep.thresholds_t  # [M, O]
    if thr.shape[0] == 0:
        return np.zeros(acc.shape, dtype=prep.out_dtype)
    if thr.shape[0] <= _LINEAR_SEARCH_MAX:  # at most 5 levels: the count fits uint8
        out = np.greater_equal(acc, thr[0]).view(np.uint8)
        hit = np.empty(acc.shape, dtype=bool)
        for row in thr[1:]:
            np.greater_equal(acc, row, out=hit)
            out += hit.view(np.uint8)
        return out
    # Binary search over each channel's sorted thresholds, one vectorized pass per bit.
    padded = np.concatenate([thr, np.full((1, thr.shape[1]), np.inf if thr.dtype.kind == "f"
                                          else np.iinfo(np.int64).max, thr.dtype)])
    count = np.zeros(acc.shape, dtype=np.int64)
    channel = np.arange(thr.shape[1])
    step = 1 << int(thr.shape[0]).bit_length()
    while step:
        probe = np.minimum(count + step, thr.shape[0] + 1)
        count = np.where(acc >= padded[probe - 1, channel], probe, count)
        step >>= 1
    return count.astype(prep.out_dtype)
