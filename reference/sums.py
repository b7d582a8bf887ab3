"""Summation orders of the references' naive working-precision runs.

A float32 sum has no canonical order, and its rounding error depends on the order: NumPy's own (its einsum and
matmul loops add C-contiguous operands in several interleaved partial sums, SIMD-lane and BLAS style) can err
several times less than one running sum fed a term at a time, which is how an accumulator chain (a systolic
array's partition chain, PSUM accumulation over K tiles, a Triton `acc +=` loop) adds: 2.8x less on the float32
attention case of `harness.checks`, though over the fuzz suite's small float32 draws the median ratio is 1.0
(attention) to 1.4 (qmatmul). `harness.checks` takes the worse of the two as a kernel's error budget (its module
docstring says why).

  "numpy"       NumPy's order: the references' plain `np.einsum` / `@` / `.sum` (the default).
  "sequential"  every reduction as one running sum per output element, terms added in index order.
"""

from __future__ import annotations

import numpy as np

SUM_ORDERS = ("numpy", "sequential")


def check_sum_order(sum_order) -> None:
    """ValueError naming `sum_order` unless it is one of SUM_ORDERS."""
    if sum_order not in SUM_ORDERS:
        raise ValueError(f"sum_order: must be one of {SUM_ORDERS}, got {sum_order!r}")


def einsum(subscripts: str, a: np.ndarray, b: np.ndarray, sum_order: str) -> np.ndarray:
    """np.einsum(subscripts, a, b) in `sum_order` (two operands, one summed index)."""
    return np.einsum(subscripts, a, b) if sum_order == "numpy" else sequential_einsum(subscripts, a, b)


def matmul(a: np.ndarray, b: np.ndarray, sum_order: str) -> np.ndarray:
    """a @ b for 2-D a [M, K], b [K, N] in `sum_order` (NumPy's order: its matmul, BLAS style)."""
    return a @ b if sum_order == "numpy" else sequential_einsum("mk,kn->mn", a, b)


def last_axis_sum(x: np.ndarray, sum_order: str) -> np.ndarray:
    """x.sum(axis=-1, keepdims=True) in `sum_order`, in x's dtype."""
    return x.sum(axis=-1, keepdims=True) if sum_order == "numpy" else sequential_sum(x)


def sequential_einsum(subscripts: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """np.einsum(subscripts, a, b) for two operands and exactly one summed index, accumulated term by term.

    Example: "bihd,bjhd->bhij" sums over d as s = 0; s += q[..., d] * k[..., d] for d = 0, 1, ... in a's dtype
    (the operands' common dtype). An empty summed axis gives zeros of the output's shape.
    """
    inputs, out = subscripts.split("->")
    sa, sb = inputs.split(",")
    (summed,) = set(sa + sb) - set(out)  # one reduction axis, present in both operands
    ia, ib = sa.index(summed), sb.index(summed)
    term = f"{sa.replace(summed, '')},{sb.replace(summed, '')}->{out}"
    total = np.einsum(subscripts, np.take(a, [], axis=ia), np.take(b, [], axis=ib))  # zeros, the output's shape
    for t in range(a.shape[ia]):
        total = total + np.einsum(term, np.take(a, t, axis=ia), np.take(b, t, axis=ib))
    return total


def sequential_sum(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """x.sum(axis, keepdims=True) as one running sum along `axis` in x's dtype (np.add.accumulate is sequential)."""
    if x.shape[axis] == 0:
        return x.sum(axis=axis, keepdims=True)  # zeros
    return np.take(np.add.accumulate(x, axis=axis), [-1], axis=axis)
