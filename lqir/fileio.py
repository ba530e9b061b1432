"""The IR file (``*.lqir.npz``, format ``lqir`` version 1): save, load and validate.

Entry ``manifest`` is a 0-d str array holding JSON; every other entry is an array named
``<layer name>.<field>`` (``docs/architecture.md``, section "The integer IR").  Loading
never unpickles and re-raises every problem as a ``ValueError`` that names the field,
for example ``layers[2].thresholds: rows must be non-decreasing``.

Loading reads the manifest first (at most :data:`MAX_MANIFEST_BYTES`), derives the
dtype and shape of every array from it, and checks each member's ``.npy`` header and
uncompressed size against them before reading its data; the arrays together may take
at most :data:`MAX_ARRAY_BYTES`.  A hostile file therefore cannot make ``load``
allocate more than that.  :class:`NpzArchive` and :func:`read_npy` offer the same
header-first reading to the other readers of user files (datasets, ``--inputs``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

from .atomic import atomic_open
from .model import LAYER_TYPES, InputSpec, MacLayer, Model, _check_name

__all__ = ["FORMAT", "VERSION", "MAX_MANIFEST_BYTES", "MAX_ARRAY_BYTES", "NpzArchive", "read_npy",
           "require_file", "save", "load", "from_arrays"]

FORMAT = "lqir"
VERSION = 1
#: Largest manifest entry (a 0-d UTF-32 str array, 4 bytes a character) that ``load`` reads.
MAX_MANIFEST_BYTES = 4 << 20
#: Largest total size of the arrays of one IR file (checked from the manifest before reading).
MAX_ARRAY_BYTES = 256 << 20

_TOP_KEYS = ("format", "version", "input", "layers", "output", "meta")
_INPUT_KEYS = ("shape", "levels")
_OUTPUT_KEYS = ("classes", "logit_scale")
_NPY_MAGIC = b"\x93NUMPY"
# What reading a damaged archive or .npy can raise: zlib.error (bad deflate data),
# RuntimeError (an encrypted member), NotImplementedError (an unknown compression).
_READ_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError, RuntimeError,
                NotImplementedError, zlib.error)


def save(model, path):
    """Write ``model`` to ``path`` atomically (temp file in the same folder + rename)."""
    path = Path(path)
    manifest = {
        "format": FORMAT, "version": VERSION,
        "input": {"shape": list(model.input.shape), "levels": model.input.levels},
        "layers": [layer.attributes() for layer in model.layers],
        "output": {"classes": list(model.classes), "logit_scale": float(model.logit_scale)},
        "meta": model.meta,
    }
    arrays = {"manifest": np.array(json.dumps(manifest, default=_json_default))}
    if arrays["manifest"].nbytes > MAX_MANIFEST_BYTES:
        raise ValueError(f"meta: the manifest would take {arrays['manifest'].nbytes:,} bytes, more than the "
                         f"{MAX_MANIFEST_BYTES:,} that load reads")
    for layer in model.layers:
        for key, arr in layer.arrays().items():
            arrays[f"{layer.name}.{key}"] = arr
    total = sum(arr.nbytes for key, arr in arrays.items() if key != "manifest")
    if total > MAX_ARRAY_BYTES:
        raise ValueError(f"layers: the arrays take {_size(total)}, more than the {_size(MAX_ARRAY_BYTES)} "
                         "that load reads")
    with atomic_open(path) as fh:
        np.savez_compressed(fh, **arrays)
    return path


def _json_default(obj):
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"meta: {type(obj).__name__} is not JSON-serializable")


def require_file(path, folder, missing, error=ValueError):
    """``path`` as a ``Path`` when it names an existing file; a folder raises
    ``error(folder)``, anything else ``FileNotFoundError(missing)`` (the caller's messages,
    each naming the file and the fix)."""
    path = Path(path)
    if path.is_dir():
        raise error(folder)
    if not path.is_file():
        raise FileNotFoundError(missing)
    return path


def load(path):
    """Read and validate an IR file; every problem is a ``ValueError`` naming its field."""
    path = require_file(path, f"{path}: is a folder, not an IR file (.lqir.npz)",
                        f"{path}: no such IR file (write one with 'lqflow export')")
    try:
        archive = NpzArchive(path)
    except ValueError as exc:
        raise ValueError(f"{path}: not an lqir file ({exc})") from None
    try:
        with archive:
            return _read_archive(archive)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def from_arrays(arrays):
    """Build a :class:`Model` from the entries of an IR archive (already in memory)."""
    arrays = dict(arrays)
    entry = arrays.pop("manifest", None)
    if entry is None:
        raise ValueError("manifest: missing (this is not an lqir file)")
    if not isinstance(entry, np.ndarray) or entry.shape != () or entry.dtype.kind != "U":
        raise ValueError("manifest: must be a 0-d str array holding JSON")
    return _build(_parse_manifest(str(entry)), arrays)


# --- reading an archive: the manifest first, then each array checked before it is read ---

def _read_archive(npz):
    if "manifest" not in npz.members:
        raise ValueError("manifest: missing (this is not an lqir file)")
    try:
        dtype, shape, _ = npz.header("manifest")
    except ValueError as exc:
        raise ValueError(f"not an lqir file ({exc})") from None
    if shape != () or dtype.kind != "U":
        raise ValueError("manifest: must be a 0-d str array holding JSON")
    if dtype.itemsize > MAX_MANIFEST_BYTES:
        raise ValueError(f"manifest: declares {_size(dtype.itemsize)} of JSON, more than the "
                         f"{_size(MAX_MANIFEST_BYTES)} an lqir manifest may take")
    manifest = _parse_manifest(str(npz.read("manifest", dtype=dtype, shape=())))
    specs = _array_specs(manifest)
    extra = sorted(set(npz.members) - set(specs) - {"manifest"})
    if extra:
        raise ValueError(f"{extra[0]}: unexpected array (no layer of the manifest owns it)")
    arrays = {name: npz.read(name, where, dtype, shape)
              for name, (where, dtype, shape) in specs.items() if name in npz.members}
    return _build(manifest, arrays)


def _array_specs(manifest):
    """``{entry name: (field path, dtype, shape)}`` of every array the manifest implies."""
    layers = manifest.get("layers")
    if not isinstance(layers, list):
        raise ValueError("layers: must be a list")
    specs, total = {}, 0
    for index, raw in enumerate(layers):
        where = f"layers[{index}]"
        cls, kwargs = _layer_class(where, raw)
        if not issubclass(cls, MacLayer):
            continue
        try:
            layer_specs = cls.array_specs(kwargs)
        except ValueError as exc:
            raise ValueError(f"{where}.{exc}") from None
        for key, (dtype, shape) in layer_specs.items():
            specs[f"{kwargs['name']}.{key}"] = (f"{where}.{key}", dtype, shape)
            total += math.prod(shape) * dtype.itemsize
            if total > MAX_ARRAY_BYTES:
                raise ValueError(f"{where}.{key}: the manifest declares arrays of more than "
                                 f"{_size(MAX_ARRAY_BYTES)}, the most an lqir file may hold")
    return specs


def _parse_manifest(text):
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"manifest: not valid JSON ({exc})") from None
    except RecursionError:
        raise ValueError("manifest: JSON nested too deeply (this is not an lqir manifest)") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"manifest.format: must be {FORMAT!r} (this is not an lqir file)")
    version = manifest.get("version")
    if version != VERSION:
        hint = "upgrade lqflow" if isinstance(version, int) and version > VERSION else "re-export the model"
        raise ValueError(f"manifest.version: this lqflow reads version {VERSION}, the file is {version!r}; {hint}")
    for key in manifest:
        if key not in _TOP_KEYS:
            raise ValueError(f"{key}: unknown manifest key (a version {VERSION} manifest holds "
                             f"{', '.join(_TOP_KEYS)})")
    return manifest


def _build(manifest, arrays):
    """The :class:`Model` of a parsed manifest and its arrays (``arrays`` is consumed)."""
    spec = _read_input(manifest.get("input"))
    layers_raw = manifest.get("layers")
    if not isinstance(layers_raw, list):
        raise ValueError("layers: must be a list")
    layers = [_read_layer(i, raw, arrays) for i, raw in enumerate(layers_raw)]
    if arrays:
        raise ValueError(f"{sorted(arrays)[0]}: unexpected array (no layer of the manifest owns it)")
    output = manifest.get("output")
    if not isinstance(output, dict) or "classes" not in output or "logit_scale" not in output:
        raise ValueError("output: must hold 'classes' and 'logit_scale'")
    _check_keys("output", output, _OUTPUT_KEYS)
    classes = output["classes"]
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise ValueError(f"output.classes: must be a list of class names (strings), not {_short(classes)}")
    meta = manifest.get("meta", {})
    if not isinstance(meta, dict):
        raise ValueError("meta: must be a JSON object")
    return Model(spec, tuple(layers), tuple(classes), output["logit_scale"], meta)


def _read_input(raw):
    if not isinstance(raw, dict):
        raise ValueError(f"input: must be a JSON object holding 'shape' and 'levels', not {_short(raw)}")
    _check_keys("input", raw, _INPUT_KEYS)
    shape = raw.get("shape")
    if not isinstance(shape, list):
        raise ValueError(f"input.shape: must be a list of integers, not {_short(shape)}")
    return InputSpec(tuple(shape), raw.get("levels"))


def _check_keys(where, raw, known):
    for key in raw:
        if key not in known:
            raise ValueError(f"{where}.{key}: unknown key ({where} holds {' and '.join(known)})")


def _short(value, limit=60):
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _layer_class(where, raw):
    """The layer class of a manifest entry and its attributes (arrays not yet attached)."""
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: must be a JSON object")
    op = raw.get("op")
    cls = LAYER_TYPES.get(op) if isinstance(op, str) else None
    if cls is None:
        raise ValueError(f"{where}.op: unsupported op {_short(op)} (supported: {', '.join(LAYER_TYPES)})")
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {k: v for k, v in raw.items() if k != "op"}
    for key in kwargs:
        if key not in names:
            raise ValueError(f"{where}.{key}: unknown attribute for op {cls.op!r}")
    try:
        _check_name(kwargs.get("name"))
    except ValueError as exc:
        raise ValueError(f"{where}.{exc}") from None
    for key in ("weight_code", "weight_coef", "bias", "in_code", "in_coef", "thresholds"):
        if key in names and key in kwargs:
            raise ValueError(f"{where}.{key}: must be an array, not a manifest attribute")
    return cls, kwargs


def _read_layer(index, raw, arrays):
    where = f"layers[{index}]"
    cls, kwargs = _layer_class(where, raw)
    names = {f.name for f in dataclasses.fields(cls)}
    name = kwargs["name"]
    for key in ("weight_code", "weight_coef", "bias", "in_code", "in_coef", "thresholds"):
        if key not in names:
            continue
        entry = arrays.pop(f"{name}.{key}", None)
        if entry is None and (key != "thresholds" or kwargs.get("output") == "threshold"):
            raise ValueError(f"{where}.{key}: missing array '{name}.{key}'")
        kwargs[key] = entry
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ValueError(f"{where}: {exc}") from None
    except ValueError as exc:
        raise ValueError(f"{where}.{exc}") from None


# --- header-first reading of .npz and .npy files (shared with the dataset and --inputs readers) ---

class NpzArchive:
    """An ``.npz`` read member by member, each ``.npy`` header checked before its data.

    ``members`` maps entry names (without ``.npy``) to their :class:`zipfile.ZipInfo`.
    :meth:`header` gives a member's declared dtype and shape without reading its data;
    :meth:`read` checks them, and the member's uncompressed size in the zip directory,
    against what the caller expects before reading a byte of data.  Pickles are never
    loaded.  Every problem is a ``ValueError`` without the file name (the caller adds it).
    """

    def __init__(self, path):
        self.path = Path(path)
        try:
            with open(self.path, "rb") as fh:
                start = fh.read(len(_NPY_MAGIC))
        except OSError as exc:
            raise ValueError(f"cannot read it ({exc.strerror or exc})") from None
        if start == _NPY_MAGIC:
            raise ValueError("it is a plain .npy array, not an .npz archive")
        try:
            self._zip = zipfile.ZipFile(self.path)
            infos = self._zip.infolist()
        except _READ_ERRORS as exc:
            raise ValueError(f"not a zip archive: {exc}") from None
        self.members = {}
        for info in infos:
            name = info.filename[:-4] if info.filename.endswith(".npy") else None
            problem = ("not an .npy array (an .npz archive holds only .npy members)" if name is None
                       else "stored twice in the archive" if name in self.members else None)
            if problem:
                self._zip.close()
                raise ValueError(f"{info.filename}: {problem}")
            self.members[name] = info

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self._zip.close()

    def header(self, name, where=None):
        """``(dtype, shape, data offset)`` that member ``name``'s ``.npy`` header declares."""
        try:
            with self._zip.open(self.members[name]) as fh:
                return _read_header(fh)
        except _READ_ERRORS as exc:
            raise ValueError(f"{where or name}: {exc}") from None

    def read(self, name, where=None, dtype=None, shape=None):
        """Member ``name`` as an array, after checking its header against ``dtype`` and
        ``shape`` (each None: any) and its size in the zip directory against the header;
        ``where`` names it in errors."""
        where = where or name
        info = self.members[name]
        got_dtype, got_shape, offset = self.header(name, where)
        if dtype is not None and got_dtype != np.dtype(dtype):
            raise ValueError(f"{where}: dtype must be {np.dtype(dtype)}, not {got_dtype}")
        if shape is not None and got_shape != tuple(shape):
            raise ValueError(f"{where}: shape must be {list(shape)}, not {list(got_shape)}")
        nbytes = math.prod(got_shape) * got_dtype.itemsize
        if info.file_size != offset + nbytes:
            raise ValueError(f"{where}: the archive member holds {_size(info.file_size - offset)} of data, but "
                             f"its header declares {_size(nbytes)} (a damaged or forged file)")
        try:
            with self._zip.open(info) as fh:
                return np.lib.format.read_array(fh, allow_pickle=False)
        except _READ_ERRORS as exc:
            raise ValueError(f"{where}: unreadable array data ({exc})") from None


def read_npy(path):
    """A plain ``.npy`` file, never a pickle; its header is checked against the file's
    size before any data is read.  Problems are ``ValueError`` without the file name."""
    with open(path, "rb") as fh:
        if fh.read(len(_NPY_MAGIC)) != _NPY_MAGIC:
            raise ValueError("it does not start with the .npy header; pickles and other formats are never read")
        fh.seek(0)
        try:
            dtype, shape, offset = _read_header(fh)
        except _READ_ERRORS as exc:
            raise ValueError(str(exc)) from None
        nbytes, size = math.prod(shape) * dtype.itemsize, os.fstat(fh.fileno()).st_size
        if offset + nbytes > size:
            raise ValueError(f"truncated .npy file: its header declares {_size(nbytes)} of data "
                             f"({list(shape)} {dtype}), the file holds {_size(max(size - offset, 0))}")
        fh.seek(0)
        try:
            return np.lib.format.read_array(fh, allow_pickle=False)
        except _READ_ERRORS as exc:
            raise ValueError(f"unreadable array data ({exc})") from None


def _read_header(fh):
    """``(dtype, shape, data offset)`` of the ``.npy`` stream ``fh`` (at its start)."""
    try:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            raise ValueError(f".npy format version {version[0]}.{version[1]} is not supported")
    except _READ_ERRORS as exc:
        raise ValueError(f"not a readable .npy array ({exc})") from None
    if dtype.hasobject:
        raise ValueError("holds Python objects (pickled data), which lqflow never loads")
    shape = tuple(shape)
    if any(size < 0 for size in shape):
        raise ValueError(f"negative size in the .npy header's shape {list(shape)}")
    return dtype, shape, fh.tell()


def _size(nbytes):
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if nbytes >= scale:
            value = nbytes / scale
            return f"{value:,.0f} {unit}" if value >= 100 else f"{value:.3g} {unit}"
    return f"{nbytes} bytes"
