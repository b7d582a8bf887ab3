"""Paged KV-cache references: cache write and paged attention over a block table.

Cache layout (vLLM "flash" layout): key_cache, value_cache: [num_blocks, block_size, Hkv, D]. Slot
`s = block * block_size + offset` names one token position; a sequence's logical block j lives in physical
block block_tables[i, j]. Paged attention is defined by gathering each sequence's live keys and values and
running dense attention (`nkilab.reference.attention.attention`) on them, with the sequence's queries as its
last q_len positions (bottom-right causal alignment does the rest). Cache slots outside a sequence's live
positions are never read, so their contents (NaN in tests) cannot influence the output.
"""

from __future__ import annotations

import numpy as np

from nkilab.reference.attention import attention
from nkilab.reference.kv_quant import dequantize_rows, fp8_codes, int8_codes


def write_kv_cache(key, value, key_cache, value_cache, slot_mapping, *, kv_cache_dtype="auto", k_scale=None,
                   v_scale=None, k_scale_cache=None, v_scale_cache=None):
    """Write token t's key/value into slot slot_mapping[t], in place; slot -1 means skip (padding).

    Args:
        key, value: [T, Hkv, D].
        key_cache, value_cache: [num_blocks, block_size, Hkv, D], written in place (values cast to their dtype, or
            quantized to their codes: `nkilab.reference.kv_quant`).
        slot_mapping: [T] integer; token t goes to block slot // block_size, offset slot % block_size.
        kv_cache_dtype: "auto" | "fp8_e4m3" | "fp8_e4m3fn" | "int8" (see `nkilab.reference.kv_quant`).
        k_scale, v_scale: fp8 scales, scalar or [Hkv] (None = 1.0).
        k_scale_cache, v_scale_cache: int8: float32 [num_blocks, block_size, Hkv], written in place.

    Returns:
        (key_cache, value_cache), the same arrays.

    Raises:
        ValueError: a slot outside [-1, num_blocks * block_size) (NumPy would wrap -2 to the last block).

    Example:
        >>> kc = np.zeros((2, 2, 1, 1)); vc = np.zeros((2, 2, 1, 1))
        >>> _ = write_kv_cache(np.ones((2, 1, 1)), np.ones((2, 1, 1)), kc, vc, np.array([3, -1]))
        >>> kc.ravel().tolist()
        [0.0, 0.0, 0.0, 1.0]
    """
    num_blocks, block_size = key_cache.shape[:2]
    rows, scale_rows = _quantized_rows(key, value, kv_cache_dtype, k_scale, v_scale)
    for t, slot in enumerate(np.asarray(slot_mapping).tolist()):
        if slot == -1:
            continue
        if not 0 <= slot < num_blocks * block_size:
            raise ValueError(f"slot_mapping: slot_mapping[{t}] = {slot} is outside [-1, {num_blocks * block_size})")
        block, offset = divmod(slot, block_size)
        key_cache[block, offset] = rows[0][t]
        value_cache[block, offset] = rows[1][t]
        if scale_rows is not None:
            k_scale_cache[block, offset] = scale_rows[0][t]
            v_scale_cache[block, offset] = scale_rows[1][t]
    return key_cache, value_cache


def _quantized_rows(key, value, kv_cache_dtype, k_scale, v_scale):
    """((key rows, value rows) as stored, (key scales, value scales) [T, Hkv] for int8 else None)."""
    if kv_cache_dtype == "auto":
        return (key, value), None
    if kv_cache_dtype == "int8":
        (kq, ks), (vq, vs) = int8_codes(key), int8_codes(value)
        return (kq, vq), (ks, vs)
    return tuple(fp8_codes(x, 1.0 if s is None else s, kv_cache_dtype)
                 for x, s in ((key, k_scale), (value, v_scale))), None


def gather_kv(key_cache, value_cache, block_table_row, seq_len: int, *, scale_caches=None):
    """The first seq_len keys and values of one sequence, in logical order.

    Args:
        key_cache, value_cache: [num_blocks, block_size, Hkv, D].
        block_table_row: [max_blocks] integer; only the first ceil(seq_len / block_size) entries are read.
        seq_len: number of live positions.
        scale_caches: None, or (k_scale_cache, v_scale_cache) [num_blocks, block_size, Hkv] (int8 caches).

    Returns:
        (k, v): each [seq_len, Hkv, D]; with scale_caches also (k_scales, v_scales) [seq_len, Hkv].

    Raises:
        ValueError: a used entry outside [0, num_blocks) (NumPy would wrap -1 to the last block).
    """
    num_blocks, block_size = key_cache.shape[:2]
    positions = np.arange(seq_len)
    blocks = np.asarray(block_table_row)[positions // block_size]
    if np.any((blocks < 0) | (blocks >= num_blocks)):
        bad = int(blocks[(blocks < 0) | (blocks >= num_blocks)][0])
        raise ValueError(f"block_table_row: used entry {bad} is outside [0, num_blocks={num_blocks})")
    offsets = positions % block_size
    kv = (key_cache[blocks, offsets], value_cache[blocks, offsets])
    if scale_caches is None:
        return kv
    return kv + tuple(np.asarray(c)[blocks, offsets] for c in scale_caches)


def build_paged_cache(keys, values, block_tables, *, num_blocks: int, block_size: int, fill=np.nan):
    """Lay per-sequence keys/values out in a paged cache; every slot that no sequence owns holds `fill`.

    Args:
        keys, values: lists of per-sequence [L_i, Hkv, D] arrays (all the same dtype, Hkv and D).
        block_tables: [num_seqs, max_blocks] integer; logical block j of sequence i -> block_tables[i, j].
        num_blocks, block_size: cache geometry.
        fill: value of every slot not live for some sequence (NaN poisons reads of dead slots).

    Returns:
        (key_cache, value_cache): [num_blocks, block_size, Hkv, D], dtype of keys[0].
    """
    hkv, d = keys[0].shape[1:]
    dtype = np.asarray(keys[0]).dtype
    key_cache = np.full((num_blocks, block_size, hkv, d), fill, dtype=dtype)
    value_cache = np.full((num_blocks, block_size, hkv, d), fill, dtype=dtype)
    for i, (k, v) in enumerate(zip(keys, values)):
        for pos in range(len(k)):
            block = block_tables[i][pos // block_size]
            key_cache[block, pos % block_size] = k[pos]
            value_cache[block, pos % block_size] = v[pos]
    return key_cache, value_cache


def paged_attention(
    q,
    key_cache,
    value_cache,
    block_tables,
    seq_lens,
    query_start_loc,
    *,
    scale=None,
    causal=True,
    sliding_window=None,
    softcap=None,
    compute_dtype=np.float64,
    sum_order="numpy",
    kv_cache_dtype="auto",
    k_scale=None,
    v_scale=None,
    k_scale_cache=None,
    v_scale_cache=None,
):
    """Attention of each sequence's new query tokens over its paged KV history (decode, prefill, chunked, mixed).

    Dimensions: T_total query tokens over num_seqs sequences; Hq = g * Hkv; D head dim.

    Args:
        q: [T_total, Hq, D]; sequence i owns rows query_start_loc[i] : query_start_loc[i + 1].
        key_cache, value_cache: [num_blocks, block_size, Hkv, D].
        block_tables: [num_seqs, max_blocks] integer; entries past ceil(seq_lens[i] / block_size) are ignored.
        seq_lens: [num_seqs] total KV length of each sequence, its q_len_i new tokens included (they are its
            last q_len_i positions; decode: q_len_i == 1).
        query_start_loc: [num_seqs + 1] integer, starts at 0, non-decreasing, ends at T_total.
        scale, causal, sliding_window, softcap, compute_dtype, sum_order: as in `attention` (causal is
            bottom-right).
        kv_cache_dtype, k_scale, v_scale, k_scale_cache, v_scale_cache: how the caches are quantized (as in
            `write_kv_cache`); each sequence's keys and values are dequantized (code * scale, in float64), then
            attended to.

    Returns:
        out: [T_total, Hq, D] compute_dtype; a sequence with q_len 0 owns no rows.

    Raises:
        ValueError: a used block_tables entry outside [0, num_blocks) (see `gather_kv`).

    Example:
        >>> kc = np.arange(4.0).reshape(2, 2, 1, 1); q = np.zeros((1, 1, 1))
        >>> paged_attention(q, kc, kc, np.array([[1, -1]]), np.array([2]), np.array([0, 1])).tolist()
        [[[2.5]]]
    """
    cd = np.dtype(compute_dtype)
    q = np.asarray(q)
    out = np.zeros(q.shape, dtype=cd)
    starts = np.asarray(query_start_loc).tolist()
    for i, seq_len in enumerate(np.asarray(seq_lens).tolist()):
        lo, hi = starts[i], starts[i + 1]
        if hi == lo:
            continue
        k, v = _dequantized_kv(key_cache, value_cache, block_tables[i], seq_len, kv_cache_dtype, k_scale, v_scale,
                               k_scale_cache, v_scale_cache)
        out[lo:hi] = attention(
            q[None, lo:hi], k[None], v[None],
            causal=causal, scale=scale, sliding_window=sliding_window, softcap=softcap, compute_dtype=cd,
            sum_order=sum_order,
        )[0]
    return out


def _dequantized_kv(key_cache, value_cache, table_row, seq_len, kv_cache_dtype, k_scale, v_scale, k_scale_cache,
                    v_scale_cache):
    """One sequence's keys and values [seq_len, Hkv, D], dequantized to float64 ("auto": as stored)."""
    if kv_cache_dtype == "auto":
        return gather_kv(key_cache, value_cache, table_row, seq_len)
    if kv_cache_dtype == "int8":
        k, v, ks, vs = gather_kv(key_cache, value_cache, table_row, seq_len,
                                 scale_caches=(k_scale_cache, v_scale_cache))
        return dequantize_rows(k, "int8", scales=ks), dequantize_rows(v, "int8", scales=vs)
    k, v = gather_kv(key_cache, value_cache, table_row, seq_len)
    return (dequantize_rows(k, kv_cache_dtype, scale=1.0 if k_scale is None else k_scale),
            dequantize_rows(v, kv_cache_dtype, scale=1.0 if v_scale is None else v_scale))
