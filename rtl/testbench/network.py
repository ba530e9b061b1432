"""How ``lqflow_top`` carries one model's inferences on its ports, and what it must answer."""

import json
from dataclasses import fields
from pathlib import Path

import numpy as np

from hwsim import Simulator
from hwsim.cycles import Folding, network_timing
from lqir import bits_for_levels

from ..top import NetworkTop, input_stream
from .lanes import LaneLayout
from .scoreboard import Scoreboard

__all__ = ["NetworkPorts", "folding_note"]


def folding_note(layers, foldings):
    """The foldings of ``layers`` (MAC layers) in one line, for failure messages."""
    return "foldings: " + ", ".join(f"{layer.name} PE {f.pe} SIMD {f.simd} lanes {f.in_lanes} in / {f.out_lanes} out"
                                    for layer, f in zip(layers, foldings))


class NetworkPorts:
    """The ports of ``lqflow_top`` (:class:`rtl.top.NetworkTop`) for ``model`` at ``foldings``.

    * ``input``: the :class:`~rtl.testbench.LaneLayout` of ``i__payload`` (level indices,
      ``in_lanes`` per beat, each inference's last beat zero-padded);
    * ``output``: that of ``o__payload``, one beat per inference: the logits (signed
      ``acc_bits``) and the predicted class on top;
    * ``labels``: the names of an output beat's values, ``logit k`` (with the class name
      when it is not ``k``) and ``class``.
    """

    def __init__(self, model, foldings):
        top = NetworkTop(model, foldings)         # checks the foldings against the model
        top._MustUse__used = True                 # read for its ports, never elaborated: no "unused" warning
        self.model, self.foldings = model, list(foldings)
        self.input = LaneLayout(top.in_lanes, top.in_width)
        classes, acc_bits, _ = top.collector_shape
        self.output = LaneLayout(classes, acc_bits, signed=True, tail=bits_for_levels(classes))
        self.labels = [f"logit {k}" + (f" ({name})" if str(name) != str(k) else "")
                       for k, name in enumerate(model.classes)] + ["class"]

    @classmethod
    def from_description(cls, model, description):
        """The ports of a top that ``lqflow verilog`` (or :func:`rtl.verilog.write_network`)
        wrote: ``description`` is its ``lqflow_top.json`` (a path or the loaded dict)."""
        where = "the description"
        if not isinstance(description, dict):
            where = str(description)
            description = json.loads(Path(description).read_text())
        names = [layer.name for layer in model.mac_layers()]
        try:
            layers = description["layers"]
            foldings = [Folding(*(int(entry[f.name]) for f in fields(Folding))) for entry in layers]
            found = [entry["name"] for entry in layers]
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{where}: not a description written by 'lqflow verilog' ({exc!r})") from None
        if found != names:
            raise ValueError(f"{where} describes layers {found}, but the model has {names}: "
                             "write the Verilog of this model again with 'lqflow verilog'")
        return cls(model, foldings)

    def input_beats(self, x):
        """Level indices ``[B, *input.shape]`` → input beats ``[B, beats, lanes]``."""
        stream = input_stream(self.model, np.asarray(x))
        lanes = self.input.count
        beats = -(-stream.shape[1] // lanes)
        out = np.zeros((len(stream), beats * lanes), np.int64)
        out[:, :stream.shape[1]] = stream
        return out.reshape(len(stream), beats, lanes)

    def input_words(self, x):
        """The payload words of every input beat of ``x``, inference after inference."""
        return [self.input.pack(beat) for sample in self.input_beats(x) for beat in sample]

    def expected(self, x):
        """hwsim's answer as output beats: ``[B, classes + 1]`` int64, the logits then the
        predicted class (argmax, first index on ties)."""
        # numpy kernels on one thread: for a bench's few samples, no numba compile and no thread pool
        logits = Simulator(self.model, threads=1, kernels="numpy").run(x)
        return np.concatenate([logits, logits.argmax(axis=1)[:, None]], axis=1)

    def timing(self, samples):
        """The cycle model's latency, II and whole-run cycles for ``samples`` inferences
        (:func:`hwsim.cycles.network_timing`)."""
        return network_timing(self.model, self.foldings, inferences=samples)

    def scoreboard(self, expected, *, timing=None, name="lqflow_top output"):
        """A :class:`~rtl.testbench.Scoreboard` for :meth:`expected`'s rows, its messages
        naming logits and the layer foldings."""
        return Scoreboard(expected, labels=self.labels, timing=timing, name=name,
                          context=folding_note(self.model.mac_layers(), self.foldings))
