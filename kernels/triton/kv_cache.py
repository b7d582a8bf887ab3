"""Paged KV-cache write ("reshape_and_cache"): key_cache[slot // block_size, slot % block_size] = key[t], same for
value, for every token t whose slot_mapping[t] != -1.

One program copies one token's [Hkv·D] row (or a BLOCK-wide piece of it) for both caches; a -1 slot masks every
load and store, so padding tokens cost one scalar load and touch nothing. Slots are widened to int64 before the
block-stride multiply (num_blocks · block_size · Hkv · D can pass 2³¹ elements).
Reference: nkilab.reference.paged.write_kv_cache
"""

import torch
import triton
import triton.language as tl

from ._interpret import INTERPRET
from ._launch import to_kernel_device


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


def write_kv_cache(key: torch.Tensor, value: torch.Tensor, key_cache: torch.Tensor, value_cache: torch.Tensor,
                   slot_mapping: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Scatter T tokens' keys and values into the paged caches, in place.

    Dimensions:  T tokens; Hkv heads; D head dim; num_blocks × block_size slots.
    Args:        key, value: [T, Hkv, D]; key_cache, value_cache: [num_blocks, block_size, Hkv, D] (values are cast
                 to the cache dtype); slot_mapping: [T] integer, -1 = skip. Any strides (every tensor, the slot
                 mapping included, is read through its strides: a sliced or expanded view reads what it shows).
    Returns:     (key_cache, value_cache), the same tensors, updated.
    Tiling:      grid (T, ceil(Hkv·D / BLOCK)); the interpreter copies a whole row per program.
    """
    t, hkv, d = key.shape
    if t == 0:
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


def unsupported(**problem) -> None:
    """A copy: every dtype, head dim and block size runs (keys: head_dim, block_size, dtype, empty)."""
    return None
