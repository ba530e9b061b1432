"""The spec of ``lqflow sweep``: a TOML grid over the options of ``lqflow run``.

Every key takes one value or a list of values ("each of"); the grid is the product of
the lists, in the order of :data:`KEYS`. ``widths`` is itself a list, so a list of lists
is a grid over widths (``widths = [[64], [128, 128]]``) and a list of integers is one
setting. A point's id is a readable name plus a hash of its options, so that the same
spec always gives the same ids (what makes a sweep resumable).
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
import math
import re
import tomllib
from argparse import Namespace
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from lqir.fileio import require_file

from .cli_hardware import DEVICES
from .flow import RunConfig

__all__ = ["KEYS", "SweepSpec", "Point", "spec_from_dict", "load_spec"]

#: spec key -> the RunConfig field it sets (its checks are RunConfig's own)
_RUN_FIELDS = {"dataset": "dataset", "arch": "arch", "widths": "widths", "quantizer": "quantizer", "scale": "scale",
               "wbits": "weight_bits", "abits": "act_bits", "in_bits": "in_bits", "coef_bits": "coef_bits",
               "seeds": "seed", "epochs": "float_epochs", "qat_epochs": "qat_epochs"}
#: A spec file larger than this is refused before it is parsed.
MAX_SPEC_BYTES = 1 << 20


def _fail(key, text):
    raise ValueError(f"sweep spec: {key}: {text}")


def _is_number(value):
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


@dataclass(frozen=True)
class SweepSpec:
    """A grid over the run options: each field holds the tuple of values to sweep.

    The defaults are those of ``lqflow run`` (``RunConfig``), except ``synth`` (off) and
    ``cosim_samples`` (None: the whole test split). ``target_fps`` None and ``device``
    None leave the folding and the device to ``lqflow run``'s defaults.
    """

    dataset: tuple = (RunConfig.dataset,)
    arch: tuple = (RunConfig.arch,)
    widths: tuple = (RunConfig.widths,)
    quantizer: tuple = (RunConfig.quantizer,)
    scale: tuple = (RunConfig.scale,)
    wbits: tuple = (RunConfig.weight_bits,)
    abits: tuple = (RunConfig.act_bits,)
    in_bits: tuple = (RunConfig.in_bits,)
    coef_bits: tuple = (RunConfig.coef_bits,)
    seeds: tuple = (RunConfig.seed,)
    epochs: tuple = (RunConfig.float_epochs,)
    qat_epochs: tuple = (RunConfig.qat_epochs,)
    target_fps: tuple = (None,)
    freq: tuple = (150.0,)
    device: tuple = (None,)
    synth: tuple = (False,)
    cosim_samples: tuple = (None,)

    def __post_init__(self):
        """Check every value of every key (each error names the key); nothing runs before."""
        for f in fields(self):
            key, values = f.name, getattr(self, f.name)
            if not isinstance(values, tuple):
                _fail(key, f"must be a tuple of values, not {values!r}")
            if not values:
                _fail(key, "is an empty list; give at least one value, or leave the key out for the default")
            checked = tuple(_check_value(key, value) for value in values)
            twice = next((v for i, v in enumerate(checked) if v in checked[:i]), None)
            if twice is not None:
                _fail(key, f"lists {_toml(twice)} twice; give each value once")
            object.__setattr__(self, key, checked)
        for fps, freq in itertools.product(self.target_fps, self.freq):
            if fps is not None and fps > freq * 1e6:
                _fail("target_fps", f"{fps:,.0f} inferences/s needs more than one inference per cycle at "
                                    f"{freq:g} MHz (freq); give at most {freq * 1e6:,.0f}")

    def points(self):
        """Every point of the grid, in a fixed order (the product of the keys in :data:`KEYS` order)."""
        names = [f.name for f in fields(self)]
        return [Point(**{("seed" if k == "seeds" else k): v for k, v in zip(names, combo)})
                for combo in itertools.product(*(getattr(self, k) for k in names))]

    def to_json(self):
        return {f.name: [_jsonable(v) for v in getattr(self, f.name)] for f in fields(self)}


#: The keys a spec may hold, in grid order.
KEYS = tuple(f.name for f in fields(SweepSpec))


def _check_value(key, value):
    """One value of ``key``, checked and normalized (widths → tuple, rates → float)."""
    if key in _RUN_FIELDS:
        field = _RUN_FIELDS[key]
        if key == "widths":
            if not isinstance(value, (list, tuple)):
                _fail(key, f"must be a list of hidden widths (or a list of such lists), not {value!r}")
            value = tuple(value)
        try:  # RunConfig checks its fields one by one; the others keep their defaults
            RunConfig(**{field: value})
        except ValueError as exc:
            text = str(exc)
            _fail(key, text.split(": ", 1)[1] if text.startswith(field) and ": " in text else text)
        return value
    if key in ("target_fps", "freq"):
        if value is None and key == "target_fps":
            return None
        if not _is_number(value) or value <= 0:
            _fail(key, f"must be a positive number{' (inferences/s)' if key == 'target_fps' else ' (MHz)'}, "
                       f"not {value!r}")
        return float(value)
    if key == "device":
        if value is not None and value not in DEVICES:
            _fail(key, f"must be one of {', '.join(map(repr, DEVICES))}, not {value!r}")
        return value
    if key == "synth":
        if not isinstance(value, bool):
            _fail(key, f"must be true or false, not {value!r}")
        return value
    if key == "cosim_samples":
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 2):
            _fail(key, f"must be an integer of at least 2 (the II is measured between two samples), not {value!r}")
        return value
    raise AssertionError(key)


def _jsonable(value):
    return list(value) if isinstance(value, tuple) else value


def _toml(value):
    return json.dumps(_jsonable(value))


def _values(key, value):
    """A spec entry as the tuple of values it sweeps (a list means "each of")."""
    if isinstance(value, list) and not value:
        _fail(key, "is an empty list; give at least one value, or leave the key out for the default")
    if key == "widths":   # a list of integers is one setting; a list of lists sweeps them
        return tuple(value) if isinstance(value, list) and all(isinstance(v, list) for v in value) else (value,)
    return tuple(value) if isinstance(value, list) else (value,)


def spec_from_dict(data):
    """A :class:`SweepSpec` from a parsed TOML document; unknown keys are refused by name."""
    for key in data:
        if key not in KEYS:
            close = difflib.get_close_matches(key, KEYS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"sweep spec: unknown key {key!r}{hint} (the keys: {', '.join(KEYS)})")
    return SweepSpec(**{key: _values(key, value) for key, value in data.items()})


def load_spec(path):
    """``(SweepSpec, text)`` of a TOML spec file; every error names the file and the key."""
    path = require_file(path, f"{path}: is a folder; give the sweep spec, a .toml file",
                        f"{path}: no such file; write the sweep spec (TOML) first")
    if path.stat().st_size > MAX_SPEC_BYTES:
        raise ValueError(f"{path}: a sweep spec may take at most {MAX_SPEC_BYTES // 1024} KiB")
    try:
        text = path.read_bytes().decode("utf-8")
        data = tomllib.loads(text)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: not a valid TOML file: {exc}") from None
    try:
        return spec_from_dict(data), text
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def _rate(fps):
    for unit, scale in (("M", 1e6), ("k", 1e3)):
        if fps >= scale and fps % scale == 0:
            return f"{fps / scale:g}{unit}"
    return f"{fps:g}"


@dataclass(frozen=True)
class Point:
    """One point of a sweep: the options of one ``lqflow run`` and its hardware target."""

    dataset: str
    arch: str
    widths: tuple
    quantizer: str
    scale: str
    wbits: int
    abits: int
    in_bits: int | None
    coef_bits: int
    seed: int
    epochs: int
    qat_epochs: int
    target_fps: float | None
    freq: float
    device: str | None
    synth: bool
    cosim_samples: int | None

    def options(self):
        """The point's options as JSON values (what its id hashes)."""
        return {k: _jsonable(v) for k, v in asdict(self).items()}

    @property
    def id(self):
        """``<dataset>-<arch>-<quantizer>-w<W>a<A>-s<seed>[-<rate>]-<hash of every option>``."""
        digest = hashlib.sha256(json.dumps(self.options(), sort_keys=True, separators=(",", ":")).encode())
        name = Path(self.dataset).stem if self.dataset.endswith(".npz") else self.dataset
        slug = f"{name}-{self.arch}-{self.quantizer}-w{self.wbits}a{self.abits}-s{self.seed}"
        if self.target_fps is not None:
            slug += f"-{_rate(self.target_fps)}"
        return f"{re.sub(r'[^A-Za-z0-9_.-]', '_', slug)}-{digest.hexdigest()[:10]}"

    def run_config(self, dataset=None):
        """The point's ``RunConfig`` (``dataset``: a local copy of its .npz, on a worker)."""
        return RunConfig(dataset=str(dataset or self.dataset), arch=self.arch, widths=self.widths,
                         quantizer=self.quantizer, scale=self.scale, weight_bits=self.wbits, act_bits=self.abits,
                         float_epochs=self.epochs, qat_epochs=self.qat_epochs, seed=self.seed,
                         coef_bits=self.coef_bits, in_bits=self.in_bits)

    def folding_args(self):
        """The folding options of ``lqflow run --target-fps F --freq M [--device D]`` (no
        ``device`` attribute when the spec leaves the device to ``lqflow run``'s default)."""
        args = Namespace(pe=None, simd=None, lanes=None, target_ii=None, target_fps=self.target_fps, freq=self.freq)
        if self.device is not None:
            args.device = self.device
        return args
