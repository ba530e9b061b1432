"""Cycle model of the RTL datapath: folding, per-engine timing, and the whole network.

hwsim owns this model and the RTL is built to it (``docs/architecture.md``, "The
hardware"); co-simulation checks that the RTL measures exactly these numbers.  An
engine runs three processes side by side, each at its own pace:

* the **loader** takes ``in_lanes`` level indices per beat (into an input register,
  then) into one of two input banks
  (ping-pong), while
* the **compute** array reads the other bank: per PE group, per weight plane the group
  uses, per SIMD chunk, one cycle; its plane sums go to the ``SUM_BUFFERS`` sum buffers in turn, while
* the **finalizer** (``out_lanes`` units) reads the other sum buffer: per block of
  ``out_lanes`` channels, per weight plane, one cycle; each block ends in one output
  beat written to the engine's output FIFO.

Handoffs: a bank is *full* from the loader's last beat until compute's last read of it;
a sum buffer is *busy* from compute's first issue into it, and *full* from its last write,
until the cycle after the finalizer's last read (busy from the first issue, not the first
write: compute may come round to a buffer again before its earlier sums have landed; the
release is registered in the RTL, so it shows a cycle late); the
finalizer starts a block only while the FIFO has room for it (beats stored + beats in
flight < depth).  :class:`EngineModel` mirrors these registers cycle by cycle.
"""

from dataclasses import dataclass

import numpy as np

from lqir import DenseLayer, UnsupportedLayerError

from .stages import EngineStage, MaxStage, WindowStage, network_stages

__all__ = ["Folding", "LayerTiming", "NetworkTiming", "EngineModel", "popcount_latency", "group_planes",
           "plane_sum_terms", "engine_schedule", "layer_timing", "check_foldable", "network_timing", "COMPUTE_DELAY",
           "WEIGHT_BANK", "weight_banks",
           "FINAL_DELAY", "COLLECT_DELAY", "SUM_BUFFERS", "WINDOW_DELAY", "WindowModel", "MaxModel", "stage_model", "stage_in_beats"]

#: Cycles from a group's last compute issue to its sums being visible to the finalizer,
#: beyond the popcount tree and the plane-sum tree: memory read, its output register, the
#: write register, the write.
COMPUTE_DELAY = 4
#: Sum buffers between compute and finalizer: compute may run this many groups ahead, so
#: that the sums' pipeline delay does not stall it when both run at the same pace (a
#: buffer is held from its first issue through the sums' delay and the finalizer's read,
#: plus the registered release: about 17 cycles; sixteen cover groups of two cycles, and a
#: power of two keeps the ring's pointers plain counters).
SUM_BUFFERS = 16
#: Words per weight memory bank (a DP16KD holds 512 words of up to 36 bits; deeper weight
#: memories are banked, see ``weight_banks``).
WEIGHT_BANK = 512
#: Cycles from a block's last finalizer step to its beat being visible in the FIFO:
#: sum read, its register, lane select, 2·R − V, product, accumulate, beat register, FIFO write.
FINAL_DELAY = 8
#: The argmax collector: cycles from taking the last logit beat to its output beat (the
#: beat's maximum and its compares, the running maximum, then the beat), during which it
#: takes nothing.
COLLECT_DELAY = 3


def popcount_latency(width):
    """Cycles of the pipelined popcount tree of ``width`` bits: ``max(1, ceil(log2(width)))``."""
    return max(1, (width - 1).bit_length())


@dataclass(frozen=True)
class Folding:
    """How one dense layer is folded onto its engine.

    ``pe`` output channels and ``simd`` inputs (of every input plane) per compute cycle;
    ``out_lanes`` finalizer units, which is also the number of output values per beat
    (it must divide ``pe``); ``in_lanes`` input values per beat (it must divide ``simd``).
    """

    pe: int
    simd: int
    out_lanes: int = 1
    in_lanes: int = 1

    def __post_init__(self):
        for name in ("pe", "simd", "out_lanes", "in_lanes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Folding {name} must be a positive integer, not {value!r}")
        if self.pe % self.out_lanes:
            raise ValueError(f"Folding out_lanes must divide pe, not {self.out_lanes} for pe {self.pe}")
        if self.simd % self.in_lanes:
            raise ValueError(f"Folding in_lanes must divide simd, not {self.in_lanes} for simd {self.simd}")


def check_foldable(layer):
    if not isinstance(layer, DenseLayer):
        raise UnsupportedLayerError(f"{layer.name}: the RTL engine supports dense layers only, not {layer.op!r}; "
                                    "simulate this model with 'lqflow sim'")


def group_planes(layer, folding):
    """The weight planes each PE group issues: those with a nonzero coefficient in any of
    its channels (a plane whose coefficients are all 0 adds nothing), at least one.

    Channels with fewer bits or pruned planes (self-compressed models, ordered by bit
    depth) thus cost their group fewer passes; the weight and coefficient memories
    hold only these planes.
    """
    check_foldable(layer)
    planes = []
    for start in range(0, layer.out_features, folding.pe):
        used = np.flatnonzero((layer.weight_coef[start:start + folding.pe] != 0).any(axis=0))
        planes.append(tuple(int(i) for i in used) or (0,))
    return tuple(planes)


def csd_digits(value):
    """Canonical signed digits of an integer: ``[(shift, ±1), ...]`` summing to ``value``."""
    digits, shift = [], 0
    while value:
        if value & 1:
            digit = 2 - (value & 3)          # +1 or -1, so that the next bit becomes 0
            digits.append((shift, digit))
            value -= digit
        value >>= 1
        shift += 1
    return digits


def plane_sum_terms(in_coef):
    """The shift-add terms ``(input plane j, shift, sign)`` of ``Σ_j in_coef[j] · count_j``.

    The compute array weighs its per-plane popcounts by the layer's input coefficients
    with these constant shifts and adds (no multiplier); at least one term.
    """
    terms = [(j, shift, sign) for j, coef in enumerate(in_coef) for shift, sign in csd_digits(int(coef))]
    return tuple(terms) or ((0, 0, 0),)


@dataclass(frozen=True)
class EngineSchedule:
    """The static counts :class:`EngineModel` steps through (one dense layer, one folding)."""

    in_beats: int           # input beats per vector: ceil(I / in_lanes)
    chunks: int             # SIMD chunks per input plane: ceil(I / simd)
    group_planes: tuple     # per PE group: weight planes issued
    group_blocks: tuple     # per PE group: finalizer blocks (beats): ceil(channels / out_lanes)
    sum_delay: int          # compute: last issue of a group -> its sums visible
    fifo_depth: int         # output FIFO depth in beats: a vector's, and enough to cover FINAL_DELAY

    @property
    def out_beats(self):
        return sum(self.group_blocks)


def weight_banks(layer, folding):
    """Banks of ``WEIGHT_BANK`` words the engine's weight memory is split into; with more
    than one, the bank select and its register add a cycle to compute."""
    words = sum(len(p) for p in group_planes(layer, folding)) * -(-layer.in_features // folding.simd)
    return -(-words // WEIGHT_BANK)


def engine_schedule(layer, folding):
    check_foldable(layer)
    chunks = -(-layer.in_features // folding.simd)
    planes = group_planes(layer, folding)
    blocks = tuple(-(-min(folding.pe, layer.out_features - g * folding.pe) // folding.out_lanes)
                   for g in range(len(planes)))
    return EngineSchedule(in_beats=-(-layer.in_features // folding.in_lanes), chunks=chunks,
                          group_planes=tuple(len(p) for p in planes), group_blocks=blocks,
                          sum_delay=(popcount_latency(folding.simd) + popcount_latency(len(plane_sum_terms(layer.in_coef)))
                                     + COMPUTE_DELAY + int(weight_banks(layer, folding) > 1)),
                          fifo_depth=max(FINAL_DELAY + 1, sum(blocks)))


class _FifoWriter:
    """Delayed actions at a cycle's clock edge, and the output FIFO they write beats into."""

    def _at(self, delay, action):
        self.events.setdefault(self.cycle + delay, []).append(action)

    def _edge(self):
        for action in self.events.pop(self.cycle, []):
            action()
        self.cycle += 1

    def _write_beat(self):
        self.level += 1
        self.pending -= 1


class EngineModel(_FifoWriter):
    """One engine's control registers, stepped one clock cycle at a time.

    ``in_ready``/``out_valid`` are read before :meth:`step` (they depend on registers
    only, as in the RTL); ``step(took_input, gave_output)`` advances one clock edge.
    """

    def __init__(self, schedule):
        self.s = schedule
        self.cycle = 0
        self.events = {}                     # cycle -> list of actions applied at its end
        # loader: an input register, then the banks
        self.held, self.wb, self.beat, self.full = False, 0, 0, [False, False]
        # compute
        self.rb, self.cg, self.cplane, self.cchunk, self.cwb = 0, 0, 0, 0, 0
        self.sums_busy = [False] * SUM_BUFFERS    # claimed by compute at a group's first issue
        self.sums_full = [False] * SUM_BUFFERS    # its sums all written: the finalizer may read
        # finalizer
        self.frb, self.fg, self.fblock, self.fstep = 0, 0, 0, 0
        self.pending, self.level = 0, 0
        self.read_last = 0      # the FIFO gave a beat last cycle: the room count sees it a cycle late

    @property
    def in_ready(self):
        return not self.held or not self.full[self.wb]

    @property
    def out_valid(self):
        return self.level > 0

    def step(self, took_input, gave_output):
        s, nxt = self.s, {}
        # loader: the registered beat goes into its bank; the last beat of a vector fills it
        taken = self.held and not self.full[self.wb]
        self.held = took_input or (self.held and not taken)
        if taken:
            self.beat += 1
            if self.beat == s.in_beats:
                nxt[("full", self.wb)] = True
                self.wb, self.beat = 1 - self.wb, 0
        # compute: a group starts when its bank is full (first group) and its sum buffer is free
        starting = self.cplane == 0 and self.cchunk == 0
        if not starting or ((self.cg > 0 or self.full[self.rb]) and not self.sums_busy[self.cwb]):
            if starting:
                nxt[("busy", self.cwb)] = True
            self.cchunk += 1
            if self.cchunk == s.chunks:
                self.cchunk, self.cplane = 0, self.cplane + 1
                if self.cplane == s.group_planes[self.cg]:
                    buf = self.cwb
                    self._at(s.sum_delay - 1, lambda b=buf: self.sums_full.__setitem__(b, True))
                    self.cplane, self.cwb, self.cg = 0, (self.cwb + 1) % SUM_BUFFERS, self.cg + 1
                    if self.cg == len(s.group_planes):
                        nxt[("full", self.rb)] = False
                        self.rb, self.cg = 1 - self.rb, 0
        # finalizer: a block starts when its sums are there and the FIFO has room for its beat
        if self.fstep > 0 or (self.sums_full[self.frb] and self.level + self.pending + self.read_last < s.fifo_depth):
            if self.fstep == 0:
                nxt["pending"] = nxt.get("pending", 0) + 1
            self.fstep += 1
            if self.fstep == s.group_planes[self.fg]:
                self._at(FINAL_DELAY - 1, self._write_beat)
                self.fstep, self.fblock = 0, self.fblock + 1
                if self.fblock == s.group_blocks[self.fg]:
                    # released a cycle later (the RTL registers the release)
                    self._at(1, lambda b=self.frb: self._release(b))
                    self.frb, self.fblock = (self.frb + 1) % SUM_BUFFERS, 0
                    self.fg = (self.fg + 1) % len(s.group_planes)
        # the clock edge
        self.level -= int(gave_output)
        self.read_last = int(gave_output)
        self.pending += nxt.pop("pending", 0)
        for (kind, index), value in nxt.items():
            {"full": self.full, "sums": self.sums_full, "busy": self.sums_busy}[kind][index] = value
        self._edge()

    def _release(self, buf):
        self.sums_full[buf] = self.sums_busy[buf] = False


@dataclass(frozen=True)
class LayerTiming:
    """One engine on its own, fed back to back with its output always taken.

    ``latency``: cycles from the first input beat of a vector to its last output beat.
    ``ii``: cycles between the last output beats of the last two vectors (steady state).
    ``cycles``: from the first input beat to the last output beat of all ``vectors``.
    """

    latency: int
    ii: int
    cycles: int
    in_beats: int
    out_beats: int
    compute_cycles: int     # per vector, the compute array's issue cycles
    finalize_cycles: int    # per vector, the finalizer's steps


def layer_timing(layer, folding, vectors=8):
    s = engine_schedule(layer, folding)
    engine, fed, firsts, lasts, emitted = EngineModel(s), 0, [], [], 0
    total = vectors * s.in_beats
    while len(lasts) < vectors:
        took = engine.in_ready and fed < total
        gave = engine.out_valid
        if took and fed % s.in_beats == 0:
            firsts.append(engine.cycle)
        if gave:
            emitted += 1
            if emitted % s.out_beats == 0:
                lasts.append(engine.cycle)
        engine.step(took, gave)
        fed += int(took)
        _guard(engine.cycle)
    compute = s.chunks * sum(s.group_planes)
    finalize = sum(p * b for p, b in zip(s.group_planes, s.group_blocks))
    return LayerTiming(latency=lasts[0] - firsts[0], ii=lasts[-1] - lasts[-2] if vectors > 1 else 0,
                       cycles=lasts[-1] - firsts[0], in_beats=s.in_beats,
                       out_beats=s.out_beats, compute_cycles=compute, finalize_cycles=finalize)


def _guard(cycle):
    if cycle > 10_000_000:
        raise RuntimeError("cycle model did not converge (a deadlock in the modelled control?)")


# --- window and max stages ------------------------------------------------------------

#: Cycles from a window unit's read issue to its beat being visible in its output FIFO:
#: the frame buffer's read, its output register, the FIFO write.
WINDOW_DELAY = 3


class WindowModel(_FifoWriter):
    """A window unit's control: a loader filling one frame bank while the generator reads the
    other, one read per cycle while its output FIFO has room (same interface as
    :class:`EngineModel`)."""

    def __init__(self, stage):
        self.in_beats, self.out_beats = stage.in_beats, stage.out_beats
        self.depth = WINDOW_DELAY + 1
        self.cycle, self.events = 0, {}
        self.full, self.wb, self.count, self.rb, self.issued = [False, False], 0, 0, 0, 0
        self.pending, self.level = 0, 0

    @property
    def in_ready(self):
        return not self.full[self.wb]

    @property
    def out_valid(self):
        return self.level > 0

    def step(self, took_input, gave_output):
        nxt, issue = {}, self.full[self.rb] and self.level + self.pending < self.depth
        if took_input:
            self.count += 1
            if self.count == self.in_beats:
                nxt[self.wb], self.wb, self.count = True, 1 - self.wb, 0
        if issue:
            self._at(WINDOW_DELAY - 1, self._write_beat)
            self.issued += 1
            if self.issued == self.out_beats:
                nxt[self.rb], self.rb, self.issued = False, 1 - self.rb, 0
        self.level -= int(gave_output)
        self.pending += int(issue)
        for bank, value in nxt.items():
            self.full[bank] = value
        self._edge()


class MaxModel:
    """A max unit: ``taps`` beats in, one out, through a one-beat output register."""

    def __init__(self, stage):
        self.taps, self.tap, self.full = stage.taps, 0, False

    @property
    def in_ready(self):
        return not (self.full and self.tap == self.taps - 1)

    @property
    def out_valid(self):
        return self.full

    def step(self, took_input, gave_output):
        if gave_output:
            self.full = False
        if took_input:
            self.tap += 1
            if self.tap == self.taps:
                self.tap, self.full = 0, True


def stage_model(stage):
    """The cycle model of one :mod:`hwsim.stages` stage."""
    if isinstance(stage, WindowStage):
        return WindowModel(stage)
    if isinstance(stage, MaxStage):
        return MaxModel(stage)
    return EngineModel(engine_schedule(stage.layer, stage.folding))


def stage_in_beats(stage):
    """Input beats of one inference."""
    if isinstance(stage, WindowStage):
        return stage.in_beats
    if isinstance(stage, MaxStage):
        return stage.beats * stage.taps
    return engine_schedule(stage.layer, stage.folding).in_beats * stage.vectors


# --- the network: the stages, the argmax collector, cycle by cycle ---------------------

@dataclass(frozen=True)
class NetworkTiming:
    """Predicted cycles of a network top with back-to-back inputs and a ready output.

    ``latency``: cycles from the first input beat of an inference to its output beat.
    ``ii``: cycles between the last two output beats (steady state for enough inferences).
    ``cycles``: from the first input beat to the last output beat of all ``inferences``.
    ``per_layer``: each MAC layer's engine on its own (:class:`LayerTiming`, per vector).
    """

    latency: int
    ii: int
    cycles: int
    per_layer: tuple


def network_timing(model, foldings, inferences=8):
    """Simulate the control of every stage, its FIFO and the collector, cycle by cycle."""
    stages = network_stages(model, foldings)
    units = [stage_model(stage) for stage in stages]
    first_beats = stage_in_beats(stages[0])
    collect_beats = engine_schedule(stages[-1].layer, stages[-1].folding).out_beats
    collected, wait = 0, 0
    fed, starts, outs, cycle = 0, [], [], 0
    total_in = inferences * first_beats
    while len(outs) < inferences:
        took = [units[0].in_ready and fed < total_in]
        took += [units[k].out_valid and units[k + 1].in_ready for k in range(len(units) - 1)]
        collect = units[-1].out_valid and wait == 0
        if wait == 1:
            outs.append(cycle)
        if took[0] and fed % first_beats == 0:
            starts.append(cycle)
        for k, unit in enumerate(units):
            unit.step(took[k], took[k + 1] if k + 1 < len(units) else collect)
        fed += int(took[0])
        if wait:
            wait -= 1
        elif collect:
            collected += 1
            if collected == collect_beats:
                collected, wait = 0, COLLECT_DELAY
        cycle += 1
        _guard(cycle)
    engines = [stage for stage in stages if isinstance(stage, EngineStage)]
    return NetworkTiming(latency=outs[0] - starts[0], ii=outs[-1] - outs[-2] if inferences > 1 else 0,
                         cycles=outs[-1] - starts[0],
                         per_layer=tuple(layer_timing(stage.layer, stage.folding) for stage in engines))
