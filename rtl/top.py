"""The network top: the model's stages (window, max and engine units) chained by streams, then the argmax collector."""

import numpy as np
from amaranth.hdl import Module, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hwsim.cycles import Folding
from hwsim.stages import MaxStage, WindowStage, network_stages
from lqir import bits_for_levels, check_backend

from .collector import ArgmaxCollector
from .engine import DenseEngine
from .maxunit import MaxUnit
from .window import WindowUnit

__all__ = ["NetworkTop", "input_stream"]


def input_stream(model, x):
    """Level indices ``[B, *input.shape]`` as the top's input stream wants them: ``[B, n]``.

    Images (``[C, H, W]`` inputs) stream channels-last, pixel by pixel (each pixel's ``C``
    channels together), as the window units read them; other inputs in C order.
    """
    x = np.asarray(x)
    if len(model.input.shape) == 3:
        x = x.transpose(0, 2, 3, 1)
    return x.reshape(len(x), -1)


class NetworkTop(wiring.Component):
    """A whole IR model (dense, conv2d, maxpool2d, flatten layers) as a streaming accelerator.

    Members
    -------
    i : ``In(stream.Signature(unsigned(in_lanes · bits_for_levels(input.levels))))``
        Input level indices in :func:`input_stream` order, ``in_lanes`` per beat (the
        first stage's lanes; lane l in bits ``[l·w, (l+1)·w)``).
    o : ``Out(stream.Signature(...))``
        One beat per inference: the logits and the predicted class, laid out as
        :class:`rtl.collector.ArgmaxCollector` documents.

    The stages are :func:`hwsim.stages.network_stages`'s, each streaming straight into
    the next (every engine and window unit ends in its own output FIFO), so engine k's
    ``out_lanes`` must equal the next MAC layer's ``in_lanes``.
    """

    def __init__(self, model, foldings):
        check_backend(model, "rtl")
        self.model = model
        foldings = list(foldings)
        for f in foldings:
            if not isinstance(f, Folding):
                raise TypeError(f"Folding must be a hwsim.cycles.Folding, not {f!r}")
        self.stages = network_stages(model, foldings)
        self.foldings = foldings
        first = self.stages[0]
        self.in_lanes = first.lanes if isinstance(first, WindowStage) else first.folding.in_lanes
        self.in_width = bits_for_levels(model.input.levels)
        last = self.stages[-1]
        self.collector_shape = (len(model.classes), last.layer.acc_bits, last.folding.out_lanes)
        out_width = len(model.classes) * last.layer.acc_bits + bits_for_levels(len(model.classes))
        super().__init__({
            "i": In(stream.Signature(unsigned(self.in_lanes * self.in_width))),
            "o": Out(stream.Signature(unsigned(out_width))),
        })

    def elaborate(self, platform):
        m = Module()
        units = []
        for k, stage in enumerate(self.stages):
            if isinstance(stage, WindowStage):
                unit = WindowUnit(stage)
            elif isinstance(stage, MaxStage):
                unit = MaxUnit(stage)
            else:
                unit = DenseEngine(stage.layer, stage.folding, pad=stage.pad)
            m.submodules[f"stage{k}_{stage.name}"] = unit
            units.append(unit)
        m.submodules.collector = collector = ArgmaxCollector(*self.collector_shape)
        wiring.connect(m, wiring.flipped(self.i), units[0].i)
        for producer, consumer in zip(units, units[1:]):
            wiring.connect(m, producer.o, consumer.i)
        wiring.connect(m, units[-1].o, collector.i)
        wiring.connect(m, collector.o, wiring.flipped(self.o))
        return m

