"""Learned (LQ-Nets) and uniform quantizers with bit-operation-compatible bases.

A K-bit quantizer holds a basis ``v`` (one row per channel, or one row per layer) and
the 2**K codes ``b``; its levels are ``b · v`` with ``s(b) = 2b - 1`` ('pm1', weights)
or ``s(b) = b`` ('bin', activations).  Inputs are encoded to the nearest level through
the sorted levels and their midpoints; the codes follow the sort.  LQ-Nets refits the
basis by one quantization-error-minimization (QEM) step per training step, averaged the
way the reference (microsoft/LQ-Nets, TensorFlow ``assign_moving_average``) does it.

Every quantizer is device- and dtype-agnostic (constants follow its buffers) and pure in
eval mode (forward changes no buffer).
"""

import torch
from torch import nn

__all__ = [
    "NORM_PPF_0_75", "QEM_MOMENTUM", "WEIGHT_EPS", "level_codes", "BasisQuantizer",
    "LQWeightQuantizer", "LQActQuantizer", "UniformWeightQuantizer", "UniformActQuantizer",
]

NORM_PPF_0_75 = 0.6745
QEM_MOMENTUM = 0.9
WEIGHT_EPS = 1e-4
ENCODINGS = ("pm1", "bin")
_RESUMED_STEPS = 1000  # average steps credited to a basis-only (version 1) checkpoint


def level_codes(bits, encoding):
    """``[2**bits, bits]`` matrix: row k holds s(bit_j(k)) for j = 0..bits-1."""
    k = torch.arange(1 << bits)[:, None]
    b = ((k >> torch.arange(bits)) & 1).float()
    return 2 * b - 1 if encoding == "pm1" else b


class _ClippedSTE(torch.autograd.Function):
    """Forward the quantized value; pass the gradient where ``x <= upper`` (everywhere if None).

    ``x <= upper`` is the gradient of the reference's ``tf.minimum(x, top)``: ties pass.
    """

    @staticmethod
    def forward(ctx, x, quantized, upper):
        ctx.save_for_backward(None if upper is None else x <= upper)
        return quantized

    @staticmethod
    def backward(ctx, grad):
        (mask,) = ctx.saved_tensors
        return (grad if mask is None else grad * mask), None, None


class BasisQuantizer(nn.Module):
    """Nearest-level quantizer over ``levels = codes · basis``, one basis row per channel.

    ``channels`` rows quantize the leading dimension of the input channel-wise; a single
    row quantizes the whole tensor with one basis.
    """

    def __init__(self, bits, encoding, channels=1):
        super().__init__()
        if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 8:
            raise TypeError(f"Quantizer bits must be an integer from 1 to 8, not {bits!r}")
        if encoding not in ENCODINGS:
            raise ValueError(f"Quantizer encoding must be 'pm1' or 'bin', not {encoding!r}")
        self.bits, self.encoding, self.channels = bits, encoding, channels
        self.register_buffer("codes", level_codes(bits, encoding), persistent=False)
        self.register_buffer("basis", torch.zeros(channels, bits))

    def effective_basis(self):
        """The basis ``[C, K]`` the levels are made of."""
        return self.basis

    def sorted_levels(self):
        """Levels sorted ascending ``[C, L]`` and the code index of each ``[C, L]``."""
        levels = self.effective_basis() @ self.codes.T
        # The reference sorts with top_k (descending, equal levels lower index first) and
        # reverses; doing the same picks the same code when a degenerate basis ties levels.
        levels, order = torch.sort(levels, dim=1, descending=True, stable=True)
        return levels.flip(1), order.flip(1)

    def top_level(self, like):
        """The largest level of each row, shaped to broadcast against ``like``."""
        top = self.sorted_levels()[0][:, -1]
        return top.reshape((-1,) + (1,) * (like.dim() - 1)) if self.channels > 1 else top[0]

    def encode(self, x):
        """Sorted level index, value and basis codes of every element of ``x``."""
        levels, order = self.sorted_levels()
        rows = x.reshape(self.channels, -1) if self.channels > 1 else x.reshape(1, -1)
        midpoints = (levels[:, 1:] + levels[:, :-1]) / 2
        # Count the midpoints strictly below x: ties go to the lower level, like `x > thr`.
        index = torch.searchsorted(midpoints.contiguous(), rows.contiguous(), right=False)
        values = torch.gather(levels, 1, index)
        code_index = torch.gather(order, 1, index)
        return index, values.reshape(x.shape), self.codes[code_index]

    def extra_repr(self):
        return f"bits={self.bits}, encoding={self.encoding!r}, channels={self.channels}"


class _LQBase(BasisQuantizer):
    """LQ-Nets: one QEM least-squares refit of the basis per training step, averaged.

    The average is TensorFlow's zero-debiased ``assign_moving_average(basis, v*, 0.9)``,
    as the reference runs it: ``biased ← 0.9·biased + 0.1·v*`` from zero, ``t ← t + 1``,
    ``basis = biased / (1 − 0.9^t)``.  The first step therefore lands on v* itself; the
    initial basis only chooses the first step's codes.  ``basis`` is the basis in use,
    ``biased_basis`` and ``qem_steps`` the average's state (all three are checkpointed).
    """

    eps = 0.0
    clip_gradient = False
    _version = 2  # version 1 checkpoints have a basis but no average state

    def __init__(self, bits, encoding, channels=1):
        super().__init__(bits, encoding, channels)
        self.register_buffer("biased_basis", torch.zeros(channels, bits))
        self.register_buffer("qem_steps", torch.zeros((), dtype=torch.long))

    def forward(self, x):
        _, values, bits = self.encode(x.detach())
        # The reference clips at the top level of the basis that encoded x (before the update).
        upper = self.top_level(x) if self.clip_gradient else None
        if self.training:
            self._qem_step(x.detach().reshape(self.channels, -1), bits)
        return _ClippedSTE.apply(x, values, upper)

    @torch.no_grad()
    def _qem_step(self, rows, bits):
        """Average the least-squares basis in, zero-debiased like TensorFlow."""
        self.biased_basis.mul_(QEM_MOMENTUM).add_(self._least_squares(rows, bits), alpha=1 - QEM_MOMENTUM)
        self.qem_steps.add_(1)
        debias = 1 - QEM_MOMENTUM ** self.qem_steps.to(self.basis.dtype)
        self.basis.copy_(self.biased_basis / debias)

    def _least_squares(self, rows, bits):
        """``v* = (BᵀB + εI)⁻¹ (Bᵀx + εv)`` per row; ε = 0 for activations."""
        gram = torch.einsum("cnk,cnl->ckl", bits, bits)
        rhs = torch.einsum("cnk,cn->ck", bits, rows)
        # A bit plane never set ({0,1} codes) is an all-zero column of B and leaves BᵀB
        # singular; a unit ridge on that plane alone pins it to its old value.
        unset = (gram.diagonal(dim1=1, dim2=2) == 0).to(gram.dtype)
        ridge = unset + self.eps
        gram = gram + ridge[:, :, None] * torch.eye(self.bits, dtype=gram.dtype, device=gram.device)
        new, info = torch.linalg.solve_ex(gram, rhs + ridge * self.basis)
        # Still singular (two planes always set together) or non-finite input: the old
        # basis goes into the average, which leaves the debiased basis where it was.
        ok = (info == 0) & torch.isfinite(new).all(dim=1)
        return torch.where(ok[:, None], new, self.basis)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, *args, **kwargs):
        # Version 1 checkpoints hold only the basis: resume it as a long-running average
        # (0.9^1000 is 0 in floating point, so the debias factor is 1 and it is kept as is).
        version = local_metadata.get("version")
        if (version is None or version < 2) and prefix + "basis" in state_dict \
                and prefix + "qem_steps" not in state_dict:
            state_dict[prefix + "biased_basis"] = state_dict[prefix + "basis"].clone()
            state_dict[prefix + "qem_steps"] = torch.tensor(_RESUMED_STEPS)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, *args, **kwargs)


class LQWeightQuantizer(_LQBase):
    """LQ-Nets weights: {−1,+1} codes, one basis per output channel (or one shared).

    ``fan`` is the reference initialization's n (kernel² × out channels).
    """

    eps = WEIGHT_EPS

    def __init__(self, bits, channels, fan):
        super().__init__(bits, "pm1", channels)
        base = NORM_PPF_0_75 * (2.0 / fan) ** 0.5 / 2 ** (bits - 1)
        self.basis.copy_(base * 2.0 ** torch.arange(bits).expand(channels, bits))


class LQActQuantizer(_LQBase):
    """LQ-Nets activations (after ReLU): {0,1} codes, one basis per layer.

    Gradients pass straight through below the top level and are clipped above it.
    """

    clip_gradient = True

    def __init__(self, bits):
        super().__init__(bits, "bin", 1)
        self.basis.copy_(NORM_PPF_0_75 * 2 / (2**bits - 1) * 2.0 ** torch.arange(bits)[None])


class _UniformBase(BasisQuantizer):
    """Power-of-two basis ``scale · 2**j``; scale max-calibrated or learned (LSQ-style)."""

    def __init__(self, bits, encoding, channels, scale):
        super().__init__(bits, encoding, channels)
        if scale not in ("max", "learned"):
            raise ValueError(f"Uniform scale must be 'max' or 'learned', not {scale!r}")
        self.scale_mode = scale
        self.register_buffer("calibrated", torch.tensor(False))
        self.scale = nn.Parameter(torch.ones(channels)) if scale == "learned" else None
        self.register_buffer("max_scale", torch.ones(channels))

    def _observe(self, x):
        rows = x.detach().reshape(self.channels, -1)
        top = rows.abs().amax(dim=1).clamp_min(1e-8) / (2**self.bits - 1)
        if not bool(self.calibrated):
            self.max_scale.copy_(top)
            if self.scale is not None:
                self.scale.data.copy_(top)
            self.calibrated.fill_(True)
        else:
            self.max_scale.mul_(self.momentum).add_((1 - self.momentum) * top)

    def current_scale(self):
        return self.scale.abs() + 1e-8 if self.scale is not None else self.max_scale

    def effective_basis(self):
        scale = self.current_scale().detach()
        powers = 2.0 ** torch.arange(self.bits, dtype=scale.dtype, device=scale.device)
        return scale[:, None] * powers

    def forward(self, x):
        if self.training:
            self._observe(x)
            self.basis.copy_(self.effective_basis())  # kept in step for inspection
        scale = self.current_scale()
        _, values, _ = self.encode(x.detach())
        if self.scale is None:
            return _ClippedSTE.apply(x, values, self.top_level(x))
        shape = (-1,) + (1,) * (x.dim() - 1) if self.channels > 1 else ()
        s = scale.reshape(shape)
        lo, hi = self._grid_range()
        inner = (x / s).clamp(lo, hi)
        return s * (inner + (values / s - inner).detach())


class UniformWeightQuantizer(_UniformBase):
    """Uniform weights: {−1,+1} codes, levels ``scale · {±1, ±3, …}`` per channel."""

    momentum = 0.0  # weights are re-measured every step

    def __init__(self, bits, channels, scale="max"):
        super().__init__(bits, "pm1", channels, scale)

    def _grid_range(self):
        return -(2**self.bits - 1), 2**self.bits - 1


class UniformActQuantizer(_UniformBase):
    """Uniform activations: {0,1} codes, levels ``scale · {0, 1, …, 2**K − 1}``."""

    momentum = 0.9

    def __init__(self, bits, scale="max"):
        super().__init__(bits, "bin", 1, scale)

    def _grid_range(self):
        return 0, 2**self.bits - 1
