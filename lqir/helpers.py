"""Small helpers every layer of the project shares (numpy only, imports nothing of ours).

One home each for: the width of a level index, convolution and pooling output sizes,
the default width of integer basis coefficients, and which IR ops each backend builds.
"""

__all__ = ["DEFAULT_COEF_BITS", "BACKEND_OPS", "UnsupportedLayerError", "bits_for_levels",
           "conv_output_size", "pool_output_size", "check_backend"]

#: Default width (signed bits) of the integer basis coefficients the lowering emits.
DEFAULT_COEF_BITS = 8

#: The IR ops each hardware backend can build (hwsim runs every op).
BACKEND_OPS = {
    "rtl": ("dense", "conv2d", "maxpool2d", "flatten"),
    "hls4ml": ("dense", "conv2d", "maxpool2d", "flatten"),
}
_BACKEND_NAMES = {"rtl": "the RTL", "hls4ml": "the hls4ml writer"}


class UnsupportedLayerError(ValueError):
    """A backend cannot build one of the model's layers; the message names the layer."""


def bits_for_levels(levels):
    """Bits of a level index in ``[0, levels)``: ``max(1, ceil(log2(levels)))``."""
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 1:
        raise TypeError(f"Level count must be a positive integer, not {levels!r}")
    return max(1, (levels - 1).bit_length())


def conv_output_size(size, kernel, stride=1, padding=0):
    """Output length of a convolution along one axis (floor mode)."""
    return (size + 2 * padding - kernel) // stride + 1


def pool_output_size(size, kernel, stride):
    """Output length of a max-pool along one axis (no padding, floor mode)."""
    return (size - kernel) // stride + 1


def check_backend(model, backend):
    """Raise :class:`UnsupportedLayerError` naming the first layer ``backend`` cannot build."""
    supported, who = BACKEND_OPS[backend], _BACKEND_NAMES[backend]
    for index, layer in enumerate(model.layers):
        if layer.op not in supported:
            raise UnsupportedLayerError(
                f"layers[{index}] ({layer.name}): {who} supports {' and '.join(supported)} layers only, "
                f"not {layer.op!r}; simulate this model with 'lqflow sim'")
    if not any(layer.op == "dense" for layer in model.layers):
        raise UnsupportedLayerError(f"layers: the model has no dense layer for {who} to build")
