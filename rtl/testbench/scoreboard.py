"""The scoreboard: every output beat against the expected integers, their count and the cycle model."""

import numpy as np

__all__ = ["Scoreboard"]


class Scoreboard:
    """Checks a stream's beats against expected integers, beat by beat, as they arrive.

    ``expected``: integers ``[samples, values]`` (one beat per sample; hwsim's answers,
    for ``lqflow_top`` the logits then the predicted class,
    :meth:`~rtl.testbench.NetworkPorts.expected`) or ``[samples, beats_per_sample, lanes]``.
    ``mask`` (same shape, true where a value counts) skips lanes the design leaves
    undefined; ``labels`` names each value of a sample (default ``value k``), so that a
    failure reads ``sample 3, logit 7 (seven): expected -12, got -11``.

    ``timing`` (anything with ``latency``, ``ii`` and optionally ``cycles``:
    :func:`hwsim.cycles.network_timing` for these samples) also checks, for a run with
    inputs back to back and the output always ready, the first sample's latency (first
    input transfer to its last output beat), the initiation interval (between the last
    two samples) and the whole run (first input to last output) against the cycle model.

    Feed it :class:`~rtl.testbench.Beat` objects (``StreamMonitor(callback=board.add)``)
    or plain value sequences; then :meth:`check` raises an ``AssertionError`` listing
    what differs: values, beats that never came, beats after the last expected one, X or
    Z payloads and timing. ``context`` (for instance the layer foldings) ends the message.
    """

    def __init__(self, expected, *, beats_per_sample=1, mask=None, labels=None, timing=None, name="output",
                 context=None, shown=5):
        expected = np.asarray(expected)
        if expected.dtype.kind not in "iub" or expected.ndim not in (2, 3) or not expected.size:
            raise ValueError(f"{name}: expected must be integers [samples, values] or [samples, beats, lanes], "
                             f"not {expected.dtype} {list(expected.shape)}")
        if expected.ndim == 3:
            beats_per_sample = expected.shape[1]
        self.samples = expected.shape[0]
        self.beats_per_sample = int(beats_per_sample)
        if expected.size % (self.samples * self.beats_per_sample):
            raise ValueError(f"{name}: {expected.shape[1:]} values per sample do not split into "
                             f"{self.beats_per_sample} beats")
        self.lanes = expected.size // (self.samples * self.beats_per_sample)
        self.expected = expected.reshape(self.samples * self.beats_per_sample, self.lanes).astype(np.int64)
        self.mask = (np.ones(self.expected.shape, bool) if mask is None
                     else np.broadcast_to(np.asarray(mask, bool), expected.shape).reshape(self.expected.shape))
        per_sample = self.beats_per_sample * self.lanes
        self.labels = list(labels) if labels is not None else [f"value {k}" for k in range(per_sample)]
        if len(self.labels) != per_sample:
            raise ValueError(f"{name}: {len(self.labels)} labels for {per_sample} values per sample")
        self.timing, self.name, self.context, self.shown = timing, name, context, shown
        self.received = []          # values of every expected beat received so far
        self.cycles = []            # their cycles (None when fed without one)
        self.extra = []             # beats after the last expected one
        self.differ = {}            # sample -> [(value index, expected, got)] of its first differing beat(s)
        self.unresolved = []        # (sample, beat) whose payload was X or Z

    # -- feeding ---------------------------------------------------------------------
    def add(self, beat):
        """Score one beat (a :class:`~rtl.testbench.Beat` or a sequence of values)."""
        cycle, values = getattr(beat, "cycle", None), getattr(beat, "values", beat)
        index = len(self.received)
        if index >= len(self.expected):
            self.extra.append((cycle, values))
            return
        sample, k = divmod(index, self.beats_per_sample)
        self.cycles.append(cycle)
        if values is None:
            self.unresolved.append((sample, k))
            self.received.append([0] * self.lanes)
            return
        values = [int(v) for v in values]
        if len(values) != self.lanes:
            raise ValueError(f"{self.name}: a beat of {len(values)} values, expected {self.lanes}")
        self.received.append(values)
        for lane, (want, got) in enumerate(zip(self.expected[index], values)):
            if self.mask[index, lane] and int(want) != got:
                self.differ.setdefault(sample, []).append((k * self.lanes + lane, int(want), got))

    # -- results ---------------------------------------------------------------------
    @property
    def missing(self):
        """Expected beats not received."""
        return len(self.expected) - len(self.received)

    @property
    def mismatches(self):
        """Samples whose values differ, were X/Z, or never (fully) came, in order."""
        bad = set(self.differ) | {s for s, _ in self.unresolved}
        bad |= set(range(len(self.received) // self.beats_per_sample, self.samples))
        return sorted(bad)

    @property
    def outputs(self):
        """The received values, ``[samples, beats_per_sample · lanes]``; beats that never
        came are 0."""
        out = np.zeros(self.expected.shape, np.int64)
        out[:len(self.received)] = np.array(self.received, np.int64).reshape(-1, self.lanes)
        return out.reshape(self.samples, -1)

    def measured(self, first_input=None):
        """``(latency, ii, cycles)`` measured from the beats' cycles; ``first_input`` is the
        cycle of the first input transfer (``None`` where it cannot be measured)."""
        ends = self.cycles[self.beats_per_sample - 1::self.beats_per_sample]
        if self.missing or not ends or None in ends:
            return None, None, None
        ii = ends[-1] - ends[-2] if len(ends) > 1 else None
        if first_input is None:
            return None, ii, None
        return ends[0] - first_input, ii, ends[-1] - first_input

    def timing_errors(self, first_input=None):
        """The timing faults against ``timing`` (the cycle model), as sentences."""
        if self.timing is None or self.missing:
            return []
        latency, ii, cycles = self.measured(first_input)
        errors = []
        checks = [("latency", latency, self.timing.latency), ("initiation interval (II)", ii, self.timing.ii),
                  ("whole run (first input to last output)", cycles, getattr(self.timing, "cycles", None))]
        for what, got, want in checks:
            if got is not None and want is not None and got != want:
                errors.append(f"{what}: {got} cycles measured, the cycle model says {want}")
        return errors

    def errors(self, first_input=None):
        """Everything that is wrong, as sentences (empty: all as expected)."""
        errors = []
        if self.differ:
            bad = sorted(self.differ)
            lines = [f"{len(bad)} of {self.samples} samples differ from the expected values, first: sample {bad[0]}"]
            for sample in bad[:self.shown]:
                diffs = "; ".join(f"{self.labels[v]}: expected {want}, got {got}"
                                  for v, want, got in self.differ[sample][:4])
                more = len(self.differ[sample]) - 4
                lines.append(f"    sample {sample}: {diffs}" + (f"; and {more} more" if more > 0 else ""))
            if len(bad) > self.shown:
                lines.append(f"    ... and {len(bad) - self.shown} more samples")
            errors.append("\n".join(lines))
        if self.unresolved:
            sample, k = self.unresolved[0]
            errors.append(f"{len(self.unresolved)} beats carried X or Z, first: sample {sample}, beat {k}")
        if self.missing:
            sample, k = divmod(len(self.received), self.beats_per_sample)
            errors.append(f"{self.missing} of {len(self.expected)} expected beats never came (dropped or "
                          f"stuck): the first missing is sample {sample}" +
                          (f", beat {k}" if self.beats_per_sample > 1 else ""))
        if self.extra:
            cycle, values = self.extra[0]
            at = f" at cycle {cycle}" if cycle is not None else ""
            errors.append(f"{len(self.extra)} extra beat(s) after the last expected one, first{at}: "
                          f"{'X or Z' if values is None else list(values)}")
        return errors + self.timing_errors(first_input)

    def check(self, first_input=None):
        """Raise an ``AssertionError`` naming every fault (see :meth:`errors`)."""
        errors = self.errors(first_input)
        if errors:
            tail = f"\n{self.context}" if self.context else ""
            lines = "\n".join(f"- {e}" for e in errors)
            raise AssertionError(f"{self.name}: {len(errors)} problem(s)\n{lines}{tail}")
