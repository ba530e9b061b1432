"""IR → IR passes for pruned and mixed-bit-depth layers; each leaves every simulated integer unchanged.

* :func:`remove_constant_channels` removes, physically, the output channels of a threshold
  layer whose weights are all zero (a pruned channel): its output is one constant level,
  whose contribution the next multiply-accumulate layer takes into its bias, and the
  matching inputs of that layer disappear with it (through max-pools and a flatten).
* :func:`trim_planes` drops weight planes no channel uses (all coefficients zero).
* :func:`reorder_by_bits` sorts a threshold layer's output channels by :func:`channel_bits`
  and permutes the next layer's inputs to match, so that channels of equal depth sit side
  by side and a processing-element group can issue only the planes its widest channel has.

The network's final accumulators are unchanged by every pass (a test runs hwsim before and
after); a reordered layer's own outputs come out permuted, and a removed channel's not at all.
"""

from dataclasses import replace

import numpy as np

from .model import Conv2dLayer, DenseLayer, FlattenLayer, MacLayer, MaxPool2dLayer, input_values, weight_values

__all__ = ["channel_bits", "constant_channels", "remove_constant_channels", "trim_planes", "reorder_by_bits",
           "weight_bits_stored"]


def channel_bits(layer):
    """Planes each output channel uses: highest plane with a nonzero coefficient + 1 (int64 ``[O]``, 0 if none)."""
    used = layer.weight_coef != 0
    return np.where(used.any(axis=1), layer.weight_coef.shape[1] - np.argmax(used[:, ::-1], axis=1), 0).astype(np.int64)


def weight_bits_stored(model):
    """Weight bits the model stores: ``Σ_layers Σ_o channel_bits[o] · fan_in`` (a plain int)."""
    return int(sum(int(channel_bits(layer).sum()) * layer.fan_in() for layer in model.mac_layers()))


def constant_channels(layer):
    """Output channels whose weights are all zero, and the constant level each outputs.

    Such a channel's accumulator is its bias everywhere (a zero-padded tap adds 0 too),
    so its output is ``#{m : bias >= T[o, m]}``.  Returns ``(channels, levels)``, int64.
    """
    if not isinstance(layer, MacLayer) or layer.output != "threshold":
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    w = weight_values(layer).reshape(layer.n_out, -1)
    dead = np.flatnonzero(~w.any(axis=1))
    levels = (layer.bias[dead, None] >= layer.thresholds[dead]).sum(axis=1)
    return dead.astype(np.int64), levels.astype(np.int64)


def _consumer(layers, index):
    """The multiply-accumulate layer reading layer ``index``'s output: its index, and whether a flatten lies between."""
    flattened = False
    for j in range(index + 1, len(layers)):
        if isinstance(layers[j], FlattenLayer):
            flattened = True
        elif isinstance(layers[j], MacLayer):
            return j, flattened
        elif not isinstance(layers[j], MaxPool2dLayer):
            raise ValueError(f"layers[{j}]: unknown op {layers[j].op!r} between two multiply-accumulate layers")
    raise ValueError(f"layers[{index}]: a threshold layer must be read by a later multiply-accumulate layer")


def _input_groups(layers, index, j, flattened):
    """For each output channel of ``layers[index]``, the consumer's input positions it feeds: ``[C, S]``.

    Dense consumer: feature indices (``S = H·W`` after a flatten of ``[C, H, W]``, else 1);
    conv consumer: the input channel (``S = 1``).
    """
    channels = layers[index].n_out
    if isinstance(layers[j], Conv2dLayer) or not flattened:
        return np.arange(channels)[:, None]
    spatial = layers[j].in_features // channels
    return np.arange(channels)[:, None] * spatial + np.arange(spatial)[None, :]


def _take_rows(layer, keep):
    """``layer`` with only output channels ``keep`` (in that order)."""
    out = {"weight_code": layer.weight_code[keep], "weight_coef": layer.weight_coef[keep], "bias": layer.bias[keep]}
    if layer.thresholds is not None:
        out["thresholds"] = layer.thresholds[keep]
    key = "out_features" if isinstance(layer, DenseLayer) else "out_channels"
    return replace(layer, **out, **{key: len(keep)})


def _take_inputs(consumer, keep_groups, bias=None):
    """``consumer`` reading only the input groups (rows of positions) ``keep_groups``."""
    positions = keep_groups.reshape(-1)
    code = consumer.weight_code[:, positions]
    key = "in_features" if isinstance(consumer, DenseLayer) else "in_channels"
    fields = {"weight_code": code, key: len(positions)}
    if bias is not None:
        fields["bias"] = bias
    return replace(consumer, **fields)


def remove_constant_channels(model):
    """Remove every constant output channel (see :func:`constant_channels`) and the next layer's inputs it feeds.

    The constant's contribution ``Σ w · value_in[level]`` moves into the next layer's
    bias.  Kept: a channel read by a zero-padded convolution unless its value is 0 (the
    border would see 0, the inside the constant), and one channel of a layer that would
    otherwise have none.
    """
    layers = list(model.layers)
    for i, layer in enumerate(layers):
        dead, levels = constant_channels(layer)
        if not len(dead):
            continue
        j, flattened = _consumer(layers, i)
        consumer = layers[j]
        groups = _input_groups(layers, i, j, flattened)
        values = input_values(consumer)[levels]
        if isinstance(consumer, Conv2dLayer) and consumer.padding > 0:
            dead = dead[values == 0]
            values = values[values == 0]
        if len(dead) == layer.n_out:          # an IR layer needs one channel: keep the first
            dead, values = dead[1:], values[1:]
        if not len(dead):
            continue
        w = weight_values(consumer)
        if isinstance(consumer, Conv2dLayer):
            contrib = w[:, dead].sum(axis=(2, 3)) @ values                     # unpadded: the full kernel
        else:
            contrib = w[:, groups[dead].reshape(-1)] @ np.repeat(values, groups.shape[1])
        keep = np.setdiff1d(np.arange(layer.n_out), dead)
        layers[i] = _take_rows(layer, keep)
        layers[j] = _take_inputs(consumer, groups[keep], bias=consumer.bias + contrib.astype(np.int64))
    return replace(model, layers=tuple(layers))


def trim_planes(model):
    """Drop the weight planes above every channel's :func:`channel_bits` (at least one plane stays)."""
    layers = []
    for layer in model.layers:
        if isinstance(layer, MacLayer):
            planes = max(1, int(channel_bits(layer).max(initial=0)))
            if planes < layer.weight_bits:
                # bits of the dropped planes multiply a zero coefficient: no weight changes
                code = (layer.weight_code & ((1 << planes) - 1)).astype(np.uint8)
                layer = replace(layer, weight_bits=planes, weight_code=code,
                                weight_coef=np.ascontiguousarray(layer.weight_coef[:, :planes]))
        layers.append(layer)
    return replace(model, layers=tuple(layers))


def reorder_by_bits(model, descending=True):
    """Sort each threshold layer's output channels by :func:`channel_bits` (stable; widest first
    by default) and permute the next layer's inputs to match."""
    layers = list(model.layers)
    for i, layer in enumerate(layers):
        if not isinstance(layer, MacLayer) or layer.output != "threshold":
            continue
        bits = channel_bits(layer)
        order = np.argsort(-bits if descending else bits, kind="stable")
        if np.array_equal(order, np.arange(layer.n_out)):
            continue
        j, flattened = _consumer(layers, i)
        groups = _input_groups(layers, i, j, flattened)
        layers[i] = _take_rows(layer, order)
        layers[j] = _take_inputs(layers[j], groups[order])
    return replace(model, layers=tuple(layers))
