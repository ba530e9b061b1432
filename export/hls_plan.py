"""The hls4ml plan: an IR model as hls4ml layers with exact integer weights, biases and bounds.

hls4ml has no threshold layer. The exact route needs only ``Dense``/``Conv2D`` and
``ReLU``: for an integer accumulator, ``[acc >= T] = ReLU(acc - T + 1) - ReLU(acc - T)``
(a *thermometer pair*), and a level's input value is ``v_0 + sum_m Δ_m [acc >= T_m]``
(``Δ_m >= 0`` the steps between consecutive input values). Each threshold layer becomes

    MAC(acc) → select: acc - T + 1, acc - T for each threshold (one-hot weights) → ReLU

* **Dense → Dense**: the next Dense reads the ``2·M`` pairs per channel itself, with weights
  ``±w·Δ_m`` and the ``v_0`` term folded into its bias (cost: ``2·(L_out − 1)`` times as
  many inputs, no extra layer).
* **Images** (a ``conv2d`` threshold layer): select and ReLU are 1×1 ``Conv2D`` layers and a
  third 1×1 ``Conv2D`` (*value*, weights ``±Δ_m``, bias ``v_0``) turns the pairs back into
  the next layer's input value ``value_in[k]``. Values, not pairs, travel on because

  - ``MaxPooling2D`` pools them exactly: ``value_in`` is non-decreasing in the level
    index, so the max of the values is the value of the max level (the IR's max-pool);
  - a padded ``Conv2D`` tap reads 0, which is exactly the IR's padded tap (value 0); a
    ``v_0`` folded into a bias would be wrong at the borders.

The network input (level indices) folds into the first MAC layer when its values are
affine in the level index (``v_0 + s·k``: weights ``·s``, bias ``+ v_0·Σw``; raw pixels
are, with ``v_0 = 0``); a padded convolution folds only when ``v_0 = 0``. Otherwise the
input is expanded like a threshold layer (levels ``k >= 1, 2, …``), into pairs for a Dense
and into values for a Conv2D. Max-pooling the input pools level indices, which is the IR.

hls4ml is channels-last; the IR's images are ``[C, H, W]``. Images travel as ``[H, W, C]``
(the input is transposed when fed) and a Dense after ``flatten`` takes its weight columns
permuted from the IR's C order of ``[C, H, W]`` to ``[H, W, C]``: the same sums, exactly.

Every precision is set from exact bounds: each MAC layer's result and accumulator hold
the IR's accumulator range (partial sums may wrap: two's-complement wrap-around still lands
on the exact final value, as in the RTL); every other layer's bounds follow by interval
arithmetic. Weights, biases and results travel through hls4ml as float64, so no width may
exceed :data:`MAX_WIDTH` (53 bits): beyond it :class:`ExpressError` names the layer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from lqir import (Conv2dLayer, UnsupportedLayerError, accumulator_bounds, check_backend,
                  input_values, signed_width, weight_values)

__all__ = ["HlsLayer", "ExpressError", "MAX_WIDTH", "plan_hls"]

MAX_WIDTH = 53  # weights, biases and results travel as float64 through hls4ml: exact below 2**53
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ExpressError(UnsupportedLayerError):
    """The model cannot be expressed exactly in hls4ml; the message names the layer."""


@dataclass
class HlsLayer:
    """One hls4ml layer of the plan, with exact integer data and bounds.

    ``kind`` is "input", "dense", "relu", "conv" (``Conv2D``), "maxpool" or "flatten".
    ``shape`` is the output shape, channels last (``[N]`` or ``[H, W, C]``); ``lo``/``hi``
    bound the result per entry of its last axis (per output of a flat layer, per channel
    of an image). Conv weights are in the IR's ``[O, C, k, k]`` layout.
    """

    name: str
    kind: str
    n_out: int                         # values the layer outputs
    lo: np.ndarray
    hi: np.ndarray
    weight: np.ndarray | None = None   # int64 [n_out, n_in] or [O, C, k, k]
    bias: np.ndarray | None = None     # int64 [outputs or channels]
    accum_bound: int = 0               # max |partial sum| (MAC layers: of the final sum)
    precision: dict = field(default_factory=dict)
    shape: tuple = ()
    kernel: int = 1                    # conv and maxpool
    stride: int = 1
    padding: int = 0

    def __post_init__(self):
        self.shape = tuple(int(s) for s in self.shape) or (int(self.n_out),)


def _interval(weight, bias, lo_in, hi_in):
    """Bounds and max |partial sum| of ``weight @ x + bias`` over ``lo_in <= x <= hi_in``."""
    lo = bias + np.minimum(weight * lo_in, weight * hi_in).sum(axis=1)
    hi = bias + np.maximum(weight * lo_in, weight * hi_in).sum(axis=1)
    accum = int(np.abs(bias).max(initial=0)
                + (np.abs(weight) * np.maximum(np.abs(lo_in), np.abs(hi_in))).sum(axis=1).max(initial=0))
    return lo, hi, accum


def _mac(name, kind, weight, bias, lo_in, hi_in, shape, exact=None, **conv):
    """A Dense (``weight`` [O, I]) or Conv2D (``weight`` [O, C, k, k]) layer.

    ``exact=(lo, hi)``: the IR's accumulator bounds (interval arithmetic over thermometer
    pairs would be loose); the accumulator is then as wide as the result. Without it the
    layer is a Dense or a 1×1 Conv2D whose bounds follow by interval arithmetic.
    """
    weight, bias = weight.astype(np.int64), bias.astype(np.int64)
    if exact is not None:
        lo, hi = (np.asarray(b, np.int64) for b in exact)
        accum = max(abs(int(lo.min())), abs(int(hi.max())))
    else:
        lo, hi, accum = _interval(weight.reshape(len(bias), -1), bias, lo_in, hi_in)
    return HlsLayer(name, kind, int(np.prod(shape)), lo, hi, weight, bias, accum, shape=shape, **conv)


def _select(name, prev, thresholds):
    """``u - T + 1`` and ``u - T`` for every threshold of every channel of ``prev``, then ReLU.

    Output entry ``c·2M + 2m + s`` (``s = 0``: ``+1`` form); a 1×1 Conv2D on images.
    """
    n, m = thresholds.shape
    weight = np.zeros((2 * n * m, n), np.int64)
    weight[np.arange(2 * n * m), np.repeat(np.arange(n), 2 * m)] = 1
    bias = np.stack([-thresholds + 1, -thresholds], axis=-1).reshape(-1)
    shape = prev.shape[:-1] + (2 * n * m,)
    if len(prev.shape) == 3:
        sel = _mac(f"{name}_select", "conv", weight[:, :, None, None], bias, prev.lo, prev.hi, shape)
    else:
        sel = _mac(f"{name}_select", "dense", weight, bias, prev.lo, prev.hi, shape)
    relu = HlsLayer(f"{name}_step", "relu", sel.n_out, np.maximum(sel.lo, 0), np.maximum(sel.hi, 0), shape=shape)
    return [sel, relu]


def _consume(weight, values):
    """Weights [O, I·2M] and bias offset [O] of a Dense reading thermometer pairs instead of levels."""
    v0, delta = int(values[0]), np.diff(values).astype(np.int64)
    n_out, n_in = weight.shape
    pair = np.stack([delta, -delta], axis=-1).reshape(-1)           # [2M]: +Δ_m, −Δ_m
    expanded = (weight[:, :, None] * pair[None, None, :]).reshape(n_out, n_in * len(pair))
    return expanded, v0 * weight.sum(axis=1)


def _value(name, prev, values):
    """1×1 Conv2D: the pairs of ``prev`` (``2M`` per channel) back to ``value_in[level]``."""
    n = prev.shape[-1] // (2 * (len(values) - 1))
    weight, bias = _consume(np.eye(n, dtype=np.int64), values)
    exact = (np.full(n, values[0]), np.full(n, values[-1]))      # values are non-decreasing
    return _mac(f"{name}_value", "conv", weight[:, :, None, None], bias, None, None,
                prev.shape[:-1] + (n,), exact=exact)


def _affine(values):
    """``(v0, slope)`` if ``values[k] == v0 + slope·k``, else None."""
    slope = int(values[1] - values[0])
    return (int(values[0]), slope) if np.array_equal(values, values[0] + slope * np.arange(len(values))) else None


class _Planner:
    """Walks the IR layers, tracking what the current hls4ml tensor holds (``rep``):
    "levels" (level indices), "pairs" (thermometer pairs, flat tensors only) or "values"
    (the next MAC layer's input values)."""

    def __init__(self, model):
        self.model = model
        spatial = any(layer.op in ("conv2d", "maxpool2d") for layer in model.layers)
        in_shape = model.input.shape
        # Without images the input travels flat in the IR's C order (no permutation needed).
        shape = (in_shape[1], in_shape[2], in_shape[0]) if spatial and len(in_shape) == 3 else (int(np.prod(in_shape)),)
        n = shape[-1]
        self.plan = [HlsLayer("x", "input", int(np.prod(shape)), np.zeros(n, np.int64),
                              np.full(n, model.input.levels - 1, np.int64), shape=shape)]
        self.rep, self.perm = "levels", None

    @property
    def prev(self):
        return self.plan[-1]

    def run(self):
        macs = self.model.mac_layers()
        if macs[-1].output != "accumulate":
            raise ExpressError(f"{macs[-1].name}: the network ends in threshold levels, not logits; the hls4ml "
                               f"writer builds networks whose last dense or conv2d layer accumulates")
        for layer in self.model.layers:
            if layer.op == "maxpool2d":
                self._pool(layer)
            elif layer.op == "flatten":
                self._flatten(layer)
            else:
                following = macs[macs.index(layer) + 1] if layer.output == "threshold" else None
                self._mac(layer, following)
        return self.plan

    def _pool(self, layer):
        # levels or values: both non-decreasing in the level index, so max commutes with them
        h, w, c = self.prev.shape
        out = ((h - layer.kernel) // layer.stride + 1, (w - layer.kernel) // layer.stride + 1, c)
        self.plan.append(HlsLayer(layer.name, "maxpool", int(np.prod(out)), self.prev.lo, self.prev.hi,
                                  shape=out, kernel=layer.kernel, stride=layer.stride))

    def _flatten(self, layer):
        if len(self.prev.shape) != 3:
            return                                           # already flat: nothing to do
        h, w, c = self.prev.shape
        # hls4ml entry j = (y·W + x)·C + ch holds the IR's flat entry ch·H·W + y·W + x
        self.perm = np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).reshape(-1)
        n = h * w * c
        self.plan.append(HlsLayer(layer.name, "flatten", n, np.tile(self.prev.lo, h * w),
                                  np.tile(self.prev.hi, h * w), shape=(n,)))

    def _mac(self, layer, following):
        conv = isinstance(layer, Conv2dLayer)
        values = input_values(layer)
        weight, bias = weight_values(layer).astype(np.int64), layer.bias.astype(np.int64)
        if self.perm is not None:
            weight, self.perm = weight[:, self.perm], None
        if self.rep == "levels":
            affine = _affine(values)
            if affine is not None and not (conv and layer.padding and affine[0]):
                fan_in = tuple(range(1, weight.ndim))
                bias, weight = bias + affine[0] * weight.sum(axis=fan_in), weight * affine[1]
                self.rep = "values"
            else:                                            # expand x >= 1, 2, … like thresholds
                levels = self.model.input.levels
                self.plan += _select("x", self.prev, np.tile(np.arange(1, levels, dtype=np.int64),
                                                             (self.prev.shape[-1], 1)))
                self.rep = "pairs"
                if conv:
                    self.plan.append(_value("x", self.prev, values))
                    self.rep = "values"
        if self.rep == "pairs":
            weight, offset = _consume(weight, values)
            bias = bias + offset
        exact = accumulator_bounds(layer)
        if conv:
            h, w, _ = self.prev.shape
            size = [(s + 2 * layer.padding - layer.kernel) // layer.stride + 1 for s in (h, w)]
            mac = _mac(layer.name, "conv", weight, bias, None, None, (*size, layer.n_out), exact=exact,
                       kernel=layer.kernel, stride=layer.stride, padding=layer.padding)
        else:
            mac = _mac(layer.name, "dense", weight, bias, None, None, (layer.n_out,), exact=exact)
        self.plan.append(mac)
        if following is not None:
            self.plan += _select(layer.name, mac, layer.thresholds)
            self.rep = "pairs"
            if conv:
                self.plan.append(_value(layer.name, self.prev, input_values(following)))
                self.rep = "values"


def plan_hls(model):
    """The hls4ml layers of ``model`` (a list of :class:`HlsLayer`, input first) with exact
    weights, biases, bounds and precisions; raises :class:`ExpressError`."""
    try:
        check_backend(model, "hls4ml")
    except UnsupportedLayerError as exc:
        raise ExpressError(str(exc)) from None
    plan = _Planner(model).run()
    seen = set()
    for layer in plan:
        # hls4ml names C++ variables and types after its layers
        if not _IDENT.fullmatch(layer.name) or layer.name in seen:
            raise ExpressError(f"{layer.name}: hls4ml needs unique C identifiers as layer names; "
                               f"rename the layer (letters, digits and '_', not starting with a digit)")
        seen.add(layer.name)
        _set_precision(layer)
    return plan


def _set_precision(layer):
    def sint(lo, hi, what):
        width = signed_width(lo, hi)
        if width > MAX_WIDTH:
            raise ExpressError(f"{layer.name}: the {what} needs {width} bits, more than {MAX_WIDTH} "
                               f"(hls4ml carries values as float64)")
        return f"ap_int<{width}>"

    if layer.kind == "input":
        layer.precision = {"result": f"ap_uint<{max(1, int(layer.hi.max()).bit_length())}>"}
        return
    result = sint(int(layer.lo.min()), int(layer.hi.max()), "result")
    if layer.kind == "relu":
        layer.precision = {"result": result, "table": result}   # no table is used; set it anyway
    elif layer.kind == "maxpool":
        layer.precision = {"accum": result, "result": result}   # the max of inputs of this type
    elif layer.kind == "flatten":
        layer.precision = {"result": result}                    # io_parallel: the input, in place
    else:
        weight = sint(int(layer.weight.min()), int(layer.weight.max()), "weights")
        if weight == "ap_int<2>" and int(layer.weight.min()) < -1:
            # hls4ml multiplies by an ap_int<2> weight with its ternary shortcut, which reads -2 as +1
            weight = "ap_int<3>"
        layer.precision = {
            "weight": weight,
            "bias": sint(int(layer.bias.min()), int(layer.bias.max()), "bias"),
            "accum": sint(-layer.accum_bound, layer.accum_bound, "accumulator"),
            "result": result,
        }
