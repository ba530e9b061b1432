"""``lqflow compress``: safety-guided self-compression, float vs unsafe vs safe, verified in hwsim."""

from __future__ import annotations

import argparse
from pathlib import Path

from .cli_common import check_output_folder, positive_int, print_table

__all__ = ["register", "cmd_compress"]


def _fraction(text):
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be a fraction in (0, 1], not {text!r}")
    return value


def _non_negative(text):
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative number, not {text!r}")
    return value


def cmd_compress(args):
    from .compress import CompressRunConfig, hardware_estimate, run_compress

    cfg = CompressRunConfig(dataset=args.dataset, arch=args.arch, widths=tuple(args.widths), seeds=args.seeds,
                            first_seed=args.first_seed, act_quantizer=args.act_quantizer, act_bits=args.abits,
                            float_epochs=args.epochs, epochs=args.compress_epochs, gamma=args.gamma, lam=args.lam,
                            preserve=args.preserve, restore_margin=args.restore_margin, coef_bits=args.coef_bits)
    folder = check_output_folder(args.out or cfg.default_folder(), "-o/--out")
    result, folder = run_compress(cfg, folder, progress=not args.quiet, log=print,
                                  hardware=None if args.no_hardware else hardware_estimate)
    table = result["table"]
    print_table(f"Self-compression on {cfg.dataset} {cfg.arch}, {cfg.seeds} seed(s), mean ± std",
                table["header"], table["rows"])
    print(f"run folder: {folder}  (report.md, compress.json, split.json, preservation.json, compress.png, seed*/)")
    print(f"wall time: {result['timings']['total']:.1f} s")
    if not result["ok"]:
        print("hwsim verification FAILED for a compressed model (see compress.json: agreement, planes_equal)")
    return 0 if result["ok"] else 1


def register(sub):
    p = sub.add_parser("compress", help="self-compression with and without a preservation set, down to hwsim")
    p.add_argument("--dataset", default="digits", help="digits (default), mnist5k, or a .npz with x (uint8) and y")
    p.add_argument("--arch", default="mlp", choices=["mlp", "cnn"], help="reference network (default: mlp)")
    p.add_argument("--widths", type=int, nargs="+", default=[],
                   help="hidden widths (mlp, default 128 128) or channels (cnn, default 16 32)")
    p.add_argument("--seeds", type=positive_int, default=3, help="number of seeds (default 3)")
    p.add_argument("--first-seed", type=int, default=0, help="first seed (default 0)")
    p.add_argument("--abits", type=int, default=4, help="activation bits, 1-8 (default 4)")
    p.add_argument("--act-quantizer", default="uniform", choices=["uniform", "lq"],
                   help="activation quantizer (default uniform: exact power-of-two input coefficients)")
    p.add_argument("--epochs", type=positive_int, default=30, help="float epochs (default 30)")
    p.add_argument("--compress-epochs", type=positive_int, default=30, help="self-compression epochs (default 30)")
    p.add_argument("--gamma", type=_non_negative, default=0.1, help="weight of the size term Q (default 0.1)")
    p.add_argument("--lam", type=_non_negative, default=0.05, help="weight of the preservation loss (default 0.05)")
    p.add_argument("--preserve", type=_fraction, default=0.1,
                   help="preservation set size, fraction of the training split (default 0.1)")
    p.add_argument("--restore-margin", type=_non_negative, default=0.05,
                   help="preservation-accuracy drop between checks that revives channels (default 0.05)")
    p.add_argument("--coef-bits", type=int, default=8, help="bits of the integer input coefficients (default 8)")
    p.add_argument("-o", "--out", type=Path, help="run folder (default runs/compress-<dataset>-<arch>-a<abits>)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--no-hardware", action="store_true",
                   help="leave out the RTL columns (cycles per inference, estimated LUT4 and block RAM)")
    p.set_defaults(func=cmd_compress)
