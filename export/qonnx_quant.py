"""QONNX quantizers as numpy step functions: ``Quant``, ``BipolarQuant``, ``Trunc`` (v2) and
``MultiThreshold``, with the semantics of qonnx 1.0's own executors.

Every quantizer maps a real ``x`` to a *level index* ``k`` in ``[0, L)`` and on to the real
value ``scale * q[k]`` (``q`` integers, non-decreasing in ``k``).  qonnx computes (its
``int_quant``, ``binary_quant``, ``trunc_v2``, ``multithreshold``)::

    Quant         code = rounding(clip(x / scale + zero_point, min_int, max_int));  out = (code - zp) * scale
                  (a 1-bit *signed* Quant is bipolar: code = +1 if x / scale + zp >= 0 else -1)
    BipolarQuant  out = (+1 if x >= 0 else -1) * scale
    Trunc (v2)    y = round(x / scale + zp) / 2**round(log2(out_scale / scale));
                  code = rounding(clip(y, min_int, max_int)); out = (code - zp / trunc_scale) * out_scale
    MultiThreshold  count = #{m: x >= T[c, m]};  out = out_scale * count + out_bias

``round``/``ROUND``/``HALF_EVEN`` is numpy's half-to-even.  The level is ``code - min code``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from qonnx.custom_op.general.quant import max_int, min_int, resolve_rounding_mode

__all__ = ["QuantError", "Quantizer", "quant_codes", "code_table", "integer_grid"]


class QuantError(ValueError):
    """A quantizer's parameters are outside what the importer can express (message: why)."""


def code_table(signed, narrow, bits):
    """Every integer code a ``Quant`` can emit, ascending (``[-1, 1]`` for a 1-bit signed one)."""
    if bits == 1 and signed:
        return np.array([-1, 1], dtype=np.int64)
    return np.arange(min_int(signed, narrow, bits), max_int(signed, narrow, bits) + 1, dtype=np.int64)


def quant_codes(x, scale, zero_point, bits, signed, narrow, rounding_mode):
    """Integer codes of qonnx's ``Quant`` (as floats, in ``x``'s dtype): clamp first, then round."""
    y = x / scale + zero_point
    if bits == 1 and signed:  # qonnx's (and Brevitas') bipolar special case
        return np.where(y >= 0, 1, -1).astype(y.dtype)
    y = np.clip(y, min_int(signed, narrow, bits), max_int(signed, narrow, bits))
    return resolve_rounding_mode(rounding_mode)(y)


def integer_grid(values, scale, what):
    """``q`` with ``values == scale * q`` in integers, trying ``scale`` and then 1.

    Float32 parameters make exact ratios like ``zp / trunc_scale`` land within 1e-6 of an
    integer; anything farther is refused, since the IR's level values are integers.
    """
    values = np.asarray(values, dtype=np.float64)
    for s in (scale, 1.0):
        ratio = values / s
        q = np.rint(ratio)
        if np.all(np.abs(ratio - q) <= 1e-6 * np.maximum(1.0, np.abs(q))):
            return float(s), q.astype(np.int64)
    raise QuantError(f"{what} are not integer multiples of one scale ({values[:4].tolist()}...)")


@dataclass(frozen=True)
class Quantizer:
    """An elementwise non-decreasing step function: real value → level index → ``scale * q[level]``.

    ``kind`` is the op type; ``params`` its constants (float64 arrays, per-tensor except a
    MultiThreshold's per-channel thresholds).
    """

    kind: str
    params: dict
    scale: float          # output scale
    q: np.ndarray         # int64 [L]: output value / scale of each level

    @property
    def levels(self):
        return len(self.q)

    def level(self, x, channel=None):
        """Level indices (int64) of real ``x``, in ``x``'s float precision; ``channel`` (int
        array broadcasting with ``x``) selects a MultiThreshold's row."""
        p = self.params
        if self.kind == "BipolarQuant":
            return (x >= 0).astype(np.int64)
        if self.kind == "Quant":
            codes = quant_codes(x, p["scale"].astype(x.dtype), p["zero_point"].astype(x.dtype), p["bits"],
                                p["signed"], p["narrow"], p["rounding_mode"])
            table = code_table(p["signed"], p["narrow"], p["bits"])
            return np.searchsorted(table, codes.astype(np.int64))
        if self.kind == "Trunc":
            y = np.round(x / p["scale"] + p["zero_point"]) / p["trunc_scale"]
            y = np.clip(y, min_int(p["signed"], p["narrow"], p["bits"]), max_int(p["signed"], p["narrow"], p["bits"]))
            code = resolve_rounding_mode(p["rounding_mode"])(y).astype(np.int64)
            return code - min_int(p["signed"], p["narrow"], p["bits"])
        thresholds = p["thresholds"]
        rows = thresholds[0] if len(thresholds) == 1 or channel is None else thresholds[channel]
        return (x[..., None] >= rows).sum(axis=-1).astype(np.int64)

    def describe(self):
        """JSON-ready parameters (for the model's meta and :func:`from_description`)."""
        out = {"op": self.kind}
        for key, value in self.params.items():
            out[key] = value.tolist() if isinstance(value, np.ndarray) else value
        return out

    @classmethod
    def from_description(cls, desc):
        """The inverse of :meth:`describe` (for ``Quant`` and ``BipolarQuant``)."""
        desc = dict(desc)
        kind = desc.pop("op")
        if kind == "Quant":
            return make_quant(desc["scale"], desc["zero_point"], desc["bits"], desc["signed"], desc["narrow"],
                              desc["rounding_mode"])
        if kind == "BipolarQuant":
            return make_bipolar(desc["scale"])
        raise QuantError(f"input quantizer {kind!r}: only Quant and BipolarQuant quantize the input")


# --- constructors: parameters checked first, each refusal says why ------------------------

def _scalar(value, what):
    arr = np.asarray(value, dtype=np.float64)
    if arr.size != 1:
        raise QuantError(f"{what} has shape {list(arr.shape)}: the importer needs one value per tensor "
                         "(the next layer's input levels must share one scale)")
    return float(arr.reshape(-1)[0])


def _bits(value, what="bit width"):
    bits = _scalar(value, what)
    if bits != int(bits) or not 1 <= bits <= 16:
        raise QuantError(f"{what} must be an integer from 1 to 16, not {bits}")
    return int(bits)


def _positive(value, what):
    v = _scalar(value, what)
    if not np.isfinite(v) or v <= 0:
        raise QuantError(f"{what} must be positive and finite, not {v} (a negative scale reverses the levels)")
    return v


def make_quant(scale, zero_point, bits, signed, narrow, rounding_mode):
    """A per-tensor ``Quant`` (activations or input)."""
    scale = _positive(scale, "scale")
    zp = _scalar(zero_point, "zero point")
    bits = _bits(bits)
    resolve_rounding_mode(str(rounding_mode))  # refuses an unknown mode with qonnx's own message
    table = code_table(bool(signed), bool(narrow), bits)
    _, q = integer_grid(table - zp, 1.0, "codes minus the zero point")
    params = {"scale": np.float64(scale), "zero_point": np.float64(zp), "bits": bits, "signed": int(bool(signed)),
              "narrow": int(bool(narrow)), "rounding_mode": str(rounding_mode)}
    return Quantizer("Quant", params, scale, q)


def make_bipolar(scale):
    scale = _positive(scale, "scale")
    return Quantizer("BipolarQuant", {"scale": np.float64(scale)}, scale, np.array([-1, 1], dtype=np.int64))


def make_trunc(scale, zero_point, out_scale, out_bits, signed, narrow, rounding_mode):
    """qonnx's ``Trunc`` v2 (six inputs)."""
    scale = _positive(scale, "scale")
    out_scale = _positive(out_scale, "output scale")
    zp = _scalar(zero_point, "zero point")
    bits = _bits(out_bits, "output bit width")
    resolve_rounding_mode(str(rounding_mode))
    trunc_scale = float(2.0 ** np.round(np.log2(out_scale / scale)))
    codes = np.arange(min_int(bool(signed), bool(narrow), bits), max_int(bool(signed), bool(narrow), bits) + 1)
    out_scale, q = integer_grid((codes - zp / trunc_scale) * out_scale, out_scale,
                                "truncated codes minus the zero point")
    params = {"scale": np.float64(scale), "zero_point": np.float64(zp), "trunc_scale": trunc_scale, "bits": bits,
              "signed": int(bool(signed)), "narrow": int(bool(narrow)), "rounding_mode": str(rounding_mode)}
    return Quantizer("Trunc", params, out_scale, q)


def make_multithreshold(thresholds, out_scale, out_bias):
    thresholds = np.asarray(thresholds, dtype=np.float64)
    if thresholds.ndim != 2 or thresholds.shape[1] < 1:
        raise QuantError(f"thresholds must be [channels, steps], not {list(thresholds.shape)}")
    if np.any(np.diff(thresholds, axis=1) < 0):
        # qonnx counts thresholds crossed, so unsorted rows still give a monotone count
        thresholds = np.sort(thresholds, axis=1)
    out_scale = _positive(out_scale, "out_scale")
    counts = np.arange(thresholds.shape[1] + 1)
    scale, q = integer_grid(out_scale * counts + float(out_bias), out_scale, "MultiThreshold outputs")
    return Quantizer("MultiThreshold", {"thresholds": thresholds}, scale, q)
