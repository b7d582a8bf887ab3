"""The dtype table: every dtype nkilab names, once — storage, torch name, itemsize, kind and peak-table family.

Bottom layer: imports NumPy and ml_dtypes only. torch is never imported here; a torch dtype or tensor is
recognised only when torch is already in `sys.modules` (whoever holds a torch object has imported it).

Canonical names are NumPy's (`np.dtype(x).name`: "float32", "bfloat16", "float8_e4m3fn", …), which are also
torch's attribute names. bfloat16 and fp8 have no NumPy type of their own: their storage is ml_dtypes'.
`tfloat32` is NKI's name for float32 storage whose TensorE products run at the tf32 rate: a name, never the
name of an array (`dtype_name(np.float32)` is "float32").

Peak-table family (the key of a chip's dense-FLOP/s table, `nkilab.harness.chips`): "fp32" (float32), "fp8"
(every fp8), "int8" (int8, uint8), "bf16" (bfloat16, float16, tfloat32 — one rate in the Neuron and NVIDIA chip
tables). NeuronCore integer and bool storage never enters a matmul (TensorE only transposes it): the model costs
those moves at the one-pass "bf16" rate. Host-only dtypes (float64, int64) have no family.

    numpy_dtype("bfloat16") -> dtype(bfloat16)      dtype_name(torch_tensor) -> "bfloat16"
    itemsize("float8_e4m3") -> 1                    peak_family("float16") -> "bf16"
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import ml_dtypes
import numpy as np


@dataclass(frozen=True)
class DType:
    """One row of the table.

    Attributes:
        name: canonical name.
        numpy: storage dtype (ml_dtypes for bfloat16 and fp8; float32 for tfloat32).
        kind: "float" | "int" | "uint" | "bool".
        family: peak-table family ("bf16" | "fp8" | "fp32" | "int8"), None for host-only dtypes.
        torch: torch attribute name, None where torch has no such dtype.
        nki: a NeuronCore storage dtype (an `nl.<name>` of the NKI language).
        bits_via: for dtypes NumPy has no native type of, the same-width integer dtype whose bits torch <-> NumPy
            conversion moves (bfloat16: int16; fp8: uint8); None otherwise.
    """

    name: str
    numpy: np.dtype
    kind: str
    family: str | None
    torch: str | None
    nki: bool
    bits_via: str | None = None

    @property
    def itemsize(self) -> int:
        """Bytes per element."""
        return self.numpy.itemsize


def _row(name, storage, kind, family, torch, nki, bits_via=None) -> DType:
    return DType(name, np.dtype(storage), kind, family, torch, nki, bits_via)


# columns: name, storage, kind, peak family, torch name, NeuronCore storage, bits carrier (see `DType`)
TABLE: dict[str, DType] = {r.name: r for r in (
    _row("float16", np.float16, "float", "bf16", "float16", True),
    _row("bfloat16", ml_dtypes.bfloat16, "float", "bf16", "bfloat16", True, "int16"),
    _row("float32", np.float32, "float", "fp32", "float32", True),
    _row("tfloat32", np.float32, "float", "bf16", None, True),  # NKI name only; torch has no tf32 dtype
    _row("float64", np.float64, "float", None, "float64", False),
    _row("float8_e4m3", ml_dtypes.float8_e4m3, "float", "fp8", None, True),  # IEEE-like (inf, max 240); torch: none
    _row("float8_e4m3fn", ml_dtypes.float8_e4m3fn, "float", "fp8", "float8_e4m3fn", True, "uint8"),  # OCP, max 448
    _row("float8_e5m2", ml_dtypes.float8_e5m2, "float", "fp8", "float8_e5m2", True, "uint8"),
    _row("int8", np.int8, "int", "int8", "int8", True),
    _row("int16", np.int16, "int", "bf16", "int16", True),
    _row("int32", np.int32, "int", "bf16", "int32", True),
    _row("int64", np.int64, "int", None, "int64", False),
    _row("uint8", np.uint8, "uint", "int8", "uint8", True),
    _row("uint16", np.uint16, "uint", "bf16", "uint16", True),
    _row("uint32", np.uint32, "uint", "bf16", "uint32", True),
    _row("bool", np.bool_, "bool", "bf16", "bool", True),
)}

DTYPE_NAMES = tuple(TABLE)
NKI_DTYPE_NAMES = tuple(n for n, r in TABLE.items() if r.nki)  # what a NeuronCore stores (nl.<name>)
FP8_DTYPE_NAMES = tuple(n for n, r in TABLE.items() if r.family == "fp8")
# the floats the public API computes in (fp8 is a storage format: only quantized data carries it)
FLOAT_DTYPE_NAMES = ("float16", "bfloat16", "float32", "float64")
# storage dtype -> canonical name; tfloat32 is a name for float32 storage, never the name of an array
_BY_STORAGE = {r.numpy: n for n, r in TABLE.items() if r.numpy.name == n}


def _torch():
    """The torch module when the process has imported it, else None (this module never imports torch)."""
    return sys.modules.get("torch")


def is_torch(x) -> bool:
    """True for a torch.Tensor (without importing torch when the caller never did)."""
    torch = _torch()
    return torch is not None and isinstance(x, torch.Tensor)


def _torch_module(caller: str):
    torch = _torch()
    if torch is None:
        raise RuntimeError(f"{caller}: torch is not imported (the dtype table never imports it; import torch first)")
    return torch


def _is_torch_dtype(x) -> bool:
    torch = _torch()
    return torch is not None and isinstance(x, torch.dtype)


def lookup(x) -> DType:
    """The table row of a name, NumPy/ml_dtypes dtype or scalar type, torch dtype, array or tensor.

    Raises:
        TypeError: `x` is not a dtype (nor has one), or names a dtype the table does not hold.
    """
    name = dtype_name(x)
    if name not in TABLE:
        raise TypeError(f"dtype: {name!r} is not in nkilab's dtype table; use one of {DTYPE_NAMES}")
    return TABLE[name]


def dtype_name(x) -> str:
    """Canonical name of an array, tensor, NumPy/ml_dtypes/torch dtype, scalar type or name.

    Arrays, tensors and dtypes may be of any dtype NumPy or torch has (their own name comes back); a name must be
    in the table. Raises TypeError naming `dtype` for anything else.
    """
    if isinstance(x, str):
        if x not in TABLE:
            raise TypeError(f"dtype: {x!r} is not a dtype name nkilab knows; use one of {DTYPE_NAMES}")
        return x
    dt = _dtype_of(x)
    if isinstance(dt, str):
        return dtype_name(dt)
    if _is_torch_dtype(dt):
        return str(dt).removeprefix("torch.")
    storage = _storage(dt)
    return _BY_STORAGE.get(storage, storage.name)


def numpy_dtype(x) -> np.dtype:
    """NumPy (ml_dtypes for bfloat16/fp8) storage dtype of a name, dtype, scalar type, torch dtype, array or tensor.

    NumPy dtypes outside the table pass through; names and torch dtypes must be in the table (TypeError otherwise).
    """
    dt = _dtype_of(x)
    if isinstance(dt, str) or _is_torch_dtype(dt):
        return lookup(dt).numpy
    return _storage(dt)


def _dtype_of(x):
    """`x` itself for names, dtypes and scalar types, else its `.dtype` (arrays, tensors, tiles)."""
    # np.float16 is a type whose `.dtype` attribute is a descriptor, so types are dtypes here, never holders
    if isinstance(x, (str, type)) or _is_torch_dtype(x):
        return x
    return getattr(x, "dtype", x)


def _storage(dt) -> np.dtype:
    if dt is None:  # np.dtype(None) is float64: a missing dtype is an error here, not a default
        raise TypeError("dtype: None is not a dtype")
    try:
        return np.dtype(dt)
    except TypeError as e:
        raise TypeError(f"dtype: {dt!r} is not a dtype and has none") from e


def itemsize(x) -> int:
    """Bytes per element of a dtype in the table (by name, dtype, array or tensor)."""
    return lookup(x).itemsize


def finite_max(x) -> float:
    """Largest finite value of a float dtype of the table (float8_e4m3: 240, float8_e4m3fn: 448, bfloat16: 3.39e38).

    Raises:
        TypeError: not a float dtype of the table.
    """
    row = lookup(x)
    if row.kind != "float":
        raise TypeError(f"dtype: {row.name} is not a float dtype (finite_max is for floats)")
    return float(ml_dtypes.finfo(row.numpy).max)


def peak_family(x) -> str:
    """Peak-table family ("bf16" | "fp8" | "fp32" | "int8") of a NeuronCore dtype (module docstring).

    Raises:
        TypeError: not a dtype of the table. ValueError: a host-only dtype (float64, int64), which no chip table
        rates.
    """
    row = lookup(x)
    if row.family is None:
        raise ValueError(f"dtype: {row.name} has no peak-table family (host-only; chips rate "
                         f"{tuple(n for n, r in TABLE.items() if r.family)})")
    return row.family


def torch_dtype(x):
    """The torch dtype of a name, NumPy/ml_dtypes dtype, torch dtype, array or tensor.

    torch must already be imported (this module never imports it). Raises TypeError naming `dtype` where torch has
    no such dtype (e.g. the IEEE-like float8_e4m3).
    """
    torch = _torch_module("torch_dtype")
    if isinstance(x, torch.dtype):
        return x
    name = dtype_name(x)
    row = TABLE.get(name)
    attr = row.torch if row is not None else name
    result = getattr(torch, attr, None) if attr is not None else None
    if not isinstance(result, torch.dtype):
        raise TypeError(f"dtype: {name!r} has no torch equivalent")
    return result


def to_numpy(x) -> np.ndarray:
    """NumPy array of a NumPy array (returned as is), array-like or torch tensor.

    A CPU tensor of a dtype NumPy has shares memory; bfloat16/fp8 tensors come back as ml_dtypes arrays holding
    the same bits (moved through the row's `bits_via` integer dtype, never through float32). Tensors on a device
    are copied to the CPU first.
    """
    if not is_torch(x):
        return np.asarray(x)
    t = x.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    row = TABLE.get(dtype_name(t))
    if row is not None and row.bits_via is not None:
        return t.view(getattr(_torch(), row.bits_via)).numpy().view(row.numpy)
    return t.numpy()


def to_torch(a: np.ndarray, *, device=None):
    """torch tensor of a NumPy array (bfloat16/fp8 by bit reinterpretation), on `device` (default CPU).

    Shares memory with a writable C-contiguous array; a read-only one is copied, because torch tensors are always
    writable and a kernel writing into one would write into memory the caller marked read-only. torch must already
    be imported. Raises TypeError where torch has no such dtype (e.g. float8_e4m3).
    """
    torch = _torch_module("to_torch")
    if not a.flags.writeable:
        a = np.array(a, order="C")
    elif not a.flags.c_contiguous:  # (np.ascontiguousarray alone would make a 0-d array 1-d)
        a = np.ascontiguousarray(a)
    target = torch_dtype(a)
    row = TABLE.get(dtype_name(a))
    if row is not None and row.bits_via is not None:
        t = torch.from_numpy(a.view(np.dtype(row.bits_via))).view(target)
    else:
        t = torch.from_numpy(a)
    return t if device is None else t.to(device)
