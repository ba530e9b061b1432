"""Cycle model of the RTL datapath: folding, per-engine timing, and the whole network.

The counts are derived from the engines' state machines (see :mod:`rtl.engine`); the
co-simulation tests check that the RTL measures exactly these numbers.
"""

from dataclasses import dataclass

from export.ir import DenseLayer

__all__ = ["Folding", "LayerTiming", "NetworkTiming", "popcount_latency", "layer_timing", "fold_for_ii",
           "check_foldable", "network_timing"]



def popcount_latency(width):
    """Cycles of the pipelined popcount tree of ``width`` bits: ``max(1, ceil(log2(width)))``."""
    return max(1, (width - 1).bit_length())


@dataclass(frozen=True)
class Folding:
    """``pe`` output channels and ``simd`` inputs per cycle (each at least 1)."""

    pe: int
    simd: int

    def __post_init__(self):
        for name in ("pe", "simd"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Folding {name} must be a positive integer, not {value!r}")


@dataclass(frozen=True)
class LayerTiming:
    """Cycle counts of one engine, derived from its state machine (no stalls)."""

    load: int            # LOAD: one input beat per cycle
    issue: int           # COMPUTE: plane pairs × SIMD chunks per PE group
    drain: int           # DRAIN: memory read, popcount tree, term, product (pipeline depth after the last issue)
    groups: int          # PE groups, each ends in THRESH (1 cycle) and EMIT (its channels)
    emits: int           # output beats per input vector (= O)

    @property
    def per_vector(self):
        return self.load + self.groups * (self.issue + self.drain + 1) + self.emits


def check_foldable(layer):
    if not isinstance(layer, DenseLayer):
        raise ValueError(f"{layer.name}: the RTL engine supports dense layers only, not {layer.op!r} "
                         "(convolution layers run in hwsim and hls4ml)")


def layer_timing(layer, folding):
    check_foldable(layer)
    chunks = -(-layer.in_features // folding.simd)
    groups = -(-layer.out_features // folding.pe)
    return LayerTiming(load=layer.in_features, issue=layer.weight_bits * layer.in_bits * chunks,
                       drain=popcount_latency(folding.simd) + 3, groups=groups, emits=layer.out_features)


def fold_for_ii(layer, target_ii):
    """The cheapest folding (fewest PE × SIMD) whose cycles per vector are at most ``target_ii``.

    Raises ``ValueError`` if even full parallelism cannot reach it.
    """
    best = None
    for pe in _divisor_steps(layer.out_features):
        for simd in _divisor_steps(layer.in_features):
            folding = Folding(pe, simd)
            if layer_timing(layer, folding).per_vector <= target_ii:
                if best is None or pe * simd < best.pe * best.simd:
                    best = folding
                break  # larger SIMD for this PE only costs more
    if best is None:
        fastest = layer_timing(layer, Folding(layer.out_features, layer.in_features)).per_vector
        raise ValueError(f"{layer.name}: no folding reaches an initiation interval of {target_ii} cycles "
                         f"(the fastest takes {fastest}: loading {layer.in_features} inputs and emitting "
                         f"{layer.out_features} outputs one per cycle)")
    return best


def _divisor_steps(n):
    """Candidate parallelisms: every value that changes ceil(n / k), ascending."""
    return sorted({-(-n // q) for q in range(1, n + 1)})


# --- the network: a cycle-by-cycle model of the engines' control and the FIFOs ----------

@dataclass(frozen=True)
class NetworkTiming:
    """Predicted cycles of a network top with back-to-back inputs and a ready output.

    ``latency``: cycles from the first input beat of an inference to its output beat.
    ``ii``: cycles between consecutive output beats in steady state.
    ``per_layer``: each engine's cycles per vector on its own.
    """

    latency: int
    ii: int
    per_layer: tuple


class _Engine:
    def __init__(self, timing, pe):
        self.t, self.pe = timing, pe
        self.phase, self.n, self.g, self.count, self.lane = "LOAD", 0, 0, 0, 0

    @property
    def ready(self):
        return self.phase == "LOAD"

    @property
    def valid(self):
        return self.phase == "EMIT"

    def lanes(self):
        return min(self.pe, self.t.emits - self.g * self.pe)

    def step(self, took_input, gave_output):
        t = self.t
        if self.phase == "LOAD" and took_input:
            self.n += 1
            if self.n == t.load:
                self.phase, self.n, self.g, self.count = "COMPUTE", 0, 0, 0
        elif self.phase == "COMPUTE":
            self.count += 1
            if self.count == t.issue:
                self.phase, self.count = "DRAIN", 0
        elif self.phase == "DRAIN":
            self.count += 1
            if self.count == t.drain:
                self.phase = "THRESH"
        elif self.phase == "THRESH":
            self.phase, self.lane = "EMIT", 0
        elif self.phase == "EMIT" and gave_output:
            self.lane += 1
            if self.lane == self.lanes():
                if self.g == t.groups - 1:
                    self.phase = "LOAD"
                else:
                    self.phase, self.g, self.count = "COMPUTE", self.g + 1, 0


def network_timing(model, foldings, inferences=4):
    """Simulate the control of every engine, FIFO and the collector, cycle by cycle."""
    dense = model.mac_layers()
    engines = [_Engine(layer_timing(layer, f), f.pe) for layer, f in zip(dense, foldings)]
    depths = [layer.out_features for layer in dense]
    levels = [0] * len(engines)
    classes = len(model.classes)
    collected, sending = 0, False
    fed = 0                      # input beats accepted
    starts, outs = [], []
    total_in = inferences * dense[0].in_features
    cycle = 0
    while len(outs) < inferences:
        # combinational handshakes of this cycle, from the registered state
        take0 = engines[0].ready and fed < total_in
        writes = [e.valid and lvl < d for e, lvl, d in zip(engines, levels, depths)]
        reads = [levels[k] > 0 and engines[k + 1].ready for k in range(len(engines) - 1)]
        reads.append(levels[-1] > 0 and not sending)
        if sending:
            outs.append(cycle)
        if take0 and fed % dense[0].in_features == 0:
            starts.append(cycle)
        # clock edge
        for k, eng in enumerate(engines):
            eng.step(take0 if k == 0 else reads[k - 1], writes[k])
        for k in range(len(levels)):
            levels[k] += int(writes[k]) - int(reads[k])
        fed += int(take0)
        if sending:
            sending = False
        elif reads[-1]:
            collected += 1
            if collected == classes:
                collected, sending = 0, True
        cycle += 1
        if cycle > 10_000_000:
            raise RuntimeError("cycle model did not converge (a deadlock in the modelled control?)")
    ii = outs[-1] - outs[-2] if inferences > 1 else outs[0] - starts[0]
    return NetworkTiming(latency=outs[0] - starts[0], ii=ii,
                         per_layer=tuple(layer_timing(layer, f).per_vector for layer, f in zip(dense, foldings)))
