"""QONNX in and out of the IR (issue 12): ``lqflow import`` and ``lqflow export-qonnx``.

* Brevitas networks trained here on digits (a few hundred steps each), exported with
  ``export_qonnx``, run by qonnx's ``execute_onnx`` and, imported, by hwsim: argmax agreement
  on the whole test split, and every integer equal for power-of-two scales.
* Random IR models (both weight encodings, 1–4 bits, dense and conv) through
  ``export-qonnx``: ``execute_onnx`` equals hwsim in every integer; exported and imported
  back, hwsim's integers are unchanged.
* Malformed and unsupported files: refused with the file's or the node's name.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from brevitas import nn as qnn
from brevitas.export import export_qonnx as brevitas_export
from brevitas.quant import (Int8WeightPerChannelFloat, Int8WeightPerTensorFixedPoint, SignedBinaryActPerTensorConst,
                            SignedBinaryWeightPerTensorConst, Uint8ActPerTensorFixedPoint, Uint8ActPerTensorFloat)
from onnx import TensorProto, helper, numpy_helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
from qonnx.custom_op.general.bipolar_quant import binary_quant
from qonnx.custom_op.general.multithreshold import multithreshold
from qonnx.custom_op.general.quant import quant as qonnx_quant
from qonnx.custom_op.general.trunc import trunc_v2
from qonnx.util.cleanup import cleanup_model
from torch import nn

import hwsim
from export.hls import hls_cosim
from hwsim import Simulator
from export.qonnx_export import QonnxExportError, build_qonnx, export_qonnx
from export.qonnx_import import QonnxImportError, import_qonnx, input_levels
from export.qonnx_quant import make_bipolar, make_multithreshold, make_quant, make_trunc
from lqflow.cli_qonnx import register
from lqir import DenseLayer, InputSpec, Model, bits_for_levels, load, save
from lqir.random_models import random_conv_model, random_dense_model, random_mac_layer

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("brevitas_digits", ROOT / "examples" / "brevitas_digits.py")
example = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(example)


# --- Brevitas networks on digits ---------------------------------------------------------

def _pot_mlp():
    """Power-of-two scales everywhere and no float bias: every integer must match."""
    return nn.Sequential(
        qnn.QuantIdentity(act_quant=example.PixelQuant, return_quant_tensor=True), nn.Flatten(),
        qnn.QuantLinear(64, 32, bias=False, weight_quant=Int8WeightPerTensorFixedPoint, weight_bit_width=4),
        qnn.QuantReLU(act_quant=Uint8ActPerTensorFixedPoint, bit_width=4, return_quant_tensor=True),
        qnn.QuantLinear(32, 10, bias=False, weight_quant=Int8WeightPerTensorFixedPoint, weight_bit_width=4))


def _binary_mlp():
    """Binary weights, bipolar inputs (pixels - 8) and bipolar hidden activations after batch-norm."""
    return nn.Sequential(
        qnn.QuantIdentity(act_quant=SignedBinaryActPerTensorConst, return_quant_tensor=True), nn.Flatten(),
        qnn.QuantLinear(64, 64, bias=False, weight_quant=SignedBinaryWeightPerTensorConst), nn.BatchNorm1d(64),
        qnn.QuantIdentity(act_quant=SignedBinaryActPerTensorConst, return_quant_tensor=True),
        qnn.QuantLinear(64, 10, bias=False, weight_quant=SignedBinaryWeightPerTensorConst))


def _cnn():
    """W2A2, per-channel float weight scales, padding, batch-norm, max-pool, a float-bias classifier."""
    w2 = dict(weight_quant=Int8WeightPerChannelFloat, weight_bit_width=2)
    return nn.Sequential(
        qnn.QuantIdentity(act_quant=Uint8ActPerTensorFloat, return_quant_tensor=True),
        qnn.QuantConv2d(1, 8, 3, padding=1, bias=False, **w2), nn.BatchNorm2d(8),
        qnn.QuantReLU(bit_width=2, return_quant_tensor=True), nn.MaxPool2d(2),
        qnn.QuantConv2d(8, 16, 3, bias=False, **w2), nn.BatchNorm2d(16),
        qnn.QuantReLU(bit_width=2, return_quant_tensor=True), nn.Flatten(),
        qnn.QuantLinear(64, 10, bias=True, **w2))


NETS = {  # name: (network, input offset, training steps)
    "w2a2_mlp": (lambda: example.build_mlp(hidden=32), 0.0, 150),
    "w4a4_pot_mlp": (_pot_mlp, 0.0, 150),
    "binary_mlp": (_binary_mlp, -8.0, 150),
    "w2a2_cnn": (_cnn, 0.0, 150),
}


@pytest.fixture(scope="module")
def brevitas_runs(digits, tmp_path_factory):
    """name -> (imported model, real test inputs, execute_onnx logits, labels), trained once."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny networks: one thread is fastest on a shared machine
    out, folder = {}, tmp_path_factory.mktemp("brevitas")
    try:
        for name, (build, offset, steps) in NETS.items():
            x_test = digits.x_test.astype(np.float32) + offset
            net = example.train(build(), digits.x_train.astype(np.float32) + offset, digits.y_train, steps=steps)
            path = folder / f"{name}.onnx"
            # TorchScript export: the same QONNX nodes as the dynamo exporter, in a tenth of the time
            brevitas_export(net, input_t=torch.from_numpy(x_test), export_path=str(path), dynamo=False)
            wrapper = cleanup_model(ModelWrapper(str(path)))
            logits = execute_onnx(wrapper, {wrapper.graph.input[0].name: x_test})[wrapper.graph.output[0].name]
            out[name] = (import_qonnx(path), x_test, logits, digits.y_test)
    finally:
        torch.set_num_threads(threads)
    return out


@pytest.mark.parametrize("name", list(NETS))
def test_brevitas_models_agree_with_qonnx(brevitas_runs, name):
    model, x, logits, labels = brevitas_runs[name]
    acc = hwsim.Simulator(model).run(input_levels(model, x))
    agreement = np.mean(acc.argmax(axis=1) == logits.argmax(axis=1))
    assert agreement >= 0.99, f"{name}: argmax agreement {agreement:.2%}"
    assert np.mean(acc.argmax(axis=1) == labels) > 0.6  # really trained
    assert np.allclose(acc * model.logit_scale, logits, atol=0.05 * np.abs(logits).max())


def test_power_of_two_scales_give_every_integer(brevitas_runs):
    model, x, logits, _ = brevitas_runs["w4a4_pot_mlp"]
    acc = hwsim.Simulator(model).run(input_levels(model, x))
    scaled = logits.astype(np.float64) / model.logit_scale
    np.testing.assert_array_equal(scaled, np.rint(scaled))
    np.testing.assert_array_equal(scaled.astype(np.int64), acc)
    assert np.log2(model.logit_scale) == np.round(np.log2(model.logit_scale))


def test_imported_layers_use_the_narrow_encodings(brevitas_runs):
    binary = brevitas_runs["binary_mlp"][0]
    assert [m.weight_encoding for m in binary.mac_layers()] == ["pm1", "pm1"]
    assert [m.in_bits for m in binary.mac_layers()] == [1, 1]          # bipolar levels: one bit
    pot = brevitas_runs["w4a4_pot_mlp"][0]
    assert pot.input.levels == 32 and pot.input.shape == (1, 8, 8)      # the pixel values are the levels
    assert [m.weight_bits for m in pot.mac_layers()] == [4, 4]
    assert [layer.op for layer in brevitas_runs["w2a2_cnn"][0].layers] == [
        "conv2d", "maxpool2d", "conv2d", "flatten", "dense"]


def test_input_levels_are_the_quantized_codes(brevitas_runs, digits):
    model, x, _, _ = brevitas_runs["w2a2_mlp"]  # scale-1 pixel quantizer: the codes are the pixels
    np.testing.assert_array_equal(input_levels(model, x), digits.x_test)
    with pytest.raises(ValueError, match="shape"):
        input_levels(model, x.reshape(len(x), -1))


@pytest.mark.parametrize("name", ["w4a4_pot_mlp", "binary_mlp", "w2a2_cnn", "w2a2_mlp"])
def test_imported_models_round_trip(brevitas_runs, tmp_path, name):
    model, x, _, _ = brevitas_runs[name]
    levels = input_levels(model, x)
    export_qonnx(model, tmp_path / "m.onnx", batch=len(x))
    again = import_qonnx(tmp_path / "m.onnx")
    acc, back = hwsim.Simulator(model).run(levels), hwsim.Simulator(again).run(levels)
    # the same logits; the integers may differ by a factor that moved into logit_scale
    # (bipolar levels come back as {0, 2} times the weights, not {-1, +1})
    ratio = model.logit_scale / again.logit_scale
    assert ratio == 2.0 ** np.round(np.log2(ratio))
    np.testing.assert_array_equal(acc * ratio, back)
    assert again.classes == model.classes


def test_hls4ml_runs_the_imported_mlp_exactly(brevitas_runs, tmp_path):
    model, x, _, _ = brevitas_runs["w2a2_mlp"]
    res = hls_cosim(model, input_levels(model, x[:100]), tmp_path / "prj")
    assert res.mismatches == []


def test_rtl_runs_the_imported_mlp_exactly(brevitas_runs, tmp_path):
    """Ladder step 5 on the imported model: the RTL under Verilator equals hwsim, cycles == model."""
    from rtl.cosim import cosim_network
    from rtl.folding import fold_network

    model, x, _, _ = brevitas_runs["w2a2_mlp"]
    levels = input_levels(model, x[:60])
    res = cosim_network(model, levels, fold_network(model, 400), tmp_path, stress=True, seed=1)
    assert res.mismatches == [] and res.stress_mismatches == [] and res.unresolved == []
    np.testing.assert_array_equal(res.outputs[:, :-1], Simulator(model).run(levels))
    assert (res.clean_cycles, res.ii) == (res.model_clean_cycles, res.model_ii)


# --- quantizer semantics against qonnx's own executors ---------------------------------------

@pytest.mark.parametrize("signed, narrow, bits, zero_point, rounding", [
    (0, 0, 2, 0.0, "ROUND"), (1, 0, 4, 0.0, "ROUND"), (1, 1, 3, 0.0, "FLOOR"), (0, 1, 5, 2.0, "CEIL"),
    (1, 0, 1, 0.0, "ROUND"), (0, 0, 8, -3.0, "HALF_UP"), (1, 1, 6, 1.0, "HALF_DOWN"), (1, 0, 3, 0.0, "DOWN")])
def test_quant_levels_match_qonnx(rng, signed, narrow, bits, zero_point, rounding):
    scale = 0.375
    ties = (np.arange(-40, 41) + 0.5) * scale  # exactly between two codes: the rounding mode decides
    x = np.concatenate([rng.normal(0, 20 * scale, 400), ties]).astype(np.float32)
    quant = make_quant(np.float32(scale), zero_point, bits, signed, narrow, rounding)
    expected = qonnx_quant(x, np.float32(scale), np.float32(zero_point), np.float32(bits), signed, narrow, rounding)
    np.testing.assert_array_equal(np.float32(quant.scale) * quant.q[quant.level(x)], expected)


def test_other_quantizers_match_qonnx(rng):
    x = np.concatenate([rng.normal(0, 4, 300), np.arange(-12, 12) * 0.25]).astype(np.float32)  # with ties
    bipolar = make_bipolar(0.5)
    np.testing.assert_array_equal(bipolar.scale * bipolar.q[bipolar.level(x)], binary_quant(x, np.float32(0.5)))
    trunc = make_trunc(0.25, 0.0, 2.0, 4, 1, 0, "FLOOR")
    expected = trunc_v2(x, np.float32(0.25), np.float32(0), np.float32(8), 0, 1, np.float32(2.0), np.float32(4), "FLOOR")
    np.testing.assert_array_equal(trunc.scale * trunc.q[trunc.level(x)], expected)
    thresholds = np.sort(rng.normal(0, 3, (1, 6)), axis=1).astype(np.float32)
    mt = make_multithreshold(thresholds, 2.0, -1.0)
    expected = multithreshold(x[:, None], thresholds, 2.0, -1.0)[:, 0]
    np.testing.assert_array_equal(mt.scale * mt.q[mt.level(x)], expected)


# --- random IR models through export-qonnx ------------------------------------------------

def _random(kind, seed):
    rng = np.random.default_rng(seed)
    wbits, abits = 1 + seed % 4, 1 + (seed // 4) % 4
    if kind == "dense":
        return random_dense_model(rng, [12, 9, 7, 4], wbits, abits), rng
    return random_conv_model(rng, (2, 6, 6), 3, wbits, abits), rng


def _execute(path, x):
    wrapper = ModelWrapper(str(path))
    return execute_onnx(wrapper, {"global_in": x.astype(np.float32)})["global_out"]


@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_random_models_export_exactly(tmp_path, kind):
    encodings = set()
    for seed in range(8):  # weight bits 1..4, activation bits 1..2, random encodings
        model, rng = _random(kind, seed)
        x = rng.integers(0, model.input.levels, size=(24,) + model.input.shape)
        export_qonnx(model, tmp_path / "m.onnx", batch=len(x))
        out = _execute(tmp_path / "m.onnx", x)
        np.testing.assert_array_equal(out, np.rint(out))
        np.testing.assert_array_equal(out.astype(np.int64), hwsim.Simulator(model).run(x))
        encodings |= {m.weight_encoding for m in model.mac_layers()}
    assert encodings == {"pm1", "bin"}


def _small_dense(rng):
    """A random MLP with small coefficients, so that its weights fit the IR's 8 bits on import."""
    fc0 = random_mac_layer(rng, DenseLayer, "fc0", weight_bits=3, in_bits=3, in_levels=6, output="threshold",
                           out_levels=4, coef_max=3, in_features=10, out_features=6)
    fc1 = random_mac_layer(rng, DenseLayer, "fc1", weight_bits=2, in_bits=2, in_levels=4, output="accumulate",
                           coef_max=3, in_features=6, out_features=3)
    return Model(InputSpec((10,), 6), (fc0, fc1), ("a", "b", "c"), 0.5)


@pytest.mark.parametrize("seed", range(3))
def test_random_models_round_trip(tmp_path, seed):
    rng = np.random.default_rng(seed)
    model = _small_dense(rng) if seed else random_conv_model(rng, (2, 6, 6), 3, 1, 2)  # 1 bit: factorable
    x = rng.integers(0, model.input.levels, size=(30,) + model.input.shape)
    export_qonnx(model, tmp_path / "m.onnx", batch=len(x))
    again = import_qonnx(tmp_path / "m.onnx")
    np.testing.assert_array_equal(hwsim.Simulator(again).run(x), hwsim.Simulator(model).run(x))
    props = {p.key: p.value for p in onnx.load(tmp_path / "m.onnx").metadata_props}
    assert float(props["logit_scale"]) == model.logit_scale == again.logit_scale
    assert again.classes == model.classes
    assert again.input.levels == 1 << bits_for_levels(model.input.levels)  # the input Quant's full range


def test_export_graph_follows_finn_conventions(rng):
    model = random_dense_model(rng, [6, 5, 3], 2, 2)
    graph = build_qonnx(model, batch=2).model.graph
    ops = [n.op_type for n in graph.node]
    assert ops.count("MultiThreshold") == 1 and ops.count("Gemm") == 2 and ops[0] == "Quant"
    assert all(n.domain == "qonnx.custom_op.general" for n in graph.node if n.op_type in ("Quant", "MultiThreshold"))


def test_export_refuses_accumulators_beyond_float32(rng):
    big = random_mac_layer(rng, DenseLayer, "huge", weight_bits=4, in_bits=4, in_levels=16, output="accumulate",
                           coef_max=2**20, in_features=64, out_features=2)
    model = Model(InputSpec((64,), 16), (big,), ("a", "b"), 1.0)
    with pytest.raises(QonnxExportError, match=r"layers\[0\] \(huge\): partial sums reach \d+, not below 2\*\*24"):
        build_qonnx(model)
    with pytest.raises(ValueError, match="batch"):
        build_qonnx(random_dense_model(rng, [4, 3], 2, 2), batch=0)


# --- malformed and unsupported graphs ------------------------------------------------------

def _quant(name, x, out, scale=1.0, bits=4, signed=0):
    inits = [numpy_helper.from_array(np.array(v, dtype=np.float32), f"{name}_{k}")
             for k, v in (("scale", scale), ("zero", 0.0), ("bits", bits))]
    node = helper.make_node("Quant", [x, *(i.name for i in inits)], [out], name=name,
                            domain="qonnx.custom_op.general", signed=signed, narrow=0, rounding_mode="ROUND")
    return node, inits


def _graph_file(path, body, n_in=4, n_out=3, weights_quantized=True, input_quant=True, conv=False, batch=2,
                qonnx_opset=1):
    """x[N, n_in] → Quant → Gemm (quantized weights) → ``body`` nodes → output, as a file
    (``conv``: x[N, 1, 4, 4] and a 3×3 Conv with ``n_out`` channels instead of the Gemm)."""
    nodes, inits = [], []
    x = "x"
    if input_quant:
        node, more = _quant("inq", "x", "xq")
        nodes.append(node), inits.extend(more)
        x = "xq"
    shape = (n_out, 1, 3, 3) if conv else (n_out, n_in)
    w = np.arange(np.prod(shape), dtype=np.float32).reshape(shape) % 3 - 1
    inits.append(numpy_helper.from_array(w * (1 if weights_quantized else 0.37), "w"))
    wname = "w"
    if weights_quantized:
        node, more = _quant("wq", "w", "wq", bits=2, signed=1)
        nodes.append(node), inits.extend(more)
        wname = "wq"
    nodes.append(helper.make_node("Conv" if conv else "Gemm", [x, wname], ["acc"], name="fc",
                                  **({} if conv else {"transB": 1})))
    tensor = "acc"
    for k, (op, extra_inputs, attrs, extra_inits) in enumerate(body):
        inits.extend(numpy_helper.from_array(np.asarray(v, dtype=np.float32), n) for n, v in extra_inits.items())
        nodes.append(helper.make_node(op, [tensor, *extra_inputs], [f"t{k}"], name=f"{op.lower()}{k}", **attrs))
        tensor = f"t{k}"
    in_shape = [batch, 1, 4, 4] if conv else [batch, n_in]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
                              [helper.make_tensor_value_info(tensor, TensorProto.FLOAT, None)], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13),
                                                    helper.make_opsetid("qonnx.custom_op.general", qonnx_opset)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return path


QUANT = ("Quant", ["s", "z", "b"], {"domain": "qonnx.custom_op.general", "signed": 0, "narrow": 0,
                                    "rounding_mode": "ROUND"}, {"s": 0.5, "z": 0.0, "b": 2.0})
CLASSIFY = [("Flatten", [], {"axis": 1}, {}), ("Gemm", ["w2"], {"transB": 1}, {"w2": np.ones((2, 3))})]
TRUNC = ("Trunc", ["ts", "tz", "tib", "tos", "tob"], {"domain": "qonnx.custom_op.general", "signed": 1, "narrow": 0,
                                                   "rounding_mode": "FLOOR"},
         {"ts": 0.25, "tz": 0.0, "tib": 8.0, "tos": 1.0, "tob": 3.0})
MULTITHRESHOLD = ("MultiThreshold", ["t"], {"domain": "qonnx.custom_op.general", "out_dtype": "UINT2"},
                  {"t": [[-1.0, 0.0, 2.5], [0.0, 0.5, 1.0], [-3.0, 1.0, 4.0]]})
ACCEPTED = {  # name: (graph options, IR ops)
    "relu + quant": (dict(body=[("Relu", [], {}, {}), QUANT, ("Gemm", ["w2"], {"transB": 1}, {"w2": np.eye(3)})]),
                     ["dense", "dense"]),
    "batch-norm + trunc": (dict(qonnx_opset=2, body=[
        ("BatchNormalization", ["g", "be", "mu", "var"], {}, {"g": [1.0, -2.0, 0.5], "be": [0.1, 0.0, -0.3],
                                                               "mu": [0.0, 1.0, -1.0], "var": [1.0, 4.0, 0.25]}),
        TRUNC, ("Gemm", ["w2"], {"transB": 1}, {"w2": np.ones((2, 3))})]), ["dense", "dense"]),
    "multithreshold": (dict(body=[MULTITHRESHOLD, ("Gemm", ["w2"], {"transB": 1}, {"w2": np.eye(3)}),
                                  ("Mul", ["k"], {}, {"k": [1.0, -0.5, 2.0]}), ("Add", ["a"], {}, {"a": 0.25})]),
                       ["dense", "dense"]),
    "conv + pool": (dict(conv=True, body=[("MaxPool", [], {"kernel_shape": [2, 2], "strides": [2, 2]}, {}),
                                          ("Mul", ["m"], {}, {"m": np.array([1.0, 2.0, 1.0]).reshape(1, 3, 1, 1)}),
                                          QUANT, *CLASSIFY]),
                    ["conv2d", "maxpool2d", "flatten", "dense"]),
}


@pytest.mark.parametrize("case", list(ACCEPTED))
def test_hand_made_graphs_import_exactly(tmp_path, rng, case):
    options, ops = ACCEPTED[case]
    path = _graph_file(tmp_path / "ok.onnx", batch=64, **options)
    model = import_qonnx(path)
    assert [layer.op for layer in model.layers] == ops
    x = rng.normal(0, 4, (64,) + model.input.shape).astype(np.float32)
    wrapper = cleanup_model(ModelWrapper(str(path)))
    logits = execute_onnx(wrapper, {wrapper.graph.input[0].name: x})[wrapper.graph.output[0].name]
    acc = hwsim.Simulator(model).run(input_levels(model, x))
    np.testing.assert_allclose(acc * model.logit_scale, logits, rtol=1e-6, atol=1e-6)


REFUSED = {
    "no input quantizer": (dict(input_quant=False), r"node 'Gemm_0' \(Gemm\): the graph's input must pass through "
                                                   "a quantizer first"),
    "float weights": (dict(weights_quantized=False), r"node 'Gemm_0' \(Gemm\): the weights '.*' are float"),
    "softmax": (dict(body=[("Softmax", [], {}, {})]), r"node 'Softmax_0' \(Softmax\): unsupported node"),
    "non-monotone": (dict(body=[("Abs", [], {}, {})]), r"node 'Abs_0' \(Abs\): a non-monotone activation"),
    "negative leaky slope": (dict(body=[("LeakyRelu", [], {"alpha": -0.5}, {})]),
                             r"node 'LeakyRelu_0' \(LeakyRelu\): alpha -0.5 < 0 makes the activation non-monotone"),
    "activation on logits": (dict(body=[("Relu", [], {}, {})]), r"node 'Relu_0' \(Relu\): an activation after "
                                                                "the last layer"),
    "product of activations": (dict(body=[("Mul", ["acc"], {}, {})]), r"node 'Mul_0' \(Mul\): combines two "
                                                                       "computed tensors"),
    "per-element constant": (dict(body=[("Add", ["c"], {}, {"c": np.ones((2, 3))})]),
                             r"node 'Add_0' \(Add\): a constant of shape \[2, 3\] is not one value per channel"),
    "unquantized activations": (dict(body=[("Relu", [], {}, {}), ("Gemm", ["w2"], {"transB": 1},
                                                                   {"w2": np.eye(3)})]),
                                r"node 'Gemm_1' \(Gemm\): reads activations that are not quantized"),
    "per-channel activation scale": (dict(body=[QUANT[:3] + ({"s": [0.5, 1.0, 2.0], "z": 0.0, "b": 2.0},)]),
                                     r"node 'Quant_\d' \(Quant\): scale has shape \[3\]: the importer needs one "
                                     "value per tensor"),
    "negative scale after max-pool": (
        dict(conv=True, body=[("MaxPool", [], {"kernel_shape": [2, 2], "strides": [2, 2]}, {}),
                              ("Mul", ["m"], {}, {"m": np.array([1.0, -1.0, 1.0]).reshape(1, 3, 1, 1)}), QUANT,
                              *CLASSIFY]),
        r"node 'MaxPool_0' \(MaxPool\): node 'Mul_0' \(Mul\) after it scales channel 1 by a negative factor"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_unsupported_graphs_are_refused_by_node(tmp_path, case):
    kwargs, pattern = REFUSED[case]
    path = _graph_file(tmp_path / "bad.onnx", kwargs.pop("body", []), **kwargs)
    with pytest.raises(QonnxImportError, match=pattern):
        import_qonnx(path)


def test_malformed_files_are_refused_by_name(tmp_path):
    good = _graph_file(tmp_path / "good.onnx", [])
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00\xffnot an onnx file at all" * 10)
    with pytest.raises(QonnxImportError, match="junk.onnx: not an ONNX model"):
        import_qonnx(junk)
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(QonnxImportError, match="cut.onnx: "):
        import_qonnx(cut)
    proto = onnx.load(good)
    del proto.graph.node[0]  # the input Quant: the weights' consumer now reads a missing tensor
    missing = tmp_path / "missing.onnx"
    missing.write_bytes(proto.SerializeToString())
    with pytest.raises(QonnxImportError, match=r"missing.onnx: node 'fc' \(Gemm\): input 'xq' is produced by no"):
        import_qonnx(missing)
    with pytest.raises(FileNotFoundError, match="nowhere.onnx"):
        import_qonnx(tmp_path / "nowhere.onnx")


# --- the command line ----------------------------------------------------------------------

def _cli(argv):
    parser = argparse.ArgumentParser(prog="lqflow")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_import_and_export(tmp_path, rng, capsys):
    model = random_dense_model(rng, [6, 5, 3], 2, 2)
    save(model, tmp_path / "m.lqir.npz")
    assert _cli(["export-qonnx", str(tmp_path / "m.lqir.npz"), "-o", str(tmp_path / "m.onnx"), "--batch", "5"]) == 0
    assert "input 'global_in' [5, 6] (level indices)" in capsys.readouterr().out
    assert _cli(["import", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "back.lqir.npz"),
                 "--classes", "x", "y", "z"]) == 0
    out = capsys.readouterr().out
    top = (1 << bits_for_levels(model.input.levels)) - 1
    assert "wrote" in out and f"level = clip(round(x / 1), 0, {top}) (Quant)" in out
    back = load(tmp_path / "back.lqir.npz")
    assert back.classes == ("x", "y", "z") and back.meta["source"] == "qonnx"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["back.lqir.npz", "m.lqir.npz", "m.onnx"]  # no temp files
    with pytest.raises(ValueError, match="is the input"):
        _cli(["import", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "m.onnx")])
    with pytest.raises(ValueError, match="classes: 2 names for 3 outputs"):
        _cli(["import", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "c.lqir.npz"), "--classes", "a", "b"])
