"""Quantization formats: int8, int4 (packed), fp8 e4m3 / e4m3fn weights and fp8 per-token activations.

Weights are `[K, N]` (in_features x out_features). A scale covers either one output channel over all of K
(`group_size=None`, scales `[1, N]`) or a group of `G` consecutive rows along K (scales `[K // G, N]`).
Dequantization is always `w = (q - z) * s` with `z = 0` except for asymmetric int4.

Formats, bit by bit:
  int8         data int8 [K, N], q = rint(w / s) clipped to -127..127, s = absmax / 127.
  int4 sym     q in -8..7, s = absmax / 7; stored two per byte along K (see `pack_int4`).
  int4 asym    q in 0..15, s = (max(w, 0) - min(w, 0)) / 15, z = clip(rint(-min / s), 0, 15), zero points
               uint8 shaped like the scales. The range always contains 0 so that z is in 0..15 and 0.0 is exact.
  fp8_e4m3     ml_dtypes.float8_e4m3 (IEEE-like, max 240, NeuronCore v2/v3 native), s = absmax / 240.
  fp8_e4m3fn   ml_dtypes.float8_e4m3fn (OCP, max 448, trn3 / Hopper), s = absmax / 448.
  fp8 values are clamped to +-max BEFORE the cast: NumPy / ml_dtypes casts overflow to inf/NaN instead of
  saturating.
A group whose scale would be 0 (all-zero weights) gets scale 1.0, so nothing ever divides by zero.
Scales are stored as float32 and q is computed with the stored float32 scale, so dequantization reproduces it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nkilab.reference.dtypes import finite_max, numpy_dtype, to_numpy

FP8_E4M3_MAX = finite_max("float8_e4m3")  # 240: IEEE-like e4m3 (has inf), NeuronCore v2/v3 native fp8
FP8_E4M3FN_MAX = finite_max("float8_e4m3fn")  # 448: OCP e4m3 (no inf), trn3 and Hopper
SCHEMES = ("int8", "int4", "fp8_e4m3", "fp8_e4m3fn")
FP8_SCHEMES = ("fp8_e4m3", "fp8_e4m3fn")
FP8_DTYPES = {"fp8_e4m3": numpy_dtype("float8_e4m3"), "fp8_e4m3fn": numpy_dtype("float8_e4m3fn")}
FP8_MAX = {"fp8_e4m3": FP8_E4M3_MAX, "fp8_e4m3fn": FP8_E4M3FN_MAX}
INT8_MAX = 127  # symmetric int8 range -127..127 (-128 unused so that the range is symmetric)
INT4_SYM_MAX = 7  # signed nibble -8..7; scale maps absmax to 7
INT4_ASYM_LEVELS = 15  # unsigned nibble 0..15


@dataclass(frozen=True, repr=False)
class QuantizedWeight:
    """A quantized weight matrix W[K, N]; `dequantize_weight` gives it back in float64.

    Args:
        data: int8 [K, N] (int8) | uint8 [K // 2, N] (int4, two per byte along K, low nibble = even k;
            symmetric: 4-bit two's complement -8..7, asymmetric: unsigned 0..15) | fp8 [K, N] (ml_dtypes).
        scales: float32 [K // G, N] (per group of G rows) or [1, N] (per output channel, group_size None).
        zeros: None, or uint8 zero points 0..15 shaped like `scales` (int4 asymmetric only).
        scheme: one of SCHEMES.
        group_size: G, or None for per output channel.
        shape: (K, N).
        symmetric: False only for int4 with zero points.
    """

    data: np.ndarray
    scales: np.ndarray
    zeros: np.ndarray | None
    scheme: str
    group_size: int | None
    shape: tuple[int, int]
    symmetric: bool = True

    def __repr__(self) -> str:
        sym = "sym" if self.symmetric else "asym"
        return f"QuantizedWeight({self.scheme} {sym}, group_size={self.group_size}, shape={self.shape})"


@dataclass(frozen=True, repr=False)
class QuantizedActivation:
    """Per-token fp8 activations X[M, K] = data * scales (W8A8).

    Args:
        data: fp8 [M, K] (ml_dtypes float8_e4m3 or float8_e4m3fn).
        scales: float32 [M, 1], one per token (row).
        scheme: "fp8_e4m3" | "fp8_e4m3fn".
    """

    data: np.ndarray
    scales: np.ndarray
    scheme: str

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.data.shape)

    def __repr__(self) -> str:
        return f"QuantizedActivation({self.scheme}, shape={self.shape})"


def _to_float64(x) -> np.ndarray:
    """NumPy or torch array -> float64 NumPy (the conversion is the dtype table's, `dtypes.to_numpy`)."""
    return np.asarray(to_numpy(x), dtype=np.float64)


def _safe_scale(s: np.ndarray) -> np.ndarray:
    """float32 scales with zeros replaced by 1.0 (an all-zero group quantizes to 0 with any scale)."""
    s = s.astype(np.float32)
    return np.where(s == 0, np.float32(1.0), s)


def _groups(w: np.ndarray, group_size: int | None) -> np.ndarray:
    """[K, N] -> [num_groups, G, N] view (per channel: one group of K rows)."""
    k, n = w.shape
    g = k if group_size is None else group_size
    return w.reshape(k // g, g, n)


def check_group_size(group_size, k: int, name: str = "group_size") -> None:
    """`group_size` is None or a positive int (not a bool, not a float) dividing K; raises TypeError / ValueError
    starting with `name` (`qw.group_size` for a hand-built QuantizedWeight). Checked before anything divides by it."""
    if group_size is None:
        return
    if isinstance(group_size, (bool, np.bool_)) or not isinstance(group_size, (int, np.integer)):
        raise TypeError(f"{name}: must be a positive int or None, got {type(group_size).__name__} {group_size!r}")
    if group_size <= 0:
        raise ValueError(f"{name}: must be a positive int or None, got {group_size!r}")
    if k % group_size:
        raise ValueError(f"{name}: K={k} must be a multiple of group_size={group_size}")


def check_int4_k(scheme: str, k: int, name: str) -> None:
    """int4 packs two values per byte along K, so K must be even (ValueError starting with `name`)."""
    if scheme == "int4" and k % 2:
        raise ValueError(f"{name}: int4 packs two values per byte along K, so K must be even, got K={k}")


def _check_scheme(scheme: str, group_size, symmetric: bool, k: int) -> None:
    if scheme not in SCHEMES:
        raise ValueError(f"scheme: must be one of {SCHEMES}, got {scheme!r}")
    check_group_size(group_size, k)
    if not symmetric and scheme != "int4":
        raise ValueError(f"symmetric: asymmetric quantization (zero points) is int4-only, got scheme={scheme!r}")
    check_int4_k(scheme, k, "w")


def quantize_weight(w, scheme: str, group_size: int | None = None, symmetric: bool = True) -> QuantizedWeight:
    """Quantize W[K, N] per output channel (group_size None) or per group of `group_size` rows along K.

    Args:
        w: [K, N] float NumPy array or torch tensor.
        scheme: "int8" | "int4" | "fp8_e4m3" | "fp8_e4m3fn".
        group_size: rows per scale along K (K % group_size == 0), or None for one scale per column.
        symmetric: False gives int4 with zero points (int4 only).

    Returns:
        QuantizedWeight with NumPy arrays (see the module docstring for each format).

    Raises:
        ValueError: unknown scheme, K = 0, K not a multiple of group_size, odd K for int4, asymmetric non-int4.

    Example:
        >>> qw = quantize_weight(np.array([[1.0, -2.0], [0.5, 4.0]]), "int8")
        >>> qw.data.tolist(), qw.scales.shape
        ([[127, -64], [64, 127]], (1, 2))
    """
    w = _to_float64(w)
    if w.ndim != 2:
        raise ValueError(f"w: must be 2-D [K, N], got shape {w.shape}")
    if not np.all(np.isfinite(w)):
        raise ValueError("w: must be finite (no NaN/inf) to be quantized")
    k, n = w.shape
    if k == 0:
        raise ValueError(f"w: K must be >= 1 (nothing to scale per channel), got shape {w.shape}")
    _check_scheme(scheme, group_size, symmetric, k)
    groups = _groups(w, group_size)  # [num_groups, G, N]
    zeros = None
    if scheme in FP8_SCHEMES:
        fmax = FP8_MAX[scheme]
        s = _safe_scale(np.abs(groups).max(axis=1) / fmax)  # [num_groups, N]
        scaled = np.clip(groups / s[:, None, :].astype(np.float64), -fmax, fmax)  # clamp BEFORE the cast
        data = scaled.reshape(k, n).astype(FP8_DTYPES[scheme])
    elif scheme == "int8" or symmetric:
        qmax = INT8_MAX if scheme == "int8" else INT4_SYM_MAX
        qmin = -INT8_MAX if scheme == "int8" else -INT4_SYM_MAX - 1
        s = _safe_scale(np.abs(groups).max(axis=1) / qmax)
        q = np.clip(np.rint(groups / s[:, None, :].astype(np.float64)), qmin, qmax).reshape(k, n).astype(np.int8)
        data = q if scheme == "int8" else pack_int4(q)
    else:
        lo = np.minimum(groups.min(axis=1), 0.0)
        hi = np.maximum(groups.max(axis=1), 0.0)
        s = _safe_scale((hi - lo) / INT4_ASYM_LEVELS)
        s64 = s.astype(np.float64)
        z = np.clip(np.rint(-lo / s64), 0, INT4_ASYM_LEVELS)
        q = np.clip(np.rint(groups / s64[:, None, :]) + z[:, None, :], 0, INT4_ASYM_LEVELS)
        data = pack_int4(q.reshape(k, n).astype(np.int8))
        zeros = z.astype(np.uint8)
    return QuantizedWeight(data, s, zeros, scheme, group_size, (k, n), bool(symmetric))


def dequantize_weight(qw: QuantizedWeight, *, compute_dtype=np.float64) -> np.ndarray:
    """W[K, N] = (q - z) * s, computed in `compute_dtype` (float64 = exact for every format here).

    Example:
        >>> w = np.array([[1.0, -2.0], [0.5, 4.0]])
        >>> bool(np.abs(dequantize_weight(quantize_weight(w, "int8")) - w).max() < 0.02)
        True
    """
    k, n = qw.shape
    if qw.scheme == "int4":
        q = unpack_int4(qw.data, signed=qw.symmetric)
    else:
        q = qw.data
    q = q.astype(np.float64).reshape(qw.scales.shape[0], -1, n)  # [num_groups, G, N]
    if qw.zeros is not None:
        q = q - qw.zeros.astype(np.float64)[:, None, :]
    s = qw.scales.astype(compute_dtype)[:, None, :]
    return (q.astype(compute_dtype) * s).astype(compute_dtype).reshape(k, n)


def pack_int4(q) -> np.ndarray:
    """Pack int4 values two per byte along K: byte[k2, n] = (q[2*k2, n] & 0xF) | (q[2*k2 + 1, n] & 0xF) << 4.

    Args:
        q: int [K, N], K even, values -8..7 (signed, stored as 4-bit two's complement) or 0..15 (unsigned).

    Returns:
        uint8 [K // 2, N]: low nibble = even k, high nibble = odd k.

    Example:
        >>> pack_int4(np.array([[-1], [2]], dtype=np.int8)).tolist()
        [[47]]
    """
    q = np.asarray(q)
    if q.ndim != 2 or q.shape[0] % 2:
        raise ValueError(f"q: must be [K, N] with even K, got shape {q.shape}")
    if q.size and (q.min() < -8 or q.max() > 15):
        raise ValueError(f"q: int4 values must be in -8..7 or 0..15, got range [{q.min()}, {q.max()}]")
    nibbles = (q.astype(np.int16) & 0xF).astype(np.uint8)
    return nibbles[0::2] | (nibbles[1::2] << 4)


def unpack_int4(packed, signed: bool = True) -> np.ndarray:
    """Inverse of `pack_int4`: uint8 [K // 2, N] -> int8 [K, N] (signed -8..7, or unsigned 0..15).

    Example:
        >>> unpack_int4(np.array([[47]], dtype=np.uint8)).ravel().tolist()
        [-1, 2]
    """
    packed = np.asarray(packed)
    if packed.dtype != np.uint8 or packed.ndim != 2:
        raise ValueError(f"packed: must be uint8 [K // 2, N], got {packed.dtype} {packed.shape}")
    low = (packed & 0xF).astype(np.int8)
    high = (packed >> 4).astype(np.int8)
    if signed:
        low = np.where(low >= 8, low - 16, low).astype(np.int8)
        high = np.where(high >= 8, high - 16, high).astype(np.int8)
    out = np.empty((2 * packed.shape[0], packed.shape[1]), dtype=np.int8)
    out[0::2] = low
    out[1::2] = high
    return out


def quantize_activation(x, scheme: str = "fp8_e4m3", per: str = "token") -> QuantizedActivation:
    """Quantize activations X[M, K] to fp8 with one float32 scale per token (row): s = absmax / FMAX.

    Values are clamped to +-FMAX before the cast; all-zero rows get scale 1.0.

    Example:
        >>> qa = quantize_activation(np.array([[1.0, -240.0]]))
        >>> dequantize_activation(qa).tolist()
        [[1.0, -240.0]]
    """
    if scheme not in FP8_SCHEMES:
        raise ValueError(f"scheme: activations are quantized to one of {FP8_SCHEMES}, got {scheme!r}")
    if per != "token":
        raise ValueError(f"per: only per-token ('token') activation scales are defined, got {per!r}")
    x = _to_float64(x)
    if x.ndim != 2:
        raise ValueError(f"x: must be 2-D [M, K], got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("x: must be finite (no NaN/inf) to be quantized")
    fmax = FP8_MAX[scheme]
    s = _safe_scale(np.abs(x).max(axis=1, keepdims=True) / fmax)  # [M, 1]
    data = np.clip(x / s.astype(np.float64), -fmax, fmax).astype(FP8_DTYPES[scheme])
    return QuantizedActivation(data, s, scheme)


def dequantize_activation(qa: QuantizedActivation, *, compute_dtype=np.float64) -> np.ndarray:
    """X[M, K] = data * scales, in `compute_dtype`."""
    return (qa.data.astype(compute_dtype) * qa.scales.astype(compute_dtype)).astype(compute_dtype)
