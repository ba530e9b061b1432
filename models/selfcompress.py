"""Self-compressing weights (Cséfalvay & Imber, arXiv 2301.13142): learned per-channel bit depths.

Every output channel ``o`` of a dense or conv layer owns a bit depth ``b_o`` and an
exponent ``e_o``; its weights are

    q(w) = 2^e · round(clamp(2^-e · w, -2^(b-1), 2^(b-1) - 1))

rounded to nearest with a straight-through gradient, so ``q`` is differentiable in ``w``,
in ``b`` (through the clamp bounds) and in ``e``.  ``b <= 0`` makes a channel exactly zero:
it is pruned, and with it the next layer's inputs it fed (:func:`size_term` counts that).

Two decisions make the exported integers exactly the forward pass's:

* **Bit depth.**  The forward uses the real ``b`` in the clamp bounds, as the paper does,
  in training and eval alike.  Its integers ``round(clamp(·))`` then lie in
  ``[round(-2^(b-1)), round(2^(b-1) - 1)]``, and the export stores each channel in the
  two's-complement width ``B`` of that range (:meth:`SelfCompressQuantizer.int_depth`):
  ``B = ceil(b)`` or one less when the rounded bounds already fit (``b = 1.3`` yields
  {-1, 0}: one bit).  No eval-time rounding of ``b`` changes a weight, so the exported
  integers are the forward's, bit for bit.  ``b`` is clamped to ``[0, max_bits]``
  (``max_bits`` = 8, the IR's widest weight).
* **Exponent.**  The paper's ``e`` is real; here the forward uses ``round(e)`` with a
  straight-through gradient, in training and eval alike.  An integer exponent is what
  lets the per-channel scale become an exact power-of-two factor in the IR's
  coefficients (the last layer shares one logit scale); rounding a real ``e`` only at
  export would rescale channels behind batch-norm's back.

:func:`self_compressing` wires these quantizers into a :class:`models.nets.QuantNet`
(activations keep lqflow's LQ or uniform quantizers, so the network is integer end to
end) and masks the activations of pruned channels to exactly 0, so that a pruned channel
is removable from the IR even in front of a zero-padded convolution.
"""

from dataclasses import dataclass

import torch
from torch import nn

from .layers import QuantConfig, QuantReLU
from .nets import ConvBlock, DenseBlock, NetConfig, QuantNet

__all__ = ["MAX_BITS", "SelfCompressConfig", "SelfCompressQuantizer", "MaskedQuantReLU", "self_compressing",
           "compress_quantizers", "init_from_float", "size_term", "size_report", "bit_parameters", "weight_count"]

#: The widest weight the IR holds (``lqir.model.MAX_BITS``); learned depths are capped here.
MAX_BITS = 8
ACT_QUANTIZERS = ("uniform", "lq")


class _RoundSTE(torch.autograd.Function):
    """Round to nearest (ties to even, like ``torch.round``); the gradient passes straight through."""

    @staticmethod
    def forward(ctx, x):
        return torch.round(x)

    @staticmethod
    def backward(ctx, grad):
        return grad


@dataclass(frozen=True)
class SelfCompressConfig:
    """How a network self-compresses.

    ``act_quantizer``/``act_bits``: the activation quantizer (``uniform``, max-calibrated, by
    default: its power-of-two basis lowers to exact input coefficients; or ``lq``).
    ``init_bits``: every channel's starting depth; the exponent starts where the channel's
    largest weight is not clipped (:func:`init_from_float`).
    """

    act_quantizer: str = "uniform"
    act_bits: int = 4
    init_bits: float = 8.0
    max_bits: int = MAX_BITS

    def __post_init__(self):
        if self.act_quantizer not in ACT_QUANTIZERS:
            raise ValueError(f"act_quantizer must be one of {', '.join(ACT_QUANTIZERS)}, not {self.act_quantizer!r}")
        if isinstance(self.act_bits, bool) or not isinstance(self.act_bits, int) or not 1 <= self.act_bits <= 8:
            raise ValueError(f"act_bits must be an integer from 1 to 8, not {self.act_bits!r}")
        if isinstance(self.max_bits, bool) or not isinstance(self.max_bits, int) or not 1 <= self.max_bits <= MAX_BITS:
            raise ValueError(f"max_bits must be an integer from 1 to {MAX_BITS}, not {self.max_bits!r}")
        if not 0 < self.init_bits <= self.max_bits:
            raise ValueError(f"init_bits must be in (0, max_bits = {self.max_bits}], not {self.init_bits!r}")


class SelfCompressQuantizer(nn.Module):
    """``q(w)`` with one learnable bit depth ``b`` and exponent ``e`` per output channel.

    Duck-types the parts of :class:`models.quantizers.BasisQuantizer` the lowering reads
    (``bits``, ``encoding``, ``encode``, ``effective_basis``): channel ``o`` is a ``B_o``-bit
    two's-complement integer with basis ``2^E_o · [1, 2, …, 2^(B_o-2), -2^(B_o-1)]``.
    """

    encoding = "bin"

    def __init__(self, channels, init_bits=8.0, init_exponent=-8.0, max_bits=MAX_BITS):
        # e = -8 is the reference's start; :meth:`calibrate` moves it to the float weights' range
        super().__init__()
        self.channels, self.max_bits = int(channels), int(max_bits)
        self.b = nn.Parameter(torch.full((self.channels,), float(init_bits)))
        self.e = nn.Parameter(torch.full((self.channels,), float(init_exponent)))

    # -- the depths and exponents the forward pass uses -----------------------------------
    def depth(self):
        """Real depth ``clamp(b, 0, max_bits)`` (differentiable): the forward's and ``Q``'s."""
        return self.b.clamp(0, self.max_bits)

    def _bounds(self, b):
        return -torch.exp2(b - 1), torch.exp2(b - 1) - 1

    @torch.no_grad()
    def int_range(self):
        """``(lo, hi)`` long ``[O]``: the integers the forward can produce, ``round`` of the clamp bounds."""
        lo, hi = self._bounds(self.depth())
        alive = self.alive()
        zero = torch.zeros_like(lo)
        return torch.where(alive, torch.round(lo), zero).long(), torch.where(alive, torch.round(hi), zero).long()

    @torch.no_grad()
    def int_depth(self):
        """Stored depth ``B`` (long ``[O]``): the two's-complement width of :meth:`int_range`, 0 if pruned.

        Between ``round(b)`` and ``ceil(b)``: a real ``b`` in ``(B-1, B]`` never needs more
        than ``B`` bits, and fewer when the rounded bounds already fit (``b = 1.3``: {-1, 0}).
        """
        lo, hi = self.int_range()
        width = torch.zeros_like(lo)
        for k in range(self.max_bits, 0, -1):   # the smallest k with -2^(k-1) <= lo and hi <= 2^(k-1) - 1
            fits = (lo >= -(2 ** (k - 1))) & (hi <= 2 ** (k - 1) - 1)
            width = torch.where(fits, torch.full_like(width, k), width)
        return torch.where(self.alive(), width, torch.zeros_like(width))

    def int_exponent(self):
        """Integer exponent ``E = round(e)`` (long ``[O]``)."""
        return torch.round(self.e.detach()).long()

    def alive(self):
        """Bool ``[O]``: channels not pruned (``b > 0``)."""
        return self.b.detach() > 0

    @property
    def bits(self):
        """The layer's weight planes in the IR: its widest stored depth (at least 1)."""
        return max(1, int(self.int_depth().max()))

    def _clipped(self, w, e):
        """``clamp(2^-e · w, lo(b), hi(b))`` with the gradient to the bound that clips, else to w."""
        shape = (-1,) + (1,) * (w.dim() - 1)
        lo, hi = (t.reshape(shape) for t in self._bounds(self.depth()))
        scaled = w * torch.exp2(-e)
        return torch.where(scaled < lo, lo, torch.where(scaled > hi, hi, scaled))

    def forward(self, w):
        shape = (-1,) + (1,) * (w.dim() - 1)
        e = _RoundSTE.apply(self.e).reshape(shape)
        q = torch.exp2(e) * _RoundSTE.apply(self._clipped(w, e))
        return torch.where(self.alive().reshape(shape), q, torch.zeros_like(q))

    # -- integer form, for the lowering -----------------------------------------------------
    @torch.no_grad()
    def integers(self, w):
        """The forward's integers ``n = q(w) / 2^E`` (int64, shape of ``w``): the same float ops, rounded."""
        shape = (-1,) + (1,) * (w.dim() - 1)
        n = torch.round(self._clipped(w, self.int_exponent().to(w.dtype).reshape(shape)))
        return torch.where(self.alive().reshape(shape), n, torch.zeros_like(n)).long()

    @torch.no_grad()
    def encode(self, w):
        """``(None, values, planes)``: the forward's values and two's-complement bit planes ``[O, N, bits]``."""
        n = self.integers(w)
        depth = self.int_depth().reshape((-1,) + (1,) * (w.dim() - 1))
        code = torch.remainder(n, torch.pow(2, depth))   # B_o-bit two's complement; planes >= B_o are 0
        planes = torch.bitwise_and(torch.bitwise_right_shift(code.reshape(self.channels, -1, 1),
                                                             torch.arange(self.bits)), 1)
        values = n.to(w.dtype) * torch.exp2(self.int_exponent().to(w.dtype)).reshape(depth.shape)
        return None, values, planes.to(w.dtype)

    @torch.no_grad()
    def plane_coefficients(self):
        """Integer coefficients ``[O, bits]``: ``[1, 2, …, 2^(B-2), -2^(B-1)]``, 0 from plane ``B`` on."""
        depth = self.int_depth()[:, None]
        j = torch.arange(self.bits)[None, :]
        power = torch.pow(2, j)
        coef = torch.where(j == depth - 1, -power, power)
        return torch.where(j < depth, coef, torch.zeros_like(coef))

    @torch.no_grad()
    def effective_basis(self):
        """The real basis ``[O, bits]``: ``2^E_o`` times :meth:`plane_coefficients`."""
        scale = torch.exp2(self.int_exponent().double())[:, None]
        return self.plane_coefficients().double() * scale

    @torch.no_grad()
    def calibrate(self, w):
        """Exponent so that each channel's largest weight is not clipped at the current depth."""
        top = w.detach().reshape(self.channels, -1).abs().amax(dim=1).clamp_min(1e-12)
        # the positive side is the narrower one; a 1-bit channel ({-1, 0}) uses its negative side
        levels = self.int_range()[1].clamp_min(1).double()
        self.e.copy_(torch.ceil(torch.log2(top.double() / levels)).to(self.e.dtype))

    @torch.no_grad()
    def revive(self, channels, bits):
        """Set the depth of ``channels`` (indices) to ``bits``: restoration of pruned channels."""
        self.b[channels] = float(bits)

    def extra_repr(self):
        return f"channels={self.channels}, max_bits={self.max_bits}"


class MaskedQuantReLU(QuantReLU):
    """ReLU + activation quantizer whose pruned channels output exactly 0.

    A pruned channel's weights are 0, but batch-norm would still add its shift; the mask
    makes the channel's output 0 as if it were removed.  ``alive`` is the weight
    quantizer's bound method (not a submodule: its parameters stay in one place).
    """

    def __init__(self, act_quant, alive):
        super().__init__(act_quant)
        self._alive = alive

    def forward(self, x):
        y = super().forward(x)
        mask = self._alive().reshape((-1,) + (1,) * (y.dim() - 2)).to(y.dtype)
        return y * mask


def _mac(block):
    return block.linear if isinstance(block, DenseBlock) else block.conv


def compress_quantizers(net):
    """The :class:`SelfCompressQuantizer` of every multiply-accumulate block, in order."""
    return [_mac(b).weight_quant for b in net.blocks if isinstance(b, (DenseBlock, ConvBlock))]


def bit_parameters(net):
    """``(bit params, other params)``: (b, e) get their own optimizer group."""
    bits = [p for q in compress_quantizers(net) for p in (q.b, q.e)]
    ids = {id(p) for p in bits}
    return bits, [p for p in net.parameters() if id(p) not in ids]


def self_compressing(config, sc=SelfCompressConfig()):
    """A :class:`QuantNet` of architecture ``config`` (a :class:`NetConfig`) with self-compressing
    weights and ``sc``'s activation quantizers.

    The config's quantizer records the activations (method, bits) and ``max_bits`` as the
    weight bits; every weight quantizer is then replaced by a per-channel
    :class:`SelfCompressQuantizer`, the last layer's too (its shared logit scale is the
    smallest power of two, :mod:`export.lower_compress`).
    """
    if not isinstance(config, NetConfig):
        raise TypeError(f"self_compressing needs a NetConfig, not {type(config).__name__}")
    quant = QuantConfig(sc.act_quantizer, weight_bits=sc.max_bits, act_bits=sc.act_bits)
    net = QuantNet(config.with_quant(quant))
    for block in net.blocks:
        if not isinstance(block, (DenseBlock, ConvBlock)):
            continue
        layer = _mac(block)
        layer.weight_quant = SelfCompressQuantizer(layer.weight.shape[0], sc.init_bits, max_bits=sc.max_bits)
        if block.act is not None:
            block.act = MaskedQuantReLU(block.act.act_quant, layer.weight_quant.alive)
    net.self_compress = sc
    return net


@torch.no_grad()
def init_from_float(net, float_net):
    """Copy weights and batch-norm from a trained float network; calibrate the exponents."""
    # strict=False: the float network has no (b, e) and no activation quantizer state
    _, unexpected = net.load_state_dict(float_net.state_dict(), strict=False)
    if unexpected:
        raise ValueError(f"init_from_float: the float network has parameters the compressed one lacks: {unexpected}")
    for block in net.blocks:
        if isinstance(block, (DenseBlock, ConvBlock)):
            layer = _mac(block)
            layer.weight_quant.calibrate(layer.weight)
    return net


# --- the size term -----------------------------------------------------------------------

def _layer_geometry(net):
    """Per MAC layer: (quantizer, weights per output channel per input group, previous quantizer).

    A layer's input groups are the previous MAC layer's output channels (None for the
    first layer: the network input is never pruned).  A dense layer after a conv block
    reads ``H·W`` inputs per channel, a conv ``k·k`` per input channel, a dense after a
    dense one.
    """
    layers, prev = [], None
    for block in net.blocks:
        if isinstance(block, (DenseBlock, ConvBlock)):
            layer = _mac(block)
            fan = layer.weight[0].numel()
            layers.append((layer.weight_quant, fan if prev is None else fan // prev.channels, prev))
            prev = layer.weight_quant
    return layers


def weight_count(net):
    """Weights of the unpruned network: the ``N`` of ``Q``."""
    return sum(_mac(b).weight.numel() for b in net.blocks if isinstance(b, (DenseBlock, ConvBlock)))


def size_term(net, integer=False):
    """``Q``: average bits per weight over the network (Cséfalvay's refined form).

    ``Q = Σ_l Σ_o depth_o · (alive inputs of layer l) · group_l / N``: a pruned channel
    removes its own row and the next layer's inputs it fed; ``N`` counts the weights of
    the unpruned network.  ``integer=False``: the real depths (the training loss,
    differentiable in ``b``); ``integer=True``: the exported depths ``B`` (a float tensor,
    no gradient).  Model size in bytes is ``Q · N / 8``.
    """
    total = 0.0
    for quant, group, prev in _layer_geometry(net):
        depth = quant.int_depth().to(torch.float32) if integer else quant.depth()
        alive_inputs = prev.alive().sum() if prev is not None else 1
        total = total + depth.sum() * alive_inputs * group
    return total / weight_count(net)


def size_report(net):
    """Exported sizes: bits per weight, bytes, % of the float model, depths and pruned channels per layer."""
    n = weight_count(net)
    q = float(size_term(net, integer=True))
    layers = []
    for quant in compress_quantizers(net):
        depth = quant.int_depth()
        layers.append({"channels": quant.channels, "pruned": int((depth == 0).sum()),
                       "bits": depth.tolist(), "exponents": quant.int_exponent().tolist()})
    return {"weights": n, "bits_per_weight": q, "bytes": q * n / 8, "float_bytes": 4.0 * n,
            "percent_of_float": 100.0 * q / 32.0, "layers": layers}
