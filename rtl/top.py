"""The network top: one engine per dense layer, chained by streams through FIFOs."""

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from export.ir import DenseLayer, FlattenLayer

from .collector import ArgmaxCollector
from .engine import DenseEngine, level_width
from hwsim.cycles import Folding

__all__ = ["NetworkTop", "check_supported"]


def check_supported(model):
    """Raise ``ValueError`` naming the first layer the RTL cannot build."""
    for index, layer in enumerate(model.layers):
        if not isinstance(layer, (DenseLayer, FlattenLayer)):
            raise ValueError(f"layers[{index}] ({layer.name}): the RTL supports dense and flatten layers only, "
                             f"not {layer.op!r}; simulate this model with 'lqflow sim'")
    if not model.mac_layers():
        raise ValueError("layers: the model has no dense layer to build")


class NetworkTop(wiring.Component):
    """A whole IR model (dense + flatten layers) as a streaming accelerator.

    Members
    -------
    i : ``In(stream.Signature(level_width(input.levels)))``
        Input level indices, one per beat, in C order of ``input.shape``.
    o : ``Out(stream.Signature(...))``
        One beat per inference: the logits and the predicted class, laid out as
        :class:`rtl.collector.ArgmaxCollector` documents.

    Between engines sits a FIFO as deep as the producer's output vector, so that an
    engine can emit a whole vector while its consumer is still busy.
    """

    def __init__(self, model, foldings):
        check_supported(model)
        self.model = model
        self.dense = model.mac_layers()
        foldings = list(foldings)
        if len(foldings) != len(self.dense):
            raise ValueError(f"Folding: {len(self.dense)} dense layers need {len(self.dense)} foldings, "
                             f"got {len(foldings)}")
        for f in foldings:
            if not isinstance(f, Folding):
                raise TypeError(f"Folding must be a hwsim.cycles.Folding, not {f!r}")
        self.foldings = foldings
        self.in_width = level_width(model.input.levels)
        last = self.dense[-1]
        self.collector_shape = (len(model.classes), last.acc_bits)
        out_width = len(model.classes) * last.acc_bits + level_width(len(model.classes))
        super().__init__({
            "i": In(stream.Signature(self.in_width)),
            "o": Out(stream.Signature(out_width)),
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
        consumers = [e.i for e in engines[1:]] + [collector.i]
        for k, (producer, consumer) in enumerate(zip(engines, consumers)):
            width = len(producer.o.payload)
            fifo = SyncFIFO(width=width, depth=producer.layer.out_features)
            m.submodules[f"fifo{k}"] = fifo
            m.d.comb += [
                fifo.w_data.eq(producer.o.payload), fifo.w_en.eq(producer.o.valid),
                producer.o.ready.eq(fifo.w_rdy),
                consumer.payload.eq(fifo.r_data), consumer.valid.eq(fifo.r_rdy),
                fifo.r_en.eq(consumer.ready),
            ]
        wiring.connect(m, collector.o, wiring.flipped(self.o))
        return m
