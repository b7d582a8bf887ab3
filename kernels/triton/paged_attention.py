"""Unified paged attention: decode, prefill over a cached prefix, chunked prefill and mixed batches in one launch.

out[t, h] = softmax_j(mask(softcap(scale · q[t, h] · K[j, h // g]))) V[j, h // g] over the keys j < seq_len of t's
sequence, read through its block table from a cache laid out [num_blocks, block_size, Hkv, D] (vLLM flash layout).

Algorithm (after vLLM's Triton unified attention, arXiv 2511.11581; our own code):
  - grid (T_total // BLOCK_Q + num_seqs, Hkv, NUM_SEGMENTS): the first axis bounds the number of BLOCK_Q-token
    query blocks from above, so the launch needs no host sync; a program finds its sequence by binary search over
    query_start_loc (the block index of sequence s starts at query_start_loc[s] // BLOCK_Q + s) and exits when its
    block lies past the sequence's queries.
  - GQA packing: a program's BLOCK_M rows are BLOCK_Q query tokens × the g query heads sharing one KV head, so each
    K/V tile is loaded once for all g heads (row r: token r // g, head r % g; BLOCK_M is a power of two >= g·BLOCK_Q).
  - the keys are streamed TILE keys at a time through the online softmax of `_flash.py`; TILE is independent of
    block_size (any block size works): each key's physical block comes from the block table.
  - only keys a query block can see are visited: causal stops at its last query's position, a sliding window starts
    at its first query's position − w + 1.
  - split-KV for decode (few programs, long contexts): a third grid axis cuts each key range into NUM_SEGMENTS
    pieces; each writes its partial (max, sum, unnormalised output) to fp32 scratch and `_merge_segments_kernel`
    combines them (out = Σ 2^(m_s − M) acc_s / Σ 2^(m_s − M) l_s), so a batch of one still fills the GPU.
Masking: block-table entries and cache rows are loaded only for live keys (j < seq_len), with 0 for masked lanes, so
NaN-poisoned unused slots and -1 / junk table entries never reach a score or a value (0 · NaN = NaN would).
Numerics: fp32 scores, softmax and accumulation; P cast to q's dtype before P·V.
Quantized caches (QUANT: 1 fp8, 2 int8; `nkilab.reference.kv_quant`): K and V tiles are loaded as codes and converted
to q's dtype (exact: e4m3fn and |int8| <= 127 are bf16 / fp16 values). fp8: the kv head's k_scale multiplies the
score scale, its v_scale the finished rows. int8: the keys' per-token scales multiply the fp32 scores column by
column; the values' scale each V row as it is converted (code · scale rounded to q's dtype: P·V needs one dtype).
Scale lanes of masked keys load 0, so NaN in unused scale slots never enters.
Reference: nkilab.reference.paged.paged_attention
"""

import numpy as np
import torch
import triton
import triton.language as tl

from ._flash import empty_rows, finish_rows, masked_scores, online_softmax_step, visible_key_range
from ._interpret import INTERPRET
from ._launch import dot_precision, padded_head_dim, to_kernel_device
from ._support import attention_reason


@triton.jit
def _find_sequence(query_start_loc_ptr, stride_qsl, num_seqs, q_block, BLOCK_Q: tl.constexpr):
    """Largest s with query_start_loc[s] // BLOCK_Q + s <= q_block (binary search; the left side is non-decreasing);
    query_start_loc is read through its stride `stride_qsl` (elements)."""
    lo: tl.int32 = 0  # typed, so the loop-carried value stays an int32 even when num_seqs is specialized to 1
    hi = num_seqs
    while lo < hi:
        mid = (lo + hi) // 2
        start = tl.load(query_start_loc_ptr + mid * stride_qsl) // BLOCK_Q + mid
        if start <= q_block:
            lo = mid + 1
        else:
            hi = mid
    return lo - 1


@triton.jit
def _paged_attention_kernel(
    # Over 80 lines because a Triton kernel takes every tensor's strides as arguments (24 lines of signature); the
    # body is one pass: find the work item, stream its key tiles, write its partial softmax (one segment: the output).
    # Pointers
    q_ptr, key_cache_ptr, value_cache_ptr, out_ptr, block_tables_ptr, seq_lens_ptr, query_start_loc_ptr,
    seg_max_ptr, seg_sum_ptr, seg_acc_ptr,
    # fp8: k / v scales [Hkv] float32; int8: scale caches [num_blocks, block_size, Hkv] float32 (else unused)
    k_scale_ptr, v_scale_ptr,
    # Sizes
    num_seqs, block_size, hq,
    # Scalars: softmax scale, sliding window (keys), softcap
    scale, window, softcap,
    # Strides, in elements
    stride_qt, stride_qh, stride_qd,
    stride_kb, stride_ks, stride_kh, stride_kd,
    stride_vb, stride_vs, stride_vh, stride_vd,
    stride_ot, stride_oh, stride_od,
    stride_bts, stride_btb, stride_sl, stride_qsl,
    stride_ksb, stride_kss, stride_ksh, stride_vsb, stride_vss, stride_vsh,
    # Meta-parameters
    GROUP: tl.constexpr, D: tl.constexpr, D_PAD: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_Q: tl.constexpr, TILE: tl.constexpr, NUM_SEGMENTS: tl.constexpr,
    IS_CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr, HAS_SOFTCAP: tl.constexpr, DOT_PRECISION: tl.constexpr,
    QUANT: tl.constexpr,
):
    tl.static_assert(BLOCK_Q * GROUP <= BLOCK_M)
    q_block = tl.program_id(0)
    kvh = tl.program_id(1)

    seq = _find_sequence(query_start_loc_ptr, stride_qsl, num_seqs, q_block, BLOCK_Q)
    q_first = tl.load(query_start_loc_ptr + seq * stride_qsl)
    q_len = tl.load(query_start_loc_ptr + (seq + 1) * stride_qsl) - q_first
    local = q_block - (q_first // BLOCK_Q + seq)
    if local * BLOCK_Q >= q_len:
        return
    seq_len = tl.load(seq_lens_ptr + seq * stride_sl)
    context = seq_len - q_len  # queries are the last q_len positions of the sequence

    # Rows: BLOCK_Q tokens × GROUP query heads of KV head kvh.
    offs_m = tl.arange(0, BLOCK_M)
    tok = local * BLOCK_Q + offs_m // GROUP
    head = (kvh * GROUP + offs_m % GROUP).to(tl.int64)
    row_ok = (offs_m < BLOCK_Q * GROUP) & (tok < q_len)
    pos = context + tok
    offs_d = tl.arange(0, D_PAD)
    d_ok = offs_d < D
    q_rows = (q_first + tok).to(tl.int64)
    q = tl.load(q_ptr + q_rows[:, None] * stride_qt + head[:, None] * stride_qh + offs_d[None, :] * stride_qd,
                mask=row_ok[:, None] & d_ok[None, :], other=0.0)

    lo, hi = visible_key_range(context + local * BLOCK_Q, BLOCK_Q, seq_len, window, TILE, IS_CAUSAL, HAS_WINDOW)
    if NUM_SEGMENTS > 1:  # this program's share: whole tiles, so segments never overlap
        per_segment = tl.cdiv(tl.cdiv(hi - lo, TILE), NUM_SEGMENTS) * TILE
        lo = lo + tl.program_id(2) * per_segment
        hi = tl.minimum(hi, lo + per_segment)

    k_base = key_cache_ptr + kvh.to(tl.int64) * stride_kh
    v_base = value_cache_ptr + kvh.to(tl.int64) * stride_vh
    bt_row = block_tables_ptr + seq.to(tl.int64) * stride_bts
    offs_j = tl.arange(0, TILE)
    m_i, l_i, acc = empty_rows(BLOCK_M, D_PAD)
    score_scale = scale
    if QUANT == 1:
        score_scale = scale * tl.load(k_scale_ptr + kvh)
    for start in range(lo, hi, TILE):
        j = start + offs_j
        j_ok = j < hi
        # Physical block of each key; masked lanes read nothing (entries past the live blocks may be -1 or junk).
        blk = tl.load(bt_row + (j // block_size) * stride_btb, mask=j_ok, other=0).to(tl.int64)
        slot_k = blk * stride_kb + (j % block_size) * stride_ks
        slot_v = blk * stride_vb + (j % block_size) * stride_vs
        kt = tl.load(k_base + slot_k[None, :] + offs_d[:, None] * stride_kd, mask=j_ok[None, :] & d_ok[:, None],
                     other=0.0).to(q.dtype)
        v = tl.load(v_base + slot_v[:, None] + offs_d[None, :] * stride_vd, mask=j_ok[:, None] & d_ok[None, :],
                    other=0.0)
        tile_scale = score_scale
        if QUANT == 2:  # per-key scales: the fp32 scores column by column, V row by row
            off = j % block_size
            ks = tl.load(k_scale_ptr + blk * stride_ksb + off * stride_kss + kvh * stride_ksh, mask=j_ok, other=0.0)
            vs = tl.load(v_scale_ptr + blk * stride_vsb + off * stride_vss + kvh * stride_vsh, mask=j_ok, other=0.0)
            tile_scale = scale * ks[None, :]
            v = v.to(tl.float32) * vs[:, None]
        s, visible = masked_scores(q, kt, tile_scale, softcap, row_ok, pos, j, j_ok, window,
                                   IS_CAUSAL, HAS_WINDOW, HAS_SOFTCAP, DOT_PRECISION)
        m_i, l_i, acc = online_softmax_step(s, visible, m_i, l_i, acc, v.to(q.dtype), DOT_PRECISION)
    if QUANT == 1:
        acc = acc * tl.load(v_scale_ptr + kvh)

    if NUM_SEGMENTS > 1:
        # Partials of row (token, head) for this segment at [token, head, segment] of the fp32 scratch.
        part = (q_rows * hq + head) * NUM_SEGMENTS + tl.program_id(2)
        tl.store(seg_max_ptr + part, m_i, mask=row_ok)
        tl.store(seg_sum_ptr + part, l_i, mask=row_ok)
        tl.store(seg_acc_ptr + part[:, None] * D_PAD + offs_d[None, :], acc, mask=row_ok[:, None])
    else:
        out = finish_rows(acc, l_i)
        tl.store(out_ptr + q_rows[:, None] * stride_ot + head[:, None] * stride_oh + offs_d[None, :] * stride_od,
                 out.to(out_ptr.dtype.element_ty), mask=row_ok[:, None] & d_ok[None, :])


@triton.jit
def _merge_segments_kernel(
    # Pointers: fp32 scratch [T, Hq, NUM_SEGMENTS] (max in log2 units, sum) and [T, Hq, NUM_SEGMENTS, D_PAD]
    seg_max_ptr, seg_sum_ptr, seg_acc_ptr, out_ptr,
    # Sizes and output strides
    hq, stride_ot, stride_oh, stride_od,
    # Meta-parameters
    D: tl.constexpr, D_PAD: tl.constexpr, NUM_SEGMENTS: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64) * hq + tl.program_id(1)
    offs_s = tl.arange(0, NUM_SEGMENTS)
    offs_d = tl.arange(0, D_PAD)
    m = tl.load(seg_max_ptr + row * NUM_SEGMENTS + offs_s)
    l_s = tl.load(seg_sum_ptr + row * NUM_SEGMENTS + offs_s)
    acc = tl.load(seg_acc_ptr + (row * NUM_SEGMENTS + offs_s)[:, None] * D_PAD + offs_d[None, :])
    m_all = tl.max(m, 0)
    weight = tl.exp2(m - tl.where(m_all == float("-inf"), 0.0, m_all))  # empty segments (m = -inf) weigh 0
    total = tl.sum(weight * l_s, 0)
    out = tl.sum(weight[:, None] * acc, 0) / tl.where(total == 0.0, 1.0, total)
    tl.store(out_ptr + tl.program_id(0).to(tl.int64) * stride_ot + tl.program_id(1) * stride_oh + offs_d * stride_od,
             out.to(out_ptr.dtype.element_ty), mask=offs_d < D)


def _segments(t_total: int, num_seqs: int, hkv: int, block_q: int) -> int:
    """Split-KV factor: 16 for a decode-only batch that would leave most SMs idle, else 1 (and 1 when interpreting)."""
    if INTERPRET or t_total > num_seqs:
        return 1
    sms = torch.cuda.get_device_properties(torch.cuda.current_device()).multi_processor_count
    return 16 if (t_total // block_q + num_seqs) * hkv < sms else 1


def paged_attention(q: torch.Tensor, key_cache: torch.Tensor, value_cache: torch.Tensor, block_tables: torch.Tensor,
                    seq_lens: torch.Tensor, query_start_loc: torch.Tensor, *, scale: float | None = None,
                    causal: bool = True, sliding_window: int | None = None, softcap: float | None = None,
                    num_segments: int | None = None, kv_cache_dtype: str = "auto", k_scale=None, v_scale=None,
                    k_scale_cache: torch.Tensor | None = None,
                    v_scale_cache: torch.Tensor | None = None) -> torch.Tensor:
    """Attention of every query token over its sequence's paged keys and values, all sequences in one launch.

    Dimensions:  T_total query tokens of num_seqs sequences; Hq = g·Hkv; D <= 256; num_blocks × block_size slots.
    Args:        q: [T_total, Hq, D] float16|bfloat16|float32; key_cache, value_cache: [num_blocks, block_size, Hkv,
                 D], q's dtype; block_tables: [num_seqs, max_blocks] integer; seq_lens: [num_seqs] integer (KV length
                 incl. the new tokens); query_start_loc: [num_seqs + 1] integer, 0 first, T_total last. Any
                 strides: every tensor, the index tensors included, is read through its strides.
                 scale (D**-0.5 if None), causal (bottom-right), sliding_window (keys), softcap: as in `attention`.
                 num_segments: split-KV pieces per query block, a power of two (None = heuristic, see `_segments`).
                 kv_cache_dtype, k_scale, v_scale, k_scale_cache, v_scale_cache: as the public API's (module
                 docstring; fp8 caches are float8_e4m3fn, int8 scale caches any strides).
    Returns:     out: [T_total, Hq, D], q's dtype, contiguous, on the kernel device (CUDA; CPU when interpreting).
    Tiling:      grid (T_total // BLOCK_Q + num_seqs, Hkv, num_segments); BLOCK_M = BLOCK_Q·g rows (rounded up to a
                 power of two); TILE keys per step. A decode-only batch (T_total <= num_seqs) uses BLOCK_M 16,
                 prefill 64 on GPU. With num_segments > 1 a second launch merges the fp32 partials.
    """
    q, key_cache, value_cache, block_tables, seq_lens, query_start_loc = to_kernel_device(
        q, key_cache, value_cache, block_tables, seq_lens, query_start_loc)
    t_total, hq, d = q.shape
    num_seqs = seq_lens.shape[0]
    hkv = key_cache.shape[2]
    group = hq // hkv
    out = torch.empty_like(q, memory_format=torch.contiguous_format)
    if out.numel() == 0 or num_seqs == 0:
        return out
    rows = 16 if INTERPRET or t_total <= num_seqs else 64
    block_m = max(rows, triton.next_power_of_2(group))
    block_q = block_m // group
    tile = 16 if INTERPRET else 32
    d_pad = padded_head_dim(d)
    segments = num_segments or _segments(t_total, num_seqs, hkv, block_q)
    if segments & (segments - 1):
        raise ValueError(f"num_segments: must be a power of two (the merge kernel tiles them), got {segments}")
    device = q.device
    seg_max = seg_sum = seg_acc = out  # unused when segments == 1
    if segments > 1:
        seg_max = torch.empty((t_total, hq, segments), dtype=torch.float32, device=device)
        seg_sum = torch.empty_like(seg_max)
        seg_acc = torch.empty((t_total, hq, segments, d_pad), dtype=torch.float32, device=device)
    scales, scale_strides = _scale_args(kv_cache_dtype, k_scale, v_scale, k_scale_cache, v_scale_cache, hkv, device)
    grid = (t_total // block_q + num_seqs, hkv, segments)
    _paged_attention_kernel[grid](
        q, key_cache, value_cache, out,
        block_tables, seq_lens, query_start_loc,
        seg_max, seg_sum, seg_acc,
        *scales,
        num_seqs, key_cache.shape[1], hq,
        d ** -0.5 if scale is None else float(scale),
        0 if sliding_window is None else int(sliding_window),
        1.0 if softcap is None else float(softcap),
        *q.stride(), *key_cache.stride(), *value_cache.stride(), *out.stride(), *block_tables.stride(),
        seq_lens.stride(0), query_start_loc.stride(0), *scale_strides,
        GROUP=group, D=d, D_PAD=d_pad, BLOCK_M=block_m, BLOCK_Q=block_q, TILE=tile, NUM_SEGMENTS=segments,
        IS_CAUSAL=bool(causal), HAS_WINDOW=sliding_window is not None, HAS_SOFTCAP=softcap is not None,
        DOT_PRECISION=dot_precision(q.dtype), QUANT=QUANT_CODES[kv_cache_dtype],
        num_warps=4, num_stages=2,
    )
    if segments > 1:
        _merge_segments_kernel[(t_total, hq)](seg_max, seg_sum, seg_acc, out, hq, *out.stride(),
                                              D=d, D_PAD=d_pad, NUM_SEGMENTS=segments)
    return out


QUANT_CODES = {"auto": 0, "fp8_e4m3fn": 1, "int8": 2}  # the kernel's QUANT constexpr per kv_cache_dtype


def _scale_args(kv_cache_dtype, k_scale, v_scale, k_scale_cache, v_scale_cache, hkv, device):
    """((k_scale_ptr, v_scale_ptr), their six strides) of the kernel: fp8 [Hkv] float32 scales, int8 the scale
    caches (on the kernel device), "auto" two placeholders."""
    if kv_cache_dtype == "int8":
        k_sc, v_sc = to_kernel_device(k_scale_cache, v_scale_cache)
        return (k_sc, v_sc), (*k_sc.stride(), *v_sc.stride())
    if kv_cache_dtype == "auto":
        none = torch.zeros(1, dtype=torch.float32, device=device)
        return (none, none), (0,) * 6
    per_head = [torch.from_numpy(np.broadcast_to(np.asarray(s, np.float32), (hkv,)).copy()).to(device)
                for s in (k_scale, v_scale)]
    return tuple(per_head), (0,) * 6


def unsupported(**problem) -> str | None:
    """Why the kernel cannot run `problem` here (keys: head_dim, block_size, dtype, sliding_window, softcap,
    kv_cache_dtype, empty): every block size and mask option runs; the head dim and the compute dtype are limited
    (`_support`); torch has no float8_e4m3."""
    if problem.get("kv_cache_dtype") == "fp8_e4m3":
        return "kv_cache_dtype fp8_e4m3 (IEEE-like e4m3, max 240) has no torch dtype; use fp8_e4m3fn or int8"
    return attention_reason(problem["head_dim"], problem["dtype"])
