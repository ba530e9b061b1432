"""Run an IR model on level indices: fast or bit-plane mode, with per-layer traces."""

from dataclasses import dataclass, field

import numpy as np

from export.ir import FlattenLayer, MaxPool2dLayer, Model

from .bitplane import mac_bitplane
from .fast import mac_fast, prepare, threshold_fast
from .layout import apply_thresholds, maxpool2d, maxpool2d_nhwc

__all__ = ["MODES", "Trace", "Simulator", "simulate", "predict", "accuracy"]

MODES = ("fast", "bitplane")


@dataclass
class Trace:
    """Per-layer integers: ``acc[name]`` for dense/conv layers, ``out[name]`` for all."""

    acc: dict = field(default_factory=dict)
    out: dict = field(default_factory=dict)


class Simulator:
    """Bit-exact simulator of one IR model; tables are computed once at construction."""

    def __init__(self, model, chunk=1024):
        if not isinstance(model, Model):
            raise TypeError(f"Simulator needs an export.ir.Model, not {type(model).__name__}")
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
            raise TypeError(f"Simulator chunk must be a positive integer, not {chunk!r}")
        self.model = model
        self.chunk = chunk
        self._prepared = {layer.name: prepare(layer) for layer in model.mac_layers()}

    def float_exact(self):
        """Per-layer proof result: True where fast mode may use a float GEMM."""
        return {name: prep.float_exact for name, prep in self._prepared.items()}

    def arithmetic(self):
        """Per-layer dtype fast mode proved exact: float32, float64 or int64."""
        return {name: prep.dtype.name for name, prep in self._prepared.items()}

    def check_inputs(self, x):
        """Validate level indices ``x`` of shape ``[B, *input.shape]``; return them as int64."""
        x = np.asarray(x)
        spec = self.model.input
        if x.dtype.kind not in "iu":
            raise ValueError(f"inputs: must be integer level indices, not dtype {x.dtype}")
        if x.ndim != len(spec.shape) + 1 or tuple(x.shape[1:]) != spec.shape:
            raise ValueError(f"inputs: shape must be [B, {', '.join(map(str, spec.shape))}], not {list(x.shape)}")
        if x.size and (x.min() < 0 or x.max() >= spec.levels):
            raise ValueError(f"inputs: level indices must lie in [0, {spec.levels}), found [{x.min()}, {x.max()}]")
        return x

    def run(self, x, mode="fast", trace=False):
        """Final accumulators ``int64 [B, classes]`` (and a :class:`Trace` if asked)."""
        if mode not in MODES:
            raise ValueError(f"mode: must be one of {', '.join(MODES)}, not {mode!r}")
        x = self.check_inputs(x)
        step = self._step_fast if mode == "fast" else self._step_bitplane
        if trace:
            record = Trace()
            x = self._to_layout(x, mode)
            for layer in self.model.layers:
                x = step(layer, x, record)
            return x, record
        # Untraced runs go through the whole network a chunk of rows at a time, so that
        # the intermediates stay in cache.
        out = []
        for start in range(0, len(x), self.chunk):
            y = self._to_layout(x[start:start + self.chunk], mode)
            for layer in self.model.layers:
                y = step(layer, y, None)
            out.append(y)
        return np.concatenate(out) if out else np.zeros((0, len(self.model.classes)), np.int64)

    @staticmethod
    def _to_layout(x, mode):
        """Fast mode keeps images channels-last ([B, H, W, C]); bit-plane mode keeps [B, C, H, W]."""
        return x.transpose(0, 2, 3, 1) if mode == "fast" and x.ndim == 4 else x

    def _step_fast(self, layer, x, record):
        if isinstance(layer, FlattenLayer):
            y = x.transpose(0, 3, 1, 2).reshape(len(x), -1) if x.ndim == 4 else x.reshape(len(x), -1)
        elif isinstance(layer, MaxPool2dLayer):
            y = maxpool2d_nhwc(x, layer.kernel, layer.stride)
        else:
            prep = self._prepared[layer.name]
            if layer.output == "accumulate":
                acc = mac_fast(prep, x)
                y = acc.astype(np.int64)
            else:
                acc = mac_fast(prep, x, with_bias=False)
                y = threshold_fast(prep, acc)
                if record is not None:
                    acc = acc + prep.bias
            if record is not None:
                record.acc[layer.name] = _nchw(acc.astype(np.int64))
        if record is not None:
            record.out[layer.name] = _nchw(y.astype(np.int64))
        return y

    def _step_bitplane(self, layer, x, record):
        if isinstance(layer, FlattenLayer):
            y = x.reshape(len(x), -1)
        elif isinstance(layer, MaxPool2dLayer):
            y = maxpool2d(x, layer.kernel, layer.stride)
        else:
            acc = mac_bitplane(layer, x)
            y = acc if layer.output == "accumulate" else apply_thresholds(acc, layer.thresholds)
            if record is not None:
                record.acc[layer.name] = acc
        if record is not None:
            record.out[layer.name] = y.astype(np.int64)
        return y


def _nchw(x):
    return x.transpose(0, 3, 1, 2) if x.ndim == 4 else x


def simulate(model, x, mode="fast"):
    """One-shot: final accumulators of ``model`` on level indices ``x``."""
    return Simulator(model).run(x, mode=mode)


def predict(acc):
    """Predicted class: argmax over the final accumulators, first index on ties."""
    return np.argmax(acc, axis=1)


def accuracy(acc, labels):
    return float(np.mean(predict(acc) == np.asarray(labels)))
