"""The ``lqflow`` command line: run, train, export, sim, verilog, cosim, synth, hls4ml, sweep."""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path

import hwsim
from lqir import DEFAULT_COEF_BITS, atomic_save_npy, save

from . import cli_compress, cli_hardware, cli_hls, cli_qonnx, cli_sweep
from .cli_common import (UsageError, add_model_io, check_output_file, check_output_folder, describe_os_error,
                         input_paths, inputs_from_args, positive_int, print_table)
from .flow import COEF_BITS, RunConfig, data_meta_of, export_checkpoint, run, train_models

__all__ = ["main", "build_parser"]


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
    p.add_argument("--coef-bits", type=int, default=DEFAULT_COEF_BITS,
                   help=f"bits of the integer basis coefficients (default {DEFAULT_COEF_BITS})")
    p.add_argument("-o", "--out", type=Path, help="run folder (default runs/<dataset>-<arch>-<quantizer>-w<W>a<A>)")
    p.add_argument("--in-bits", type=int, default=None,
                   help="requantize input pixels to 2**N levels (default: keep every level), so that the first "
                        "layer pays N input planes")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _run_config(args):
    return RunConfig(dataset=args.dataset, arch=args.arch, widths=tuple(args.widths), quantizer=args.quantizer,
                     scale=args.scale, weight_bits=args.wbits, act_bits=args.abits, float_epochs=args.epochs,
                     qat_epochs=args.qat_epochs, seed=args.seed, coef_bits=args.coef_bits, in_bits=args.in_bits)


def _run_folder(args, cfg):
    """The run folder (``-o`` or the default), checked before anything is trained."""
    folder = Path(args.out or cfg.default_folder())
    inputs = [Path(cfg.dataset)] if cfg.dataset.endswith(".npz") else []
    return check_output_folder(folder, "-o/--out" if args.out else "run folder", inputs)


def cmd_run(args):
    cfg = _run_config(args)
    folder = _run_folder(args, cfg)
    hardware = None if args.no_rtl else dict(
        choose_foldings=lambda model: cli_hardware.foldings_from_args(model, args), freq_mhz=args.freq,
        synth=not args.no_synth, hls4ml=not args.no_hls4ml)
    result, folder = run(cfg, folder, progress=not args.quiet, hardware=hardware)
    print_table(f"Verification ladder ({result.ladder.samples} test samples)",
                ["step", "check", "result", "status"], [row.cells() for row in result.rows()])
    if result.hardware is not None and result.hardware.synth_rows:
        print_table("Hardware (ECP5, out of context)", ["figure", "value"], result.hardware.synth_rows)
    extra = "".join(f", {sub}/" for sub in ("rtl", "hls4ml") if (folder / sub).is_dir())
    print(f"run folder: {folder}  (report.md, model.lqir.npz, training.png{extra})")
    print(f"wall time: {result.timings['total_s']:.1f} s")
    return 1 if result.failed() else 0


def cmd_train(args):
    from models.data import load_dataset
    from models.train import save_checkpoint

    cfg = _run_config(args)
    folder = _run_folder(args, cfg)
    data = load_dataset(cfg.dataset, seed=cfg.seed, in_bits=cfg.in_bits)
    float_net, qat_net, _ = train_models(cfg, data, progress=not args.quiet)
    data_meta = data_meta_of(data, cfg)
    for sub, net in (("float", float_net), ("qat", qat_net)):
        save_checkpoint(folder / sub, net, {"run": asdict(cfg), "dataset": data_meta})
    print(f"checkpoints: {folder / 'float'} and {folder / 'qat'}")
    return 0


def cmd_export(args):
    from models.train import load_checkpoint

    lo, hi = COEF_BITS
    if not lo <= args.coef_bits <= hi:
        raise UsageError(f"--coef-bits: must be from {lo} to {hi}, not {args.coef_bits}")
    folder = Path(args.checkpoint)
    check_output_file(args.out, "-o/--out", [folder / "model.pt", folder / "config.json"])
    net, config = load_checkpoint(folder)
    if "dataset" not in config:
        raise ValueError(f"{args.checkpoint}: config.json has no 'dataset' entry (was it written by lqflow train?)")
    try:
        model = export_checkpoint(net, config["dataset"], args.coef_bits, meta={"run": config.get("run")})
    except ValueError as exc:  # the lowering names the layer or parameter; add the checkpoint
        raise ValueError(f"{folder}: {exc}") from None
    out = save(model, args.out)
    print(f"wrote {out}: {len(model.layers)} layers, acc_bits {[m.acc_bits for m in model.mac_layers()]}")
    return 0


def cmd_sim(args):
    if args.save:
        check_output_file(args.save, "--save", input_paths(args))
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


def build_parser():
    parser = argparse.ArgumentParser(prog="lqflow", description="Quantized networks to bit-exact hardware.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="train, export, simulate, build the RTL and verify (the main job)")
    _add_training_options(p)
    cli_hardware.add_folding_options(p)
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
    p.add_argument("--coef-bits", type=int, default=DEFAULT_COEF_BITS,
                   help=f"bits of the integer basis coefficients (default {DEFAULT_COEF_BITS})")
    p.set_defaults(func=cmd_export)
    p = sub.add_parser("sim", help="run an IR model in the bit-exact simulator")
    add_model_io(p)
    p.add_argument("--mode", default="fast", choices=["fast", "bitplane"], help="default: fast")
    p.add_argument("--kernels", default="auto", choices=["auto", "numpy", "numba"],
                   help="fast mode's element-wise kernels (default auto: numba when installed)")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="threads running chunks of the batch (default: every core)")
    p.set_defaults(func=cmd_sim)
    cli_hardware.register(sub)
    cli_hls.register(sub)
    cli_qonnx.register(sub)
    cli_compress.register(sub)
    cli_sweep.register(sub)
    return parser


def main(argv=None):
    """Run one command; every failure a user can cause (a bad file, option or output path)
    ends in one line ``lqflow CMD: error: ...`` on stderr and exit status 2."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except OSError as exc:  # a file the user named cannot be read or written
        print(f"lqflow {args.command}: error: {describe_os_error(exc)}", file=sys.stderr)
    except (ValueError, ImportError, RuntimeError) as exc:  # UsageError, every file/option check
        print(f"lqflow {args.command}: error: {exc}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
