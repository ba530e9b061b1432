"""Throughput of hwsim fast mode against PyTorch float32 inference, same network, same batch.

    python benchmarks/hwsim_vs_torch.py [--arch mlp|cnn] [--batch 8192] [--repeats 20]

Both run in this process on the same level-index batch (digits test images, tiled);
the ratio is hwsim samples/s over PyTorch samples/s (≥ 1.0: hwsim is at least as fast).
"""

import argparse
import time

import numpy as np
import torch

from export.flow import RunConfig, train_models
from export.lower import lower
from hwsim import Simulator
from models.data import load_dataset
from models.layers import QuantConfig
from models.nets import QuantNet


def best_rates(contenders, batch, repeats, rounds=5):
    """Best samples/s of each contender over interleaved rounds.

    Rounds alternate between the contenders, with a pause between blocks, so that
    neither is measured while the other's spin-waiting thread pool still holds a core.
    """
    best = {name: float("inf") for name in contenders}
    for fn in contenders.values():
        fn()  # warm up
    for _ in range(rounds):
        for name, fn in contenders.items():
            time.sleep(0.3)
            for _ in range(repeats):
                t0 = time.perf_counter()
                fn()
                best[name] = min(best[name], time.perf_counter() - t0)
    return {name: batch / t for name, t in best.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="mlp", choices=["mlp", "cnn"])
    parser.add_argument("--batch", type=int, default=8192)
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per round (5 rounds)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="PyTorch intra-op threads (default: PyTorch's own default)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    data = load_dataset("digits")
    cfg = RunConfig(arch=args.arch, float_epochs=2, qat_epochs=2)
    _, qat_net = train_models(cfg, data, progress=False)[:2]
    model = lower(qat_net, data.classes)
    float_net = QuantNet(qat_net.config.with_quant(QuantConfig("float"))).eval()
    float_net.load_state_dict(qat_net.state_dict(), strict=False)

    reps = -(-args.batch // len(data.x_test))
    x = np.concatenate([data.x_test] * reps)[: args.batch]
    xt = torch.as_tensor(x)
    sim = Simulator(model)

    def run_torch():
        with torch.inference_mode():
            float_net(xt)

    rates = best_rates({"hwsim": lambda: sim.run(x), "torch": run_torch}, args.batch, args.repeats)
    hw, pt = rates["hwsim"], rates["torch"]
    planes = best_rates({"planes": lambda: sim.run(x[:1024], mode="bitplane")}, 1024, 2, rounds=1)["planes"]
    print(f"network: digits {args.arch}, batch {args.batch}, torch threads {torch.get_num_threads()}, "
          f"hwsim arithmetic {sim.arithmetic()}")
    print(f"hwsim fast      : {hw:12,.0f} samples/s")
    print(f"PyTorch float32 : {pt:12,.0f} samples/s")
    print(f"hwsim bit-plane : {planes:12,.0f} samples/s")
    print(f"ratio hwsim fast / PyTorch = {hw / pt:.2f}")


if __name__ == "__main__":
    main()
