"""Data layout helpers shared by both simulation modes: im2col, pooling, thresholds."""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from lqir import conv_output_size, pool_output_size

__all__ = ["conv_windows", "conv_columns_nhwc", "maxpool2d", "maxpool2d_nhwc", "apply_thresholds"]


def conv_windows(x, kernel, stride, padding):
    """``[B, C, H, W]`` → ``[B, H', W', C*k*k]`` windows, zero-padded, in (C, kh, kw) order.

    The order matches a PyTorch weight ``[O, C, kh, kw]`` reshaped to ``[O, C*k*k]``.
    """
    if padding:
        x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    win = sliding_window_view(x, (kernel, kernel), axis=(2, 3))[:, :, ::stride, ::stride]
    b, c, h, w = win.shape[:4]
    return win.transpose(0, 2, 3, 1, 4, 5).reshape(b, h, w, c * kernel * kernel)


def conv_columns_nhwc(x, kernel, stride, padding, out=None):
    """Channels-last ``[B, H, W, C]`` → im2col rows ``[B, H', W', k*k*C]`` in (kh, kw, C) order.

    Each tap copies its valid window in contiguous runs of C values (much faster than
    copying a 6-D window view); weights must be ordered (kh, kw, C) to match.  Padded
    taps are never written: ``out``, if given, must be zero there — a buffer zeroed once
    and refilled with same-shaped inputs stays so.
    """
    b, h, w, c = x.shape
    oh = conv_output_size(h, kernel, stride, padding)
    ow = conv_output_size(w, kernel, stride, padding)
    if out is None:
        out = np.zeros((b, oh, ow, kernel * kernel * c), x.dtype)
    for i in range(kernel):
        rows = _tap_span(i, h, oh, stride, padding)
        for j in range(kernel):
            cols = _tap_span(j, w, ow, stride, padding)
            if rows is None or cols is None:
                continue
            slot = (i * kernel + j) * c
            out[:, rows[0], cols[0], slot:slot + c] = x[:, rows[1], cols[1]]
    return out


def _tap_span(tap, size, out_size, stride, padding):
    """(output slice, input slice) of the positions where ``tap`` reads inside the input."""
    first = max(0, -(-(padding - tap) // stride))
    last = min(out_size - 1, (size - 1 + padding - tap) // stride)
    if last < first:
        return None
    start = first * stride + tap - padding
    return slice(first, last + 1), slice(start, start + (last - first) * stride + 1, stride)


def maxpool2d_nhwc(x, kernel, stride, out=None):
    """Max over windows of channels-last ``[B, H, W, C]`` (floor mode, no padding)."""
    h = pool_output_size(x.shape[1], kernel, stride)
    w = pool_output_size(x.shape[2], kernel, stride)
    taps = [x[:, i:i + stride * (h - 1) + 1:stride, j:j + stride * (w - 1) + 1:stride]
            for i in range(kernel) for j in range(kernel)]
    if out is None:
        out = np.empty(taps[0].shape, x.dtype)
    if len(taps) == 1:
        np.copyto(out, taps[0])
    else:
        np.maximum(taps[0], taps[1], out=out)
    for tap in taps[2:]:
        np.maximum(out, tap, out=out)
    return out


def maxpool2d(x, kernel, stride):
    """Max over ``kernel``×``kernel`` windows of ``[B, C, H, W]`` (floor mode, no padding)."""
    win = sliding_window_view(x, (kernel, kernel), axis=(2, 3))[:, :, ::stride, ::stride]
    return win.max(axis=(-1, -2))


def apply_thresholds(acc, thresholds):
    """``y[..., o, ...] = #{m : acc >= thresholds[o, m]}`` for acc of shape ``[B, O, ...]``."""
    out = np.empty(acc.shape, dtype=np.int64)
    for o in range(acc.shape[1]):
        # side="right" counts the thresholds that are <= acc, i.e. acc >= T.
        out[:, o] = np.searchsorted(thresholds[o], acc[:, o], side="right")
    return out
