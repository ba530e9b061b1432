"""Train a small Brevitas MLP on scikit-learn's digits and export it as QONNX for ``lqflow import``.

    pip install -e '.[qonnx]' brevitas onnxoptimizer onnxscript
    python examples/brevitas_digits.py -o digits_mlp.onnx
    lqflow import digits_mlp.onnx -o digits_mlp.lqir.npz
    lqflow sim digits_mlp.lqir.npz                      # hwsim on the digits test split
    lqflow cosim digits_mlp.lqir.npz --limit 50         # the RTL under Verilator + cocotb, against hwsim
    lqflow hls4ml digits_mlp.lqir.npz -o digits_hls     # hls4ml's C simulation, against hwsim

The input quantizer has scale 1 and 5 unsigned bits, so its codes are the raw pixel values
0..16: exactly the level indices ``lqflow sim --dataset digits`` feeds.  The split is the
one ``lqflow`` uses (``models.data.load_dataset('digits', seed=0)``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from brevitas import nn as qnn
from brevitas.export import export_qonnx
from brevitas.inject.enum import ScalingImplType
from brevitas.quant import Int8WeightPerTensorFloat, Uint8ActPerTensorFloat
from torch import nn

from models.data import load_dataset

__all__ = ["PixelQuant", "build_mlp", "train", "accuracy", "main"]


class PixelQuant(Uint8ActPerTensorFloat):
    """Input quantizer of scale 1 and 5 unsigned bits: its codes are the pixel values themselves."""

    bit_width = 5
    scaling_impl_type = ScalingImplType.CONST
    scaling_const = 31.0   # the top code 31 maps to 31.0: scale = 31 / (2**5 - 1) = 1
    max_val = 31.0


def build_mlp(hidden=64, weight_bits=2, act_bits=2, in_features=64):
    """QuantIdentity → Flatten → [QuantLinear → BatchNorm → QuantReLU] → QuantLinear (the logits)."""
    return nn.Sequential(
        qnn.QuantIdentity(act_quant=PixelQuant, return_quant_tensor=True),
        nn.Flatten(),
        qnn.QuantLinear(in_features, hidden, bias=True, weight_quant=Int8WeightPerTensorFloat,
                        weight_bit_width=weight_bits),
        nn.BatchNorm1d(hidden),
        qnn.QuantReLU(bit_width=act_bits, return_quant_tensor=True),
        qnn.QuantLinear(hidden, 10, bias=True, weight_quant=Int8WeightPerTensorFloat, weight_bit_width=weight_bits),
    )


def train(net, x, y, steps=400, batch=128, lr=1e-2, seed=0):
    """Adam on random mini-batches (fixed seed); returns the network in eval mode."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x, y = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.long)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    net.train()
    for _ in range(steps):
        idx = torch.randint(0, len(x), (batch,), generator=gen)
        opt.zero_grad()
        nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
        opt.step()
    return net.eval()


def accuracy(net, x, y):
    with torch.no_grad():
        return float((net(torch.as_tensor(x, dtype=torch.float32)).argmax(1).numpy() == np.asarray(y)).mean())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--out", type=Path, default=Path("digits_mlp.onnx"), help="QONNX file to write")
    parser.add_argument("--steps", type=int, default=400, help="training steps (default 400)")
    args = parser.parse_args(argv)
    data = load_dataset("digits", seed=0)
    net = train(build_mlp(), data.x_train, data.y_train, steps=args.steps)
    print(f"Brevitas test accuracy: {accuracy(net, data.x_test, data.y_test):.2%}")
    export_qonnx(net, input_t=torch.as_tensor(data.x_test[:1], dtype=torch.float32), export_path=str(args.out))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
