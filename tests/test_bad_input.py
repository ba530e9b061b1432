"""Every bad input a user can give the CLI: one clear line, exit status 2, nothing lost.

Each case builds its files in ``tmp_path`` and runs ``lqflow.cli.main``; the common
checks: exit status 2, one line ``lqflow CMD: error: ...`` on stderr naming the problem
(the file, field or option), no traceback, nothing trained, and the folder exactly as
before (no file changed, no file or folder added).  Memory bombs are also checked to
be refused before their data is read (``tracemalloc`` peak).
"""

import io
import json
import os
import pickle
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

import lqir
from lqflow import cli, flow
from lqflow.cli import main
from lqir.random_models import random_dense_model

# --- helpers ----------------------------------------------------------------------------


def _ir(tmp_path, name="m.lqir.npz"):
    """A valid IR file: input [16] (14 levels), dense 16 -> 8 -> 3."""
    return lqir.save(random_dense_model(np.random.default_rng(0), [16, 8, 3], 2, 2), tmp_path / name)


def _ir_arrays(tmp_path):
    path = tmp_path / "valid.lqir.npz"
    lqir.save(random_dense_model(np.random.default_rng(0), [16, 8, 3], 2, 2), path)
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    path.unlink()
    return arrays


def _ir_with_manifest(tmp_path, edit):
    """A valid IR whose manifest ``edit(manifest)`` changed, as ``bad.lqir.npz``."""
    arrays = _ir_arrays(tmp_path)
    manifest = json.loads(str(arrays["manifest"]))
    edit(manifest)
    arrays["manifest"] = np.array(json.dumps(manifest))
    np.savez(tmp_path / "bad.lqir.npz", **arrays)
    return tmp_path / "bad.lqir.npz"


def _npy_bytes(dtype, shape, data=b""):
    """An .npy stream whose header declares ``dtype`` and ``shape``, followed by ``data``."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                               "fortran_order": False, "shape": tuple(shape)})
    return buf.getvalue() + data


def _zip(path, members, zeros=None):
    """An .npz from raw members ``{name: bytes}``; ``zeros={name: (header bytes, n)}`` streams
    ``n`` zero bytes after the header (a zip bomb: tiny compressed, huge inflated)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, data in members.items():
            zf.writestr(f"{name}.npy", data)
        for name, (head, n) in (zeros or {}).items():
            with zf.open(f"{name}.npy", "w", force_zip64=True) as fh:
                fh.write(head)
                chunk = bytes(1 << 20)
                for _ in range(n >> 20):
                    fh.write(chunk)
    return path


def _ir_members(tmp_path):
    arrays = _ir_arrays(tmp_path)
    out = {}
    for key, arr in arrays.items():
        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=False)
        out[key] = buf.getvalue()
    return out


def _inputs(tmp_path, name="x.npy"):
    np.save(tmp_path / name, np.zeros((4, 16), np.int64))
    return tmp_path / name


def _sim(model, tmp_path, *extra):
    return ["sim", str(model), "--inputs", str(_inputs(tmp_path)), *extra]


def _net(arch="mlp"):
    import torch

    from models.layers import QuantConfig
    from models.nets import NetConfig, QuantNet

    torch.manual_seed(0)
    shape, widths = ((1, 4, 4), (8,)) if arch == "mlp" else ((1, 4, 4), (2,))
    return QuantNet(NetConfig(arch, shape, 5, 3, widths, QuantConfig("lq", 2, 2)))


def _checkpoint(tmp_path, net=None, name="ck"):
    """A valid, untrained checkpoint folder (cheap: no training)."""
    from models.train import save_checkpoint

    meta = {"dataset": {"name": "t", "seed": 0, "classes": ["0", "1", "2"], "levels": 5}}
    return save_checkpoint(tmp_path / name, net if net is not None else _net(), meta)


def _export(folder, tmp_path):
    return ["export", str(folder), "-o", str(tmp_path / "out.lqir.npz")]


def _edit_config(tmp_path, edit):
    folder = _checkpoint(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    edit(config)
    (folder / "config.json").write_text(json.dumps(config))
    return _export(folder, tmp_path)


def _replace_pt(tmp_path, data):
    folder = _checkpoint(tmp_path)
    (folder / "model.pt").write_bytes(data(folder / "model.pt") if callable(data) else data)
    return _export(folder, tmp_path)


def _net_with(edit):
    import torch

    net = _net()
    with torch.no_grad():
        edit(net)
    return net


class _Evil:
    """Unpickling this would create the file ``PWNED`` (it must never happen)."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (Path.touch, (Path(self.target),))


def _evil_zip_checkpoint(tmp_path):
    """A PyTorch zip checkpoint whose data.pkl runs code when unpickled without weights_only."""
    def swap(pt):
        src = zipfile.ZipFile(io.BytesIO(pt.read_bytes()))
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as dst:
            for info in src.infolist():
                data = src.read(info)
                if info.filename.endswith("data.pkl"):
                    data = pickle.dumps(_Evil(tmp_path / "PWNED"), protocol=2)
                dst.writestr(info, data)
        return out.getvalue()
    return _replace_pt(tmp_path, swap)


def _dataset(tmp_path, name="d.npz", **arrays):
    rng = np.random.default_rng(0)
    arrays.setdefault("x", rng.integers(0, 4, size=(len(arrays.get("y", range(40))), 5, 5)).astype(np.uint8))
    arrays.setdefault("y", np.repeat(np.arange(4), 10))
    np.savez(tmp_path / name, **arrays)
    return tmp_path / name


def _train(dataset, tmp_path):
    return ["train", "--dataset", str(dataset), "-o", str(tmp_path / "out"), "--quiet"]


def _read_only_dir(tmp_path):
    """A folder no file can be created in (root ignores mode bits: then /sys)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    if not os.access(folder, os.W_OK):
        return folder
    folder.chmod(0o755)
    folder.rmdir()
    try:
        with open("/sys/.lqflow-probe", "wb"):
            pass
    except OSError:
        return Path("/sys")
    Path("/sys/.lqflow-probe").unlink()
    pytest.skip("no read-only folder on this machine")


def _hls_cosim_unreachable(monkeypatch):
    """The hardware commands must refuse their output paths before any tool runs."""
    import sys
    import types

    def unreachable(*args, **kwargs):
        pytest.fail("a hardware tool ran before the output paths were checked")

    for name, func in (("rtl.cosim", "cosim_network"), ("export.hls", "hls_cosim")):
        fake = types.ModuleType(name)
        setattr(fake, func, unreachable)
        monkeypatch.setitem(sys.modules, name, fake)


# --- the cases: (id, setup(tmp_path) -> argv, what stderr must name) ------------------------

def _deep_manifest(tmp_path):
    arrays = _ir_arrays(tmp_path)
    arrays["manifest"] = np.array('{"format": "lqir", "version": 1, "meta": ' + "[" * 100000 + "]" * 100000 + "}")
    np.savez(tmp_path / "bad.lqir.npz", **arrays)
    return _sim(tmp_path / "bad.lqir.npz", tmp_path)


def _header_bomb(tmp_path, name="fc0.weight_code"):
    members = _ir_members(tmp_path)
    members[name] = _npy_bytes(np.uint8, (10**6, 10**6), b"\0" * 64)
    return _sim(_zip(tmp_path / "bad.lqir.npz", members), tmp_path)


def _manifest_bomb(tmp_path):
    members = _ir_members(tmp_path)
    members["manifest"] = _npy_bytes("<U268435456", (), b"\0" * 64)
    return _sim(_zip(tmp_path / "bad.lqir.npz", members), tmp_path)


def _zip_bomb(tmp_path, name):
    """``name`` inflates to 64 MiB from about 64 KiB: an unexpected member, or a declared
    one whose header says 64 bytes (8 int64) followed by 64 MiB of padding."""
    members = _ir_members(tmp_path)
    if name in members:
        members.pop(name)
        head = _npy_bytes(np.int64, (8,))
    else:
        head = _npy_bytes(np.uint8, (64 << 20,))
    return _sim(_zip(tmp_path / "bad.lqir.npz", members, zeros={name: (head, 64 << 20)}), tmp_path)


def _huge_layer(tmp_path):
    def edit(m):
        m["layers"][0]["in_features"] = 10**12
        m["input"]["shape"] = [10**12]
    return _sim(_ir_with_manifest(tmp_path, edit), tmp_path)


def _dataset_header_bomb(tmp_path):
    y = np.repeat(np.arange(4), 10)
    buf = io.BytesIO()
    np.save(buf, y)
    path = _zip(tmp_path / "d.npz", {"x": _npy_bytes(np.uint8, (40, 5000, 5000), b"\0" * 64), "y": buf.getvalue()})
    return _train(path, tmp_path)


def _sim_case(edit):
    return lambda t: _sim(_ir_with_manifest(t, edit), t)


def _set(path, value):
    def edit(m):
        node = m
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return edit


IR_CASES = [
    ("classes-int", _sim_case(_set(["output", "classes"], 10)), ["bad.lqir.npz", "output.classes"]),
    ("classes-null", _sim_case(_set(["output", "classes"], None)), ["output.classes", "list of class names"]),
    ("classes-string", _sim_case(_set(["output", "classes"], "012")), ["output.classes", "'012'"]),
    ("classes-numbers", _sim_case(_set(["output", "classes"], [0, 1, 2])), ["output.classes"]),
    ("unknown-top-key", _sim_case(_set(["extra"], 1)), ["extra: unknown manifest key"]),
    ("unknown-input-key", _sim_case(_set(["input", "mean"], 0.5)), ["input.mean: unknown key"]),
    ("unknown-output-key", _sim_case(_set(["output", "softmax"], True)), ["output.softmax: unknown key"]),
    ("input-not-object", _sim_case(_set(["input"], [16])), ["input: must be a JSON object"]),
    ("input-shape-string", _sim_case(_set(["input", "shape"], "16")), ["input.shape: must be a list"]),
    ("input-levels-missing", _sim_case(lambda m: m["input"].pop("levels")), ["input.levels"]),
    ("layers-not-list", _sim_case(_set(["layers"], {"fc0": 1})), ["layers: must be a list"]),
    ("layer-not-object", _sim_case(lambda m: m["layers"].insert(0, "dense")), ["layers[0]: must be a JSON object"]),
    ("layer-name-with-dot", _sim_case(_set(["layers", 0, "name"], "a.b")), ["layers[0].name"]),
    ("in-features-string", _sim_case(_set(["layers", 0, "in_features"], "16")), ["layers[0].in_features"]),
    ("logit-scale-bool", _sim_case(_set(["output", "logit_scale"], True)), ["output.logit_scale"]),
    ("logit-scale-nan", _sim_case(_set(["output", "logit_scale"], float("nan"))), ["output.logit_scale"]),
    ("meta-not-object", _sim_case(_set(["meta"], [1])), ["meta: must be a JSON object"]),
    ("deep-manifest", _deep_manifest, ["manifest: JSON nested too deeply"]),
    ("member-header-1e12", _header_bomb, ["layers[0].weight_code: shape must be [8, 16], not [1000000, 1000000]"]),
    ("unexpected-header-1e12", lambda t: _header_bomb(t, "junk"), ["junk: unexpected array"]),
    ("manifest-declares-1GiB", _manifest_bomb, ["manifest: declares 1 GiB"]),
    ("layer-declares-1e12", _huge_layer, ["layers[0]", "more than 256 MiB"]),
    ("zip-bomb-unexpected", lambda t: _zip_bomb(t, "junk"), ["junk: unexpected array"]),
    ("zip-bomb-padded-member", lambda t: _zip_bomb(t, "fc0.bias"), ["layers[0].bias", "its header declares 64 bytes"]),
    ("plain-npy-as-model", lambda t: _sim(_inputs(t, "model.npy"), t), ["model.npy", "plain .npy array"]),
    ("random-bytes-model", lambda t: (t.joinpath("r.lqir.npz").write_bytes(os.urandom(4096)),
                                      _sim(t / "r.lqir.npz", t))[1], ["r.lqir.npz: not an lqir file"]),
    ("empty-model", lambda t: (t.joinpath("e.lqir.npz").write_bytes(b""), _sim(t / "e.lqir.npz", t))[1],
     ["e.lqir.npz: not an lqir file"]),
    ("truncated-model", lambda t: (t.joinpath("c.lqir.npz").write_bytes(_ir(t).read_bytes()[:300]),
                                   _sim(t / "c.lqir.npz", t))[1], ["c.lqir.npz: not an lqir file"]),
    ("model-is-folder", lambda t: _sim(t, t), ["is a folder, not an IR file"]),
    ("missing-model", lambda t: _sim(t / "none.lqir.npz", t), ["none.lqir.npz: no such IR file"]),
    ("pickled-member", lambda t: _sim(_zip(t / "p.lqir.npz", {**_ir_members(t), "fc0.bias": pickle.dumps(1)}), t),
     ["layers[0].bias"]),
    ("object-array-member", lambda t: _sim(_zip(t / "p.lqir.npz", {
        **_ir_members(t), "fc0.bias": _npy_bytes(object, (8,), pickle.dumps([0] * 8))}), t),
     ["layers[0].bias", "pickled data"]),
]

INPUT_CASES = [
    ("inputs-random-bytes", lambda t: (t.joinpath("r.npy").write_bytes(os.urandom(256)),
                                       ["sim", str(_ir(t)), "--inputs", str(t / "r.npy")])[1],
     ["--inputs", "r.npy", "does not start with the .npy header"]),
    ("inputs-header-1e12", lambda t: (t.joinpath("b.npy").write_bytes(_npy_bytes(np.int64, (10**6, 10**6), b"\0" * 64)),
                                      ["sim", str(_ir(t)), "--inputs", str(t / "b.npy")])[1],
     ["--inputs", "b.npy", "truncated .npy file"]),
    ("inputs-pickle", lambda t: (np.save(t / "p.npy", np.array([{}], dtype=object), allow_pickle=True),
                                 ["sim", str(_ir(t)), "--inputs", str(t / "p.npy")])[1],
     ["--inputs", "p.npy", "pickled data"]),
    ("inputs-folder", lambda t: ["sim", str(_ir(t)), "--inputs", str(t)], ["--inputs", "is a folder"]),
    ("inputs-missing", lambda t: ["sim", str(_ir(t)), "--inputs", str(t / "none.npy")], ["--inputs", "none.npy"]),
    ("inputs-wrong-shape", lambda t: (np.save(t / "s.npy", np.zeros((2, 5), np.int64)),
                                      ["sim", str(_ir(t)), "--inputs", str(t / "s.npy")])[1],
     ["shape must be [B, 16]"]),
    ("inputs-out-of-range", lambda t: (np.save(t / "s.npy", np.full((2, 16), 99, np.int64)),
                                       ["sim", str(_ir(t)), "--inputs", str(t / "s.npy")])[1],
     ["level indices must lie in [0, 14)"]),
]


def _ro_save(t):
    return _sim(_ir(t), t, "--save", str(_read_only_dir(t) / "out.npy"))


def _parent_file(t):
    (t / "file").write_bytes(b"x")
    return t / "file" / "sub" / "out.npy"


OUTPUT_CASES = [
    ("save-read-only", _ro_save, ["--save", "cannot write in"]),
    ("save-onto-folder", lambda t: (t.joinpath("d").mkdir(), _sim(_ir(t), t, "--save", str(t / "d")))[1],
     ["--save", "is a folder"]),
    ("save-under-a-file", lambda t: _sim(_ir(t), t, "--save", str(_parent_file(t))), ["--save", "is a file, not a folder"]),
    ("save-onto-model", lambda t: _sim(_ir(t), t, "--save", str(t / "m.lqir.npz")),
     ["--save", "m.lqir.npz", "is the input"]),
    ("save-onto-inputs", lambda t: _sim(_ir(t), t, "--save", str(t / "x.npy")), ["--save", "x.npy", "is the input"]),
    ("save-onto-model-symlink", lambda t: (_ir(t), os.symlink(t / "m.lqir.npz", t / "link.npy"),
                                           _sim(t / "m.lqir.npz", t, "--save", str(t / "link.npy")))[2],
     ["--save", "is the input"]),
    ("export-onto-checkpoint-folder", lambda t: ["export", str(_checkpoint(t)), "-o", str(t / "ck")],
     ["-o/--out", "is a folder"]),
    ("export-onto-model-pt", lambda t: ["export", str(_checkpoint(t)), "-o", str(t / "ck" / "model.pt")],
     ["-o/--out", "model.pt", "is the input"]),
    ("export-onto-config", lambda t: ["export", str(_checkpoint(t)), "-o", str(t / "ck" / "config.json")],
     ["-o/--out", "config.json", "is the input"]),
    ("export-under-a-file", lambda t: ["export", str(_checkpoint(t)), "-o", str(_parent_file(t))],
     ["-o/--out", "is a file, not a folder"]),
    ("export-read-only", lambda t: ["export", str(_checkpoint(t)), "-o", str(_read_only_dir(t) / "m.lqir.npz")],
     ["-o/--out", "cannot write in"]),
    ("verilog-onto-model", lambda t: ["verilog", str(_ir(t)), "-o", str(t / "m.lqir.npz")],
     ["-o/--out", "is the input", "not a folder"]),
    ("verilog-under-a-file", lambda t: ["verilog", str(_ir(t)), "-o", str(_parent_file(t))],
     ["-o/--out", "is a file, not a folder"]),
    ("cosim-save-onto-model", lambda t: ["cosim", str(_ir(t)), "--inputs", str(_inputs(t)), "--save",
                                         str(t / "m.lqir.npz"), "--build-dir", str(t / "b")],
     ["--save", "is the input"]),
    ("cosim-build-dir-is-a-file", lambda t: ["cosim", str(_ir(t)), "--inputs", str(_inputs(t)),
                                             "--build-dir", str(t / "x.npy")], ["--build-dir", "not a folder"]),
    ("hls4ml-out-is-model", lambda t: ["hls4ml", str(_ir(t)), "--inputs", str(_inputs(t)), "-o",
                                       str(t / "m.lqir.npz")], ["-o/--out", "is the input"]),
    ("hls4ml-save-onto-inputs", lambda t: ["hls4ml", str(_ir(t)), "--inputs", str(_inputs(t)), "-o", str(t / "h"),
                                           "--save", str(t / "x.npy")], ["--save", "is the input"]),
    ("synth-folder-holds-a-file-named-synth", lambda t: (
        (t / "v").mkdir(), (t / "v" / "lqflow_top.v").write_text("module x; endmodule"),
        (t / "v" / "lqflow_top.json").write_text("{}"), (t / "v" / "synth").write_text("x"),
        ["synth", str(t / "v")])[-1], ["synth folder", "not a folder"]),
    ("run-onto-a-file", lambda t: ["run", "-o", str(_inputs(t)), "--quiet"], ["-o/--out", "x.npy", "not a folder"]),
    ("run-onto-the-dataset", lambda t: ["run", "--dataset", str(_dataset(t)), "-o", str(t / "d.npz")],
     ["-o/--out", "is the input"]),
    ("train-under-a-file", lambda t: ["train", "-o", str(_parent_file(t))], ["-o/--out", "is a file, not a folder"]),
    ("train-read-only", lambda t: ["train", "-o", str(_read_only_dir(t) / "run")], ["-o/--out", "cannot write in"]),
]


def _bn_var(value):
    def edit(net):
        net.blocks[1].bn.running_var[0] = value
    return edit


CHECKPOINT_CASES = [
    ("pt-truncated", lambda t: _replace_pt(t, lambda pt: pt.read_bytes()[:200]),
     ["model.pt: not a valid lqflow checkpoint"]),
    ("pt-empty", lambda t: _replace_pt(t, b""), ["model.pt: not a valid lqflow checkpoint", "empty"]),
    ("pt-random", lambda t: _replace_pt(t, os.urandom(4096)), ["model.pt: not a valid lqflow checkpoint"]),
    ("pt-raw-pickle", lambda t: _replace_pt(t, pickle.dumps(_Evil(t / "PWNED"))),
     ["model.pt: not a valid lqflow checkpoint"]),
    ("pt-zip-with-evil-pickle", _evil_zip_checkpoint, ["model.pt: not a valid lqflow checkpoint"]),
    ("pt-not-a-state-dict", lambda t: _replace_pt(t, lambda pt: _torch_bytes([1, 2, 3])),
     ["model.pt", "holds a list"]),
    ("pt-missing-parameter", lambda t: _replace_pt(t, lambda pt: _torch_bytes(
        {k: v for k, v in _net().state_dict().items() if not k.endswith("bn.running_var")})),
     ["model.pt", "running_var' is missing"]),
    ("pt-other-architecture", lambda t: _replace_pt(t, lambda pt: _torch_bytes(_net("cnn").state_dict())),
     ["model.pt", "does not match config.json"]),
    ("pt-wrong-shape", lambda t: _replace_pt(t, lambda pt: _torch_bytes(
        {**_net().state_dict(), "blocks.1.bn.running_var": __import__("torch").ones(9)})),
     ["model.pt", "blocks.1.bn.running_var"]),
    ("pt-nan-variance", lambda t: _export(_checkpoint(t, _net_with(_bn_var(float("nan")))), t),
     ["model.pt", "'blocks.1.bn.running_var' holds NaN or inf"]),
    ("pt-inf-weight", lambda t: _export(_checkpoint(t, _net_with(
        lambda n: n.blocks[2].linear.weight.__setitem__((0, 0), float("inf")))), t),
     ["model.pt", "'blocks.2.linear.weight' holds NaN or inf"]),
    ("pt-negative-variance", lambda t: _export(_checkpoint(t, _net_with(_bn_var(-1.0))), t),
     ["blocks.1.bn.running_var", "negative"]),
    ("config-in-levels-string", lambda t: _edit_config(t, _set(["net", "in_levels"], "5")),
     ["config.json", "net.in_levels"]),
    ("config-in-levels-float", lambda t: _edit_config(t, _set(["net", "in_levels"], 5.5)), ["net.in_levels"]),
    ("config-in-levels-bool", lambda t: _edit_config(t, _set(["net", "in_levels"], True)), ["net.in_levels"]),
    ("config-input-shape", lambda t: _edit_config(t, _set(["net", "input_shape"], [1, 4])), ["net.input_shape"]),
    ("config-widths-huge", lambda t: _edit_config(t, _set(["net", "widths"], [60000, 60000])),
     ["model.pt", "does not match config.json"]),
    ("config-arch", lambda t: _edit_config(t, _set(["net", "arch"], "rnn")), ["config.json", "rnn"]),
    ("config-quant", lambda t: _edit_config(t, _set(["net", "quant", "weight_bits"], 12)),
     ["config.json", "weight_bits"]),
    ("config-no-net", lambda t: _edit_config(t, lambda c: c.pop("net")), ["config.json", "'net'"]),
    ("config-classes-not-list", lambda t: _edit_config(t, _set(["dataset", "classes"], 3)),
     ["config.json", "dataset.classes"]),
    ("config-classes-count", lambda t: _edit_config(t, _set(["dataset", "classes"], ["a", "b"])),
     ["config.json", "dataset.classes"]),
    ("config-not-json", lambda t: (_checkpoint(t), (t / "ck" / "config.json").write_bytes(b"\xff{"),
                                   _export(t / "ck", t))[-1], ["config.json: not a valid lqflow checkpoint"]),
    ("config-deep", lambda t: (_checkpoint(t), (t / "ck" / "config.json").write_text("[" * 100000 + "]" * 100000),
                               _export(t / "ck", t))[-1], ["config.json: not a valid lqflow checkpoint"]),
    ("config-no-dataset", lambda t: _edit_config(t, lambda c: c.pop("dataset")), ["config.json has no 'dataset'"]),
    ("export-coef-bits-1", lambda t: _export(_checkpoint(t), t) + ["--coef-bits", "1"], ["--coef-bits"]),
    ("export-coef-bits-25", lambda t: _export(_checkpoint(t), t) + ["--coef-bits", "25"], ["--coef-bits"]),
    ("export-float-checkpoint", lambda t: _export(_checkpoint(t, _float_net()), t), ["float model"]),
    ("export-missing-checkpoint", lambda t: _export(t / "none", t), ["is not a checkpoint folder"]),
]


def _float_net():
    from models.layers import QuantConfig
    from models.nets import NetConfig, QuantNet

    return QuantNet(NetConfig("mlp", (1, 4, 4), 5, 3, (8,), QuantConfig("float")))


def _torch_bytes(obj):
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _labels(y, **extra):
    return lambda t: _train(_dataset(t, y=np.asarray(y), **extra), t)


DATASET_CASES = [
    ("levels-array", lambda t: _train(_dataset(t, levels=np.array([17, 17])), t), ["d.npz", "'levels'"]),
    ("levels-float", lambda t: _train(_dataset(t, levels=np.array(17.0)), t), ["d.npz", "'levels'"]),
    ("levels-below-pixels", lambda t: _train(_dataset(t, levels=np.array(2)), t), ["d.npz", "'levels' = 2"]),
    ("levels-huge", lambda t: _train(_dataset(t, levels=np.array(10**6)), t), ["d.npz", "'levels'"]),
    ("labels-negative", _labels(np.repeat([-1, 0, 1, 2], 10)), ["d.npz", "labels", "negative", "-1"]),
    ("labels-0..8-and-300", _labels(np.repeat([0, 1, 2, 3, 4, 5, 6, 7, 8, 300], 5)),
     ["d.npz", "found 0..8, 300", "classes 9..299"]),
    ("labels-one-class", _labels(np.zeros(40, int)), ["d.npz", "a single class", "at least 2"]),
    ("labels-class-missing", _labels(np.repeat([0, 1, 3], 10)), ["d.npz", "class 2 would"]),
    ("labels-too-few", _labels(np.repeat([0, 1, 2, 3], [10, 10, 10, 2])), ["d.npz", "class 3 has 2"]),
    ("labels-huge", _labels(np.repeat([0, 10**15], 20)), ["d.npz", "found 0, 1000000000000000"]),
    ("labels-float", _labels(np.repeat(np.arange(4.0), 10)), ["d.npz", "'y' must be 40 integer labels"]),
    ("labels-wrong-count", lambda t: _train(_dataset(t, y=np.repeat(np.arange(4), 10),
                                                     x=np.zeros((39, 5, 5), np.uint8)), t), ["'y' must be 39"]),
    ("x-float", lambda t: _train(_dataset(t, x=np.zeros((40, 5, 5), np.float32)), t), ["d.npz", "uint8 images"]),
    ("x-empty", lambda t: _train(_dataset(t, x=np.zeros((0, 5, 5), np.uint8), y=np.zeros(0, int)), t),
     ["d.npz", "uint8 images"]),
    ("x-one-dim", lambda t: _train(_dataset(t, x=np.zeros((40, 25), np.uint8)), t), ["d.npz", "uint8 images"]),
    ("x-missing", lambda t: (np.savez(t / "d.npz", y=np.arange(4)), _train(t / "d.npz", t))[1], ["must hold arrays"]),
    ("x-pickled", lambda t: _train(_zip(t / "d.npz", {"x": _npy_bytes(object, (1,), pickle.dumps([1])),
                                                      "y": _npy_bytes(np.int64, (1,), bytes(8))}), t),
     ["d.npz", "pickled data"]),
    ("x-header-bomb", _dataset_header_bomb, ["d.npz", "damaged or forged"]),
    ("dataset-random-bytes", lambda t: (t.joinpath("d.npz").write_bytes(os.urandom(999)), _train(t / "d.npz", t))[1],
     ["d.npz is not a readable .npz"]),
    ("dataset-is-npy", lambda t: (np.save(t / "d.npy", np.zeros(3)), (t / "d.npy").rename(t / "d.npz"),
                                  _train(t / "d.npz", t))[-1], ["d.npz", "plain .npy"]),
    ("dataset-folder", lambda t: ((t / "d.npz").mkdir(), _train(t / "d.npz", t))[1], ["--dataset", "d.npz"]),
    ("sim-dataset-bad-labels", lambda t: ["sim", str(_ir(t)), "--dataset", str(_dataset(t, y=np.repeat([0, 2], 20)))],
     ["d.npz", "class 1 would"]),
]

OPTION_CASES = [(f"{cmd} {' '.join(opt)}", (lambda c, o: lambda t: [c, *o, "-o", str(t / "out"), "--quiet"])(cmd, opt),
                 [word])
                for cmd in ("run", "train")
                for opt, word in [
                    (["--wbits", "9"], "--wbits"), (["--wbits", "0"], "--wbits"), (["--abits", "9"], "--abits"),
                    (["--widths", "0"], "--widths"), (["--widths", "8", "-3"], "--widths"),
                    (["--widths", "100000"], "--widths"), (["--coef-bits", "1"], "--coef-bits"),
                    (["--coef-bits", "25"], "--coef-bits"), (["--epochs", "0"], "--epochs"),
                    (["--qat-epochs", "-1"], "--qat-epochs"), (["--seed", "-1"], "--seed"),
                    (["--dataset", "cifar"], "--dataset"), (["--dataset", "missing.npz"], "--dataset"),
                ]]
OPTION_CASES.append(("run-default-folder-wbits-9", lambda t: ["run", "--wbits", "9"], ["--wbits"]))

CASES = IR_CASES + INPUT_CASES + OUTPUT_CASES + CHECKPOINT_CASES + DATASET_CASES + OPTION_CASES

#: refused by argparse (exit 2, usage + one error line)
ARGPARSE_CASES = [
    (["sim", "m.lqir.npz", "--threads", "0"], "--threads"),
    (["cosim", "m.lqir.npz", "--limit", "0"], "--limit"),
    (["cosim", "m.lqir.npz", "--limit", "-3"], "--limit"),
    (["verilog", "m.lqir.npz", "-o", "out", "--pe", "0"], "--pe"),
    (["verilog", "m.lqir.npz", "-o", "out", "--simd", "-1"], "--simd"),
    (["verilog", "m.lqir.npz", "-o", "out", "--target-ii", "0"], "--target-ii"),
    (["synth", "out", "--freq", "-5"], "--freq"),
    (["synth", "out", "--freq", "nan"], "--freq"),
    (["run", "--arch", "rnn"], "--arch"),
    (["train", "--wbits", "two"], "--wbits"),
    (["sim", "m.lqir.npz", "--mode", "gpu"], "--mode"),
]


def _snapshot(root):
    """Every path under ``root``: files with their bytes and mtime, folders by name."""
    out = {}
    for path in sorted(Path(root).rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink() or path.is_file():
            out[rel] = (path.read_bytes(), path.lstat().st_mtime_ns)
        else:
            out[rel] = "dir"
    return out


@pytest.fixture
def guarded(tmp_path, monkeypatch):
    """Runs in ``tmp_path``; fails the test if anything would be trained; restores modes."""
    monkeypatch.chdir(tmp_path)

    def no_training(*args, **kwargs):
        pytest.fail("training started for an input that should have been refused")

    monkeypatch.setattr(flow, "train_models", no_training)
    monkeypatch.setattr(cli, "train_models", no_training)
    _hls_cosim_unreachable(monkeypatch)
    yield tmp_path
    for path in [tmp_path, *tmp_path.rglob("*")]:
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o755)


@pytest.mark.parametrize("setup, expected", [pytest.param(s, e, id=i) for i, s, e in CASES])
def test_bad_input_is_one_clear_line(guarded, capsys, setup, expected):
    tmp_path = guarded
    argv = setup(tmp_path)
    before = _snapshot(tmp_path)
    capsys.readouterr()
    status = main(argv)
    out, err = capsys.readouterr()
    assert status == 2, (out, err)
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"lqflow {argv[0]}: error: "), err
    for word in expected:
        assert word in err, f"{word!r} not in {err!r}"
    assert "weights_only" not in err  # never advise unpickling
    assert _snapshot(tmp_path) == before  # nothing written, clobbered or left behind
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("argv, option", ARGPARSE_CASES, ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_bad_option_values_are_refused_by_the_parser(guarded, capsys, argv, option):
    _ir(guarded)
    before = _snapshot(guarded)
    with pytest.raises(SystemExit) as stop:
        main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and f"argument {option}" in err.splitlines()[-1]
    assert _snapshot(guarded) == before


@pytest.mark.parametrize("setup", [
    pytest.param(s, id=i) for i, s, _ in IR_CASES
    if i in ("member-header-1e12", "manifest-declares-1GiB", "layer-declares-1e12", "zip-bomb-unexpected",
             "zip-bomb-padded-member", "unexpected-header-1e12")])
def test_memory_bombs_are_refused_before_reading(tmp_path, setup):
    argv = setup(tmp_path)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError):
            lqir.load(argv[1])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"{peak / 2**20:.0f} MiB allocated"


def test_dataset_header_bomb_is_refused_before_reading(tmp_path):
    from models.data import load_dataset

    path = _dataset_header_bomb(tmp_path)[2]
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="damaged or forged"):
            load_dataset(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20


def test_valid_files_still_work(tmp_path, capsys):
    """The checks refuse only what is wrong: the valid counterparts of the cases above pass."""
    model = _ir(tmp_path)
    assert main(_sim(model, tmp_path, "--save", str(tmp_path / "new" / "out.npy"))) == 0
    assert np.load(tmp_path / "new" / "out.npy").shape == (4, 3)
    folder = _checkpoint(tmp_path)
    assert main(_export(folder, tmp_path)) == 0
    assert lqir.load(tmp_path / "out.lqir.npz").classes == ("0", "1", "2")
    assert main(["export", str(_checkpoint(tmp_path, _net("cnn"), "cnn")), "-o", str(tmp_path / "c.lqir.npz")]) == 0
    from models.data import load_dataset

    data = load_dataset(str(_dataset(tmp_path, levels=np.array(4))))
    assert data.classes == ("0", "1", "2", "3") and data.levels == 4


def test_run_config_names_match_the_models_package():
    from models.data import DATASETS
    from models.nets import ARCHS

    assert flow._DATASETS == DATASETS and flow._ARCHS == ARCHS


def test_cosim_refuses_verilog_written_for_other_foldings(tmp_path):
    from hwsim.cycles import Folding
    from rtl.cosim import cosim_network
    from rtl.verilog import write_network

    model = random_dense_model(np.random.default_rng(0), [16, 8, 3], 2, 2)
    x = np.zeros((2, 16), np.int64)
    verilog, _ = write_network(model, [Folding(2, 4), Folding(1, 8)], tmp_path / "rtl")
    with pytest.raises(ValueError, match=r"lqflow_top\.v: written for .*'fc0', 2, 4.*not for this model's foldings"):
        cosim_network(model, x, [Folding(4, 4), Folding(1, 8)], tmp_path / "build", verilog=verilog)
    verilog.with_suffix(".json").unlink()
    with pytest.raises(FileNotFoundError, match=r"no such network Verilog with its \.json beside it"):
        cosim_network(model, x, [Folding(2, 4), Folding(1, 8)], tmp_path / "build", verilog=verilog)
    assert not (tmp_path / "build").exists()      # refused before anything was built


@pytest.mark.parametrize("step", ["synthesize", "place_and_route"])
def test_synthesis_refuses_an_unknown_device_before_any_work(tmp_path, step):
    import rtl.synth

    with pytest.raises(ValueError, match=r"device must be one of 25k, 45k, 85k, not '12k'"):
        getattr(rtl.synth, step)(tmp_path / "design.v", tmp_path / "out", device="12k")
    assert not (tmp_path / "out").exists()
