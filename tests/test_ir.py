"""The IR file: round trip, atomic writes, and a named error for every kind of bad input."""

import ast
import io
import json
import sys
import warnings
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import lqir as ir
from lqir import fileio
from lqir import model as ir_model
from lqir.random_models import random_conv_model, random_dense_model
from hwsim import Simulator


@pytest.fixture
def model(rng):
    return random_dense_model(rng, [12, 7, 5, 3], weight_bits=2, act_bits=2, in_levels=9)


def _arrays(model, tmp_path):
    path = ir.save(model, tmp_path / "m.lqir.npz")
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def _write(tmp_path, arrays, name="bad.lqir.npz"):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def _manifest(arrays):
    return json.loads(str(arrays["manifest"]))


def _with_manifest(arrays, manifest):
    return {**arrays, "manifest": np.array(json.dumps(manifest))}


def test_round_trip_keeps_every_array_and_the_simulation(model, rng, tmp_path):
    path = ir.save(model, tmp_path / "m.lqir.npz")
    back = ir.load(path)
    assert back.input == model.input and back.classes == model.classes and back.meta == model.meta
    for a, b in zip(model.layers, back.layers):
        assert a.attributes() == b.attributes()
        for key, arr in a.arrays().items():
            np.testing.assert_array_equal(arr, b.arrays()[key])
            assert arr.dtype == b.arrays()[key].dtype
    x = rng.integers(0, 9, size=(20, 12))
    np.testing.assert_array_equal(Simulator(model).run(x), Simulator(back).run(x))


def test_conv_round_trip(rng, tmp_path):
    model = random_conv_model(rng, (2, 6, 6), 3, 2, 2)
    back = ir.load(ir.save(model, tmp_path / "c.lqir.npz"))
    x = rng.integers(0, model.input.levels, size=(4, 2, 6, 6))
    np.testing.assert_array_equal(Simulator(model).run(x), Simulator(back).run(x))


def test_save_is_atomic(model, tmp_path, monkeypatch):
    path = ir.save(model, tmp_path / "m.lqir.npz")
    original = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", boom)
    with pytest.raises(OSError, match="disk full"):
        ir.save(model, path)
    assert path.read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.lqir.npz"]  # no temp file left


# --- every error the loader can raise: one case each (kept complete by test_every_loader_error_is_exercised)

def _save_arrays(tmp_path, arrays, name="bad.lqir.npz"):
    return _write(tmp_path, arrays, name)


def _edited(manifest_edit=None, array_edit=None, conv=False):
    """A case: the fixture model (or a conv model) saved, its manifest and arrays edited."""
    def build(tmp_path, model):
        if conv:
            model = random_conv_model(np.random.default_rng(1234), (2, 6, 6), 3, 2, 2)
        arrays = _arrays(model, tmp_path)
        if manifest_edit is not None:
            manifest = _manifest(arrays)
            manifest_edit(manifest)
            arrays = _with_manifest(arrays, manifest)
        if array_edit is not None:
            array_edit(arrays)
        return _save_arrays(tmp_path, arrays)
    return build


def _setter(*path, value):
    def edit(node):
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return edit


def _raw_zip(members, stored=False):
    """A case: an archive of the model's members (as .npy bytes) with ``members`` replaced;
    a list value stores that name several times; None drops the member."""
    def build(tmp_path, model):
        raw = {}
        for key, arr in _arrays(model, tmp_path).items():
            buf = io.BytesIO()
            np.save(buf, arr, allow_pickle=False)
            raw[f"{key}.npy"] = buf.getvalue()
        raw.update(members(raw) if callable(members) else members)
        path = tmp_path / "raw.lqir.npz"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED) as zf:
            for name, data in raw.items():
                for item in (data if isinstance(data, list) else [] if data is None else [data]):
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")  # "Duplicate name"
                        zf.writestr(name, item)
        return path
    return build


def _npy_header(descr, shape, version=(1, 0)):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    head = bytearray(buf.getvalue())
    head[6:8] = bytes(version)
    return bytes(head)


def _bad_crc(tmp_path, model):
    """A stored (uncompressed) member large enough that its header is read before the damaged end."""
    big = random_dense_model(np.random.default_rng(0), [2000, 40, 3], 2, 2)
    path = _raw_zip({}, stored=True)(tmp_path, big)
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("fc0.weight_code.npy")
    blob = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + int.from_bytes(
        blob[info.header_offset + 28:info.header_offset + 30], "little")
    blob[start + info.compress_size - 1] ^= 0x01
    path.write_bytes(bytes(blob))
    return path


def _drop(*names):
    def edit(arrays):
        for name in names:
            del arrays[name]
    return edit


def _set_array(name, fn):
    def edit(arrays):
        arrays[name] = fn(arrays[name])
    return edit


def _fc2_overflows(arrays):
    arrays["fc2.weight_coef"] = np.full_like(arrays["fc2.weight_coef"], 2**31 - 1)
    arrays["fc2.in_coef"] = np.full_like(arrays["fc2.in_coef"], 2**31 - 1)
    arrays["fc2.in_code"] = np.arange(4, dtype=np.uint16)


def _wide_thresholds(arrays):
    thr = arrays["fc0.thresholds"]
    arrays["fc0.thresholds"] = np.broadcast_to(2**40 + np.arange(thr.shape[1]), thr.shape).copy()


def _in_memory(fn):
    """A case that calls ``fn(tmp_path, model)`` itself (from_arrays, save)."""
    fn.in_memory = True
    return fn


def _from_arrays_with(edit):
    @_in_memory
    def run(tmp_path, model):
        arrays = _arrays(model, tmp_path)
        edit(arrays)
        return ir.from_arrays(arrays)
    return run


@_in_memory
def _save_too_many_bytes(tmp_path, model):
    saved = fileio.MAX_ARRAY_BYTES
    fileio.MAX_ARRAY_BYTES = 100
    try:
        return ir.save(model, tmp_path / "big.lqir.npz")
    finally:
        fileio.MAX_ARRAY_BYTES = saved


@_in_memory
def _unreadable(tmp_path, model):
    if not Path("/proc/self/mem").is_file():
        pytest.skip("needs /proc/self/mem (a file that exists but cannot be read from its start)")
    return ir.load("/proc/self/mem")


def _dup_flatten(m):
    m["layers"][:0] = [{"name": "f", "op": "flatten"}, {"name": "f", "op": "flatten"}]


def _inner_accumulate(m):
    m["layers"][0]["output"] = "accumulate"
    del m["layers"][0]["out_levels"]


LOAD_ERRORS = [
    # the file and the archive
    ("missing-file", lambda t, m: t / "nope.lqir.npz", r"no such IR file \(write one with 'lqflow export'\)"),
    ("folder", lambda t, m: t, "is a folder, not an IR file"),
    ("unreadable", _unreadable, r"not an lqir file \(cannot read it"),
    ("plain-npy", lambda t, m: (np.save(t / "x.npy", np.zeros(3)), t / "x.npy")[1], "a plain .npy array"),
    ("not-a-zip", lambda t, m: (t.joinpath("x.lqir.npz").write_bytes(b"PK\x03\x04 this is not a zip"),
                                t / "x.lqir.npz")[1], r"not an lqir file \(not a zip archive"),
    ("member-not-npy", _raw_zip({"readme.txt": b"hello"}), r"readme.txt: not an .npy array"),
    ("member-twice", _raw_zip(lambda raw: {"fc0.bias.npy": [raw["fc0.bias.npy"]] * 2}), "fc0.bias.npy: stored twice"),
    ("foreign-npz", lambda t, m: _write(t, {"weights": np.zeros(3)}), "manifest: missing"),
    ("pickled-manifest", lambda t, m: (np.savez(t / "p.lqir.npz", manifest=np.array([{"format": "lqir"}], dtype=object)),
                                       t / "p.lqir.npz")[1], r"not an lqir file \(manifest: holds Python objects \(pickled data\)"),
    ("manifest-not-0d", _edited(array_edit=_set_array("manifest", lambda a: np.array([str(a)]))),
     "manifest: must be a 0-d str array holding JSON"),
    ("manifest-too-big", _raw_zip({"manifest.npy": _npy_header("<U2000000", ()) + b"{}"}),
     r"manifest: declares 7.63 MiB of JSON, more than the 4 MiB"),
    ("manifest-bad-json", _edited(array_edit=_set_array("manifest", lambda a: np.array("{not json"))),
     "manifest: not valid JSON"),
    ("manifest-too-deep", _edited(array_edit=_set_array("manifest", lambda a: np.array("[" * 100000 + "]" * 100000))),
     "manifest: JSON nested too deeply"),
    ("format", _edited(_setter("format", value="onnx")), r"manifest.format: must be 'lqir'"),
    ("version-newer", _edited(_setter("version", value=2)), "manifest.version.*upgrade lqflow"),
    ("version-older", _edited(_setter("version", value=0)), "manifest.version.*re-export"),
    ("unknown-top-key", _edited(_setter("comment", value="hi")), "comment: unknown manifest key"),
    # each member checked against the manifest before it is read
    ("member-bad-magic", _raw_zip({"fc0.bias.npy": b"hello, world"}), r"layers\[0\]\.bias: not a readable .npy array"),
    ("member-npy-v3", _raw_zip({"fc0.bias.npy": _npy_header("<i8", (7,), (3, 0)) + bytes(56)}),
     r"layers\[0\]\.bias: not a readable .npy array \(.npy format version 3.0 is not supported\)"),
    ("member-object", _raw_zip({"fc0.bias.npy": _npy_header("|O", (7,)) + b"\x80\x02]q\x00."}),
     r"layers\[0\]\.bias: holds Python objects \(pickled data\)"),
    ("member-negative-shape", _raw_zip({"fc0.bias.npy": _npy_header("<i8", (-7,))}),
     r"layers\[0\]\.bias: negative size"),
    ("member-wrong-dtype", _edited(array_edit=_set_array("fc0.bias", lambda a: a.astype(np.float64))),
     r"layers\[0\]\.bias: dtype must be int64, not float64"),
    ("member-wrong-shape", _edited(array_edit=_set_array("fc1.weight_code", lambda a: a[:, :-1])),
     r"layers\[1\]\.weight_code: shape must be \[5, 7\], not \[5, 6\]"),
    ("member-padded", _raw_zip(lambda raw: {"fc0.bias.npy": raw["fc0.bias.npy"] + bytes(1 << 20)}),
     r"layers\[0\]\.bias: the archive member holds 1 MiB of data, but its header declares 56 bytes"),
    ("member-bad-crc", _bad_crc, r"layers\[0\]\.weight_code: unreadable array data \(Bad CRC-32"),
    ("arrays-too-big", _edited(lambda m: m["layers"][0].update(in_features=10**9)),
     r"layers\[0\]\.weight_code: the manifest declares arrays of more than 256 MiB"),
    ("unexpected-array", _edited(array_edit=lambda a: a.update({"fc9.bias": np.zeros(3, np.int64)})),
     "fc9.bias: unexpected array"),
    ("missing-array", _edited(array_edit=_drop("fc1.weight_coef")), r"layers\[1\]\.weight_coef: missing array"),
    # the manifest's structure
    ("layers-not-list", _edited(_setter("layers", value={"fc0": {}})), "layers: must be a list"),
    ("layer-not-object", _edited(lambda m: m["layers"].insert(0, "dense")), r"layers\[0\]: must be a JSON object"),
    ("unsupported-op", _edited(lambda m: m["layers"].insert(1, {"name": "sm", "op": "softmax"})),
     r"layers\[1\]\.op: unsupported op 'softmax'"),
    ("unknown-attribute", _edited(_setter("layers", 0, "groups", value=2)), r"layers\[0\]\.groups: unknown attribute"),
    ("bad-layer-name", _edited(_setter("layers", 0, "name", value="fc 0")), r"layers\[0\]\.name: must be a non-empty"),
    ("array-as-attribute", _edited(_setter("layers", 0, "bias", value=[1, 2])),
     r"layers\[0\]\.bias: must be an array, not a manifest attribute"),
    ("attribute-type", _edited(_setter("layers", 0, "in_features", value="12")),
     r"layers\[0\]\.in_features: must be an integer, not '12'"),
    ("attribute-missing", _edited(lambda m: m["layers"].insert(0, {"name": "p", "op": "maxpool2d", "stride": 1})),
     r"layers\[0\]: .*missing 1 required keyword-only argument: 'kernel'"),
    ("input-not-object", _edited(_setter("input", value=[12])), "input: must be a JSON object"),
    ("input-unknown-key", _edited(_setter("input", "mean", value=0)), r"input.mean: unknown key \(input holds"),
    ("input-shape-not-list", _edited(_setter("input", "shape", value=12)), "input.shape: must be a list of integers"),
    ("input-shape-rank", _edited(_setter("input", "shape", value=[3, 4])), r"input.shape: must be \[C, H, W\] or \[N\]"),
    ("input-shape-zero", _edited(_setter("input", "shape", value=[0])), r"input.shape\[0\]: must be at least 1"),
    ("input-too-large", _edited(_setter("input", "shape", value=[2**20, 2**20, 2**20])),
     "input.shape: .* has more than 2147483647 elements"),
    ("input-levels", _edited(_setter("input", "levels", value=1)), "input.levels: must be at least 2"),
    ("input-levels-too-many", _edited(_setter("input", "levels", value=2**16 + 1)), "input.levels: must be at most 65536"),
    ("output-missing", _edited(lambda m: m.pop("output")), "output: must hold 'classes' and 'logit_scale'"),
    ("output-unknown-key", _edited(_setter("output", "softmax", value=True)), "output.softmax: unknown key"),
    ("classes-not-strings", _edited(_setter("output", "classes", value="abc")), "output.classes: must be a list"),
    ("meta-not-object", _edited(_setter("meta", value=[])), "meta: must be a JSON object"),
    ("logit-scale", _edited(_setter("output", "logit_scale", value=-1.0)),
     "output.logit_scale: must be a positive finite number"),
    ("class-count", _edited(_setter("output", "classes", value=["a", "b"])),
     r"output.classes: 2 classes, but the network outputs \[3\]"),
    # each layer's own fields
    ("no-layers", _edited(_setter("layers", value=[]), _drop(*[f"fc{i}.{k}" for i in range(3) for k in
                                                                ("weight_code", "weight_coef", "bias", "in_code",
                                                                 "in_coef")] + ["fc0.thresholds", "fc1.thresholds"])),
     "layers: a model needs at least one layer"),
    ("name-twice", _edited(_dup_flatten), r"layers\[1\]\.name: 'f' is used twice"),
    ("weight-bits", _edited(_setter("layers", 0, "weight_bits", value=9)), r"layers\[0\]\.weight_bits: must be at most 8"),
    ("in-bits", _edited(_setter("layers", 0, "in_bits", value=17)), r"layers\[0\]\.in_bits: must be at most 16"),
    ("in-levels", _edited(_setter("layers", 0, "in_levels", value=1)), r"layers\[0\]\.in_levels: must be at least 2"),
    ("weight-encoding", _edited(_setter("layers", 0, "weight_encoding", value="ternary")),
     r"layers\[0\]\.weight_encoding: must be 'pm1' or 'bin'"),
    ("output-kind", _edited(_setter("layers", 0, "output", value="relu")),
     r"layers\[0\]\.output: must be 'threshold' or 'accumulate'"),
    ("out-levels", _edited(_setter("layers", 0, "out_levels", value=1)), r"layers\[0\]\.out_levels: must be at least 2"),
    ("accumulate-with-out-levels", _edited(_setter("layers", 2, "out_levels", value=4)),
     r"layers\[2\]\.out_levels: an 'accumulate' layer has no out_levels or thresholds"),
    ("weight-code-range", _edited(array_edit=_set_array("fc2.weight_code", lambda a: a | 4)),
     r"layers\[2\]\.weight_code: codes must be below 2\*\*weight_bits = 4"),
    ("in-code-range", _edited(array_edit=_set_array("fc1.in_code", lambda a: a | 4)),
     r"layers\[1\]\.in_code: codes must be below 2\*\*in_bits = 4"),
    ("weight-coef-magnitude", _edited(array_edit=_set_array("fc1.weight_coef", lambda a: np.full_like(a, 2**40))),
     r"layers\[1\]\.weight_coef: magnitudes must be below 2\*\*31"),
    ("in-coef-magnitude", _edited(array_edit=_set_array("fc1.in_coef", lambda a: np.full_like(a, -2**40))),
     r"layers\[1\]\.in_coef: magnitudes must be below 2\*\*31"),
    ("bias-int64-min", _edited(array_edit=_set_array("fc1.bias", lambda a: np.full_like(a, -2**63))),
     r"layers\[1\]\.bias: magnitudes must be below 2\*\*31"),
    ("input-values-order", _edited(array_edit=lambda a: a.update({"fc1.in_code": a["fc1.in_code"][::-1].copy(),
                                                                  "fc1.in_coef": np.array([3, 5], np.int64)})),
     r"layers\[1\]\.in_code: input values must be non-decreasing"),
    ("thresholds-order", _edited(array_edit=_set_array("fc0.thresholds", lambda a: np.where(
        np.arange(a.shape[0])[:, None] == 2, np.array([5, 3, 9]), a))), r"layers\[0\]\.thresholds: rows must be non-decreasing"),
    ("acc-bits-low", _edited(_setter("layers", 1, "acc_bits", value=1)), r"layers\[1\]\.acc_bits: must be at least 2"),
    ("acc-bits-high", _edited(_setter("layers", 1, "acc_bits", value=65)), r"layers\[1\]\.acc_bits: must be at most 64"),
    ("acc-bits-narrow", _edited(_setter("layers", 2, "acc_bits", value=4)),
     r"layers\[2\]\.acc_bits: 4 cannot hold the accumulator range \[-?\d+, -?\d+\] \(needs \d+\)"),
    ("thresholds-wide", _edited(array_edit=_wide_thresholds),
     r"layers\[0\]\.thresholds: values need 42 bits, more than acc_bits = \d+"),
    ("accumulator-overflows-int64", _edited(array_edit=_fc2_overflows),
     r"layers\[2\]\.weight_coef: the accumulator range overflows int64"),
    # the layers chained
    ("input-shape-chain", _edited(_setter("input", "shape", value=[11])),
     r"layers\[0\]\.in_features: layer expects input shape \[12\], gets \[11\]"),
    ("levels-chain", _edited(_setter("layers", 1, "in_levels", value=3),
                             _set_array("fc1.in_code", lambda a: a[:3].copy())),
     r"layers\[1\]\.in_levels: 3, but the previous layer produces 4 levels"),
    ("last-must-accumulate", _edited(lambda m: m["layers"].pop(),
                                     _drop(*[f"fc2.{k}" for k in ("weight_code", "weight_coef", "bias", "in_code",
                                                                  "in_coef")])),
     r"layers\[1\]\.output: the last layer must be 'accumulate'"),
    ("inner-accumulate", _edited(_inner_accumulate, _drop("fc0.thresholds")),
     r"layers\[0\]\.output: only the last layer may be 'accumulate'"),
    ("maxpool-of-flat-input", _edited(lambda m: m["layers"].insert(0, {"name": "p", "op": "maxpool2d", "kernel": 2,
                                                                        "stride": 2})),
     r"layers\[0\]\.op: maxpool2d needs a \[C, H, W\] input"),
    ("conv-padding", _edited(_setter("layers", 0, "padding", value=-1), conv=True), r"layers\[0\]\.padding: must be at least 0"),
    ("conv-channels", _edited(_setter("input", "shape", value=[3, 6, 6]), conv=True),
     r"layers\[0\]\.in_channels: layer expects input \[2, H, W\], gets \[3, 6, 6\]"),
    ("conv-kernel-too-big", _edited(lambda m: (m["input"].update(shape=[2, 2, 2]), m["layers"][0].update(padding=0)),
                                    conv=True), r"layers\[0\]\.kernel: 3 does not fit input \[2, 2, 2\]"),
    ("pool-kernel-too-big", _edited(_setter("layers", 1, "kernel", value=100), conv=True),
     r"layers\[1\]\.kernel: 100 does not fit input \[3, 6, 6\]"),
    ("pool-stride", _edited(_setter("layers", 1, "stride", value=0), conv=True), r"layers\[1\]\.stride: must be at least 1"),
    ("flatten-name", _edited(_setter("layers", 3, "name", value=""), conv=True), r"layers\[3\]\.name: must be a non-empty"),
    # in memory: from_arrays and save
    ("from-arrays-no-manifest", _from_arrays_with(lambda a: a.pop("manifest")), "manifest: missing"),
    ("from-arrays-manifest-not-str", _from_arrays_with(lambda a: a.update(manifest=np.zeros(()))),
     "manifest: must be a 0-d str array"),
    ("from-arrays-layers-not-list", _from_arrays_with(
        lambda a: a.update(manifest=np.array(json.dumps({**_manifest(a), "layers": 3})))), "layers: must be a list"),
    ("from-arrays-unexpected", _from_arrays_with(lambda a: a.update({"x.bias": np.zeros(1, np.int64)})),
     "x.bias: unexpected array"),
    ("from-arrays-not-an-array", _from_arrays_with(lambda a: a.update({"fc0.bias": [0] * 7})),
     r"layers\[0\]\.bias: must be a numpy array, not list"),
    ("from-arrays-wrong-dtype", _from_arrays_with(lambda a: a.update({"fc0.bias": a["fc0.bias"].astype(np.int32)})),
     r"layers\[0\]\.bias: dtype must be int64, not int32"),
    ("from-arrays-wrong-shape", _from_arrays_with(lambda a: a.update({"fc0.bias": a["fc0.bias"][:3]})),
     r"layers\[0\]\.bias: shape must be \[7\], not \[3\]"),
    ("save-huge-meta", _in_memory(lambda t, m: ir.save(replace(m, meta={"note": "x" * (1 << 20)}), t / "s.lqir.npz")),
     r"meta: the manifest would take 4,19\d,\d{3} bytes, more than the 4,194,304 that load reads"),
    ("save-too-many-bytes", _save_too_many_bytes, "layers: the arrays take .* more than the 100 bytes"),
]


@pytest.mark.parametrize("build, message", [pytest.param(b, m, id=i) for i, b, m in LOAD_ERRORS])
def test_loader_error(model, tmp_path, build, message):
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        if getattr(build, "in_memory", False):
            build(tmp_path, model)
        else:
            ir.load(build(tmp_path, model))


def _raise_sites():
    """(file, line, function) of every ``raise ValueError/FileNotFoundError`` of the loader's modules."""
    sites = []
    for module in (fileio, ir_model):
        path = Path(module.__file__)
        tree = ast.parse(path.read_text())
        for func in ast.walk(tree):
            if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)) or func.name in NOT_LOADER:
                continue
            for node in ast.walk(func):
                if (isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call)
                        and getattr(node.exc.func, "id", None) in ("ValueError", "FileNotFoundError")):
                    sites.append((str(path), node.lineno, func.name))
    return sorted(set(sites))


#: Functions that are not part of loading an IR file (read_npy reads --inputs: tests/test_bad_input.py).
NOT_LOADER = {"read_npy"}


def test_every_loader_error_is_exercised(model, tmp_path):
    """Each ``raise`` of lqir.fileio and lqir.model runs in at least one case of LOAD_ERRORS."""
    sites = _raise_sites()
    files = {site[0] for site in sites}
    hit = set()

    def tracer(frame, event, arg):
        if frame.f_code.co_filename not in files:
            return None

        def local(frame, event, arg):
            if event == "line":
                hit.add((frame.f_code.co_filename, frame.f_lineno))
            return local
        return local

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        for case_id, build, message in LOAD_ERRORS:
            folder = tmp_path / case_id
            folder.mkdir()
            try:
                if getattr(build, "in_memory", False):
                    build(folder, model)
                else:
                    ir.load(build(folder, model))
            except (ValueError, FileNotFoundError):
                pass
            except pytest.skip.Exception:
                pass
    finally:
        sys.settrace(previous)
    missed = [f"{Path(f).name}:{line} ({func})" for f, line, func in sites if (f, line) not in hit]
    assert not missed, f"loader errors no case exercises: {missed}"


def test_levels_must_chain(model):
    bad = replace(model.layers[1], in_levels=3, in_code=model.layers[1].in_code[:3])
    with pytest.raises(ValueError, match=r"layers\[1\]\.in_levels: 3, but the previous layer produces 4 levels"):
        ir.Model(model.input, (model.layers[0], bad, model.layers[2]), model.classes, 1.0)


def test_shapes_must_chain(model):
    with pytest.raises(ValueError, match=r"layers\[1\]\.in_features"):
        ir.Model(model.input, (model.layers[0], model.layers[2]), model.classes, 1.0)


def test_last_layer_must_accumulate(model):
    with pytest.raises(ValueError, match=r"layers\[1\]\.output: the last layer must be 'accumulate'"):
        ir.Model(model.input, model.layers[:2], ("a",) * 5, 1.0)


def test_class_count_must_match(model):
    with pytest.raises(ValueError, match="output.classes: 2 classes"):
        ir.Model(model.input, model.layers, ("a", "b"), 1.0)


def test_signed_width():
    assert ir.signed_width(-128, 127) == 8
    assert ir.signed_width(-129, 0) == 9
    assert ir.signed_width(0, 128) == 9
    assert ir.signed_width(0, 0) == 1
