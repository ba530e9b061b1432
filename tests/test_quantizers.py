"""Quantizer math: nearest-level encoding, QEM, straight-through gradients."""

import itertools

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from models.layers import QuantConfig
from models.quantizers import (LQActQuantizer, LQWeightQuantizer, UniformActQuantizer,
                               UniformWeightQuantizer, level_codes)


def brute_force(x, basis, encoding):
    """Nearest level by exhaustive search over all codes; ties to the smaller level."""
    bits = basis.shape[-1]
    best = []
    for value in x.tolist():
        levels = sorted(sum(b * (2 * c - 1 if encoding == "pm1" else c) for b, c in zip(basis.tolist(), code))
                        for code in itertools.product([0, 1], repeat=bits))
        best.append(min(levels, key=lambda lv: (abs(value - lv), lv)))
    return torch.tensor(best, dtype=torch.float32)


@given(bits=st.integers(1, 5), seed=st.integers(0, 2**16), encoding=st.sampled_from(["pm1", "bin"]))
def test_encoding_equals_brute_force_argmin(bits, seed, encoding):
    gen = torch.Generator().manual_seed(seed)
    q = LQActQuantizer(bits) if encoding == "bin" else LQWeightQuantizer(bits, 1, 16)
    q.basis.copy_(torch.rand(1, bits, generator=gen) * 2 - 0.5)
    x = torch.randn(200, generator=gen) * 2
    _, values, codes = q.encode(x)
    torch.testing.assert_close(values, brute_force(x, q.basis[0], encoding), rtol=0, atol=1e-5)
    # the returned codes reproduce the returned levels
    torch.testing.assert_close((codes[0] * q.basis[0]).sum(-1), values.reshape(-1), rtol=0, atol=1e-5)


def test_level_codes_are_the_binary_expansion():
    assert level_codes(2, "bin").tolist() == [[0, 0], [1, 0], [0, 1], [1, 1]]
    assert level_codes(2, "pm1").tolist() == [[-1, -1], [1, -1], [-1, 1], [1, 1]]


def _error(q, x):
    _, values, _ = q.encode(x)
    return float(((values - x) ** 2).sum())


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 8])
def test_weight_qem_does_not_increase_error(bits):
    torch.manual_seed(bits)
    w = torch.randn(6, 50) * 0.1
    q = LQWeightQuantizer(bits, 6, 50).train()
    before = _error(q, w)
    for _ in range(20):
        q(w)
        after = _error(q, w)
        assert after <= before * (1 + 1e-5)
        before = after


@pytest.mark.parametrize("bits", [1, 2, 3, 5])
def test_activation_qem_does_not_increase_error(bits):
    torch.manual_seed(bits)
    x = torch.relu(torch.randn(4000) * 1.5)
    q = LQActQuantizer(bits).train()
    before = _error(q, x)
    for _ in range(20):
        q(x)
        after = _error(q, x)
        assert after <= before * (1 + 1e-5)
        before = after
    assert after < _error(LQActQuantizer(bits), x)  # and it did improve on the initialization


def test_qem_step_solves_the_least_squares_problem():
    """With momentum removed, one QEM step lands on v* = (BᵀB + εI)⁻¹(Bᵀx + εv)."""
    torch.manual_seed(0)
    w = torch.randn(1, 40)
    q = LQWeightQuantizer(2, 1, 40)
    v0 = q.basis.clone()
    _, _, bits = q.encode(w)
    b = bits[0]
    expected = torch.linalg.solve(b.T @ b + 1e-4 * torch.eye(2), b.T @ w[0] + 1e-4 * v0[0])
    q.train()(w)
    torch.testing.assert_close(q.basis[0], 0.9 * v0[0] + 0.1 * expected)


def test_weight_ste_is_identity():
    w = torch.randn(3, 7, requires_grad=True)
    LQWeightQuantizer(2, 3, 7).eval()(w).backward(torch.arange(21.0).reshape(3, 7))
    torch.testing.assert_close(w.grad, torch.arange(21.0).reshape(3, 7))


def test_activation_ste_is_clipped_at_the_top_level():
    q = LQActQuantizer(2).eval()
    top = float(q.sorted_levels()[0][0, -1])
    x = torch.tensor([0.1, top * 0.5, top, top + 0.01, top * 3], requires_grad=True)
    q(x).sum().backward()
    assert x.grad.tolist() == [1.0, 1.0, 1.0, 0.0, 0.0]


def test_reference_initialization():
    q = LQWeightQuantizer(3, 2, fan=50)
    base = 0.6745 * (2 / 50) ** 0.5 / 4
    torch.testing.assert_close(q.basis, torch.tensor([[base, 2 * base, 4 * base]] * 2))
    a = LQActQuantizer(2)
    torch.testing.assert_close(a.basis, torch.tensor([[0.6745 * 2 / 3, 0.6745 * 4 / 3]]))


def test_uniform_levels_are_a_power_of_two_grid():
    x = torch.linspace(0, 3, 101)
    q = UniformActQuantizer(2).train()
    y = q(x)
    assert sorted(set(torch.round(y / (3 / 3), decimals=4).tolist())) == [0.0, 1.0, 2.0, 3.0]
    w = torch.tensor([[-1.0, -0.2, 0.3, 1.0]])
    qw = UniformWeightQuantizer(2, 1).train()
    assert (qw(w) * 3).round().tolist() == [[-3.0, -1.0, 1.0, 3.0]]


def test_learned_uniform_scale_gets_a_gradient():
    q = UniformActQuantizer(3, scale="learned").train()
    x = torch.rand(100) * 4
    q(x).sum().backward()
    assert q.scale.grad is not None and torch.isfinite(q.scale.grad).all()


@pytest.mark.parametrize("bad", [0, 9, 2.0, True, "2"])
def test_bits_are_validated(bad):
    with pytest.raises((TypeError, ValueError), match="bits"):
        QuantConfig("lq", bad, 2)
    with pytest.raises((TypeError, ValueError), match="bits"):
        LQActQuantizer(bad)


def test_unknown_method_is_rejected():
    with pytest.raises(ValueError, match="method must be one of lq, uniform, float"):
        QuantConfig("ternary")
