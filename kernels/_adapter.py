"""NumPy <-> torch at the public API (kernels never convert; the API does it here).

The dtype facts and the bit-exact conversions live in the dtype table, `nkilab.reference.dtypes` (bfloat16 and
fp8 are ml_dtypes types NumPy side, torch dtypes torch side, moved by reinterpreting bits, never through
float32); its names are re-exported here for the API's modules. The table never imports torch: `to_torch` and
`torch_dtype` import it here, where a torch backend asks for a torch result, and everything else converts only
tensors the caller already made (so torch is already imported). NumPy-only callers never pay for torch.
"""

from __future__ import annotations

import numpy as np

from nkilab.reference import dtypes
from nkilab.reference.dtypes import FLOAT_DTYPE_NAMES, dtype_name, is_torch, numpy_dtype, to_numpy

__all__ = ["FLOAT_DTYPE_NAMES", "copy_into", "dtype_name", "is_torch", "kind", "like", "numpy_dtype", "same_memory",
           "to_numpy", "to_torch", "torch_dtype", "zeros_like"]


def kind(x) -> str:
    """"numpy" | "torch" | "other"."""
    if isinstance(x, np.ndarray):
        return "numpy"
    return "torch" if is_torch(x) else "other"


def torch_dtype(dtype):
    """The torch dtype for a NumPy/ml_dtypes dtype, a torch dtype or a name (TypeError where torch has none)."""
    import torch  # noqa: F401  optional heavy dependency: loaded for the dtype table, which never imports it

    return dtypes.torch_dtype(dtype)


def to_torch(a: np.ndarray, *, device=None):
    """torch tensor for a NumPy array (bfloat16/fp8 by bit reinterpretation), on `device` (default CPU).

    Shares memory with a writable C-contiguous array; a read-only one is copied (see `dtypes.to_torch`). Raises
    TypeError naming the dtype when torch has none (e.g. the IEEE-like float8_e4m3).
    """
    import torch  # noqa: F401  optional heavy dependency: loaded for the dtype table, which never imports it

    return dtypes.to_torch(a, device=device)


def like(a: np.ndarray, template):
    """`a` in the kind of `template`: NumPy stays NumPy; torch goes to the template's device."""
    return to_torch(a, device=template.device) if is_torch(template) else a


def _layout(a) -> tuple:
    """(device, start address, shape, byte strides, itemsize) of a NumPy array or torch tensor."""
    if is_torch(a):
        size = a.element_size()
        return (a.device.type, a.data_ptr(), tuple(a.shape), tuple(s * size for s in a.stride()), size)
    return ("cpu", a.__array_interface__["data"][0], a.shape, a.strides, a.itemsize)


def same_memory(a, b) -> bool:
    """True when `a` and `b` (NumPy or torch, either kind) are the same elements of one buffer: same device, start
    address, shape, byte strides and itemsize — e.g. a NumPy view of a CPU tensor, bfloat16 ones included. A write
    into one is then a write into the other, so nothing needs copying back."""
    return _layout(a) == _layout(b)


def zeros_like(a):
    """Zeros of `a`'s shape, dtype and kind (torch: its device), C-contiguous."""
    if is_torch(a):
        return a.new_zeros(a.shape)
    return np.zeros(a.shape, a.dtype)


def copy_into(dst, src) -> None:
    """Write `src` (NumPy or torch) into the caller's own array/tensor `dst`, in place."""
    if is_torch(dst):
        src_t = src if is_torch(src) else to_torch(np.asarray(src))
        dst.copy_(src_t.to(dst.device))
    else:
        dst[...] = to_numpy(src)
