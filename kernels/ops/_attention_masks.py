"""Key-padding masks and varlen sequences of dense attention: their rules, and their lowering onto backends that
run plain [B, Sq, Hq, D] attention.

A backend kernel knows only the bottom-right causal mask, the sliding window and the softcap. The public
`attention` runs the other two forms through it as pieces, each an ordinary call on slices of q, k, v:

  varlen      sequence i (rows cu_seqlens_q[i]:[i + 1] of q, keys cu_seqlens_k[i]:[i + 1]) is one piece: exactly
              the semantics, which apply the rules per sequence.
  left pad    a key_padding_mask whose visible keys are a suffix j >= lo_b of every row b (left padding, what HF
              generate makes for decoder-only batches, and every mask with no padding) runs row b over keys lo_b:
              (rows sharing lo_b together). Dropping a prefix of the keys keeps the bottom-right diagonal of every
              query (query i's last key stays i + Skv - Sq), so causal, window and softcap are unchanged: exact.
  other masks (a hidden key after a visible one: right padding, holes) only the reference runs them.

A piece with no query rows is skipped; one with no keys leaves its rows zero (a query that sees no key gets zeros).
"""

from __future__ import annotations

import numpy as np

from nkilab.kernels import _checks
from nkilab.kernels._adapter import dtype_name, to_numpy


def check(q, k, key_padding_mask, cu_seqlens_q, cu_seqlens_k) -> None:
    """Validate the mask arguments of `attention` against q [B, Sq, Hq, D] and k [B, Skv, Hkv, D]."""
    if key_padding_mask is not None and (cu_seqlens_q is not None or cu_seqlens_k is not None):
        raise ValueError("key_padding_mask: give either a key-padding mask or cu_seqlens_q/cu_seqlens_k, not both")
    if key_padding_mask is not None:
        _checks.arrays(q=q, key_padding_mask=key_padding_mask)
        b, skv = q.shape[0], k.shape[1]
        if tuple(key_padding_mask.shape) != (b, skv):
            raise ValueError(f"key_padding_mask: shape must be [B, Skv] = {(b, skv)}, "
                             f"got {tuple(key_padding_mask.shape)}")
        if dtype_name(key_padding_mask) != "bool":
            raise TypeError(f"key_padding_mask: dtype must be bool (True = visible key), "
                            f"got {dtype_name(key_padding_mask)}")
    if (cu_seqlens_q is None) != (cu_seqlens_k is None):
        raise ValueError("cu_seqlens_q: varlen attention needs both cu_seqlens_q and cu_seqlens_k (or neither)")
    if cu_seqlens_q is None:
        return
    _checks.arrays(q=q, cu_seqlens_q=cu_seqlens_q, cu_seqlens_k=cu_seqlens_k)
    if q.shape[0] != 1:
        raise ValueError(f"q: varlen attention packs the sequences along axis 1, so B must be 1, "
                         f"got shape {tuple(q.shape)}")
    for name, cu, total in (("cu_seqlens_q", cu_seqlens_q, q.shape[1]), ("cu_seqlens_k", cu_seqlens_k, k.shape[1])):
        _checks.ndim(name, cu, 1, "[num_seqs + 1]")
        _checks.int_dtype(name, cu)
        if cu.shape[0] != cu_seqlens_q.shape[0] or cu.shape[0] < 1:
            raise ValueError(f"{name}: cu_seqlens_q and cu_seqlens_k must both be [num_seqs + 1] (>= 1), got lengths "
                             f"{cu_seqlens_q.shape[0]} and {cu_seqlens_k.shape[0]}")
        values = to_numpy(cu).astype(np.int64)
        if values[0] != 0 or values[-1] != total or np.any(np.diff(values) < 0):
            raise ValueError(f"{name}: must start at 0, never decrease and end at {total} (the packed length), got "
                             f"{values.tolist()}")


def left_pad_starts(key_padding_mask) -> np.ndarray | None:
    """lo_b per batch row when every row's visible keys are the suffix lo_b: (Skv for a row with none), else None."""
    mask = to_numpy(key_padding_mask).astype(bool)
    skv = mask.shape[1]
    lo = np.where(mask.any(axis=1), np.argmax(mask, axis=1), skv)
    suffix = np.arange(skv)[None, :] >= lo[:, None]
    return lo if np.array_equal(mask, suffix) else None


def pieces(q, key_padding_mask, cu_seqlens_q, cu_seqlens_k) -> list[tuple]:
    """The calls that make up the attention, [(batch rows, query rows, key cols)] (see the module docstring); a
    single piece covering everything when there is no mask. A key_padding_mask must have passed `left_pad_starts`."""
    full = slice(None)
    if cu_seqlens_q is not None:
        cq, ck = (to_numpy(c).astype(np.int64).tolist() for c in (cu_seqlens_q, cu_seqlens_k))
        return [(full, slice(cq[i], cq[i + 1]), slice(ck[i], ck[i + 1])) for i in range(len(cq) - 1)]
    if key_padding_mask is None:
        return [(full, full, full)]
    lo = left_pad_starts(key_padding_mask)
    if np.all(lo == 0):
        return [(full, full, full)]
    return [(np.flatnonzero(lo == start).tolist(), full, slice(int(start), None)) for start in np.unique(lo)]
