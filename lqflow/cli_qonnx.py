"""``lqflow import`` and ``lqflow export-qonnx``: QONNX graphs (Brevitas, FINN) into and out of the IR."""

from __future__ import annotations

from pathlib import Path

from lqir import DEFAULT_COEF_BITS, load, save

from .cli_common import check_output_file, positive_int

__all__ = ["register"]


def _describe_input(desc):
    """How real inputs ``x`` become the IR's level indices, in one line."""
    if desc["op"] == "BipolarQuant":
        return "level 1 where x >= 0, else 0 (BipolarQuant)"
    bits, signed, narrow = desc["bits"], desc["signed"], desc["narrow"]
    y = f"x / {desc['scale']:.6g}" + (f" + {desc['zero_point']:g}" if desc["zero_point"] else "")
    if signed and bits == 1:
        return f"level 1 where {y} >= 0, else 0 (1-bit signed Quant)"
    lo = -(2 ** (bits - 1)) + narrow if signed else 0
    hi = 2 ** (bits - 1) - 1 if signed else 2**bits - 1 - narrow
    shift = f" - ({lo})" if lo else ""
    return f"level = clip({desc['rounding_mode'].lower()}({y}), {lo}, {hi}){shift} (Quant)"


def cmd_import(args):
    from export.qonnx_import import import_qonnx

    check_output_file(args.out, "-o/--out", [args.model])
    model = import_qonnx(args.model, classes=args.classes, coef_bits=args.coef_bits)
    save(model, args.out)
    ops = ", ".join(f"{layer.name} ({layer.op})" for layer in model.layers)
    print(f"wrote {args.out}: {ops}")
    print(f"input {list(model.input.shape)}, {model.input.levels} levels: "
          f"{_describe_input(model.meta['qonnx']['input_quantizer'])}")
    print(f"logits = {model.logit_scale:.6g} × final accumulators; acc_bits "
          f"{[layer.acc_bits for layer in model.mac_layers()]}")
    return 0


def cmd_export_qonnx(args):
    from export.qonnx_export import INPUT, OUTPUT, export_qonnx

    check_output_file(args.out, "-o/--out", [args.model])
    model = load(args.model)
    export_qonnx(model, args.out, batch=args.batch)
    print(f"wrote {args.out}: QONNX graph for qonnx's execute_onnx, input '{INPUT}' "
          f"[{args.batch}, {', '.join(map(str, model.input.shape))}] (level indices), output '{OUTPUT}' "
          f"[{args.batch}, {len(model.classes)}] (final accumulators; logit_scale {model.logit_scale:.6g} "
          "in the metadata)")
    return 0


def register(sub):
    """Add ``import`` and ``export-qonnx`` to the ``lqflow`` subcommands."""
    p = sub.add_parser("import", help="read a QONNX graph (e.g. a Brevitas export) into the integer IR")
    p.add_argument("model", type=Path, help="QONNX file (.onnx) whose input passes through a Quant first")
    p.add_argument("-o", "--out", type=Path, required=True, help="output .lqir.npz")
    p.add_argument("--classes", nargs="+", help="class names (default 0..N-1)")
    p.add_argument("--coef-bits", type=positive_int, default=DEFAULT_COEF_BITS,
                   help="signed bits of the last layer's per-channel scale multipliers, when its channels "
                        f"have different scales (default {DEFAULT_COEF_BITS})")
    p.set_defaults(func=cmd_import)
    p = sub.add_parser("export-qonnx", help="write an IR model as a QONNX graph (Quant + MultiThreshold)")
    p.add_argument("model", type=Path, help="IR file (.lqir.npz)")
    p.add_argument("-o", "--out", type=Path, required=True, help="output .onnx")
    p.add_argument("--batch", type=positive_int, default=1,
                   help="batch size fixed in the graph (qonnx executes fixed shapes; default 1)")
    p.set_defaults(func=cmd_export_qonnx)
