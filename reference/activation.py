"""Gated activation reference: SwiGLU's silu_mul, out = silu(a) · b for gate_up = [a | b] along the last axis.

The vLLM `SiluAndMul` layout: the fused gate_up projection writes the gate a = gate_up[..., :I] and the up
projection b = gate_up[..., I:] side by side; silu(a) = a · sigmoid(a), computed as a / (1 + exp(-a)) (silu(-inf)
is NaN, as PyTorch's -inf · sigmoid(-inf) = -inf · 0).

`compute_dtype=np.float64` (default) is the truth. float32/float16/bfloat16 run the same steps naively in that
working precision: silu in fp32 rounded to it, then the product in fp32 rounded to it (what `harness.checks`
needs for the error budget of a kernel in that precision).
"""

from __future__ import annotations

import numpy as np

from nkilab.reference.matmul import accumulate_dtype


def silu_mul(gate_up, *, compute_dtype=np.float64):
    """out[..., j] = silu(gate_up[..., j]) · gate_up[..., I + j], 2I = gate_up's last axis.

    Dimensions: [..., 2I] -> [..., I]: any leading dims (rows).

    Args:
        gate_up: [..., 2I] float, the last axis even.
        compute_dtype: float64 (truth) | float32 | float16 | bfloat16 (naive working-precision run).

    Returns:
        [..., I] compute_dtype.

    Example:
        >>> silu_mul(np.array([[0.0, 1.0, 2.0, 3.0]])).round(6).tolist()  # silu(0) * 2, silu(1) * 3
        [[0.0, 2.193176]]
    """
    cd = np.dtype(compute_dtype)
    acc = accumulate_dtype(cd)
    x = np.asarray(gate_up).astype(cd)
    inter = x.shape[-1] // 2
    a, b = x[..., :inter].astype(acc), x[..., inter:].astype(acc)
    with np.errstate(over="ignore", invalid="ignore"):  # exp(-a) = inf for a << 0: silu -0, and NaN at a = -inf
        silu = (a / (1.0 + np.exp(-a))).astype(cd)
    return (silu.astype(acc) * b).astype(cd)
