"""Bit-plane mode: the popcount formula (docs/architecture.md, "The arithmetic"), as the datapath computes it.

For weight plane ``i`` (bits ``x_i``) and input plane ``j`` (bits ``a_j``) of a row of
length N::

    P_ij = popcount(x_i AND a_j)        S_j = popcount(a_j)
    acc  = bias + sum_ij Wc[o, i] * Ac[j] * P_ij                ('bin' weights)
    acc  = bias + sum_ij Wc[o, i] * Ac[j] * (2 * P_ij - S_j)    ('pm1' weights)

Bits are packed into uint64 words and counted with ``np.bitwise_count``.
"""

import numpy as np

from lqir import Conv2dLayer, bit_planes

from .layout import conv_windows

__all__ = ["pack_bits", "mac_bitplane"]

# Rows per chunk keep the [rows, O, words] AND-tensor around a few MB.
_CHUNK_ELEMS = 1 << 21


def pack_bits(bits):
    """Pack a 0/1 array along its last axis into uint64 words (little-endian bit order)."""
    packed = np.packbits(bits.astype(np.uint8), axis=-1, bitorder="little")
    pad = (-packed.shape[-1]) % 8
    if pad:
        packed = np.concatenate([packed, np.zeros(packed.shape[:-1] + (pad,), np.uint8)], axis=-1)
    return np.ascontiguousarray(packed).view(np.uint64)


def _input_planes(layer, x):
    """Input bit planes ``[B, ..., K_a]`` of level indices ``x``."""
    return bit_planes(layer.in_code[x], layer.in_bits)


def mac_bitplane(layer, x):
    """Accumulators of one dense/conv layer computed from AND + popcount on bit planes."""
    planes = _input_planes(layer, x)  # [B, *in_shape, K_a]
    if isinstance(layer, Conv2dLayer):
        moved = np.moveaxis(planes, -1, 1)  # [B, K_a, C, H, W]
        b, ka = moved.shape[:2]
        win = conv_windows(moved.reshape((b * ka,) + moved.shape[2:]), layer.kernel,
                           layer.stride, layer.padding)  # padded taps have no bits set
        h, w, f = win.shape[1:]
        rows = win.reshape(b, ka, h, w, f).transpose(0, 2, 3, 1, 4).reshape(-1, ka, f)
        acc = _popcount_acc(layer, rows)
        return acc.reshape(b, h, w, -1).transpose(0, 3, 1, 2)
    return _popcount_acc(layer, np.moveaxis(planes, -1, 1))  # rows [B, K_a, I]


def _popcount_acc(layer, rows):
    """``rows``: 0/1 input planes ``[R, K_a, F]`` → int64 accumulators ``[R, O]``."""
    wplanes = bit_planes(layer.weight_code.reshape(layer.n_out, -1), layer.weight_bits)
    wpacked = pack_bits(np.moveaxis(wplanes, -1, 0))  # [K_w, O, words]
    apacked = pack_bits(rows)  # [R, K_a, words]
    words = wpacked.shape[-1]
    chunk = max(1, _CHUNK_ELEMS // (layer.n_out * words))
    acc = np.empty((rows.shape[0], layer.n_out), dtype=np.int64)
    for start in range(0, rows.shape[0], chunk):
        acc[start:start + chunk] = _chunk_acc(layer, wpacked, apacked[start:start + chunk])
    return acc


def _chunk_acc(layer, wpacked, apacked):
    acc = np.broadcast_to(layer.bias, (apacked.shape[0], layer.n_out)).copy()
    for j in range(layer.in_bits):
        a_j = apacked[:, j]  # [R, words]
        s_j = np.bitwise_count(a_j).sum(axis=-1, dtype=np.int64)[:, None]
        for i in range(layer.weight_bits):
            p_ij = np.bitwise_count(a_j[:, None, :] & wpacked[i][None]).sum(axis=-1, dtype=np.int64)
            term = 2 * p_ij - s_j if layer.weight_encoding == "pm1" else p_ij
            acc += layer.weight_coef[:, i] * layer.in_coef[j] * term
    return acc
