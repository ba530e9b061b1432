"""hls4ml writer: an IR model as an hls4ml project (Vitis backend, ``io_parallel``), and its
C simulation set beside hwsim.

:mod:`export.hls_plan` turns the model into hls4ml layers with exact integer data and
precisions (``Dense``, ``Conv2D``, ``ReLU``, ``MaxPooling2D``, ``Reshape``; see its
docstring for the routes and why they are exact); this module builds the ``ModelGraph``
from that plan through hls4ml's Python API (``ModelGraph.from_layer_list``, the layer
dictionaries hls4ml's own converters produce), compiles it and runs it. Images are
channels-last (``data_format='channels_last'``), so an image input is fed as ``[H, W, C]``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from hwsim import Simulator

from .hls_plan import MAX_WIDTH, ExpressError, HlsLayer, plan_hls

__all__ = ["HlsLayer", "HlsResult", "HLS_CLASS", "plan_hls", "build_hls_model", "hls_cosim", "ExpressError",
           "MAX_WIDTH"]

#: hls4ml's class for each kind of plan layer
HLS_CLASS = {"input": "InputLayer", "dense": "Dense", "relu": "Activation", "conv": "Conv2D",
             "maxpool": "MaxPooling2D", "flatten": "Reshape"}


@dataclass
class HlsResult:
    """hls4ml's C simulation next to hwsim's answer for the same inputs."""

    outputs: np.ndarray      # int64 [B, classes], from the C simulation
    reference: np.ndarray    # int64 [B, classes], hwsim
    plan: list               # the HlsLayer list the project was built from
    compile_s: float         # g++ on the written project
    predict_s: float = 0.0   # the C simulation of every sample

    @property
    def mismatches(self):
        """Indices of samples whose logits differ from hwsim's in any integer (must be empty)."""
        return [int(k) for k in np.nonzero((self.outputs != self.reference).any(axis=1))[0]]


def _layer_config(layer):
    precision = dict(layer.precision)
    config = {"ReuseFactor": 1}
    if "table" in precision:  # hls4ml reads an activation's table type beside, not inside, Precision
        config["table_t"] = precision.pop("table")
    if layer.kind == "conv":
        config["ParallelizationFactor"] = 1   # one output pixel per partition (hls4ml's default)
    config["Precision"] = precision
    return config


def _window(layer, in_shape, names):
    """The geometry entries of a Conv2D or MaxPooling2D dictionary (channels last, square)."""
    (h, w, c), (ho, wo, _) = in_shape, layer.shape
    p = layer.padding
    return {"data_format": "channels_last", "in_height": h, "in_width": w, names[0]: c,
            f"{names[1]}_height": layer.kernel, f"{names[1]}_width": layer.kernel,
            "stride_height": layer.stride, "stride_width": layer.stride,
            "pad_top": p, "pad_bottom": p, "pad_left": p, "pad_right": p, "out_height": ho, "out_width": wo}


def _layer_dict(layer, prev):
    """hls4ml's layer dictionary for one plan layer (what its converters hand to ModelGraph)."""
    entry = {"class_name": HLS_CLASS[layer.kind], "name": layer.name}
    if layer.kind == "input":
        return entry | {"input_shape": list(layer.shape)}
    entry["inputs"] = [prev.name]
    if layer.kind == "dense":
        return entry | {"weight_data": layer.weight.T.astype(np.float64), "bias_data": layer.bias.astype(np.float64),
                        "n_in": layer.weight.shape[1], "n_out": layer.n_out, "use_bias": True}
    if layer.kind == "conv":      # hls4ml's (Keras) kernel layout: [k, k, C_in, C_out]
        return entry | _window(layer, prev.shape, ("n_chan", "filt")) | {
            "n_filt": layer.shape[-1], "weight_data": layer.weight.transpose(2, 3, 1, 0).astype(np.float64),
            "bias_data": layer.bias.astype(np.float64)}
    if layer.kind == "maxpool":
        return entry | _window(layer, prev.shape, ("n_filt", "pool"))
    if layer.kind == "flatten":
        return entry | {"target_shape": list(layer.shape)}
    return entry | {"activation": "relu"}


def build_hls_model(model, out_dir, project="lqflow_hls", part="xcu250-figd2104-2L-e", clock_period=5):
    """The hls4ml ``ModelGraph`` of ``model`` (Vitis, io_parallel, reuse factor 1) and its plan."""
    from hls4ml.model.graph import ModelGraph
    from hls4ml.utils.config import create_config

    plan = plan_hls(model)
    config = create_config(output_dir=str(out_dir), project_name=project, backend="Vitis",
                           io_type="io_parallel", part=part, clock_period=clock_period)
    config["HLSConfig"] = {
        # The model-wide precision is only a fallback; every layer below overrides all its types.
        "Model": {"Precision": plan[-1].precision["result"], "ReuseFactor": 1, "Strategy": "Latency"},
        "LayerName": {layer.name: _layer_config(layer) for layer in plan},
    }
    layer_list = [_layer_dict(layer, prev) for prev, layer in zip([None] + plan[:-1], plan)]
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
    if len(plan[0].shape) == 3:                      # images enter channels-last: [B, H, W, C]
        x = x.transpose(0, 2, 3, 1)
    t0 = time.perf_counter()
    raw = np.asarray(hls_model.predict(np.ascontiguousarray(x.reshape(len(x), -1), dtype=np.float64)))
    predict_s = time.perf_counter() - t0
    raw = raw.reshape(len(x), -1)
    if not np.array_equal(raw, np.rint(raw)):
        raise RuntimeError("hls4ml returned non-integer outputs: a precision in the project is too narrow")
    return HlsResult(raw.astype(np.int64), reference, plan, compile_s, predict_s)
