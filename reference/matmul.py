"""Quantized matmul reference: y[M, N] = x[M, K] @ dequantize_weight(qw)[K, N].

With `compute_dtype=np.float64` (default) this is the truth the kernels are checked against. With float32,
float16 or bfloat16 it is the same computation done naively in that working precision (inputs rounded to it,
products accumulated in float32 as a tensor engine does, result rounded to it); `harness.checks` uses the
gap between the two runs as the error budget of a kernel working in that precision.
"""

from __future__ import annotations

import numpy as np

from nkilab.reference.quant import FP8_SCHEMES, QuantizedActivation, QuantizedWeight, dequantize_activation, dequantize_weight
from nkilab.reference.sums import check_sum_order, matmul


def accumulate_dtype(compute_dtype) -> np.dtype:
    """Dtype sums and dot products run in: float64 for float64 work, else float32 (PSUM / tensor-core style)."""
    return np.dtype(np.float64) if np.dtype(compute_dtype) == np.float64 else np.dtype(np.float32)


def qmatmul(x, qw: QuantizedWeight, *, out_dtype=None, compute_dtype=np.float64, sum_order="numpy") -> np.ndarray:
    """y[M, N] = x[M, K] @ W[K, N] with W = dequantize_weight(qw).

    Args:
        x: [M, K] float array, or a QuantizedActivation (W8A8: qw must be fp8 per channel).
        qw: QuantizedWeight of shape (K, N).
        out_dtype: dtype of the result; None = compute_dtype.
        compute_dtype: float64 (truth) | float32 | float16 | bfloat16 (naive working-precision run).
        sum_order: "numpy" | "sequential": the order of the K sums (`nkilab.reference.sums`).

    Returns:
        y: [M, N] out_dtype.

    Example:
        >>> from nkilab.reference.quant import quantize_weight
        >>> qmatmul(np.ones((1, 2)), quantize_weight(np.array([[2.0], [2.0]]), "int8")).round(4).tolist()
        [[4.0]]
    """
    check_sum_order(sum_order)
    cd = np.dtype(compute_dtype)
    acc = accumulate_dtype(cd)
    if isinstance(x, QuantizedActivation):
        if qw.scheme not in FP8_SCHEMES or qw.group_size is not None:
            raise ValueError(f"qw: W8A8 needs fp8 per-channel weights, got {qw!r}")
        xc = dequantize_activation(x, compute_dtype=cd)
    else:
        xc = np.asarray(x).astype(cd)
    w = dequantize_weight(qw, compute_dtype=cd)
    y = matmul(xc.astype(acc), w.astype(acc), sum_order).astype(cd)
    return y if out_dtype is None else y.astype(out_dtype)
