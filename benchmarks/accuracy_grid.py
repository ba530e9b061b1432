"""The verification ladder (steps 1–3) over architectures, quantizers and bit widths.

    python benchmarks/accuracy_grid.py [--dataset digits] [--epochs 30]

Prints a Markdown table: float, quantized (QAT) and hwsim test accuracy, the argmax
agreement between hwsim and the quantized PyTorch model, and ladder step 4 (fast mode,
traced and untraced, == bit-plane mode on every integer).
"""

import argparse
import itertools
import time

from lqflow.flow import RunConfig, export_checkpoint, train_models
from lqflow.ladder import verify
from models.data import load_dataset


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data = load_dataset(args.dataset, seed=args.seed)
    meta = {"name": data.name, "seed": args.seed, "classes": list(data.classes), "levels": data.levels}
    print("| arch | quantizer | W/A | float | QAT | hwsim | agreement | fast == bit-plane | seconds |")
    print("|---|---|---|---|---|---|---|---|---|")
    for arch, quant, (w, a) in itertools.product(["mlp", "cnn"], ["lq", "uniform"], [(1, 2), (2, 2), (3, 3)]):
        t0 = time.perf_counter()
        cfg = RunConfig(dataset=args.dataset, arch=arch, quantizer=quant, weight_bits=w, act_bits=a,
                        float_epochs=args.epochs, qat_epochs=args.epochs, seed=args.seed)
        float_net, qat_net, _ = train_models(cfg, data, progress=False)
        model = export_checkpoint(qat_net, meta)
        lad = verify(model, qat_net, float_net, data.x_test, data.y_test)
        print(f"| {arch} | {quant} | W{w}/A{a} | {lad.float_acc:.2%} | {lad.qat_acc:.2%} | {lad.hwsim_acc:.2%} | "
              f"{lad.agreement:.2%} | {'yes' if lad.planes_equal else 'NO'} ({lad.integers_compared:,}) | "
              f"{time.perf_counter() - t0:.0f} |", flush=True)


if __name__ == "__main__":
    main()
