"""Our LQ quantizers against a NumPy transcription of the reference implementation.

The reference is ``learned_quantization.py`` of microsoft/LQ-Nets (``QuantizedWeight``,
``QuantizedActiv``) with TensorFlow's ``assign_moving_average(basis, new_basis, 0.9)``,
whose default ``zero_debias=True`` keeps a zero-initialized shadow ``biased`` and
``local_step`` and sets ``basis = biased / (1 - 0.9**local_step)``
(``tensorflow/python/training/moving_averages.py``, ``_zero_debias``).

The transcription follows the reference op by op, in float32 as it runs (and in float64,
where rounding is out of the way and any difference would be the algorithm's), including
what only matters off the beaten path: ``top_k`` tie order, the explicit 1- and 2-bit
inverses, and the lowest bin taking the all-(−1) (weights) or all-0 (activations) code
whatever the sort says.  The data keep the bases positive, where that last point is moot.
"""

import numpy as np
import pytest
import torch

from models.quantizers import (LQActQuantizer, LQWeightQuantizer, UniformActQuantizer,
                               UniformWeightQuantizer)

F32 = np.float32
MOVING_AVERAGES_FACTOR = 0.9
EPS = 0.0001
NORM_PPF_0_75 = 0.6745
STEPS = 5


# --- the reference, transcribed ---------------------------------------------------------

class ZeroDebiasedAverage:
    """``assign_moving_average(variable, value, 0.9)`` with ``zero_debias=True``."""

    def __init__(self, shape, dtype):
        self.f = np.dtype(dtype).type
        self.biased = np.zeros(shape, dtype)  # shadow variables start at zero, not at
        self.local_step = self.f(0)           # the variable's initial value
        self.decay = self.f(1.0 - MOVING_AVERAGES_FACTOR)  # TF works with 1 - decay

    def update(self, value):
        self.biased = self.biased - (self.biased - value) * self.decay
        self.local_step = self.local_step + self.f(1)
        return self.biased / (self.f(1) - (self.f(1) - self.decay) ** self.local_step)


def _level_multiplier(nbit, pm1, dtype):
    """``init_level_multiplier``: row i holds the bits of i, LSB first (0 → −1 for weights)."""
    rows = [[float((i >> j) & 1) for j in range(nbit)] for i in range(2**nbit)]
    codes = np.array(rows, dtype)
    return 2 * codes - 1 if pm1 else codes


def _thrs_multiplier(num_levels, dtype):
    m = np.zeros((num_levels - 1, num_levels), dtype)
    for i in range(1, num_levels):
        m[i - 1, i - 1] = m[i - 1, i] = 0.5
    return m


def _sorted_levels(level_codes, basis):
    """``top_k`` of the transposed levels (equal values: lower index first), reversed."""
    levels = (level_codes @ basis).T                      # [C, L]
    sort_id = np.argsort(-levels, axis=1, kind="stable")  # descending, ties by index
    levels = np.take_along_axis(levels, sort_id, axis=1)
    return levels[:, ::-1].T.copy(), sort_id[:, ::-1].T.copy()  # [L, C] each


class ReferenceWeight:
    """``QuantizedWeight`` on a ``[kh, kw, in, out]`` kernel, main training tower."""

    def __init__(self, nbit, num_filters, n, dtype=F32):
        base = NORM_PPF_0_75 * ((2.0 / n) ** 0.5) / (2 ** (nbit - 1))
        self.basis = np.array([[(2**j) * base] * num_filters for j in range(nbit)], dtype)
        self.nbit, self.dtype, self.average = nbit, dtype, ZeroDebiasedAverage(self.basis.shape, dtype)

    def step(self, x):
        nbit, basis, dtype = self.nbit, self.basis, self.dtype
        num_filters, num_levels = x.shape[-1], 2**nbit
        level_codes = _level_multiplier(nbit, True, dtype)
        levels, sort_id = _sorted_levels(level_codes, basis)
        thrs = _thrs_multiplier(num_levels, dtype) @ levels
        reshape_x = x.reshape(-1, num_filters)
        level_codes_channelwise = level_codes[sort_id]          # [L, C, nbit]
        y = np.zeros_like(x) + levels[0]
        bits_y = np.full((reshape_x.shape[0] * num_filters, nbit), -1.0, dtype)
        for i in range(num_levels - 1):
            g = x > thrs[i]
            y = np.where(g, levels[i + 1], y)
            per_element = np.broadcast_to(level_codes_channelwise[i + 1], (reshape_x.shape[0], num_filters, nbit))
            bits_y = np.where(g.reshape(-1)[:, None], per_element.reshape(-1, nbit), bits_y)
        bits_y = bits_y.reshape(-1, num_filters, nbit)
        BT = bits_y.transpose(2, 0, 1)
        BTxB = np.empty((nbit, nbit, num_filters), dtype)
        for i in range(nbit):
            for j in range(nbit):
                BTxB[i, j] = (BT[i] * BT[j]).sum(axis=0) + (EPS if i == j else 0.0)
        if nbit > 2:
            BTxB_inv = np.linalg.inv(BTxB.transpose(2, 0, 1)).transpose(1, 2, 0)
        elif nbit == 2:
            det = BTxB[0][0] * BTxB[1][1] - BTxB[0][1] * BTxB[1][0]
            BTxB_inv = np.stack([BTxB[1][1] / det, -BTxB[0][1] / det,
                                 -BTxB[1][0] / det, BTxB[0][0] / det]).reshape(nbit, nbit, num_filters)
        else:
            BTxB_inv = 1 / BTxB
        BTxX = np.stack([(BT[i] * reshape_x).sum(axis=0) for i in range(nbit)]) + dtype(EPS) * basis
        new_basis = np.stack([(BTxB_inv[i] * BTxX).sum(axis=0) for i in range(nbit)])
        self.basis = self.average.update(new_basis)
        return y, bits_y


class ReferenceActiv:
    """``QuantizedActiv``, main training tower; also returns the gradient mask."""

    def __init__(self, nbit, dtype=F32):
        init = [(NORM_PPF_0_75 * 2 / (2**nbit - 1)) * (2.0**i) for i in range(nbit)]
        self.basis = np.array(init, dtype)[:, None]               # [nbit, 1]
        self.nbit, self.dtype, self.average = nbit, dtype, ZeroDebiasedAverage(self.basis.shape, dtype)

    def step(self, x):
        nbit, num_levels, dtype = self.nbit, 2**self.nbit, self.dtype
        level_codes = _level_multiplier(nbit, False, dtype)
        levels, sort_id = _sorted_levels(level_codes, self.basis)
        thrs = _thrs_multiplier(num_levels, dtype) @ levels
        y = np.zeros_like(x)
        reshape_x = x.reshape(-1)
        bits_y = np.zeros((reshape_x.shape[0], nbit), dtype)
        for i in range(num_levels - 1):
            g = x > thrs[i]
            y = np.where(g, levels[i + 1], y)
            bits_y = np.where(g.reshape(-1)[:, None], level_codes[sort_id[i + 1][0]], bits_y)
        BT = bits_y.T
        BTxB = np.array([[(BT[i] * BT[j]).sum() for j in range(nbit)] for i in range(nbit)], dtype)
        BTxX = np.array([(BT[i] * reshape_x).sum() for i in range(nbit)], dtype)[:, None]
        new_basis = np.linalg.inv(BTxB) @ BTxX
        grad_mask = x <= levels[num_levels - 1]   # d/dx tf.minimum(x, top level)
        self.basis = self.average.update(new_basis)
        return y, bits_y, grad_mask


# --- ours against it -------------------------------------------------------------------

# float32: the reference's precision, where summation order and solve-versus-inverse
# differ at rounding level (up to 8e-6 seen, ill-conditioned 4-bit {0,1} codes); the
# margin is for other BLAS builds.  float64: the same algorithm with that noise out of the way.
RTOL = {F32: 3e-5, np.float64: 1e-10}


def _relative(a, b):
    return float(np.max(np.abs(a - b) / np.abs(b)))


def _start(ref, ours, dtype):
    """Check the initial bases agree, then give ours the reference's to the last bit."""
    np.testing.assert_allclose(ours.basis.numpy(), ref.basis.T, rtol=1e-6)
    ours.to(torch.float64 if dtype == np.float64 else torch.float32)
    ours.basis.copy_(torch.from_numpy(ref.basis.T.copy()))
    return ours.train()


def run_weight_comparison(nbit, dtype=F32, steps=STEPS, seed=0, shape=(3, 3, 8, 16)):
    """Max relative basis difference over ``steps`` training steps; asserts codes and levels."""
    rng = np.random.default_rng(seed)
    kh, kw, cin, out = shape
    ref = ReferenceWeight(nbit, out, n=kh * kw * out, dtype=dtype)
    ours = _start(ref, LQWeightQuantizer(nbit, out, fan=kh * kw * out), dtype)
    x = (rng.standard_normal(shape) * (2.0 / (kh * kw * cin)) ** 0.5).astype(dtype)
    worst = 0.0
    for _ in range(steps):
        # A level is a signed sum of basis entries; its rounding is relative to the basis.
        atol = RTOL[dtype] * float(np.abs(ref.basis).sum(axis=0).max())
        y_ref, bits_ref = ref.step(x)
        w = torch.from_numpy(x).permute(3, 2, 0, 1).contiguous()   # [out, in, kh, kw]
        _, _, codes = ours.encode(w)
        y = ours(w)
        # ours: [out, (in, kh, kw), K]  →  reference order [(kh, kw, in), out, K]
        codes = codes.reshape(out, cin, kh, kw, nbit).permute(2, 3, 1, 0, 4).reshape(-1, out, nbit)
        np.testing.assert_array_equal(codes.numpy(), bits_ref)
        np.testing.assert_allclose(y.permute(2, 3, 1, 0).numpy(), y_ref, rtol=0, atol=atol)
        assert (ref.basis > 0).all()   # the transcription's lowest-bin code is then the sorted one
        np.testing.assert_allclose(ours.basis.numpy(), ref.basis.T, rtol=RTOL[dtype])
        worst = max(worst, _relative(ours.basis.numpy(), ref.basis.T))
        x = x + (0.05 * np.abs(x).mean() * rng.standard_normal(shape)).astype(dtype)  # a "training step"
    return worst


def run_activation_comparison(nbit, dtype=F32, steps=STEPS, seed=0, size=4000, basis=None):
    rng = np.random.default_rng(seed)
    ref, ours = ReferenceActiv(nbit, dtype), LQActQuantizer(nbit)
    if basis is not None:  # both start from a given basis
        ref.basis = np.array(basis, dtype)[:, None]
        ours.basis.copy_(torch.tensor(basis)[None])
    ours = _start(ref, ours, dtype)
    worst = 0.0
    for _ in range(steps):
        x = np.maximum(rng.standard_normal(size) * 1.5 + 0.3, 0).astype(dtype).reshape(10, -1)
        y_ref, bits_ref, mask_ref = ref.step(x)
        xt = torch.from_numpy(x).requires_grad_()
        _, _, codes = ours.encode(xt.detach())
        y = ours(xt)
        y.sum().backward()
        np.testing.assert_array_equal(codes[0].numpy(), bits_ref)
        np.testing.assert_allclose(y.detach().numpy(), y_ref, rtol=RTOL[dtype])
        np.testing.assert_array_equal(xt.grad.numpy(), mask_ref.astype(dtype))
        assert (ref.basis > 0).all()
        np.testing.assert_allclose(ours.basis.numpy(), ref.basis.T, rtol=RTOL[dtype])
        worst = max(worst, _relative(ours.basis.numpy(), ref.basis.T))
    return worst


@pytest.mark.parametrize("dtype", [F32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("nbit", [1, 2, 3, 4])
def test_weight_qem_matches_the_reference(nbit, dtype):
    run_weight_comparison(nbit, dtype)


@pytest.mark.parametrize("dtype", [F32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("nbit", [1, 2, 3, 4])
def test_activation_qem_matches_the_reference(nbit, dtype):
    run_activation_comparison(nbit, dtype)


def test_tied_levels_take_the_reference_code():
    """A degenerate basis ties two levels; top_k's order decides which code they get."""
    run_activation_comparison(2, steps=1, basis=[0.5, 0.5])


def test_zero_debias_ignores_the_initial_basis():
    """Same codes from two initial bases: the first update is the least-squares basis."""
    # values well inside the bins of the initial levels 0, 0.45, 0.90, 1.35
    pick = torch.randint(8, (1000,), generator=torch.Generator().manual_seed(0))
    x = torch.tensor([0.0, 0.1, 0.4, 0.5, 0.85, 1.0, 1.3, 2.0])[pick]
    a, b = LQActQuantizer(2).train(), LQActQuantizer(2).train()
    b.basis.mul_(1.001)  # different basis, same codes on this data (checked below)
    assert torch.equal(a.encode(x)[2], b.encode(x)[2])
    a(x), b(x)
    torch.testing.assert_close(a.basis, b.basis, rtol=0, atol=0)


# --- eval-mode purity and the straight-through gradient ----------------------------------

QUANTIZERS = {
    "lq-weight": lambda: LQWeightQuantizer(3, 4, fan=36),
    "lq-act": lambda: LQActQuantizer(3),
    "uniform-weight": lambda: UniformWeightQuantizer(3, 4),
    "uniform-weight-learned": lambda: UniformWeightQuantizer(3, 4, scale="learned"),
    "uniform-act": lambda: UniformActQuantizer(3),
    "uniform-act-learned": lambda: UniformActQuantizer(3, scale="learned"),
}


@pytest.mark.parametrize("name", QUANTIZERS)
def test_eval_forward_changes_no_buffer(name):
    q = QUANTIZERS[name]()
    x = torch.relu(torch.randn(4, 9)) if "act" in name else torch.randn(4, 9)
    q.train()(x)  # a trained state, not just the initial one
    with torch.no_grad():
        for p in q.parameters():  # and an optimizer step after it (learned scales)
            p.mul_(1.5)
    before = {k: v.clone() for k, v in list(q.named_buffers()) + list(q.named_parameters())}
    q.eval()
    for _ in range(2):
        q(x * 3)
    after = dict(list(q.named_buffers()) + list(q.named_parameters()))
    assert before.keys() == after.keys()
    for k in before:
        assert torch.equal(before[k], after[k]), k


def test_activation_gradient_is_clipped_at_the_top_level_not_the_batch_maximum():
    q = LQActQuantizer(2).eval()
    levels = q.sorted_levels()[0][0]
    top = float(levels[-1])
    # None of these reach the top level: the batch's largest output is levels[-2].
    x = torch.tensor([0.0, float(levels[1]) + 0.01, float(levels[2]) + 0.01], requires_grad=True)
    q(x).sum().backward()
    assert x.grad.tolist() == [1.0, 1.0, 1.0]
    # and in training, the clip is the top level of the basis that encoded x
    q.train()
    x = torch.tensor([top - 0.01, top, top + 0.01], requires_grad=True)
    q(x).sum().backward()
    assert x.grad.tolist() == [1.0, 1.0, 0.0]
    assert float(q.sorted_levels()[0][0, -1]) != top  # the QEM step did move it
