"""NumPy <-> torch conversion, in one place (kernels never convert; the API does it here).

bfloat16 and fp8 have no NumPy dtype of their own: NumPy side they are ml_dtypes types, torch side the
torch dtypes; both hold the same bits, so conversion reinterprets bits instead of going through float32.
torch is imported only when a torch tensor is actually seen, so NumPy-only callers never pay for it.
"""

from __future__ import annotations

import sys

import ml_dtypes
import numpy as np

# torch dtype name -> (ml_dtypes type, same-width integer dtype used to move the bits)
_BIT_CAST = {
    "bfloat16": (ml_dtypes.bfloat16, "int16"),
    "float8_e4m3fn": (ml_dtypes.float8_e4m3fn, "uint8"),
    "float8_e5m2": (ml_dtypes.float8_e5m2, "uint8"),
}

FLOAT_DTYPE_NAMES = ("float16", "bfloat16", "float32", "float64")


def is_torch(x) -> bool:
    """True for a torch.Tensor (without importing torch when the caller never did)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def kind(x) -> str:
    """"numpy" | "torch" | "other"."""
    if isinstance(x, np.ndarray):
        return "numpy"
    return "torch" if is_torch(x) else "other"


def dtype_name(x) -> str:
    """Canonical dtype name of an array, tensor or dtype: "float32", "bfloat16", "float8_e4m3fn", "int32", ..."""
    if is_torch(x):
        return str(x.dtype).removeprefix("torch.")
    dt = x if isinstance(x, type) else getattr(x, "dtype", x)  # np.float16 is a type whose .dtype is a descriptor
    if isinstance(dt, str):
        dt = numpy_dtype(dt)
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(dt, torch.dtype):
        return str(dt).removeprefix("torch.")
    return np.dtype(dt).name


def numpy_dtype(dtype) -> np.dtype:
    """A NumPy dtype from a NumPy/ml_dtypes dtype, a torch dtype or a name ("bfloat16", "float32", ...)."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(dtype, torch.dtype):
        dtype = str(dtype).removeprefix("torch.")
    if isinstance(dtype, str) and hasattr(ml_dtypes, dtype):
        return np.dtype(getattr(ml_dtypes, dtype))
    return np.dtype(dtype)


def torch_dtype(dtype):
    """The torch dtype for a NumPy/ml_dtypes dtype, a torch dtype or a name."""
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    name = dtype if isinstance(dtype, str) else np.dtype(dtype).name
    result = getattr(torch, name, None)
    if not isinstance(result, torch.dtype):
        raise TypeError(f"dtype: {name!r} has no torch equivalent")
    return result


def to_numpy(x) -> np.ndarray:
    """NumPy array for a NumPy array (returned as is) or a torch tensor (shares memory for CPU tensors of
    dtypes NumPy has; bfloat16/fp8 come back as ml_dtypes arrays holding the same bits)."""
    if not is_torch(x):
        return np.asarray(x)
    t = x.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    name = dtype_name(t)
    if name in _BIT_CAST:
        ml_type, int_name = _BIT_CAST[name]
        import torch

        return t.view(getattr(torch, int_name)).numpy().view(ml_type)
    return t.numpy()


def to_torch(a: np.ndarray, *, device=None):
    """torch tensor for a NumPy array (bfloat16/fp8 by bit reinterpretation), on `device` (default CPU).

    Shares memory with a writable C-contiguous array; a read-only one is copied, because torch tensors are always
    writable and a kernel writing into one would write into memory the caller marked read-only.
    """
    import torch

    a = np.ascontiguousarray(a) if a.flags.writeable else np.array(a, order="C")
    name = a.dtype.name
    target = torch_dtype(name)  # TypeError naming the dtype when torch has none (e.g. IEEE-like float8_e4m3)
    if name in _BIT_CAST:
        _, int_name = _BIT_CAST[name]
        t = torch.from_numpy(a.view(np.dtype(int_name))).view(target)
    else:
        t = torch.from_numpy(a)
    return t if device is None else t.to(device)


def like(a: np.ndarray, template):
    """`a` in the kind of `template`: NumPy stays NumPy; torch goes to the template's device."""
    return to_torch(a, device=template.device) if is_torch(template) else a


def copy_into(dst, src) -> None:
    """Write `src` (NumPy or torch) into the caller's own array/tensor `dst`, in place."""
    if is_torch(dst):
        src_t = src if is_torch(src) else to_torch(np.asarray(src))
        dst.copy_(src_t.to(dst.device))
    else:
        dst[...] = to_numpy(src)
