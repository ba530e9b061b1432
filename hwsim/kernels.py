"""Element-wise kernels of fast mode: thresholds, then the next layer's input table.

Between two matrix products fast mode compares every accumulator with its channel's
thresholds and looks the resulting level index up in the next layer's input table.
numpy needs one pass per threshold, one per count and a gather (the slowest pass of
all); a compiled loop does it in one pass over data that stays in registers.  Two
interchangeable implementations, bit for bit the same result:

* ``NumpyKernels`` — numpy only, always available, the reference;
* ``NumbaKernels`` — one fused loop compiled by numba (an optional dependency), which
  releases the GIL so that chunks run on every core.

``kernels="auto"`` picks numba when it imports, else numpy.
"""

import functools

import numpy as np

from .fast import threshold_fast

__all__ = ["KERNELS", "NumpyKernels", "NumbaKernels", "select_kernels"]

KERNELS = ("auto", "numpy", "numba")


class NumpyKernels:
    name = "numpy"

    @staticmethod
    def threshold(prep, acc, table, workspace=None):
        """``table[#{m : acc + bias >= T[o, m]}]`` for bias-free accumulators ``[..., O]``.

        ``workspace`` is taken for a signature common to both kernels; numpy's passes
        allocate their own arrays.
        """
        return np.take(table, threshold_fast(prep, acc))


class NumbaKernels:
    name = "numba"

    def __init__(self):
        self._kernel = _compile_threshold_table()

    def threshold(self, prep, acc, table, workspace=None):
        flat = acc.reshape(-1, acc.shape[-1])
        out = (np.empty(flat.shape, table.dtype) if workspace is None
               else workspace.get((prep.layer.name, "out"), flat.shape, table.dtype))
        self._kernel(flat, prep.thresholds_t, table, out)
        return out.reshape(acc.shape)


def _threshold_table(acc, thresholds, table, out):
    # A staircase: table[0] plus each step table[m + 1] - table[m] the accumulator
    # reaches.  Inner loops run along channels, contiguous in every operand, and
    # carry no branch or gather, so they vectorize.
    rows, channels = acc.shape
    zero = table[0] - table[0]
    for i in range(rows):
        for j in range(channels):
            out[i, j] = table[0]
        for m in range(thresholds.shape[0]):
            step = table[m + 1] - table[m]
            for j in range(channels):
                out[i, j] += step if acc[i, j] >= thresholds[m, j] else zero


@functools.cache
def _compile_threshold_table():
    import numba

    try:  # compiled code is cached on disk beside the module, or in the user's cache
        return numba.njit(nogil=True, cache=True)(_threshold_table)
    except RuntimeError:  # no writable cache location: compile once per process
        return numba.njit(nogil=True)(_threshold_table)


@functools.cache
def _numba_import_error():
    """None if numba imports, else why not (an incompatible numba fails in many ways)."""
    try:
        import numba  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - "auto" must fall back whatever the cause
        return f"{type(exc).__name__}: {exc}"
    return None


def select_kernels(kernels):
    """The kernel implementation named by ``kernels`` (one of :data:`KERNELS`)."""
    if kernels not in KERNELS:
        raise ValueError(f"kernels: must be one of {', '.join(KERNELS)}, not {kernels!r}")
    error = None if kernels == "numpy" else _numba_import_error()
    if kernels == "numpy" or (kernels == "auto" and error):
        return NumpyKernels()
    if error:
        raise ImportError(f"kernels='numba' needs numba, which does not import ({error}): "
                          "pip install numba, or use kernels='numpy'")
    return NumbaKernels()
