"""Paged KV-cache write ("reshape_and_cache"): key_cache[slot // block_size, slot % block_size] = key[t], same for
value, for every token t whose slot_mapping[t] != -1.

One program copies one token's [Hkv·D] row (or a BLOCK-wide piece of it) for both caches; a -1 slot masks every
load and store, so padding tokens cost one scalar load and touch nothing. Slots are widened to int64 before the
block-stride multiply (num_blocks · block_size · Hkv · D can pass 2³¹ elements).

Quantized caches (`_quantize_kv_kernel`, rules of `nkilab.reference.kv_quant`, bit for bit): one program per
(token, kv head) loads its D values in fp32, multiplies by the float32 reciprocal of the scale (fp8: the host's
1 / s per head; int8: 1 / max(amax · (1/127), TINY), an IEEE division), clamps and rounds to nearest even — fp8
on the e4m3fn grid (`_round_to_e4m3`), int8 by adding and subtracting 1.5 · 2^23 (exact for |x| <= 127),
then an exact cast — and
stores the code (int8: and its scale into the scale cache). torch has no float8_e4m3, so fp8 here is e4m3fn.
Reference: nkilab.reference.paged.write_kv_cache
"""

import numpy as np
import torch
import triton
import triton.language as tl

from nkilab.reference.kv_quant import INV_INT8_MAX, TINY, reciprocal32
from nkilab.reference.quant import FP8_MAX, INT8_MAX

from ._interpret import INTERPRET
from ._launch import padded_head_dim, to_kernel_device

RNE_MAGIC = tl.constexpr(12582912.0)  # 1.5 · 2^23: x + M·u - M·u rounds fp32 |x| < 2^22·u to a multiple of u (RNE)
E4M3_MIN_ULP = tl.constexpr(2.0 ** -9)  # float8_e4m3fn spacing below its smallest normal 2^-6 (3 mantissa bits)


@triton.jit
def _round_to_e4m3(y):
    """y (fp32, |y| <= 448) rounded to nearest even on the float8_e4m3fn grid, in fp32 arithmetic: the spacing u of
    y's binade (2^(e - 3), at least 2^-9) from its exponent bits, then the magic-number rounding. The cast that
    follows is then exact (the Triton CPU interpreter's fp32 -> fp8 cast mis-rounds values that carry into the next
    binade, e.g. 31.5 -> 16; a GPU's cvt.rn.satfinite agrees with this)."""
    exp_bits = (y.to(tl.int32, bitcast=True) >> 23) & 0xFF
    u = tl.maximum(((exp_bits - 3) << 23).to(tl.float32, bitcast=True), E4M3_MIN_ULP)
    return (y + RNE_MAGIC * u) - RNE_MAGIC * u


@triton.jit
def _write_kv_cache_kernel(
    # Pointers
    key_ptr, value_ptr, key_cache_ptr, value_cache_ptr, slot_ptr,
    # Sizes
    row, d, block_size,
    # Strides, in elements: key/value [T, Hkv, D], caches [num_blocks, block_size, Hkv, D], slot_mapping [T]
    stride_kt, stride_kh, stride_kd,
    stride_vt, stride_vh, stride_vd,
    stride_kcb, stride_kcs, stride_kch, stride_kcd,
    stride_vcb, stride_vcs, stride_vch, stride_vcd,
    stride_slot,
    # Meta-parameters
    BLOCK: tl.constexpr,
):
    t = tl.program_id(0).to(tl.int64)
    slot = tl.load(slot_ptr + t * stride_slot).to(tl.int64)
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    # The slot is broadcast to a block before the test: the interpreter mis-types `block_bool & scalar_bool`.
    ok = (offs < row) & ((tl.zeros([BLOCK], tl.int64) + slot) >= 0)
    h = offs // d
    dd = offs % d
    blk = slot // block_size
    off = slot % block_size
    k = tl.load(key_ptr + t * stride_kt + h * stride_kh + dd * stride_kd, mask=ok)
    v = tl.load(value_ptr + t * stride_vt + h * stride_vh + dd * stride_vd, mask=ok)
    tl.store(key_cache_ptr + blk * stride_kcb + off * stride_kcs + h * stride_kch + dd * stride_kcd,
             k.to(key_cache_ptr.dtype.element_ty), mask=ok)
    tl.store(value_cache_ptr + blk * stride_vcb + off * stride_vcs + h * stride_vch + dd * stride_vcd,
             v.to(value_cache_ptr.dtype.element_ty), mask=ok)


@triton.jit
def _quantize_kv_kernel(
    # Pointers: rows [T, Hkv, D]; caches [num_blocks, block_size, Hkv, D]; fp8: reciprocal scales [Hkv] float32;
    # int8: scale caches [num_blocks, block_size, Hkv] float32 (the inv pointer is unused)
    x_ptr, cache_ptr, inv_ptr, scale_cache_ptr, slot_ptr,
    # Sizes and format constants
    d, block_size, qmax, inv_qmax, tiny,
    # Strides, in elements: rows, caches, scale caches, slot_mapping [T]
    stride_xt, stride_xh, stride_xd,
    stride_cb, stride_cs, stride_ch, stride_cd,
    stride_sb, stride_ss, stride_sh, stride_slot,
    # Meta-parameters
    D_PAD: tl.constexpr, IS_INT8: tl.constexpr,
):
    t = tl.program_id(0).to(tl.int64)
    h = tl.program_id(1).to(tl.int64)
    slot = tl.load(slot_ptr + t * stride_slot).to(tl.int64)
    offs = tl.arange(0, D_PAD)
    ok = (offs < d) & ((tl.zeros([D_PAD], tl.int64) + slot) >= 0)
    x = tl.load(x_ptr + t * stride_xt + h * stride_xh + offs * stride_xd, mask=ok, other=0.0).to(tl.float32)
    blk = slot // block_size
    off = slot % block_size
    if IS_INT8:
        s = tl.maximum(tl.max(tl.abs(x), 0) * inv_qmax, tiny)
        inv = tl.math.div_rn(1.0, s)
        y = tl.minimum(tl.maximum(x * inv, -qmax), qmax)
        y = (y + RNE_MAGIC) - RNE_MAGIC
        tl.store(scale_cache_ptr + blk * stride_sb + off * stride_ss + h * stride_sh, s, mask=slot >= 0)
    else:
        y = _round_to_e4m3(tl.minimum(tl.maximum(x * tl.load(inv_ptr + h), -qmax), qmax))
    tl.store(cache_ptr + blk * stride_cb + off * stride_cs + h * stride_ch + offs * stride_cd,
             y.to(cache_ptr.dtype.element_ty), mask=ok)


def write_kv_cache(key: torch.Tensor, value: torch.Tensor, key_cache: torch.Tensor, value_cache: torch.Tensor,
                   slot_mapping: torch.Tensor, *, kv_cache_dtype: str = "auto", k_scale=None, v_scale=None,
                   k_scale_cache: torch.Tensor | None = None,
                   v_scale_cache: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Scatter T tokens' keys and values into the paged caches, in place.

    Dimensions:  T tokens; Hkv heads; D head dim; num_blocks × block_size slots.
    Args:        key, value: [T, Hkv, D]; key_cache, value_cache: [num_blocks, block_size, Hkv, D] (values are cast
                 to the cache dtype); slot_mapping: [T] integer, -1 = skip. Any strides (every tensor, the slot
                 mapping included, is read through its strides: a sliced or expanded view reads what it shows).
                 kv_cache_dtype, k_scale, v_scale, k_scale_cache, v_scale_cache: as the public API's (quantized:
                 `_quantize_kv_kernel`; the caches must be on the kernel device).
    Returns:     (key_cache, value_cache), the same tensors, updated.
    Tiling:      grid (T, ceil(Hkv·D / BLOCK)); the interpreter copies a whole row per program. Quantized: (T, Hkv).
    """
    t, hkv, d = key.shape
    if t == 0:
        return key_cache, value_cache
    if kv_cache_dtype != "auto":
        _write_quantized(key, value, key_cache, value_cache, slot_mapping, kv_cache_dtype, k_scale, v_scale,
                         k_scale_cache, v_scale_cache)
        return key_cache, value_cache
    # Caches held elsewhere than the kernel device (CPU tensors on a GPU machine) are written through a copy.
    key, value, slots, k_dev, v_dev = to_kernel_device(key, value, slot_mapping, key_cache, value_cache)
    row = hkv * d
    block = triton.next_power_of_2(row) if INTERPRET else min(1024, triton.next_power_of_2(row))
    grid = (t, triton.cdiv(row, block))
    _write_kv_cache_kernel[grid](
        key, value, k_dev, v_dev, slots,
        row, d, k_dev.shape[1],
        *key.stride(), *value.stride(), *k_dev.stride(), *v_dev.stride(), slots.stride(0),
        BLOCK=block,
    )
    if k_dev is not key_cache:
        key_cache.copy_(k_dev)
    if v_dev is not value_cache:
        value_cache.copy_(v_dev)
    return key_cache, value_cache


def _write_quantized(key, value, key_cache, value_cache, slot_mapping, kv_cache_dtype, k_scale, v_scale,
                     k_scale_cache, v_scale_cache) -> None:
    """Quantize-and-scatter with `_quantize_kv_kernel`, one launch per cache."""
    (key, value, slots), device = to_kernel_device(key, value, slot_mapping), key_cache.device
    t, hkv, d = key.shape
    is_int8 = kv_cache_dtype == "int8"
    qmax = float(INT8_MAX) if is_int8 else float(FP8_MAX[kv_cache_dtype])
    for x, cache, scale, scale_cache in ((key, key_cache, k_scale, k_scale_cache),
                                         (value, value_cache, v_scale, v_scale_cache)):
        inv = torch.zeros(hkv, dtype=torch.float32, device=device)
        if not is_int8:
            inv = torch.from_numpy(reciprocal32(np.broadcast_to(np.asarray(scale, np.float32), (hkv,)))).to(device)
        sc = scale_cache if is_int8 else inv
        sc_strides = scale_cache.stride() if is_int8 else (0, 0, 0)
        _quantize_kv_kernel[(t, hkv)](
            x, cache, inv, sc, slots, d, cache.shape[1], qmax, INV_INT8_MAX, TINY,
            *x.stride(), *cache.stride(), *sc_strides, slots.stride(0),
            D_PAD=padded_head_dim(d), IS_INT8=is_int8,
        )


def unsupported(**problem) -> str | None:
    """A copy: every dtype, head dim and block size runs (keys: head_dim, block_size, dtype, kv_cache_dtype,
    empty); quantized, every kv_cache_dtype torch has a dtype for (no float8_e4m3)."""
    if problem.get("kv_cache_dtype") == "fp8_e4m3":
        return "kv_cache_dtype fp8_e4m3 (IEEE-like e4m3, max 240) has no torch dtype; use fp8_e4m3fn or int8"
    return None
