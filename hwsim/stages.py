"""The RTL's streaming stages of a network, and the dense views its engines compute.

A network top is a chain of stages, each a stream in and a stream out
(``docs/architecture.md``, "The hardware"):

* ``dense``: one :class:`EngineStage` — the layer's engine;
* ``conv2d``: a :class:`WindowStage` (im2col windows, channels innermost) feeding an
  :class:`EngineStage` that computes the layer as a dense layer over ``k·k·C_in`` inputs
  (:func:`conv_as_dense`), one vector per output pixel;
* ``maxpool2d``: a :class:`WindowStage` (taps innermost) feeding a :class:`MaxStage`
  (max of level indices over ``k·k`` consecutive beats: thresholds are monotone, so the
  max of the levels is the level of the max);
* ``flatten``: no stage. Images stream channels-last (``[H, W, C]``, a pixel's channels
  together) while the IR flattens ``[C, H, W]`` in C order, so the dense layer after a
  flatten gets its weight columns permuted to match (:func:`dense_after_flatten`), exactly.

Images stream in beats of ``lanes`` channel values; ``lanes`` divides the channel count,
so no beat straddles two pixels.
"""

from dataclasses import dataclass, replace

import numpy as np

from lqir import (Conv2dLayer, DenseLayer, FlattenLayer, MaxPool2dLayer, UnsupportedLayerError, bits_for_levels,
                  conv_output_size)

__all__ = ["WindowStage", "MaxStage", "EngineStage", "conv_as_dense", "dense_after_flatten", "engine_views",
           "network_stages", "stage_levels"]


@dataclass(frozen=True)
class WindowStage:
    """Sliding windows over a channels-last ``[C, H, W]`` frame held in a ping-pong buffer.

    Windows leave in raster order of the output pixels; within a window, ``taps_inner``
    (pooling) visits channel word by channel word, each over its ``k·k`` taps; otherwise
    (convolution) tap by tap (``ky``, ``kx``), each over its channel words. A padded tap
    is ``pad_level`` (``in_levels``, one past the last real level) in every lane.
    """

    name: str
    shape: tuple            # (C, H, W) of the input frame
    kernel: int
    stride: int
    padding: int
    lanes: int              # channel values per beat, in and out
    in_levels: int
    taps_inner: bool

    def __post_init__(self):
        channels = self.shape[0]
        if channels % self.lanes:
            raise ValueError(f"Folding: {self.name} streams {channels} channels, which {self.lanes} lanes "
                             f"do not divide (a beat may not straddle two pixels)")

    @property
    def words(self):
        """Beats per pixel: ``C / lanes``."""
        return self.shape[0] // self.lanes

    @property
    def out_size(self):
        """``(OH, OW)`` of the output (floor mode)."""
        return tuple(conv_output_size(s, self.kernel, self.stride, self.padding) for s in self.shape[1:])

    @property
    def in_beats(self):
        return self.shape[1] * self.shape[2] * self.words

    @property
    def out_beats(self):
        oh, ow = self.out_size
        return oh * ow * self.kernel * self.kernel * self.words

    @property
    def in_width(self):
        return bits_for_levels(self.in_levels)

    @property
    def out_width(self):
        """Bits of an output lane: room for ``pad_level`` when the windows are padded."""
        return bits_for_levels(self.in_levels + (1 if self.padding else 0))

    @property
    def pad_level(self):
        return self.in_levels if self.padding else None

    def loop_order(self):
        """The generator's counters, outermost first: ``(name, count)``."""
        oh, ow = self.out_size
        taps = [("ky", self.kernel), ("kx", self.kernel)]
        inner = [("cw", self.words)] + taps if self.taps_inner else taps + [("cw", self.words)]
        return [("oy", oh), ("ox", ow)] + inner


@dataclass(frozen=True)
class MaxStage:
    """Lane-wise max of level indices over ``taps`` consecutive beats, one beat out."""

    name: str
    taps: int
    lanes: int
    levels: int
    beats: int              # output beats per inference

    @property
    def width(self):
        return bits_for_levels(self.levels)


@dataclass(frozen=True)
class EngineStage:
    """One MAC layer's engine: ``layer`` is the dense layer it computes (a conv layer's
    :func:`conv_as_dense` view), ``vectors`` the vectors per inference (output pixels)."""

    name: str
    layer: DenseLayer
    vectors: int
    pad: bool               # the input has a pad level (one past in_levels): code 0, value 0
    folding: object         # hwsim.cycles.Folding
    mac_index: int


def conv_as_dense(layer):
    """A ``conv2d`` layer as the dense layer its engine computes per output pixel:
    inputs in window order ``(ky, kx, c)``, weights permuted to match."""
    if not isinstance(layer, Conv2dLayer):
        raise TypeError(f"conv_as_dense takes a Conv2dLayer, not {type(layer).__name__}")
    k, c_in = layer.kernel, layer.in_channels
    codes = np.ascontiguousarray(layer.weight_code.transpose(0, 2, 3, 1)).reshape(layer.out_channels, k * k * c_in)
    fields = {name: getattr(layer, name) for name in ("name", "weight_bits", "weight_encoding", "in_bits",
                                                     "in_levels", "output", "acc_bits", "weight_coef", "bias",
                                                     "in_code", "in_coef", "out_levels", "thresholds")}
    return DenseLayer(**fields, weight_code=codes, in_features=k * k * c_in, out_features=layer.out_channels)


def dense_after_flatten(layer, shape):
    """The dense layer after a flatten of a ``[C, H, W]`` tensor, its columns permuted from
    the IR's C order to the stream's channels-last order."""
    c, h, w = shape
    order = np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).reshape(-1)
    return replace(layer, weight_code=np.ascontiguousarray(layer.weight_code[:, order]))


def engine_views(model):
    """Per MAC layer: ``(dense layer its engine computes, vectors per inference, padded input)``."""
    shapes, views, flat_from = model.layer_shapes(), [], None
    for index, layer in enumerate(model.layers):
        if isinstance(layer, FlattenLayer) and len(shapes[index]) == 3:
            flat_from = shapes[index]
        elif isinstance(layer, Conv2dLayer):
            out_h, out_w = shapes[index + 1][1:]
            views.append((conv_as_dense(layer), out_h * out_w, layer.padding > 0))
        elif isinstance(layer, DenseLayer):
            views.append((dense_after_flatten(layer, flat_from) if flat_from is not None else layer, 1, False))
            flat_from = None        # only the first dense layer reads the flattened image
    return views


def stage_levels(model):
    """Level count of every layer's input, then of the output (None after 'accumulate')."""
    levels = [model.input.levels]
    for layer in model.layers:
        if layer.op in ("dense", "conv2d"):
            levels.append(layer.out_levels)
        else:
            levels.append(levels[-1])
    return levels


def network_stages(model, foldings):
    """The stages of ``model``'s network top, checking that every stream's lanes chain."""
    shapes, levels, views = model.layer_shapes(), stage_levels(model), engine_views(model)
    foldings = list(foldings)
    if len(foldings) != len(views):
        raise ValueError(f"Folding: {len(views)} MAC layers need {len(views)} foldings, got {len(foldings)}")
    stages, mac, lanes = [], 0, None
    for index, layer in enumerate(model.layers):
        shape = shapes[index]
        if isinstance(layer, FlattenLayer):
            continue
        if isinstance(layer, MaxPool2dLayer):
            lanes = lanes or 1          # a max-pool on the network input: one value per beat
            window = WindowStage(layer.name, tuple(shape), layer.kernel, layer.stride, 0, lanes,
                                 levels[index], taps_inner=True)
            oh, ow = window.out_size
            stages += [window, MaxStage(f"{layer.name}_max", layer.kernel ** 2, lanes, levels[index],
                                        beats=oh * ow * window.words)]
            continue
        folding = foldings[mac]
        if lanes is not None and folding.in_lanes != lanes:
            raise ValueError(f"Folding: {layer.name}'s input stream carries {lanes} values per beat, but it "
                             f"takes {folding.in_lanes} (out_lanes must equal the next in_lanes)")
        if isinstance(layer, Conv2dLayer):
            stages.append(WindowStage(f"{layer.name}_window", tuple(shape), layer.kernel, layer.stride,
                                      layer.padding, folding.in_lanes, levels[index], taps_inner=False))
            stages.append(EngineStage(layer.name, *views[mac], folding=folding, mac_index=mac))
            if layer.out_channels % folding.out_lanes:
                raise ValueError(f"Folding: {layer.name} has {layer.out_channels} channels, which out_lanes "
                                 f"{folding.out_lanes} does not divide (a beat may not straddle two pixels)")
        elif isinstance(layer, DenseLayer):
            stages.append(EngineStage(layer.name, *views[mac], folding=folding, mac_index=mac))
        else:
            raise UnsupportedLayerError(f"layers[{index}] ({layer.name}): the RTL has no stage for {layer.op!r}")
        lanes, mac = folding.out_lanes, mac + 1
    return tuple(stages)
