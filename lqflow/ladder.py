"""The verification ladder (``docs/architecture.md``, "The verification ladder") as types.

Every check is a :class:`LadderRow` with a :class:`Status`; callers read named fields,
never display labels.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from hwsim import Simulator, predict

__all__ = ["Status", "LadderRow", "Ladder", "AGREEMENT_MIN", "ACCURACY_GAP_MAX", "verify"]

AGREEMENT_MIN = 0.99        # step 3: argmax agreement of hwsim with the QAT model
ACCURACY_GAP_MAX = 0.005    # step 3: |hwsim − QAT| accuracy, 0.5 percentage points


class Status(str, enum.Enum):
    PASS = "PASS"
    FAIL = "FAIL"
    SKIP = "SKIP"
    INFO = ""           # a figure, not a check

    @classmethod
    def of(cls, ok):
        return cls.PASS if ok else cls.FAIL


@dataclass(frozen=True)
class LadderRow:
    step: int
    check: str
    result: str
    status: Status

    def cells(self):
        return (str(self.step), self.check, self.result, self.status.value)


@dataclass(frozen=True)
class Ladder:
    """Steps 1–4 on the test split: accuracies, agreement, fast == bit-plane."""

    float_acc: float
    qat_acc: float
    hwsim_acc: float
    agreement: float
    planes_equal: bool
    integers_compared: int
    samples: int

    @property
    def agreement_ok(self):
        return self.agreement >= AGREEMENT_MIN

    @property
    def accuracy_ok(self):
        return abs(self.hwsim_acc - self.qat_acc) <= ACCURACY_GAP_MAX + 1e-12

    def rows(self):
        return [
            LadderRow(1, "PyTorch float accuracy", f"{self.float_acc:.2%}", Status.INFO),
            LadderRow(2, "PyTorch quantized (QAT) accuracy", f"{self.qat_acc:.2%}", Status.INFO),
            LadderRow(3, "IR in hwsim accuracy (within 0.5 pt of QAT)", f"{self.hwsim_acc:.2%}",
                      Status.of(self.accuracy_ok)),
            LadderRow(3, "argmax agreement hwsim vs QAT (>= 99 %)", f"{self.agreement:.2%}",
                      Status.of(self.agreement_ok)),
            LadderRow(4, "hwsim fast == bit-plane (every integer, every layer; untraced logits too)",
                      f"{self.integers_compared:,} integers", Status.of(self.planes_equal)),
        ]


def verify(model, qat_net, float_net, x, y):
    """Steps 1–4 on ``(x, y)``; hwsim's answer is computed once and every mode compared with it."""
    from models.train import predict as torch_predict

    sim = Simulator(model)
    acc_fast, trace_fast = sim.run(x, mode="fast", trace=True)
    _, trace_planes = sim.run(x, mode="bitplane", trace=True)
    equal, compared = True, 0
    for name, arr in trace_fast.acc.items():
        equal &= bool(np.array_equal(arr, trace_planes.acc[name]))
        equal &= bool(np.array_equal(trace_fast.out[name], trace_planes.out[name]))
        compared += arr.size + trace_fast.out[name].size
    # The untraced path (fused kernels, chunks on every core) is the one users run.
    untraced = sim.run(x)
    equal &= bool(np.array_equal(untraced, acc_fast))
    compared += untraced.size
    hw_pred, q_pred = predict(acc_fast), torch_predict(qat_net, x)
    return Ladder(float_acc=float(np.mean(torch_predict(float_net, x) == y)),
                  qat_acc=float(np.mean(q_pred == y)), hwsim_acc=float(np.mean(hw_pred == y)),
                  agreement=float(np.mean(hw_pred == q_pred)), planes_equal=equal,
                  integers_compared=compared, samples=len(y))
