"""Quantized KV caches: the formats, the rules for their scales, quantize-on-write and dequantize-on-read.

`kv_cache_dtype` (an argument of `write_kv_cache` and `paged_attention`) names how the data caches
key_cache / value_cache [num_blocks, block_size, Hkv, D] store a key or value:

  "auto"        the cache's own float dtype (no quantization).
  "fp8_e4m3"    float8_e4m3 (IEEE-like, max 240; NeuronCore-v2/v3 native) with scales k_scale, v_scale.
  "fp8_e4m3fn"  float8_e4m3fn (OCP, max 448; trn3, Hopper) with scales k_scale, v_scale.
  "int8"        int8, symmetric, one float32 scale per (token, kv head) in the scale caches
                k_scale_cache, v_scale_cache [num_blocks, block_size, Hkv] float32: the data cache's slot layout
                without D, so slot s of kv head h has data cache[s // bs, s % bs, h, :] and scale
                scale_cache[s // bs, s % bs, h].

fp8 scales: a Python / NumPy scalar (per tensor) or a float32 [Hkv] array (per kv head); finite and > 0.
Quantization is defined in float32, bit for bit, so every backend stores the same codes:

  fp8:   code = rne(clip(f32(x) * (1 / s), -max, max))    1 / s rounded to float32; the clip comes first, as
                                                          NumPy / ml_dtypes casts overflow to inf/NaN
  int8:  s = max(max_d |f32(x)| * f32(1 / 127), TINY)     per (token, kv head); TINY = float32's smallest
         code = clip(rint(f32(x) * (1 / s)), -127, 127)   normal, so an all-zero row gets codes 0
                                                          (-128 is never used: the range is symmetric)

"divided by the scale" is a multiply by the float32 reciprocal: the NeuronCore engines have no divide, and one
rounding rule for every backend keeps the codes identical (the quotient differs from x / s by at most one
float32 rounding). Dequantization is code * s, in float64 for the references; a kernel applies the scales to its
fp32 scores and to P·V (fp8) or while converting int8 tiles for TensorE (see the kernels). Only finite keys and
values can be quantized (the write refuses others).
"""

from __future__ import annotations

import numpy as np

from nkilab.reference.dtypes import numpy_dtype
from nkilab.reference.quant import FP8_DTYPES, FP8_MAX, INT8_MAX

KV_CACHE_DTYPES = ("auto", "fp8_e4m3", "fp8_e4m3fn", "int8")
# storage dtype name of the data caches per quantized kv_cache_dtype
KV_STORAGE = {"fp8_e4m3": "float8_e4m3", "fp8_e4m3fn": "float8_e4m3fn", "int8": "int8"}
TINY = float(np.finfo(np.float32).tiny)  # int8 scale floor: an all-zero (token, head) row gets codes 0
INV_INT8_MAX = float(np.float32(1.0) / np.float32(INT8_MAX))  # the float32 1 / 127 of the int8 scale rule


def reciprocal32(s) -> np.ndarray:
    """float32 1 / s (correctly rounded), the multiplier every backend quantizes with."""
    return np.float32(1.0) / np.asarray(s, np.float32)


def fp8_codes(x, scale, kv_cache_dtype: str) -> np.ndarray:
    """fp8 codes of x [T, Hkv, D] for a per-tensor (scalar) or per-head ([Hkv]) scale, in the cache dtype."""
    fmax = np.float32(FP8_MAX[kv_cache_dtype])
    inv = reciprocal32(scale)
    inv = inv.reshape(1, -1, 1) if inv.ndim == 1 else inv
    scaled = np.asarray(x).astype(np.float32) * inv
    return np.clip(scaled, -fmax, fmax).astype(FP8_DTYPES[kv_cache_dtype])


def int8_codes(x) -> tuple[np.ndarray, np.ndarray]:
    """(codes int8 [T, Hkv, D], scales float32 [T, Hkv]) of x [T, Hkv, D], symmetric per (token, kv head)."""
    x32 = np.asarray(x).astype(np.float32)
    amax = np.abs(x32).max(axis=-1) if x32.shape[-1] else np.zeros(x32.shape[:-1], np.float32)
    scales = np.maximum(amax * np.float32(INV_INT8_MAX), np.float32(TINY)).astype(np.float32)
    codes = np.clip(np.rint(x32 * reciprocal32(scales)[..., None]), -INT8_MAX, INT8_MAX).astype(np.int8)
    return codes, scales


def dequantize_rows(codes, kv_cache_dtype: str, *, scale=None, scales=None, compute_dtype=np.float64) -> np.ndarray:
    """Key / value rows [L, Hkv, D] from their codes: code * s in compute_dtype (fp8: `scale` scalar or [Hkv];
    int8: `scales` [L, Hkv]; "auto": the values themselves)."""
    cd = np.dtype(compute_dtype)
    values = np.asarray(codes).astype(np.float64)
    if kv_cache_dtype == "int8":
        values = values * np.asarray(scales, np.float64)[..., None]
    elif kv_cache_dtype != "auto":
        s = np.asarray(scale, np.float64)
        values = values * (s.reshape(1, -1, 1) if s.ndim == 1 else s)
    return values.astype(cd)


def storage_dtype(kv_cache_dtype: str, model_dtype: str) -> np.dtype:
    """The data caches' NumPy dtype for `kv_cache_dtype` ("auto": the model's dtype)."""
    return numpy_dtype(KV_STORAGE.get(kv_cache_dtype, model_dtype))
