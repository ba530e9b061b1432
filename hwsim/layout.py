"""Data layout helpers shared by both simulation modes: im2col, pooling, thresholds."""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

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


def conv_columns_nhwc(x, kernel, stride, padding):
    """Channels-last ``[B, H, W, C]`` → im2col rows ``[B, H', W', k*k*C]`` in (kh, kw, C) order.

    Built from k² shifted slices, each copied in contiguous runs of C values (much faster
    than copying a 6-D window view); weights must be ordered (kh, kw, C) to match.
    """
    if padding:
        x = np.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    h = (x.shape[1] - kernel) // stride + 1
    w = (x.shape[2] - kernel) // stride + 1
    cols = [x[:, i:i + stride * (h - 1) + 1:stride, j:j + stride * (w - 1) + 1:stride]
            for i in range(kernel) for j in range(kernel)]
    return np.concatenate(cols, axis=-1)


def maxpool2d_nhwc(x, kernel, stride):
    """Max over windows of channels-last ``[B, H, W, C]`` (floor mode, no padding)."""
    h = (x.shape[1] - kernel) // stride + 1
    w = (x.shape[2] - kernel) // stride + 1
    out = None
    for i in range(kernel):
        for j in range(kernel):
            tap = x[:, i:i + stride * (h - 1) + 1:stride, j:j + stride * (w - 1) + 1:stride]
            out = tap.copy() if out is None else np.maximum(out, tap, out=out)
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
