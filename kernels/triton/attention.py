"""Flash-attention forward for prefill: out = softmax(mask(softcap(scale · q kᵀ))) v, one pass over K/V.

Algorithm (FlashAttention-2, Dao 2023, arXiv 2307.08691): a program owns BLOCK_M query rows of one (batch, query
head) and streams BLOCK_N-key tiles of the matching KV head through the online softmax of `_flash.py`:

    for each visible key tile:  s = scale · q kᵀ  [→ c·tanh(s/c)]  → mask  → (m, l, acc) update
    out = acc / l            (fully masked rows → zeros)

Features: GQA/MQA (query head h reads KV head h // (Hq // Hkv)); bottom-right causal alignment (query i sees keys
j <= i + Skv − Sq); sliding window w (hides j < i + Skv − Sq − w + 1); softcap; head_dim up to 256, padded in
registers to a power of two. Only key tiles a row block can see are visited (causal upper bound, window lower bound).
Numerics: scores, softmax and accumulation in fp32; P is cast to V's dtype before P·V (as FlashAttention does).
Reference: nkilab.reference.attention.attention
"""

import torch
import triton
import triton.language as tl

from ._flash import empty_rows, finish_rows, masked_scores, online_softmax_step, visible_key_range
from ._launch import block, dot_precision, padded_head_dim, to_kernel_device
from ._support import attention_reason


@triton.jit
def _attention_fwd_kernel(
    # Pointers
    q_ptr, k_ptr, v_ptr, out_ptr,
    # Sizes
    sq, skv, hq, group,
    # Scalars: softmax scale, sliding window (keys), softcap
    scale, window, softcap,
    # Strides, in elements
    stride_qb, stride_qs, stride_qh, stride_qd,
    stride_kb, stride_ks, stride_kh, stride_kd,
    stride_vb, stride_vs, stride_vh, stride_vd,
    stride_ob, stride_os, stride_oh, stride_od,
    # Meta-parameters
    D: tl.constexpr, D_PAD: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    IS_CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr, HAS_SOFTCAP: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = (pid_bh // hq).to(tl.int64)
    h = pid_bh % hq
    kvh = (h // group).to(tl.int64)
    h = h.to(tl.int64)

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, D_PAD)
    d_ok = offs_d < D
    row_ok = offs_m < sq

    q_rows = q_ptr + b * stride_qb + h * stride_qh + offs_m.to(tl.int64)[:, None] * stride_qs
    q = tl.load(q_rows + offs_d[None, :] * stride_qd, mask=row_ok[:, None] & d_ok[None, :], other=0.0)
    k_base = k_ptr + b * stride_kb + kvh * stride_kh
    v_base = v_ptr + b * stride_vb + kvh * stride_vh

    # Row i's last visible key is i + diag (bottom-right causal alignment).
    diag = skv - sq
    lo, hi = visible_key_range(pid_m * BLOCK_M + diag, BLOCK_M, skv, window, BLOCK_N, IS_CAUSAL, HAS_WINDOW)
    m_i, l_i, acc = empty_rows(BLOCK_M, D_PAD)
    for start_n in range(lo, hi, BLOCK_N):
        cols = start_n + offs_n
        col_ok = cols < skv
        kv_rows = cols.to(tl.int64)
        kt = tl.load(k_base + kv_rows[None, :] * stride_ks + offs_d[:, None] * stride_kd,
                     mask=col_ok[None, :] & d_ok[:, None], other=0.0)
        s, visible = masked_scores(q, kt, scale, softcap, row_ok, offs_m + diag, cols, col_ok, window,
                                   IS_CAUSAL, HAS_WINDOW, HAS_SOFTCAP, DOT_PRECISION)
        v = tl.load(v_base + kv_rows[:, None] * stride_vs + offs_d[None, :] * stride_vd,
                    mask=col_ok[:, None] & d_ok[None, :], other=0.0)
        m_i, l_i, acc = online_softmax_step(s, visible, m_i, l_i, acc, v, DOT_PRECISION)

    out = finish_rows(acc, l_i)
    o_rows = out_ptr + b * stride_ob + h * stride_oh + offs_m.to(tl.int64)[:, None] * stride_os
    tl.store(o_rows + offs_d[None, :] * stride_od, out.to(out_ptr.dtype.element_ty),
             mask=row_ok[:, None] & d_ok[None, :])


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = False,
              scale: float | None = None, sliding_window: int | None = None,
              softcap: float | None = None) -> torch.Tensor:
    """Dense attention forward on the GPU (or the Triton interpreter).

    Dimensions:  B batch; Sq, Skv query/key lengths; Hq = g·Hkv heads; D <= 256 head dim.
    Args:        q: [B, Sq, Hq, D] float16|bfloat16|float32; k, v: [B, Skv, Hkv, D], q's dtype; any strides.
                 causal: bottom-right aligned mask; scale: softmax scale (D**-0.5 if None); sliding_window: keys;
                 softcap: c in c·tanh(s/c).
    Returns:     out: [B, Sq, Hq, D], q's dtype, contiguous, on the kernel device (CUDA; CPU when interpreting).
    Tiling:      grid (ceil(Sq / BLOCK_M), B·Hq); BLOCK_N keys per step; D padded to a power of two >= 16.
    """
    q, k, v = to_kernel_device(q, k, v)
    b, sq, hq, d = q.shape
    skv, hkv = k.shape[1], k.shape[2]
    out = torch.empty_like(q, memory_format=torch.contiguous_format)
    if out.numel() == 0:
        return out
    block_m = block(128 if d <= 128 else 64, 16, sq)
    block_n = block(64 if d <= 128 else 32, 16, skv)
    grid = (triton.cdiv(sq, block_m), b * hq)
    _attention_fwd_kernel[grid](
        q, k, v, out,
        sq, skv, hq, hq // hkv,
        d ** -0.5 if scale is None else float(scale),
        0 if sliding_window is None else int(sliding_window),
        1.0 if softcap is None else float(softcap),
        *q.stride(), *k.stride(), *v.stride(), *out.stride(),
        D=d, D_PAD=padded_head_dim(d), BLOCK_M=block_m, BLOCK_N=block_n,
        IS_CAUSAL=bool(causal), HAS_WINDOW=sliding_window is not None, HAS_SOFTCAP=softcap is not None,
        DOT_PRECISION=dot_precision(q.dtype),
        num_warps=4 if d <= 64 else 8, num_stages=2,
    )
    return out


def unsupported(**problem) -> str | None:
    """Why the kernel cannot run `problem` here (keys: head_dim, dtype, causal, sliding_window, softcap, empty):
    every mask option and empty problem runs; the head dim and the compute dtype are limited (`_support`)."""
    return attention_reason(problem["head_dim"], problem["dtype"])
