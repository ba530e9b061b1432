"""Quantizer math: nearest-level encoding, QEM, straight-through gradients."""

import io
import itertools

import pytest
import torch
from torch import nn
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
    """The first step lands on v* = (BᵀB + εI)⁻¹(Bᵀx + εv) itself (zero-debiased average)."""
    torch.manual_seed(0)
    w = torch.randn(1, 40)
    q = LQWeightQuantizer(2, 1, 40)
    v0 = q.basis.clone()
    _, _, bits = q.encode(w)
    b = bits[0]
    expected = torch.linalg.solve(b.T @ b + 1e-4 * torch.eye(2), b.T @ w[0] + 1e-4 * v0[0])
    q.train()(w)
    torch.testing.assert_close(q.basis[0], expected)


def test_moving_average_is_zero_debiased():
    """basis_t = Σ 0.9^(t-s) 0.1 v*_s / (1 − 0.9^t), as TensorFlow's assign_moving_average."""
    torch.manual_seed(1)
    q = LQActQuantizer(3).train()
    solutions = []
    for _ in range(4):
        x = torch.relu(torch.randn(500) * 1.5)
        _, _, bits = q.encode(x)
        b = bits[0]
        solutions.append(torch.linalg.solve(b.T @ b, b.T @ x))
        q(x)
    t = len(solutions)
    biased = sum(0.9 ** (t - 1 - s) * 0.1 * v for s, v in enumerate(solutions))
    torch.testing.assert_close(q.basis[0], biased / (1 - 0.9**t))
    torch.testing.assert_close(q.biased_basis[0], biased)
    assert int(q.qem_steps) == t


def test_a_bit_plane_never_set_keeps_its_basis():
    q = LQActQuantizer(2).train()
    v0 = q.basis.clone()
    x = torch.rand(300) * 0.6  # below the midpoint to level (0, 1): the high bit never set
    _, _, bits = q.encode(x)
    assert not bits[0, :, 1].any()
    q(x)
    assert torch.isfinite(q.basis).all()
    torch.testing.assert_close(q.basis[0, 1], v0[0, 1])
    # the set plane still gets its least-squares value: the mean of the x that set it
    ones = bits[0, :, 0] == 1
    torch.testing.assert_close(q.basis[0, 0], x[ones].mean())


def test_a_singular_system_keeps_the_whole_basis():
    """Two planes only ever set together: no least-squares solution, the basis stays."""
    q = LQActQuantizer(2).train()
    v0 = q.basis.clone()
    q(torch.tensor([0.0, float(v0.sum())] * 10))
    torch.testing.assert_close(q.basis, v0)
    assert int(q.qem_steps) == 1


def _trained(q, steps=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q.train()
    for _ in range(steps):
        q(torch.relu(torch.randn(8, 20, generator=gen)))
    return q


@pytest.mark.parametrize("make", [lambda: LQActQuantizer(3), lambda: LQWeightQuantizer(2, 8, 20)])
def test_checkpoint_round_trip_resumes_the_same_average(make):
    a = _trained(make())
    state = a.state_dict()
    assert {"basis", "biased_basis", "qem_steps"} <= state.keys()
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    b = make()
    b.load_state_dict(torch.load(buffer, weights_only=True))
    for q in (a, b):
        _trained(q, steps=2, seed=1)
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key


def test_a_basis_only_checkpoint_still_loads():
    """A checkpoint from before the average state resumes its basis, then averages on."""
    net = nn.Sequential(LQActQuantizer(2))
    net[0].basis.copy_(torch.tensor([[0.3, 0.7]]))
    state = net.state_dict()
    del state["0.biased_basis"], state["0.qem_steps"]
    state._metadata["0"]["version"] = 1
    fresh = nn.Sequential(LQActQuantizer(2))
    fresh.load_state_dict(state)
    torch.testing.assert_close(fresh[0].basis, torch.tensor([[0.3, 0.7]]))
    x = torch.relu(torch.randn(400))
    _, _, bits = fresh[0].encode(x)
    b = bits[0]
    fresh.train()(x)
    expected = 0.9 * torch.tensor([0.3, 0.7]) + 0.1 * torch.linalg.solve(b.T @ b, b.T @ x)
    torch.testing.assert_close(fresh[0].basis[0], expected)


ALL_QUANTIZERS = [
    lambda: LQWeightQuantizer(3, 4, fan=36), lambda: LQActQuantizer(3),
    lambda: UniformWeightQuantizer(3, 4), lambda: UniformWeightQuantizer(3, 4, scale="learned"),
    lambda: UniformActQuantizer(3), lambda: UniformActQuantizer(3, scale="learned"),
]


@pytest.mark.parametrize("make", ALL_QUANTIZERS)
def test_constants_follow_the_buffers_device(make):
    """With the default device elsewhere ('meta'), a constant built without device= would clash."""
    q = make()
    x = torch.relu(torch.randn(4, 9)).requires_grad_()
    with torch.device("meta"):
        for mode in (True, False):
            q.train(mode)(x).sum().backward()
    assert all(t.device.type == "cpu" for t in list(q.buffers()) + list(q.parameters()))


@pytest.mark.parametrize("make", ALL_QUANTIZERS)
def test_float64_quantizers_stay_float64(make):
    q = make().double()
    x = torch.relu(torch.randn(4, 9, dtype=torch.float64))
    for mode in (True, False):
        assert q.train(mode)(x).dtype == torch.float64
    assert all(t.dtype in (torch.float64, torch.long, torch.bool) for t in q.buffers())


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


def test_uniform_activation_gradient_is_clipped_at_the_top_level():
    q = UniformActQuantizer(2).train()
    q(torch.tensor([0.0, 3.0]))  # scale 1: levels 0, 1, 2, 3
    x = torch.tensor([0.2, 1.4, 3.0, 3.2], requires_grad=True)  # the largest output is 3
    q.eval()(x[:2]).sum().backward()
    assert x.grad.tolist() == [1.0, 1.0, 0.0, 0.0]  # below the top: no clip at the batch max (1)
    x.grad = None
    q(x).sum().backward()
    assert x.grad.tolist() == [1.0, 1.0, 1.0, 0.0]


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
