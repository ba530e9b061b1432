"""hls4ml writer: an IR model as an hls4ml project (Vitis backend, ``io_parallel``).

Every tensor is an integer; every precision is set explicitly from exact bounds
(``ap_uint``/``ap_int`` wide enough for every reachable value and every partial sum), so
hls4ml's C simulation computes the IR's integers exactly.

The threshold step has no hls4ml layer. The exact route used here needs only ``Dense``
and ``ReLU``: for an integer accumulator, ``[acc >= T] = ReLU(acc - T + 1) - ReLU(acc - T)``,
and the next layer's input value is ``v_0 + sum_m Δ_m [acc >= T_m]`` (``Δ_m`` the steps
between consecutive input values). So each threshold layer becomes

    Dense(acc) → Dense(select: acc - T + 1, acc - T for each threshold) → ReLU

and the next Dense takes the ``2·M`` ReLU outputs per channel, with weights
``±w·Δ_m`` and the ``v_0`` term folded into its bias. Cost: the next layer has
``2·(L_out − 1)`` times as many inputs. The network input (level indices) is folded
into the first layer when its values are affine in the level index (raw pixels are),
else expanded the same way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from hwsim import Simulator
from lqir import (UnsupportedLayerError, accumulator_bounds, check_backend, input_values, signed_width,
                  weight_values)

__all__ = ["HlsLayer", "HlsResult", "plan_hls", "build_hls_model", "hls_cosim", "ExpressError"]

MAX_WIDTH = 53  # weights, biases and results travel as float64 through hls4ml: exact below 2**53


class ExpressError(UnsupportedLayerError):
    """The model cannot be expressed exactly in hls4ml; the message names the layer."""


@dataclass
class HlsLayer:
    """One hls4ml layer of the plan, with exact integer data and bounds."""

    name: str
    kind: str                    # "input", "dense", "relu"
    n_out: int
    lo: np.ndarray               # per-output bounds of the layer's result
    hi: np.ndarray
    weight: np.ndarray | None = None   # int64 [n_out, n_in]
    bias: np.ndarray | None = None     # int64 [n_out]
    accum_bound: int = 0               # max |partial sum|
    precision: dict = field(default_factory=dict)


@dataclass
class HlsResult:
    """hls4ml's C simulation next to hwsim's answer for the same inputs."""

    outputs: np.ndarray      # int64 [B, classes], from the C simulation
    reference: np.ndarray    # int64 [B, classes], hwsim
    plan: list               # the HlsLayer list the project was built from
    compile_s: float

    @property
    def mismatches(self):
        """Indices of samples whose logits differ from hwsim's in any integer (must be empty)."""
        return [int(k) for k in np.nonzero((self.outputs != self.reference).any(axis=1))[0]]


def _dense(name, weight, bias, lo_in, hi_in, exact=None):
    """A Dense layer; ``exact=(lo, hi)`` gives the IR's accumulator bounds when interval
    arithmetic over thermometer pairs would be loose.

    With ``exact``, the accumulator is as wide as the result: partial sums may wrap, and
    two's-complement wrap-around still lands on the exact final value (as in the RTL).
    """
    weight, bias = weight.astype(np.int64), bias.astype(np.int64)
    if exact is not None:
        lo, hi = exact
        return HlsLayer(name, "dense", len(bias), lo, hi, weight, bias, max(abs(int(lo.min())), abs(int(hi.max()))))
    lo = bias + np.minimum(weight * lo_in, weight * hi_in).sum(axis=1)
    hi = bias + np.maximum(weight * lo_in, weight * hi_in).sum(axis=1)
    accum = int(np.abs(bias).max(initial=0) + (np.abs(weight) * np.maximum(np.abs(lo_in), np.abs(hi_in))).sum(axis=1).max())
    return HlsLayer(name, "dense", len(bias), lo, hi, weight, bias, accum)


def _steps(values):
    """``values[k] = v0 + sum_{m<k} Δ_m``: returns (v0, Δ)."""
    return int(values[0]), np.diff(values).astype(np.int64)


def _expand(name, lo, hi, thresholds):
    """Dense selecting ``u - T + 1`` and ``u - T`` for every threshold of every channel, then ReLU."""
    n, m = thresholds.shape
    rows = np.repeat(np.arange(n), 2 * m)
    weight = np.zeros((2 * n * m, n), np.int64)
    weight[np.arange(2 * n * m), rows] = 1
    bias = np.stack([-thresholds + 1, -thresholds], axis=-1).reshape(-1)
    sel = _dense(f"{name}_select", weight, bias, lo, hi)
    relu = HlsLayer(f"{name}_step", "relu", sel.n_out, np.maximum(sel.lo, 0), np.maximum(sel.hi, 0))
    return [sel, relu]


def _consume(weight, values):
    """Weights and bias offset of a layer reading thermometer pairs instead of levels."""
    v0, delta = _steps(values)
    n_out, n_in = weight.shape
    pair = np.stack([delta, -delta], axis=-1).reshape(-1)           # [2M]: +Δ_m, −Δ_m
    expanded = (weight[:, :, None] * pair[None, None, :]).reshape(n_out, n_in * len(pair))
    return expanded, v0 * weight.sum(axis=1)


def plan_hls(model):
    """The hls4ml layers of ``model`` (a list of :class:`HlsLayer`, input first) with exact
    weights and bounds; raises :class:`ExpressError`."""
    try:
        check_backend(model, "hls4ml")
    except UnsupportedLayerError as exc:
        raise ExpressError(str(exc)) from None
    dense = model.mac_layers()
    n_in = int(np.prod(model.input.shape))
    levels = model.input.levels
    x = HlsLayer("x", "input", n_in, np.zeros(n_in, np.int64), np.full(n_in, levels - 1, np.int64))
    plan, prev = [x], x
    for k, layer in enumerate(dense):
        values = input_values(layer)
        weight = weight_values(layer).astype(np.int64)
        bias = layer.bias.astype(np.int64)
        if k == 0:  # reads the network input; every later layer reads a threshold layer's pairs
            ks = np.arange(levels)
            slope = values[1] - values[0] if levels > 1 else 0
            if np.array_equal(values, values[0] + slope * ks):      # affine in the level index: fold
                bias = bias + values[0] * weight.sum(axis=1)
                weight = weight * slope
            else:                                                   # expand x ≥ 1, 2, … like thresholds
                thr = np.tile(np.arange(1, levels, dtype=np.int64), (n_in, 1))
                plan += _expand("x", prev.lo, prev.hi, thr)
                prev = plan[-1]
                weight, offset = _consume(weight, values)
                bias = bias + offset
        else:
            weight, offset = _consume(weight, values)
            bias = bias + offset
        mac = _dense(layer.name, weight, bias, prev.lo, prev.hi, exact=accumulator_bounds(layer))
        plan.append(mac)
        if layer.output == "threshold":
            plan += _expand(layer.name, mac.lo, mac.hi, layer.thresholds)
        prev = plan[-1]
    for layer in plan:
        _set_precision(layer)
    return plan


def _set_precision(layer):
    def sint(lo, hi, what):
        width = signed_width(lo, hi)
        if width > MAX_WIDTH:
            raise ExpressError(f"{layer.name}: the {what} needs {width} bits, more than {MAX_WIDTH}")
        return f"ap_int<{width}>"

    if layer.kind == "input":
        layer.precision = {"result": f"ap_uint<{max(1, int(layer.hi.max()).bit_length())}>"}
        return
    result = sint(int(layer.lo.min()), int(layer.hi.max()), "result")
    if layer.kind == "relu":
        layer.precision = {"result": result, "table": result}   # no table is used; set it anyway
        return
    layer.precision = {
        "weight": sint(int(layer.weight.min()), int(layer.weight.max()), "weights"),
        "bias": sint(int(layer.bias.min()), int(layer.bias.max()), "bias"),
        "accum": sint(-layer.accum_bound, layer.accum_bound, "accumulator"),
        "result": result,
    }


def _layer_config(layer):
    precision = dict(layer.precision)
    config = {"ReuseFactor": 1}
    if "table" in precision:  # hls4ml reads an activation's table type beside, not inside, Precision
        config["table_t"] = precision.pop("table")
    config["Precision"] = precision
    return config


def build_hls_model(model, out_dir, project="lqflow_hls", part="xcu250-figd2104-2L-e", clock_period=5):
    """The hls4ml ``ModelGraph`` of ``model`` (Vitis, io_parallel, reuse factor 1) and its plan."""
    from hls4ml.model.graph import ModelGraph
    from hls4ml.utils.config import create_config

    plan = plan_hls(model)
    config = create_config(output_dir=str(out_dir), project_name=project, backend="Vitis",
                           io_type="io_parallel", part=part, clock_period=clock_period)
    last = plan[-1]
    config["HLSConfig"] = {
        # The model-wide precision is only a fallback; every layer below overrides all its types.
        "Model": {"Precision": last.precision["result"], "ReuseFactor": 1, "Strategy": "Latency"},
        "LayerName": {layer.name: _layer_config(layer) for layer in plan},
    }
    layer_list, prev = [], None
    for layer in plan:
        if layer.kind == "input":
            layer_list.append({"class_name": "InputLayer", "name": layer.name, "input_shape": [layer.n_out]})
        elif layer.kind == "dense":
            layer_list.append({"class_name": "Dense", "name": layer.name, "inputs": [prev],
                               "weight_data": layer.weight.T.astype(np.float64),
                               "bias_data": layer.bias.astype(np.float64),
                               "n_in": layer.weight.shape[1], "n_out": layer.n_out, "use_bias": True})
        else:
            layer_list.append({"class_name": "Activation", "name": layer.name, "inputs": [prev],
                               "activation": "relu"})
        prev = layer.name
    return ModelGraph.from_layer_list(config, layer_list), plan


def hls_cosim(model, x, project_dir):
    """Write and compile the project, run hls4ml's C simulation on level indices ``x``, and
    set it beside hwsim's answer (computed once, here)."""
    sim = Simulator(model)
    x = sim.check_inputs(x)
    reference = sim.run(x)
    hls_model, plan = build_hls_model(model, project_dir)
    hls_model.write()
    t0 = time.perf_counter()
    hls_model.compile()
    compile_s = time.perf_counter() - t0
    raw = np.asarray(hls_model.predict(np.ascontiguousarray(x.reshape(len(x), -1), dtype=np.float64)))
    raw = raw.reshape(len(x), -1)
    if not np.array_equal(raw, np.rint(raw)):
        raise RuntimeError("hls4ml returned non-integer outputs: a precision in the project is too narrow")
    return HlsResult(raw.astype(np.int64), reference, plan, compile_s)
