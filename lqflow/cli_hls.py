"""``lqflow hls4ml``: write the hls4ml project, compile its C simulation, compare with hwsim."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import hwsim
from lqir import atomic_save_npy

from .cli_common import add_model_io, check_output_file, check_output_folder, input_paths, inputs_from_args, print_table

__all__ = ["register"]


def cmd_hls4ml(args):
    check_output_folder(args.out, "-o/--out", input_paths(args))
    if args.save:
        check_output_file(args.save, "--save", input_paths(args))
    from export.hls import HLS_CLASS, hls_cosim

    model = hwsim.load(args.model)
    x, labels = inputs_from_args(model, args)
    res = hls_cosim(model, x, args.out)
    rows = [(layer.name, HLS_CLASS[layer.kind], layer.n_out, ", ".join(f"{k} {v}" for k, v in layer.precision.items()), 1) for layer in res.plan]
    print_table(f"hls4ml project {args.out} (Vitis, io_parallel, Latency strategy)",
           ["layer", "type", "outputs", "precision", "reuse"], rows)
    print(f"C simulation compiled in {res.compile_s:.1f} s (g++)")
    print(f"samples: {len(res.outputs)}, mismatches against hwsim: {len(res.mismatches)}")
    if labels is not None:
        print(f"hls4ml accuracy on {args.dataset} {args.split}: {np.mean(res.outputs.argmax(axis=1) == labels):.2%}")
    if args.save:
        atomic_save_npy(args.save, res.outputs)
        print(f"wrote {args.save}: int64 {list(res.outputs.shape)} (hls4ml C-simulation logits)")
    return 1 if res.mismatches else 0


def register(sub):
    p = sub.add_parser("hls4ml", help="write an hls4ml project, run its C simulation, compare with hwsim")
    add_model_io(p)
    p.add_argument("-o", "--out", type=Path, required=True, help="project folder")
    p.set_defaults(func=cmd_hls4ml)
