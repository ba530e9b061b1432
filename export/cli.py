"""The ``lqflow`` command line: run, train, export, sim, verilog, cosim, synth, hls4ml."""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np

__all__ = ["main"]


def _add_training_options(p):
    p.add_argument("--dataset", default="digits", help="digits (default), mnist5k, or a .npz with x (uint8) and y")
    p.add_argument("--arch", default="mlp", choices=["mlp", "cnn"], help="reference network (default: mlp)")
    p.add_argument("--widths", type=int, nargs="+", default=[],
                   help="hidden widths (mlp, default 128 128) or channels (cnn, default 16 32)")
    p.add_argument("--quantizer", default="lq", choices=["lq", "uniform"], help="default: lq (LQ-Nets)")
    p.add_argument("--scale", default="max", choices=["max", "learned"], help="uniform quantizer scale")
    p.add_argument("--wbits", type=int, default=2, help="weight bits, 1-8 (default 2)")
    p.add_argument("--abits", type=int, default=2, help="activation bits, 1-8 (default 2)")
    p.add_argument("--epochs", type=int, default=30, help="float epochs (default 30)")
    p.add_argument("--qat-epochs", type=int, default=30, help="QAT epochs (default 30)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, init and batches (default 0)")
    p.add_argument("--coef-bits", type=int, default=8, help="bits of the integer basis coefficients (default 8)")
    p.add_argument("-o", "--out", type=Path, help="run folder (default runs/<dataset>-<arch>-<quantizer>-w<W>a<A>)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _run_config(args):
    from .flow import RunConfig

    return RunConfig(dataset=args.dataset, arch=args.arch, widths=tuple(args.widths), quantizer=args.quantizer,
                     scale=args.scale, weight_bits=args.wbits, act_bits=args.abits, float_epochs=args.epochs,
                     qat_epochs=args.qat_epochs, seed=args.seed, coef_bits=args.coef_bits)


def cmd_run(args):
    from .flow import run
    from .report import result_ladder_rows

    cfg = _run_config(args)
    hardware = None if args.no_rtl else dict(pe=args.pe, simd=args.simd, target_ii=args.target_ii,
                                              synth=not args.no_synth, hls4ml=not args.no_hls4ml)
    result, folder = run(cfg, args.out, progress=not args.quiet, hardware=hardware)
    rows = result_ladder_rows(result)
    _table(f"Verification ladder ({result['ladder']['samples']} test samples)",
           ["step", "check", "result", "status"], rows)
    figures = result.get("hardware", {}).get("synth_rows")
    if figures:
        _table("Hardware (ECP5, out of context)", ["figure", "value"], figures)
    extra = "".join(f", {sub}/" for sub in ("rtl", "hls4ml") if (folder / sub).is_dir())
    print(f"run folder: {folder}  (report.md, model.lqir.npz, training.png{extra})")
    print(f"wall time: {result['timings']['total_s']:.1f} s")
    failed = [row for row in rows if row[3] == "FAIL" and row[0] in ("4", "5", "6")]
    return 1 if failed else 0


def cmd_train(args):
    from models.data import load_dataset
    from models.train import save_checkpoint

    from .flow import train_models

    cfg = _run_config(args)
    folder = Path(args.out or cfg.default_folder())
    data = load_dataset(cfg.dataset, seed=cfg.seed)
    float_net, qat_net, _ = train_models(cfg, data, progress=not args.quiet)
    data_meta = {"name": data.name, "seed": cfg.seed, "classes": list(data.classes), "levels": data.levels}
    for sub, net in (("float", float_net), ("qat", qat_net)):
        save_checkpoint(folder / sub, net, {"run": asdict(cfg), "dataset": data_meta})
    print(f"checkpoints: {folder / 'float'} and {folder / 'qat'}")
    return 0


def cmd_export(args):
    from models.train import load_checkpoint

    from . import ir
    from .flow import export_checkpoint

    net, config = load_checkpoint(args.checkpoint)
    if "dataset" not in config:
        raise ValueError(f"{args.checkpoint}: config.json has no 'dataset' entry (was it written by lqflow train?)")
    model = export_checkpoint(net, config["dataset"], args.coef_bits, meta={"run": config.get("run")})
    out = ir.save(model, args.out)
    print(f"wrote {out}: {len(model.layers)} layers, acc_bits {[m.acc_bits for m in model.mac_layers()]}")
    return 0


def load_inputs(path):
    """A user's ``X.npy`` of level indices, read without pickles."""
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable .npy array of level indices ({exc})") from None


def dataset_split(model, dataset, split, seed):
    """The inputs and labels of a dataset split, checked against the model's input."""
    from models.data import load_dataset

    seed = model.meta.get("dataset", {}).get("seed", 0) if seed is None else seed
    x, y = load_dataset(dataset, seed=seed).split(split)
    if tuple(x.shape[1:]) != model.input.shape:
        raise ValueError(f"dataset {dataset!r} has inputs {list(x.shape[1:])}, the model expects {list(model.input.shape)}")
    return x, y


def inputs_from_args(model, args):
    """``(x, labels)`` from ``--inputs X.npy`` (labels None) or else ``--dataset``/``--split``."""
    if args.inputs is not None:
        return load_inputs(args.inputs), None
    return dataset_split(model, args.dataset, args.split, args.seed)


def cmd_sim(args):
    import hwsim

    from .atomic import atomic_save_npy

    model = hwsim.load(args.model)
    x, labels = inputs_from_args(model, args)
    acc = hwsim.Simulator(model, threads=args.threads, kernels=args.kernels).run(x, mode=args.mode)
    if args.save:
        atomic_save_npy(args.save, acc)
        print(f"wrote {args.save}: int64 {list(acc.shape)}")
    if labels is not None:
        print(f"{args.dataset} {args.split}: {len(labels)} samples, hwsim {args.mode} accuracy "
              f"{hwsim.accuracy(acc, labels):.2%}")
    elif not args.save:
        print(acc)
    return 0


def _table(title, header, rows):
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # rich is a dependency; plain text keeps the CLI usable without it
        print(title)
        for row in rows:
            print("  " + " | ".join(map(str, row)))
        return
    table = Table(title=title)
    for col in header:
        table.add_column(col)
    for row in rows:
        table.add_row(*map(str, row))
    Console().print(table)


def build_parser():
    parser = argparse.ArgumentParser(prog="lqflow", description="Quantized networks to bit-exact hardware.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="train, export, simulate, build the RTL and verify (the main job)")
    _add_training_options(p)
    from .cli_rtl import add_folding_options

    add_folding_options(p)
    p.add_argument("--no-rtl", action="store_true", help="stop after hwsim (no Verilog, co-simulation, synthesis)")
    p.add_argument("--no-synth", action="store_true", help="skip synthesis and place and route")
    p.add_argument("--no-hls4ml", action="store_true", help="skip the hls4ml project and its C simulation")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("train", help="train the float baseline and the quantized model")
    _add_training_options(p)
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("export", help="lower a QAT checkpoint folder to the integer IR")
    p.add_argument("checkpoint", type=Path, help="checkpoint folder (model.pt + config.json), e.g. runs/X/qat")
    p.add_argument("-o", "--out", type=Path, required=True, help="output .lqir.npz")
    p.add_argument("--coef-bits", type=int, default=8, help="bits of the integer basis coefficients (default 8)")
    p.set_defaults(func=cmd_export)
    p = sub.add_parser("sim", help="run an IR model in the bit-exact simulator")
    _add_model_io(p)
    p.add_argument("--mode", default="fast", choices=["fast", "bitplane"], help="default: fast")
    p.add_argument("--kernels", default="auto", choices=["auto", "numpy", "numba"],
                   help="fast mode's element-wise kernels (default auto: numba when installed)")
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="threads running chunks of the batch (default: every core)")
    p.set_defaults(func=cmd_sim)
    for register in _EXTENSIONS:
        register(sub)
    return parser


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text!r}")
    return value


def _add_model_io(p):
    p.add_argument("model", type=Path, help="IR file (.lqir.npz)")
    p.add_argument("--inputs", type=Path, help="X.npy: int level indices [B, *input.shape]")
    p.add_argument("--save", type=Path, help="OUT.npy: int64 final accumulators [B, classes]")
    p.add_argument("--dataset", default="digits", help="dataset to evaluate when no --inputs (default digits)")
    p.add_argument("--split", default="test", choices=["train", "val", "test"], help="default: test")
    p.add_argument("--seed", type=int, default=None, help="split seed (default: the one in the model's meta)")


def _register_hardware(sub):
    from .cli_rtl import register

    register(sub)


def _register_hls(sub):
    from .cli_hls import register

    register(sub)


# Subcommands that live in their own modules.
_EXTENSIONS = [_register_hardware, _register_hls]


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, ImportError, RuntimeError) as exc:
        print(f"lqflow {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
