"""RMSNorm reference: y = x / sqrt(mean(x², last axis) + eps) · weight, optionally after a fused residual add.

With `residual`, the pre-norm residual of a Llama block: h = x + residual (the new residual stream, stored in x's
dtype), then y = rms_norm(h); both are returned.

`compute_dtype=np.float64` (default) is the truth. float32/float16/bfloat16 run the same steps naively in that
working precision (h, the reciprocal RMS and every product rounded to it, the sum of squares accumulated in
float32), which is what `harness.checks` needs for the error budget of a kernel in that precision.
"""

from __future__ import annotations

import numpy as np

from nkilab.reference.matmul import accumulate_dtype
from nkilab.reference.sums import check_sum_order, last_axis_sum


def rms_norm(x, weight, *, eps=1e-6, residual=None, compute_dtype=np.float64, sum_order="numpy"):
    """y[..., j] = h[..., j] / sqrt(mean_k h[..., k]² + eps) · weight[j], h = x (+ residual).

    Dimensions: [..., H]: any leading dims (rows), H the normalized (last) axis.

    Args:
        x: [..., H] float.
        weight: [H] float.
        eps: > 0, added to the mean square.
        residual: None, or [..., H] like x: h = x + residual is normalized (and returned); the naive runs round h
            to compute_dtype, as a kernel stores it in the activation dtype.
        compute_dtype: float64 (truth) | float32 | float16 | bfloat16 (naive working-precision run).
        sum_order: "numpy" | "sequential": the order of the mean square's sum (`nkilab.reference.sums`).

    Returns:
        y: [..., H] compute_dtype; with a residual, (y, h), both compute_dtype.

    Example:
        >>> rms_norm(np.array([[3.0, 4.0]]), np.array([1.0, 2.0]), eps=0.0).round(6).tolist()  # rms = sqrt(12.5)
        [[0.848528, 2.262742]]
    """
    check_sum_order(sum_order)
    cd = np.dtype(compute_dtype)
    acc = accumulate_dtype(cd)
    h = np.asarray(x).astype(cd)
    if residual is not None:
        h = (h.astype(acc) + np.asarray(residual).astype(cd).astype(acc)).astype(cd)
    mean_sq = last_axis_sum(h.astype(acc) ** 2, sum_order) / acc.type(h.shape[-1])
    rstd = (1.0 / np.sqrt(mean_sq + acc.type(eps))).astype(cd)
    normed = (h.astype(acc) * rstd.astype(acc)).astype(cd)
    y = (normed.astype(acc) * np.asarray(weight).astype(cd).astype(acc)).astype(cd)
    return y if residual is None else (y, h)
