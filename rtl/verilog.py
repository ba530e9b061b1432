"""Verilog generation: one self-contained file plus a JSON description of its interface."""

import json
from dataclasses import asdict
from pathlib import Path

from lqir import atomic_write_bytes, bits_for_levels, check_backend
from hwsim.cycles import Folding, network_timing
from hwsim.stages import EngineStage, engine_views

from .engine import DenseEngine
from .folding import fold_network, network_cost
from .top import NetworkTop
from .verilog_text import to_verilog

__all__ = ["TOP_NAME", "choose_foldings", "describe", "write_network", "write_engine"]

TOP_NAME = "lqflow_top"


def choose_foldings(model, pe=None, simd=None, out_lanes=None, target_ii=None):
    """Per-layer foldings: explicit ``pe``/``simd``/``out_lanes`` lists (or one value for all;
    each layer takes as many values per beat as the previous emits), or the cheapest
    foldings reaching ``target_ii`` cycles (:func:`rtl.folding.fold_network`)."""
    check_backend(model, "rtl")
    dense = [view for view, _, _ in engine_views(model)]
    if target_ii is not None:
        if pe is not None or simd is not None or out_lanes is not None:
            raise ValueError("Folding: give either --pe/--simd/--lanes or a target (--target-ii, --target-fps), not both")
        return fold_network(model, target_ii)
    pes, simds = _per_layer("pe", pe, dense), _per_layer("simd", simd, dense)
    lanes = _per_layer("lanes", out_lanes, dense)
    foldings, in_lanes = [], 1
    for p, s, u, layer in zip(pes, simds, lanes, dense):
        p = min(p, layer.out_features)
        s = -(-min(s, layer.in_features) // in_lanes) * in_lanes
        if p % u:
            raise ValueError(f"Folding: {layer.name}: --lanes {u} must divide its PE {p}")
        foldings.append(Folding(p, s, u, in_lanes))
        in_lanes = u
    return foldings


def _per_layer(name, values, dense):
    if values is None:
        defaults = {"pe": lambda layer: min(8, layer.out_features),
                    "simd": lambda layer: min(16, layer.in_features), "lanes": lambda layer: 1}
        return [defaults[name](layer) for layer in dense]
    values = [values] if isinstance(values, int) else list(values)
    if len(values) == 1:
        values = values * len(dense)
    if len(values) != len(dense):
        raise ValueError(f"Folding: --{name} takes one value or one per MAC layer ({len(dense)}), got {len(values)}")
    return values


def describe(model, foldings, top):
    """Ports, widths, folding, latency and initiation interval of a generated top."""
    timing = network_timing(model, foldings)
    classes, acc_bits, _ = top.collector_shape
    cost = network_cost(model, foldings)
    engines = [stage for stage in top.stages if isinstance(stage, EngineStage)]
    order = "channels-last ([H, W, C], a pixel's channels together)" if len(model.input.shape) == 3 else "C order"
    return {
        "top": TOP_NAME,
        "clock": "clk (rising edge)", "reset": "rst (synchronous, active high)",
        "ports": {
            "i__payload": {"dir": "in", "width": top.in_lanes * top.in_width,
                           "lanes": top.in_lanes, "lane_width": top.in_width,
                           "meaning": f"{top.in_lanes} input level index(es) per beat, lane l in bits "
                                      f"[l*{top.in_width}, (l+1)*{top.in_width}), {order} of shape "
                                      f"{list(model.input.shape)}; the last beat of an inference may be "
                                      "partly empty (its unused lanes are ignored)"},
            "i__valid": {"dir": "in", "width": 1}, "i__ready": {"dir": "out", "width": 1},
            "o__payload": {"dir": "out", "width": classes * acc_bits + bits_for_levels(classes),
                           "meaning": f"bits [k*{acc_bits}, (k+1)*{acc_bits}): logit k (signed); "
                                      f"top {bits_for_levels(classes)} bits: predicted class"},
            "o__valid": {"dir": "out", "width": 1}, "o__ready": {"dir": "in", "width": 1},
        },
        "layers": [{"name": e.name, "op": model.mac_layers()[e.mac_index].op, "vectors": e.vectors,
                    "in_features": e.layer.in_features, "out_features": e.layer.out_features,
                    "weight_bits": e.layer.weight_bits, "in_bits": e.layer.in_bits, "acc_bits": e.layer.acc_bits,
                    **asdict(e.folding), "ii_cycles": t.ii, "latency_cycles": t.latency,
                    "compute_cycles": t.compute_cycles, "finalize_cycles": t.finalize_cycles,
                    "binary_macs": _binary_macs(e)}
                   for e, t in zip(engines, timing.per_layer)],
        "stages": [{"name": st.name, "unit": type(st).__name__} for st in top.stages],
        "binary_macs_per_inference": sum(_binary_macs(e) for e in engines),
        "estimate": {"lut4": cost.lut4, "dsp": cost.dsp, "bram": cost.bram},
        "latency_cycles": timing.latency,
        "initiation_interval_cycles": timing.ii,
        "classes": list(model.classes),
        "logit_scale": model.logit_scale,
    }


def _binary_macs(stage):
    """One weight bit-plane times one input bit-plane, per input, output and vector."""
    layer = stage.layer
    return stage.vectors * layer.in_features * layer.out_features * layer.weight_bits * layer.in_bits


def write_network(model, foldings, out_dir, device=None):
    """Write ``lqflow_top.v`` and ``lqflow_top.json``; returns (verilog path, description).

    ``device``: the ECP5 size the folding was chosen for, recorded for ``lqflow synth``."""
    top = NetworkTop(model, foldings)
    text = to_verilog(top, TOP_NAME)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    info = describe(model, foldings, top)
    if device is not None:
        info["device"] = device
    v_path = atomic_write_bytes(out_dir / f"{TOP_NAME}.v", text.encode())
    atomic_write_bytes(out_dir / f"{TOP_NAME}.json", json.dumps(info, indent=2).encode())
    return v_path, info


def write_engine(layer, folding, out_dir, name="lqflow_engine"):
    """One engine alone (for engine-level benches); returns the Verilog path."""
    engine = DenseEngine(layer, folding)
    text = to_verilog(engine, name)
    return atomic_write_bytes(Path(out_dir) / f"{name}.v", text.encode())
