"""``lqflow hls4ml``: write the hls4ml project, compile its C simulation, compare with hwsim."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .atomic import atomic_save_npy

__all__ = ["register", "hls_cosim"]


def hls_cosim(model, x, project_dir):
    """Write + compile the project and run hls4ml's C simulation on level indices ``x``.

    Returns (hls outputs int64 [B, classes], hwsim outputs, plan, compile seconds).
    """
    import hwsim

    from .hls import build_hls_model

    sim = hwsim.Simulator(model)
    x = sim.check_inputs(x)
    reference = sim.run(x)
    hls_model, plan = build_hls_model(model, project_dir)
    hls_model.write()
    t0 = time.perf_counter()
    hls_model.compile()
    compile_s = time.perf_counter() - t0
    raw = np.asarray(hls_model.predict(np.ascontiguousarray(x.reshape(len(x), -1), dtype=np.float64)))
    raw = raw.reshape(len(x), -1)
    if not np.array_equal(raw, np.rint(raw)):
        raise RuntimeError("hls4ml returned non-integer outputs: a precision in the project is too narrow")
    return raw.astype(np.int64), reference, plan, compile_s


def cmd_hls4ml(args):
    import hwsim

    from .cli import _table, dataset_split, load_inputs

    model = hwsim.load(args.model)
    if args.inputs is not None:
        x, labels = load_inputs(args.inputs), None
    else:
        x, labels = dataset_split(model, args.dataset, args.split, args.seed)
    out, reference, plan, compile_s = hls_cosim(model, x, args.out)
    bad = int(np.count_nonzero((out != reference).any(axis=1)))
    rows = [(layer.name, "Input" if layer.kind == "input" else "Dense" if layer.kind == "dense" else "ReLU",
             layer.n_out, ", ".join(f"{k} {v}" for k, v in layer.precision.items()), 1) for layer in plan.layers]
    _table(f"hls4ml project {args.out} (Vitis, io_parallel, Latency strategy)",
           ["layer", "type", "outputs", "precision", "reuse"], rows)
    print(f"C simulation compiled in {compile_s:.1f} s (g++)")
    print(f"samples: {len(out)}, mismatches against hwsim: {bad}")
    if labels is not None:
        print(f"hls4ml accuracy on {args.dataset} {args.split}: {np.mean(out.argmax(axis=1) == labels):.2%}")
    if args.save:
        atomic_save_npy(args.save, out)
        print(f"wrote {args.save}: int64 {list(out.shape)} (hls4ml C-simulation logits)")
    return 1 if bad else 0


def register(sub):
    from .cli import _add_model_io

    p = sub.add_parser("hls4ml", help="write an hls4ml project, run its C simulation, compare with hwsim")
    _add_model_io(p)
    p.add_argument("-o", "--out", type=Path, required=True, help="project folder")
    p.set_defaults(func=cmd_hls4ml)
