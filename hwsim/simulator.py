"""Run an IR model on level indices: fast or bit-plane mode, with per-layer traces."""

from dataclasses import dataclass, field

import numpy as np

from lqir import FlattenLayer, MacLayer, MaxPool2dLayer, Model

from .bitplane import mac_bitplane
from .fast import layer_input, mac_fast, mac_operand, prepare, threshold_fast
from .kernels import select_kernels
from .layout import apply_thresholds, maxpool2d, maxpool2d_nhwc
from .parallel import check_threads, map_chunks
from .workspace import Workspace

__all__ = ["MODES", "Trace", "Simulator", "simulate", "run_layer", "predict", "accuracy"]

MODES = ("fast", "bitplane")


@dataclass
class Trace:
    """Per-layer integers: ``acc[name]`` for dense/conv layers, ``out[name]`` for all."""

    acc: dict = field(default_factory=dict)
    out: dict = field(default_factory=dict)


class Simulator:
    """Bit-exact simulator of one IR model; tables are computed once at construction.

    Untraced runs split the batch into chunks of ``chunk`` rows and run them on
    ``threads`` threads (default: every core this process may use), with the
    element-wise ``kernels`` of :mod:`hwsim.kernels` ("auto": numba when installed,
    else numpy).  The result depends on none of the three.  Traced runs keep to the
    plain numpy reference arithmetic, layer by layer.
    """

    def __init__(self, model, chunk=2048, threads=None, kernels="auto"):
        if not isinstance(model, Model):
            raise TypeError(f"Simulator needs an lqir.Model, not {type(model).__name__}")
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
            raise TypeError(f"Simulator chunk must be a positive integer, not {chunk!r}")
        self.model = model
        self.chunk = chunk
        self.threads = check_threads(threads)
        self.kernels = select_kernels(kernels)
        self._prepared = {layer.name: prepare(layer) for layer in model.mac_layers()}
        self._fused_steps = _fused_steps(model, self._prepared)
        self._workspace = Workspace()

    def __getstate__(self):
        # Buffers are per thread and per process; kernels are chosen again on arrival.
        state = {k: v for k, v in self.__dict__.items() if k != "_workspace"}
        state["kernels"] = self.kernels.name
        return state

    def __setstate__(self, state):
        self.__dict__.update(state, kernels=select_kernels(state["kernels"]), _workspace=Workspace())

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
        # the intermediates stay in cache, and chunks run side by side on the cores.
        def run_chunk(rows):
            y = self._to_layout(rows, mode)
            if mode == "fast":
                return self._run_fused(y)
            for layer in self.model.layers:
                y = step(layer, y, None)
            return y

        chunks = [x[start:start + self.chunk] for start in range(0, len(x), self.chunk)]
        out = map_chunks(run_chunk, chunks, self.threads)
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

    def _run_fused(self, x):
        """Untraced fast mode: a threshold layer emits the next product's operand directly.

        Thresholds and lookups are non-decreasing, so max-pooling commutes with both: a
        pool right after a threshold layer runs on its accumulators (fewer values to
        threshold), and flattening and pooling between two products run on operands.
        """
        operand, ws = False, self._workspace
        for layer, pools, table in self._fused_steps:
            if isinstance(layer, FlattenLayer):
                x = self._step_fast(layer, x, None)
                continue
            if isinstance(layer, MaxPool2dLayer):
                x = _maxpool(layer, x, ws)
                continue
            prep = self._prepared[layer.name]
            vals = x if operand else layer_input(prep, x, ws)
            if layer.output == "accumulate":
                x, operand = mac_operand(prep, vals, workspace=ws).astype(np.int64), False
                continue
            acc = mac_operand(prep, vals, with_bias=False, workspace=ws)
            for pool in pools:
                acc = _maxpool(pool, acc, ws)
            x, operand = self.kernels.threshold(prep, acc, table, ws), True
        return x

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


def _fused_steps(model, prepared):
    """Untraced fast mode's plan: one ``(layer, pools, table)`` per step.

    A threshold layer's step takes the max-pools right after it (they pool its
    accumulators and leave the plan) and ``table``, the input table of the product that
    reads its output past any pooling and flattening (there always is one: the IR's
    last layer accumulates).  Other steps carry no pools and no table.
    """
    steps, waiting = [], None  # waiting: a threshold step whose reader is not yet known
    for layer in model.layers:
        if isinstance(layer, MaxPool2dLayer) and steps and steps[-1] is waiting:
            waiting[1].append(layer)
            continue
        steps.append([layer, [], None])
        if isinstance(layer, (FlattenLayer, MaxPool2dLayer)):
            continue
        if waiting is not None:
            waiting[2] = prepared[layer.name].input_table
        waiting = steps[-1] if layer.output == "threshold" else None
    return [tuple(step) for step in steps]


def _maxpool(layer, x, workspace):
    c, h, w = layer.output_shape((x.shape[3], *x.shape[1:3]))
    out = workspace.get((layer.name, "out"), (len(x), h, w, c), x.dtype)
    return maxpool2d_nhwc(x, layer.kernel, layer.stride, out=out)


def _nchw(x):
    return x.transpose(0, 3, 1, 2) if x.ndim == 4 else x


def simulate(model, x, mode="fast"):
    """One-shot: final accumulators of ``model`` on level indices ``x``."""
    return Simulator(model).run(x, mode=mode)


def run_layer(layer, x):
    """One multiply-accumulate layer alone on level indices ``x`` (``[B, *layer input]``).

    Returns ``(acc, out)``, both int64: the accumulators and the layer's output (level
    indices of a ``threshold`` layer, or the accumulators again).  Images are ``[B, C, H, W]``.
    """
    if not isinstance(layer, MacLayer):
        raise TypeError(f"run_layer needs a dense or conv2d lqir layer, not {type(layer).__name__}")
    x = np.asarray(x)
    if x.dtype.kind not in "iu":
        raise ValueError(f"inputs: must be integer level indices, not dtype {x.dtype}")
    if x.size and (x.min() < 0 or x.max() >= layer.in_levels):
        raise ValueError(f"inputs: level indices must lie in [0, {layer.in_levels}), found [{x.min()}, {x.max()}]")
    acc = _nchw(mac_fast(prepare(layer), _to_nhwc(x)).astype(np.int64))
    out = acc if layer.output == "accumulate" else apply_thresholds(acc, layer.thresholds).astype(np.int64)
    return acc, out


def _to_nhwc(x):
    return x.transpose(0, 2, 3, 1) if x.ndim == 4 else x


def predict(acc):
    """Predicted class: argmax over the final accumulators, first index on ties."""
    return np.argmax(acc, axis=1)


def accuracy(acc, labels):
    return float(np.mean(predict(acc) == np.asarray(labels)))
