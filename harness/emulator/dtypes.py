"""NKI dtypes on NumPy/ml_dtypes storage, and the casts every engine applies.

Storage keeps each tensor in its own dtype (ml_dtypes for bfloat16 and fp8, matching the official
simulator's NKI_PRECISE_FP=1); engines compute in float32 and cast results into the destination
dtype with round-to-nearest-even (S-RND: RNE is the hardware default). fp32 → integer casts round
to nearest even and saturate to the destination range (S-RN 0.6.0); NaN becomes 0.
Float → fp8 casts follow ml_dtypes (RNE; overflow gives inf for e4m3/e5m2 and NaN for e4m3fn) —
the hardware's fp8 overflow behaviour is not documented, so kernels clamp before casting.
`tfloat32` is stored as float32 (its 10-bit mantissa only matters inside TensorE).
"""

from __future__ import annotations

import ml_dtypes
import numpy as np

from nkilab.reference.dtypes import FP8_DTYPE_NAMES, NKI_DTYPE_NAMES, dtype_name, numpy_dtype

float32 = np.dtype(np.float32)
# the MX formats of NeuronCore-v4 (nc_matmul_mx / quantize_mx) are emulator storage, not rows of nkilab's dtype
# table: host code never computes with them (kernels receive uint8 / uint32 arrays and reinterpret them with
# `.ap(dtype=)` / `.view`). float8_e8m0fnu is the block-scale exponent (2^(bits - 127), 0xFF NaN); the x4 types
# pack four fp8 into 32 bits / four fp4 into 16 bits, held as opaque bit patterns (structured dtypes, so they
# never alias uint32 / uint16)
MX_DTYPES: dict[str, np.dtype] = {
    "float8_e8m0fnu": np.dtype(ml_dtypes.float8_e8m0fnu),
    "float8_e5m2_x4": np.dtype([("float8_e5m2_x4", "<u4")]),
    "float8_e4m3fn_x4": np.dtype([("float8_e4m3fn_x4", "<u4")]),
    "float4_e2m1fn_x4": np.dtype([("float4_e2m1fn_x4", "<u2")]),
}
DTYPES: dict[str, np.dtype] = {n: numpy_dtype(n) for n in NKI_DTYPE_NAMES} | MX_DTYPES  # the table's NKI rows + MX
_BY_DTYPE = {v: dtype_name(v) for n, v in DTYPES.items() if n not in MX_DTYPES} | {v: n for n, v in MX_DTYPES.items()}
FP8 = frozenset(DTYPES[n] for n in FP8_DTYPE_NAMES + ("float8_e8m0fnu",))
PACKED = frozenset(DTYPES[n] for n in ("float8_e5m2_x4", "float8_e4m3fn_x4", "float4_e2m1fn_x4"))
FP32_MIN = float(np.finfo(np.float32).min)  # -3.4028235e38, range_select's on_false value (S-ISA)


def to_dtype(dtype) -> np.dtype:
    """NumPy dtype for an NKI dtype given as a name, a NumPy/ml_dtypes dtype or type, or a torch dtype.

    Raises:
        TypeError: a dtype NKI has no equivalent of (float64, int64, …).
    """
    if isinstance(dtype, str):
        if dtype in DTYPES:
            return DTYPES[dtype]
        raise TypeError(f"dtype: {dtype!r} is not an NKI dtype; use one of {sorted(DTYPES)}")
    if type(dtype).__module__.startswith("torch"):
        return to_dtype(str(dtype).removeprefix("torch."))
    dt = np.dtype(dtype)
    if dt not in _BY_DTYPE:
        raise TypeError(f"dtype: {dt} is not an NKI dtype (no float64/int64 on NeuronCores); "
                        f"use one of {sorted(DTYPES)}")
    return dt


def name(dtype: np.dtype) -> str:
    """NKI name of a storage dtype ("bfloat16", "float8_e4m3", …)."""
    return _BY_DTYPE[dtype]


def is_float(dtype: np.dtype) -> bool:
    return dtype.kind == "f" or dtype in FP8 or dtype == DTYPES["bfloat16"]


def is_int(dtype: np.dtype) -> bool:
    return dtype.kind in "iub"


def is_packed(dtype: np.dtype) -> bool:
    """An MX x4 packed container (bits only: no arithmetic, no casts)."""
    return dtype in PACKED


def to_f32(values: np.ndarray) -> np.ndarray:
    """values as float32 (exact for every NKI dtype except int32/uint32 beyond 2**24)."""
    return values if values.dtype == float32 else values.astype(float32)


def cast(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Cast engine results (float32, or integers from bit ops) into `dtype` the hardware way.

    Floats: round-to-nearest-even (NumPy / ml_dtypes casts). Integers: RNE then saturation, NaN → 0.
    """
    if values.dtype == dtype:
        return values
    if dtype.kind == "b":
        return values != 0
    if dtype.kind in "iu" and values.dtype.kind == "f":
        info = np.iinfo(dtype)
        rounded = np.rint(np.nan_to_num(values.astype(np.float64), nan=0.0))
        return np.clip(rounded, info.min, info.max).astype(dtype)
    if dtype.kind in "iu" and values.dtype.kind in "iub":
        info = np.iinfo(dtype)
        return np.clip(values.astype(np.int64), info.min, info.max).astype(dtype)
    with np.errstate(over="ignore", invalid="ignore"):  # overflow to inf/NaN is the documented cast result
        return values.astype(dtype)
