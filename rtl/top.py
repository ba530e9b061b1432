"""The network top: one engine per dense layer, chained by streams, ending in the argmax collector."""

import numpy as np
from amaranth.hdl import Module, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hwsim.cycles import Folding
from lqir import bits_for_levels, check_backend

from .collector import ArgmaxCollector
from .engine import DenseEngine

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
    """A whole IR model (dense + flatten layers) as a streaming accelerator.

    Members
    -------
    i : ``In(stream.Signature(unsigned(in_lanes · bits_for_levels(input.levels))))``
        Input level indices in C order of ``input.shape``, ``in_lanes`` per beat (the
        first folding's ``in_lanes``; lane l in bits ``[l·w, (l+1)·w)``).
    o : ``Out(stream.Signature(...))``
        One beat per inference: the logits and the predicted class, laid out as
        :class:`rtl.collector.ArgmaxCollector` documents.

    Engine k streams straight into engine k+1 (each engine ends in its own output
    FIFO), so engine k's ``out_lanes`` must equal engine k+1's ``in_lanes``.
    """

    def __init__(self, model, foldings):
        check_backend(model, "rtl")
        self.model = model
        self.dense = model.mac_layers()
        foldings = list(foldings)
        if len(foldings) != len(self.dense):
            raise ValueError(f"Folding: {len(self.dense)} dense layers need {len(self.dense)} foldings, "
                             f"got {len(foldings)}")
        for f in foldings:
            if not isinstance(f, Folding):
                raise TypeError(f"Folding must be a hwsim.cycles.Folding, not {f!r}")
        for k, (a, b) in enumerate(zip(foldings, foldings[1:])):
            if a.out_lanes != b.in_lanes:
                raise ValueError(f"Folding: layer {k} emits {a.out_lanes} values per beat, but layer {k + 1} "
                                 f"takes {b.in_lanes} (out_lanes must equal the next in_lanes)")
        self.foldings = foldings
        self.in_lanes = foldings[0].in_lanes
        self.in_width = bits_for_levels(model.input.levels)
        last = self.dense[-1]
        self.collector_shape = (len(model.classes), last.acc_bits, foldings[-1].out_lanes)
        out_width = len(model.classes) * last.acc_bits + bits_for_levels(len(model.classes))
        super().__init__({
            "i": In(stream.Signature(unsigned(self.in_lanes * self.in_width))),
            "o": Out(stream.Signature(unsigned(out_width))),
        })

    def elaborate(self, platform):
        m = Module()
        engines = []
        for k, (layer, folding) in enumerate(zip(self.dense, self.foldings)):
            eng = DenseEngine(layer, folding)
            m.submodules[f"engine{k}_{layer.name}"] = eng
            engines.append(eng)
        m.submodules.collector = collector = ArgmaxCollector(*self.collector_shape)
        wiring.connect(m, wiring.flipped(self.i), engines[0].i)
        for producer, consumer in zip(engines, engines[1:]):
            wiring.connect(m, producer.o, consumer.i)
        wiring.connect(m, engines[-1].o, collector.i)
        wiring.connect(m, collector.o, wiring.flipped(self.o))
        return m
