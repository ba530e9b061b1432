"""Verilog generation: one self-contained file plus a JSON description of its interface."""

import json
from dataclasses import asdict
from pathlib import Path

from amaranth.back import verilog

from export.atomic import atomic_write_bytes
from hwsim.cycles import Folding, fold_for_ii, layer_timing, network_timing

from .engine import DenseEngine, level_width
from .top import NetworkTop, check_supported

__all__ = ["TOP_NAME", "choose_foldings", "describe", "write_network", "write_engine"]

TOP_NAME = "lqflow_top"


def choose_foldings(model, pe=None, simd=None, target_ii=None):
    """Per-layer foldings from explicit ``pe``/``simd`` lists (or one value for all) or a target II."""
    check_supported(model)
    dense = model.mac_layers()
    if target_ii is not None:
        if pe is not None or simd is not None:
            raise ValueError("Folding: give either --pe/--simd or --target-ii, not both")
        return [fold_for_ii(layer, target_ii) for layer in dense]
    pes, simds = _per_layer("pe", pe, dense), _per_layer("simd", simd, dense)
    return [Folding(min(p, layer.out_features), min(s, layer.in_features))
            for p, s, layer in zip(pes, simds, dense)]


def _per_layer(name, values, dense):
    if values is None:
        return [min(8, layer.out_features) if name == "pe" else min(16, layer.in_features) for layer in dense]
    values = [values] if isinstance(values, int) else list(values)
    if len(values) == 1:
        values = values * len(dense)
    if len(values) != len(dense):
        raise ValueError(f"Folding: --{name} takes one value or one per dense layer ({len(dense)}), got {len(values)}")
    return values


def describe(model, foldings, top):
    """Ports, widths, folding, latency and initiation interval of a generated top."""
    timing = network_timing(model, foldings)
    classes, acc_bits = top.collector_shape
    return {
        "top": TOP_NAME,
        "clock": "clk (rising edge)", "reset": "rst (synchronous, active high)",
        "ports": {
            "i__payload": {"dir": "in", "width": top.in_width,
                           "meaning": f"input level index, C order of shape {list(model.input.shape)}"},
            "i__valid": {"dir": "in", "width": 1}, "i__ready": {"dir": "out", "width": 1},
            "o__payload": {"dir": "out", "width": classes * acc_bits + level_width(classes),
                           "meaning": f"bits [k*{acc_bits}, (k+1)*{acc_bits}): logit k (signed); "
                                      f"top {level_width(classes)} bits: predicted class"},
            "o__valid": {"dir": "out", "width": 1}, "o__ready": {"dir": "in", "width": 1},
        },
        "layers": [{"name": layer.name, "in_features": layer.in_features, "out_features": layer.out_features,
                    "weight_bits": layer.weight_bits, "in_bits": layer.in_bits, "acc_bits": layer.acc_bits,
                    **asdict(f), "cycles_per_vector": layer_timing(layer, f).per_vector}
                   for layer, f in zip(model.mac_layers(), foldings)],
        "latency_cycles": timing.latency,
        "initiation_interval_cycles": timing.ii,
        "classes": list(model.classes),
        "logit_scale": model.logit_scale,
    }


def write_network(model, foldings, out_dir):
    """Write ``lqflow_top.v`` and ``lqflow_top.json``; returns (verilog path, description)."""
    top = NetworkTop(model, foldings)
    text = verilog.convert(top, name=TOP_NAME, emit_src=False)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    info = describe(model, foldings, top)
    v_path = atomic_write_bytes(out_dir / f"{TOP_NAME}.v", text.encode())
    atomic_write_bytes(out_dir / f"{TOP_NAME}.json", json.dumps(info, indent=2).encode())
    return v_path, info


def write_engine(layer, folding, out_dir, name="lqflow_engine"):
    """One engine alone (for engine-level benches); returns the Verilog path."""
    engine = DenseEngine(layer, folding)
    text = verilog.convert(engine, name=name, emit_src=False)
    return atomic_write_bytes(Path(out_dir) / f"{name}.v", text.encode())
