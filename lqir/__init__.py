"""lqir — the integer IR: the contract between export, hwsim and rtl (numpy only).

Types (:mod:`lqir.model`), the file format (:mod:`lqir.fileio`), IR → IR passes
(:mod:`lqir.passes`, :mod:`lqir.prune`), random models for tests (:mod:`lqir.random_models`), atomic
writes (:mod:`lqir.atomic`) and the small helpers every layer shares
(:mod:`lqir.helpers`).  It imports nothing else of the project; see
``docs/architecture.md``.
"""

from .atomic import atomic_open, atomic_save_npy, atomic_write_bytes
from .fileio import FORMAT, VERSION, from_arrays, load, save
from .helpers import (BACKEND_OPS, DEFAULT_COEF_BITS, UnsupportedLayerError, bits_for_levels,
                      check_backend, conv_output_size, pool_output_size)
from .model import (LAYER_TYPES, Conv2dLayer, DenseLayer, FlattenLayer, InputSpec, MacLayer,
                    MaxPool2dLayer, Model, accumulator_bounds, bit_planes, input_values, signed_width,
                    weight_values)
from .passes import clamp_thresholds, fit_acc_bits
from .prune import channel_bits, remove_constant_channels, reorder_by_bits, trim_planes

__all__ = [
    "BACKEND_OPS", "Conv2dLayer", "DEFAULT_COEF_BITS", "DenseLayer", "FORMAT", "FlattenLayer",
    "InputSpec", "LAYER_TYPES", "MacLayer", "MaxPool2dLayer", "Model", "UnsupportedLayerError",
    "VERSION", "accumulator_bounds", "atomic_open", "atomic_save_npy", "atomic_write_bytes",
    "bit_planes", "bits_for_levels", "channel_bits", "check_backend", "clamp_thresholds", "conv_output_size",
    "fit_acc_bits", "from_arrays", "input_values", "load", "pool_output_size", "remove_constant_channels",
    "reorder_by_bits", "save", "signed_width", "trim_planes", "weight_values",
]
