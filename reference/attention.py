"""Dense attention reference: softmax(scale * q @ kᵀ, masked) @ v with GQA, causal, window, softcap.

Semantics the kernels must match:
  - GQA/MQA: Hq % Hkv == 0; query head h reads kv head h // (Hq // Hkv).
  - scale defaults to D ** -0.5.
  - causal alignment is bottom-right: query i sees keys j <= i + Skv - Sq (the last query sees every key).
  - sliding_window=w also hides keys j < i + Skv - Sq - w + 1 (so a query sees at most w keys).
  - softcap=c maps scores s -> c * tanh(s / c) after scaling, before masking.
  - a query row that sees no key at all returns zeros, never NaN.
  - key_padding_mask [B, Skv] bool hides the keys where it is False (padding) from every query of that batch row;
    positions keep their index, so causal alignment is unchanged.
  - varlen (`attention_varlen`): sequences packed along one axis, cut by cu_seqlens_q / cu_seqlens_k; each
    sequence attends to its own keys only, with the rules above applied per sequence.

`compute_dtype=np.float64` (default) is the truth. float32/float16/bfloat16 run the same steps naively in that
working precision (inputs and every intermediate rounded to it, dot products and sums accumulated in float32),
which is what `harness.checks` needs for the error budget of a kernel in that precision.
"""

from __future__ import annotations

import numpy as np

from nkilab.reference.matmul import accumulate_dtype
from nkilab.reference.sums import check_sum_order, einsum, last_axis_sum


def visible_keys(sq: int, skv: int, *, causal: bool, sliding_window: int | None = None) -> np.ndarray:
    """Mask [Sq, Skv] bool: True where query i may attend to key j (bottom-right aligned).

    Example:
        >>> visible_keys(2, 3, causal=True).astype(int).tolist()
        [[1, 1, 0], [1, 1, 1]]
    """
    i = np.arange(sq)[:, None]
    j = np.arange(skv)[None, :]
    diagonal = i + skv - sq  # the last key query i may see under causal masking
    mask = np.ones((sq, skv), dtype=bool)
    if causal:
        mask &= j <= diagonal
    if sliding_window is not None:
        mask &= j >= diagonal - sliding_window + 1
    return mask


def attention(q, k, v, *, causal=False, scale=None, sliding_window=None, softcap=None, key_padding_mask=None,
              compute_dtype=np.float64, sum_order="numpy"):
    """out[b, i, h] = sum_j softmax_j(masked(softcap(scale * q[b, i, h] · k[b, j, h // g]))) v[b, j, h // g].

    Dimensions: B batch; Sq queries; Skv keys; Hq = g * Hkv heads; D head dim.

    Args:
        q: [B, Sq, Hq, D] float.
        k, v: [B, Skv, Hkv, D] float.
        causal: bottom-right causal mask (query i sees keys j <= i + Skv - Sq).
        scale: score multiplier; None = D ** -0.5.
        sliding_window: w >= 1 hides keys j < i + Skv - Sq - w + 1; None = no window.
        softcap: c > 0 applies c * tanh(s / c) to the scaled scores before masking; None = off.
        key_padding_mask: [B, Skv] bool, False = key j of batch row b is padding, hidden from its queries; None = all
            keys visible.
        compute_dtype: float64 (truth) | float32 | float16 | bfloat16 (naive working-precision run).
        sum_order: "numpy" | "sequential": the order of the q·k, softmax-denominator and P @ V sums
            (`nkilab.reference.sums`).

    Returns:
        out: [B, Sq, Hq, D] compute_dtype; rows with no visible key are 0.

    Example:
        >>> q = np.zeros((1, 1, 1, 2)); k = np.zeros((1, 3, 1, 2)); v = np.arange(6.0).reshape(1, 3, 1, 2)
        >>> attention(q, k, v).tolist()  # uniform scores: the mean of the values
        [[[[2.0, 3.0]]]]
    """
    check_sum_order(sum_order)
    cd = np.dtype(compute_dtype)
    acc = accumulate_dtype(cd)
    q, k, v = (np.asarray(a).astype(cd) for a in (q, k, v))
    _, sq, hq, d = q.shape
    skv, hkv = k.shape[1], k.shape[2]
    scale = d**-0.5 if scale is None else scale
    group = hq // hkv
    k = np.repeat(k, group, axis=2)  # [B, Skv, Hq, D]: query head h reads kv head h // group
    v = np.repeat(v, group, axis=2)

    s = einsum("bihd,bjhd->bhij", q.astype(acc), k.astype(acc), sum_order).astype(cd)  # [B, Hq, Sq, Skv]
    s = (s.astype(acc) * acc.type(scale)).astype(cd)
    if softcap is not None:
        s = (acc.type(softcap) * np.tanh(s.astype(acc) / acc.type(softcap))).astype(cd)
    mask = visible_keys(sq, skv, causal=causal, sliding_window=sliding_window)  # [Sq, Skv]
    if key_padding_mask is not None:
        mask = mask & np.asarray(key_padding_mask, dtype=bool)[:, None, None, :]  # [B, 1, Sq, Skv]
    s = np.where(mask, s, -np.inf).astype(cd)

    row_max = s.max(axis=-1, keepdims=True) if skv else np.zeros(s.shape[:-1] + (1,), dtype=cd)
    row_max = np.where(np.isfinite(row_max), row_max, 0).astype(cd)  # fully masked rows: exp(-inf - 0) = 0
    p = np.exp((s.astype(acc) - row_max.astype(acc))).astype(cd)
    denom = last_axis_sum(p.astype(acc), sum_order).astype(cd)
    p = (p.astype(acc) / np.where(denom == 0, 1, denom).astype(acc)).astype(cd)  # 0 / 1 = 0 for masked rows
    out = einsum("bhij,bjhd->bihd", p.astype(acc), v.astype(acc), sum_order).astype(cd)
    return out


def attention_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, *, compute_dtype=np.float64, **options):
    """Attention of packed variable-length sequences: sequence i's queries q[0, cu_seqlens_q[i]:cu_seqlens_q[i + 1]]
    attend to its keys k[0, cu_seqlens_k[i]:cu_seqlens_k[i + 1]] only, each sequence as one `attention` call.

    Args:
        q: [1, Tq, Hq, D]; k, v: [1, Tk, Hkv, D] (sequences packed along axis 1).
        cu_seqlens_q, cu_seqlens_k: [num_seqs + 1] integer, 0 first, non-decreasing, Tq (Tk) last.
        options: causal, scale, sliding_window, softcap as in `attention` (applied per sequence: bottom-right causal
            alignment within each sequence).

    Returns:
        out: [1, Tq, Hq, D] compute_dtype.

    Example:
        >>> q = np.zeros((1, 2, 1, 1)); v = np.array([1.0, 3.0]).reshape(1, 2, 1, 1)
        >>> attention_varlen(q, v, v, [0, 1, 2], [0, 1, 2]).ravel().tolist()  # each query sees only its own key
        [1.0, 3.0]
    """
    cd = np.dtype(compute_dtype)
    out = np.zeros(np.shape(q), dtype=cd)
    cq, ck = np.asarray(cu_seqlens_q).tolist(), np.asarray(cu_seqlens_k).tolist()
    for i in range(len(cq) - 1):
        rows, keys = slice(cq[i], cq[i + 1]), slice(ck[i], ck[i + 1])
        out[:, rows] = attention(np.asarray(q)[:, rows], np.asarray(k)[:, keys], np.asarray(v)[:, keys],
                                 compute_dtype=cd, **options)
    return out
