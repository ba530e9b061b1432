"""A CNN's whole test split through the RTL under Verilator: every logit against hwsim,
cycles against the cycle model, and the co-simulation's speed.

    python benchmarks/cnn_cosim.py [--dataset digits|mnist5k] [--widths 16 32] [--epochs 3]
                                   [--out runs/cnn-cosim]

Trains the ``lqflow run --arch cnn`` network on the dataset (LQ W2/A2), lowers it, picks
``lqflow run``'s default folding (1 M inferences/s, else the fastest that fits the 25F) and
co-simulates every test sample: a clean phase, then random input gaps and output
backpressure.  Prints samples, mismatches, II, latency, the clean phase's cycles against
the model, and simulated samples per second.
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="mnist5k", choices=["digits", "mnist5k"])
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--epochs", type=int, default=3, help="float and QAT epochs each (default 3)")
    parser.add_argument("--out", type=Path, default=Path("runs/cnn-cosim"))
    args = parser.parse_args()
    from export.lower import lower
    from hwsim import Simulator
    from lqflow.flow import RunConfig, train_models
    from models.data import load_dataset
    from rtl.cosim import cosim_network
    from rtl.folding import fold_for_rate

    data = load_dataset(args.dataset, seed=0)
    cfg = RunConfig(dataset=args.dataset, arch="cnn", widths=tuple(args.widths), float_epochs=args.epochs,
                    qat_epochs=args.epochs)
    t0 = time.perf_counter()
    model = lower(train_models(cfg, data, progress=False)[1], data.classes)
    hw = Simulator(model).run(data.x_test)
    print(f"{args.dataset} CNN {args.widths}: trained in {time.perf_counter() - t0:.0f} s, "
          f"hwsim accuracy {(hw.argmax(axis=1) == data.y_test).mean():.2%} on {len(data.y_test)} test samples")
    foldings, note = fold_for_rate(model, 1_000_000, 150, "25k")
    print(f"folding: {note}")
    res = cosim_network(model, data.x_test, foldings, args.out, stress=True, seed=0)
    print(f"samples {res.samples}, mismatches {len(res.mismatches)} clean + {len(res.stress_mismatches)} stress, "
          f"II {res.ii} (model {res.model_ii}), latency {res.latency} (model {res.model_latency}), "
          f"clean phase {res.clean_cycles} cycles (model {res.model_clean_cycles}), "
          f"extra beats {sum(res.extra_beats.values())}")
    print(f"Verilator build {res.build_s:.0f} s, simulation {res.sim_s:.0f} s, "
          f"{res.samples_per_s:,.0f} samples/s in the clean phase")
    ok = (not res.mismatches and not res.stress_mismatches and res.clean_cycles == res.model_clean_cycles
          and (res.outputs[:, :-1] == hw).all())
    print("all equal" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
