"""``lqflow verilog``, ``lqflow cosim`` and ``lqflow synth``: the hardware subcommands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .atomic import atomic_save_npy

__all__ = ["register", "add_folding_options", "foldings_from_args"]


def add_folding_options(p):
    p.add_argument("--pe", type=int, nargs="+", help="output channels per cycle: one value or one per dense layer")
    p.add_argument("--simd", type=int, nargs="+", help="inputs per cycle: one value or one per dense layer")
    p.add_argument("--target-ii", type=int, help="choose the cheapest folding reaching this initiation interval")


def foldings_from_args(model, args):
    from rtl.verilog import choose_foldings

    return choose_foldings(model, pe=args.pe, simd=args.simd, target_ii=args.target_ii)


def cmd_verilog(args):
    import hwsim
    from rtl.verilog import write_network

    model = hwsim.load(args.model)
    path, info = write_network(model, foldings_from_args(model, args), args.out)
    print(f"wrote {path} and {path.with_suffix('.json')}")
    for layer in info["layers"]:
        print(f"  {layer['name']}: {layer['in_features']}→{layer['out_features']}, PE {layer['pe']}, "
              f"SIMD {layer['simd']}, {layer['cycles_per_vector']} cycles/vector")
    print(f"latency {info['latency_cycles']} cycles, initiation interval {info['initiation_interval_cycles']} cycles")
    return 0


def cmd_cosim(args):
    import hwsim
    from rtl.cosim import cosim_network

    from .cli import inputs_from_args

    model = hwsim.load(args.model)
    foldings = foldings_from_args(model, args)
    x, labels = inputs_from_args(model, args)
    if args.limit:
        x = x[:args.limit]
        labels = None if labels is None else labels[:args.limit]
    build = args.build_dir or Path(args.model).with_suffix("").with_suffix(".cosim")
    res = cosim_network(model, x, foldings, build, stress=not args.no_stress, seed=args.bench_seed)
    print(f"samples: {res.samples}")
    print(f"mismatches against hwsim: {len(res.mismatches)} (clean), {len(res.stress_mismatches)} "
          f"(random input gaps + output backpressure)")
    print(f"cycles per inference (II): {res.ii} measured, {res.model_ii} cycle model")
    print(f"latency: {res.latency} cycles measured, {res.model_latency} cycle model")
    print(f"simulation: {res.samples_per_s:.0f} samples/s, {res.clean_cycles / res.clean_wall_s / 1e3:.0f} kcycles/s "
          f"(both phases {res.sim_s:.1f} s, Verilator build {res.build_s:.1f} s)")
    if labels is not None:
        acc = float(np.mean(res.outputs[:, -1] == labels))
        print(f"RTL accuracy on {args.dataset} {args.split}: {acc:.2%}")
    if args.save:
        atomic_save_npy(args.save, res.outputs[:, :len(model.classes)])
        print(f"wrote {args.save}: int64 {[res.samples, len(model.classes)]} (RTL logits)")
    bad = res.mismatches or res.stress_mismatches or res.ii != res.model_ii or res.latency != res.model_latency
    return 1 if bad else 0


def cmd_synth(args):
    from rtl.synth import figure_rows, synthesize

    folder = Path(args.folder)
    verilog, desc = folder / "lqflow_top.v", folder / "lqflow_top.json"
    if not verilog.is_file() or not desc.is_file():
        raise FileNotFoundError(f"{folder} holds no lqflow_top.v and lqflow_top.json; write them with 'lqflow verilog'")
    info = json.loads(desc.read_text())
    print(f"synthesizing for LFE5U-{args.device[:-1]}F (yosys synth_ecp5, nextpnr-ecp5) ...")
    report = synthesize(verilog, folder / "synth", device=args.device, target_mhz=args.freq)
    for row in figure_rows(report, info):
        print(f"  {row[0]:<22} {row[1]}")
    return 0


def register(sub):
    from .cli import _add_model_io

    p = sub.add_parser("verilog", help="generate Verilog for an IR model (dense layers)")
    p.add_argument("model", type=Path, help="IR file (.lqir.npz)")
    p.add_argument("-o", "--out", type=Path, required=True, help="output folder")
    add_folding_options(p)
    p.set_defaults(func=cmd_verilog)
    p = sub.add_parser("cosim", help="run the RTL under Verilator (cocotb) and compare with hwsim")
    _add_model_io(p)
    add_folding_options(p)
    p.add_argument("--build-dir", type=Path, help="Verilator build folder (default: beside the model)")
    p.add_argument("--limit", type=int, help="only the first N samples")
    p.add_argument("--no-stress", action="store_true", help="skip the random gaps / backpressure phase")
    p.add_argument("--bench-seed", type=int, default=0, help="seed of the random gaps and backpressure")
    p.set_defaults(func=cmd_cosim)
    p = sub.add_parser("synth", help="synthesize and place-and-route a 'lqflow verilog' folder for ECP5")
    p.add_argument("folder", type=Path, help="folder written by 'lqflow verilog'")
    p.add_argument("--device", default="25k", choices=["25k", "45k", "85k"], help="ECP5 size (default 25k)")
    p.add_argument("--freq", type=float, default=100.0, help="target clock in MHz (default 100)")
    p.set_defaults(func=cmd_synth)
