"""The IR file: round trip, atomic writes, and a named error for every kind of bad input."""

import json
from dataclasses import replace

import numpy as np
import pytest

from export import ir
from export.random_model import random_conv_model, random_dense_model
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


def test_corrupt_file(tmp_path):
    path = tmp_path / "x.lqir.npz"
    path.write_bytes(b"PK\x03\x04 this is not a zip archive")
    with pytest.raises(ValueError, match="not an lqir file"):
        ir.load(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="lqflow export"):
        ir.load(tmp_path / "nope.lqir.npz")


def test_foreign_npz(tmp_path):
    with pytest.raises(ValueError, match="manifest: missing"):
        ir.load(_write(tmp_path, {"weights": np.zeros(3)}))


def test_pickled_manifest_is_refused(tmp_path):
    path = tmp_path / "p.lqir.npz"
    np.savez(path, manifest=np.array([{"format": "lqir"}], dtype=object))
    with pytest.raises(ValueError, match="not an lqir file"):
        ir.load(path)


def test_wrong_format(model, tmp_path):
    arrays = _arrays(model, tmp_path)
    manifest = {**_manifest(arrays), "format": "onnx"}
    with pytest.raises(ValueError, match="manifest.format"):
        ir.load(_write(tmp_path, _with_manifest(arrays, manifest)))


@pytest.mark.parametrize("version, hint", [(2, "upgrade lqflow"), (0, "re-export")])
def test_wrong_version(model, tmp_path, version, hint):
    arrays = _arrays(model, tmp_path)
    manifest = {**_manifest(arrays), "version": version}
    with pytest.raises(ValueError, match=f"manifest.version.*{hint}"):
        ir.load(_write(tmp_path, _with_manifest(arrays, manifest)))


def test_bad_json(model, tmp_path):
    arrays = {**_arrays(model, tmp_path), "manifest": np.array("{not json")}
    with pytest.raises(ValueError, match="manifest: not valid JSON"):
        ir.load(_write(tmp_path, arrays))


def test_missing_array(model, tmp_path):
    arrays = _arrays(model, tmp_path)
    del arrays["fc1.weight_coef"]
    with pytest.raises(ValueError, match=r"layers\[1\]\.weight_coef: missing array"):
        ir.load(_write(tmp_path, arrays))


def test_unexpected_array(model, tmp_path):
    arrays = {**_arrays(model, tmp_path), "fc9.bias": np.zeros(3, np.int64)}
    with pytest.raises(ValueError, match="fc9.bias: unexpected array"):
        ir.load(_write(tmp_path, arrays))


def test_wrong_dtype(model, tmp_path):
    arrays = _arrays(model, tmp_path)
    arrays["fc0.bias"] = arrays["fc0.bias"].astype(np.float64)
    with pytest.raises(ValueError, match=r"layers\[0\]\.bias: dtype must be int64, not float64"):
        ir.load(_write(tmp_path, arrays))


def test_wrong_shape(model, tmp_path):
    arrays = _arrays(model, tmp_path)
    arrays["fc1.weight_code"] = arrays["fc1.weight_code"][:, :-1]
    with pytest.raises(ValueError, match=r"layers\[1\]\.weight_code: shape must be \[5, 7\]"):
        ir.load(_write(tmp_path, arrays))


def test_non_monotone_thresholds(model, tmp_path):
    arrays = _arrays(model, tmp_path)
    thr = arrays["fc0.thresholds"].copy()
    thr[2] = [5, 3, 9]
    arrays["fc0.thresholds"] = thr
    with pytest.raises(ValueError, match=r"layers\[0\]\.thresholds: rows must be non-decreasing"):
        ir.load(_write(tmp_path, arrays))


def test_non_monotone_input_values(model, tmp_path):
    arrays = _arrays(model, tmp_path)
    arrays["fc1.in_code"] = arrays["fc1.in_code"][::-1].copy()
    arrays["fc1.in_coef"] = np.array([3, 5], np.int64)
    with pytest.raises(ValueError, match=r"layers\[1\]\.in_code: input values must be non-decreasing"):
        ir.load(_write(tmp_path, arrays))


def test_code_out_of_range(model, tmp_path):
    arrays = _arrays(model, tmp_path)
    arrays["fc2.weight_code"] = arrays["fc2.weight_code"] | 4
    with pytest.raises(ValueError, match=r"layers\[2\]\.weight_code: codes must be below 2\*\*weight_bits = 4"):
        ir.load(_write(tmp_path, arrays))


def test_acc_bits_too_narrow(model, tmp_path):
    arrays = _arrays(model, tmp_path)
    manifest = _manifest(arrays)
    manifest["layers"][2]["acc_bits"] = 4
    with pytest.raises(ValueError, match=r"layers\[2\]\.acc_bits: 4 cannot hold the accumulator range"):
        ir.load(_write(tmp_path, _with_manifest(arrays, manifest)))


def test_widths_that_overflow_int64(model, tmp_path):
    arrays = _arrays(model, tmp_path)
    manifest = _manifest(arrays)
    manifest["layers"][1]["acc_bits"] = 65
    with pytest.raises(ValueError, match=r"layers\[1\]\.acc_bits: must be at most 64"):
        ir.load(_write(tmp_path, _with_manifest(arrays, manifest)))
    arrays = _arrays(model, tmp_path)
    arrays["fc1.weight_coef"] = np.full_like(arrays["fc1.weight_coef"], 2**40)
    with pytest.raises(ValueError, match=r"layers\[1\]\.weight_coef: magnitudes must be below 2\*\*31"):
        ir.load(_write(tmp_path, arrays))


def test_unsupported_op(model, tmp_path):
    arrays = _arrays(model, tmp_path)
    manifest = _manifest(arrays)
    manifest["layers"].insert(1, {"name": "sm", "op": "softmax"})
    with pytest.raises(ValueError, match=r"layers\[1\]\.op: unsupported op 'softmax'"):
        ir.load(_write(tmp_path, _with_manifest(arrays, manifest)))


def test_unknown_attribute(model, tmp_path):
    arrays = _arrays(model, tmp_path)
    manifest = _manifest(arrays)
    manifest["layers"][0]["groups"] = 2
    with pytest.raises(ValueError, match=r"layers\[0\]\.groups: unknown attribute"):
        ir.load(_write(tmp_path, _with_manifest(arrays, manifest)))


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
