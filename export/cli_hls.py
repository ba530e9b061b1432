"""``lqflow hls4ml``: write the hls4ml project, compile its C simulation, compare with hwsim."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .atomic import atomic_save_npy

__all__ = ["register"]


def cmd_hls4ml(args):
    import hwsim

    from .cli import _table, inputs_from_args
    from .hls import hls_cosim

    model = hwsim.load(args.model)
    x, labels = inputs_from_args(model, args)
    res = hls_cosim(model, x, args.out)
    rows = [(layer.name, "Input" if layer.kind == "input" else "Dense" if layer.kind == "dense" else "ReLU",
             layer.n_out, ", ".join(f"{k} {v}" for k, v in layer.precision.items()), 1) for layer in res.plan]
    _table(f"hls4ml project {args.out} (Vitis, io_parallel, Latency strategy)",
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
    from .cli import _add_model_io

    p = sub.add_parser("hls4ml", help="write an hls4ml project, run its C simulation, compare with hwsim")
    _add_model_io(p)
    p.add_argument("-o", "--out", type=Path, required=True, help="project folder")
    p.set_defaults(func=cmd_hls4ml)
