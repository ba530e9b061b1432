"""Integer folding for the QONNX importer (numpy only): level and weight encodings, thresholds
found by exact search over integer accumulators, and the logits' shared scale.

A multiply-accumulate layer reads levels of real value ``s_in * q[k]`` (``q`` integers) and
has integer weights ``w`` of per-channel scale ``s_w[o]``, so its accumulator ``acc = sum w q``
is an integer and the real pre-activation is ``gain[o] * acc`` with ``gain = s_w * s_in``.
What follows (bias, batch-norm, ``Mul``/``Add``, ReLU, the next quantizer) is a monotone
function of ``acc`` per channel, so the output level is ``#{m: acc' >= T[o, m]}`` with
``acc' = ±acc``: each ``T[o, m]`` is the least integer whose level reaches ``m + 1``, found
by bisection over the reachable accumulator range — exact for the float64 math, whatever
the rounding mode, ties included.
"""

from __future__ import annotations

import math

import numpy as np

from lqir import bits_for_levels, signed_width

__all__ = ["FoldError", "encode_levels", "encode_weights", "search_thresholds", "logit_integers",
           "MAX_FRACTION_BITS", "EXACT_FLOAT_LIMIT"]

#: Extra fraction bits the logits' bias may take when float biases are not on the logit grid.
MAX_FRACTION_BITS = 8
#: Accumulators below this stay exact in float32 (the export keeps them there when it can).
EXACT_FLOAT_LIMIT = 2**23
MAX_WEIGHT_BITS = 8
MAX_IN_BITS = 16


class FoldError(ValueError):
    """An integer the IR needs does not fit its field; the message says which and why."""


def _unsigned_bits(values):
    return max(1, int(values.max(initial=0)).bit_length())


def _twos_complement(values, bits):
    """Codes and coefficients ``[1, 2, ..., -2**(bits-1)]`` whose planes sum to ``values``."""
    coef = (1 << np.arange(bits, dtype=np.int64))
    coef[-1] = -coef[-1]
    return np.mod(values, 1 << bits), coef


def encode_levels(q, exact_zero):
    """``(in_bits, in_code, in_coef, offset)`` with ``value_in[k] + offset == q[k]``.

    ``exact_zero`` (a zero-padded convolution reads the layer) keeps ``offset = 0`` so a
    padded tap — real value 0 — contributes 0; otherwise the smallest level moves into the
    bias (``offset * sum w``) and a common step into ``in_coef``: bipolar ``{-1, +1}`` takes
    one bit, not two.
    """
    q = np.asarray(q, dtype=np.int64)
    offset, step = 0, 1
    if not exact_zero:
        offset = int(q[0])
        step = math.gcd(*(int(d) for d in q - offset)) or 1
    u = (q - offset) // step
    if u.min() >= 0:
        bits = max(bits_for_levels(len(q)), _unsigned_bits(u))
        code, coef = u, (1 << np.arange(bits, dtype=np.int64))
    else:
        bits = max(bits_for_levels(len(q)), signed_width(u.min(), u.max()))
        code, coef = _twos_complement(u, bits)
    if bits > MAX_IN_BITS:
        raise FoldError(f"the input levels need {bits} bits, more than the IR's {MAX_IN_BITS}")
    return bits, code.astype(np.uint16), coef * step, offset


def _planes(w):
    """``(bits, encoding, code, coef_row)`` of integer weights, or FoldError beyond 8 bits."""
    if np.isin(w, (-1, 1)).all():
        return 1, "pm1", (w > 0).astype(np.uint8), np.ones(1, dtype=np.int64)
    if w.min(initial=0) >= 0:
        bits = _unsigned_bits(w)
        code, coef = w, (1 << np.arange(bits, dtype=np.int64))
    else:
        bits = signed_width(w.min(), w.max())
        code, coef = _twos_complement(w, bits)
    if bits > MAX_WEIGHT_BITS:
        raise FoldError(f"the integer weights span [{w.min()}, {w.max()}], {bits} bits; the IR holds at most "
                        f"{MAX_WEIGHT_BITS} (also after dividing each channel by its common factor)")
    return bits, "bin", code.astype(np.uint8), coef


def encode_weights(w):
    """``(bits, encoding, code, coef)`` for integer weights ``w`` ``[O, ...]``; ``coef`` is ``[O, K]``.

    ``{-1, +1}`` weights are one ``pm1`` plane; non-negative ones plain binary planes;
    signed ones two's complement, whose top plane weighs ``-2**(K-1)``.  Weights wider than
    8 bits (a per-channel multiplier folded in, e.g. by ``lqflow import`` itself) are divided
    by each channel's greatest common factor, which moves into that channel's coefficients.
    """
    w = np.asarray(w, dtype=np.int64)
    rows = w.reshape(len(w), -1)
    try:
        bits, encoding, code, coef = _planes(w)
        return bits, encoding, code, np.repeat(coef[None, :], len(w), axis=0)
    except FoldError:
        factor = np.array([math.gcd(*(int(v) for v in row)) or 1 for row in rows], dtype=np.int64)
        if np.all(factor == 1):
            raise
    bits, encoding, code, coef = _planes(w // factor.reshape((-1,) + (1,) * (w.ndim - 1)))
    return bits, encoding, code, factor[:, None] * coef[None, :]


def search_thresholds(level_of, lo, hi, steps):
    """``T[o, m]``: the least ``acc`` in ``[lo[o], hi[o] + 1]`` with ``level_of(acc, o) >= m + 1``
    (``hi + 1``: never reached), for a ``level_of`` non-decreasing in ``acc``.

    ``level_of(acc, channel)`` takes int64 arrays ``[O, M]`` and ``[O, 1]``.
    """
    lo, hi = np.asarray(lo, np.int64), np.asarray(hi, np.int64)
    low = np.repeat(lo[:, None], steps, axis=1)
    high = np.repeat(hi[:, None] + 1, steps, axis=1)
    target = np.arange(1, steps + 1, dtype=np.int64)[None, :]
    channel = np.arange(len(lo))[:, None]
    while np.any(low < high):
        mid = low + (high - low) // 2
        reached = level_of(mid, channel) >= target
        open_ = low < high
        high = np.where(open_ & reached, mid, high)
        low = np.where(open_ & ~reached, mid + 1, low)
    return low


def _exact_unit(mag, top_multiplier, divisors=16):
    """A unit of which every gain magnitude is an integer multiple (at most ``top_multiplier``):
    one shared scale (unit = that scale), or power-of-two and other small ratios; else None."""
    smallest = float(mag[mag > 0].min())
    for d in range(1, divisors + 1):
        ratio = mag / (smallest / d)
        if ratio.max() <= top_multiplier and np.all(np.abs(ratio - np.rint(ratio)) <= 1e-9 * ratio.max()):
            return smallest / d
    return None


def logit_integers(gain, shift, acc_bound, coef_bits):
    """``(multiplier, bias, logit_scale)``: ``logit[o] ≈ logit_scale * (multiplier[o] * acc[o] + bias[o])``
    for real logits ``gain[o] * acc[o] + shift[o]``.

    One shared |gain| is exact (multiplier ±1), and so are gains in small integer ratios (such
    as powers of two); other per-channel gains are rounded to multipliers of ``coef_bits``
    signed bits.  The bias takes the fewest fraction bits (up to
    :data:`MAX_FRACTION_BITS`, while accumulators stay below 2**23) that make it exact, so a
    bias on the logit grid stays exact and a float bias still breaks near-ties as the floats do.
    """
    gain, shift = np.asarray(gain, np.float64), np.asarray(shift, np.float64)
    mag = np.abs(gain)
    if not np.all(np.isfinite(gain)) or not np.all(np.isfinite(shift)):
        raise FoldError("the logits' scale or offset is not finite")
    top = float(mag.max())
    if top == 0:
        raise FoldError("every logit has scale 0 (all weights or scales are zero)")
    unit = _exact_unit(mag, 2 ** (coef_bits - 1) - 1)
    if unit is None:  # no small integer ratios: round them to coef_bits
        unit = top / (2 ** (coef_bits - 1) - 1)
    multiplier = np.rint(gain / unit).astype(np.int64)
    bound = float(np.abs(multiplier).max()) * acc_bound + float(np.abs(shift / unit).max()) + 1
    for fraction in range(MAX_FRACTION_BITS + 1):
        bias = shift / unit * 2.0**fraction
        exact = np.all(np.abs(bias - np.rint(bias)) <= 1e-9 * np.maximum(1.0, np.abs(bias)))
        if exact or fraction == MAX_FRACTION_BITS or bound * 2.0 ** (fraction + 1) >= EXACT_FLOAT_LIMIT:
            break
    return multiplier << fraction, np.rint(bias).astype(np.int64), unit / 2.0**fraction
