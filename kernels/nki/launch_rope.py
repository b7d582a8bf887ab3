"""Host side of the NKI rope kernel: the backend's `rope`, `unsupported` and `traceable` (the launcher contract of
`nkilab.kernels.ops._op`), and the kernel's cos/sin table.

Inputs arrive validated by the public API (`nkilab.kernels.rope`): q [T, Hq, D], k [T, Hkv, D] NumPy (bfloat16 as
ml_dtypes), positions [T] integers, rotary_dim resolved, scaling a RopeScaling or None.

The table: a runtime keeps one row per position of its context (vLLM's cos_sin_cache), built once per model. This
launcher has no such cache, so it builds the rows of the distinct positions of the call (float64 angles, stored
fp32) and hands the kernel each token's row index instead of its position: the kernel's gather is the same.
"""

from __future__ import annotations

import numpy as np

from nkilab.kernels._adapter import numpy_dtype
from nkilab.reference import rotary

from ._launch import EMPTY_REASON, dtype_reason, launch, neuron_target
from .rope import MAX_ROW_ELEMS, rope_kernel


def cos_sin_table(positions, rotary_dim: int, theta: float, scaling=None):
    """(rows, table): rows [T] int32, the table row of each token; table [U, r] float32, one row per distinct
    position p: [cos(p f) | sin(p f)] with f = `rotary.inv_freq` (vLLM's cos_sin_cache layout), from float64
    angles."""
    distinct, rows = np.unique(np.asarray(positions, dtype=np.int64), return_inverse=True)
    ang = rotary.angles(distinct, rotary_dim, theta, scaling)
    table = np.concatenate([np.cos(ang), np.sin(ang)], axis=1).astype(np.float32)
    return rows.astype(np.int32).reshape(-1), table


def consecutive(positions) -> bool:
    """True for T >= 2 positions p0, p0 + 1, ... (one sequence's prefill): the kernel then reads each tile's table
    rows as one run (the distinct positions' rows are consecutive too)."""
    p = np.asarray(positions, dtype=np.int64)
    return p.shape[0] > 1 and bool(np.all(np.diff(p) == 1))


def rope(q, k, positions, *, theta: float, rotary_dim: int, style: str, scaling=None, target: str | None = None):
    """(q', k') on the NKI backend (real SDK if installed, else the emulator).

    Args:
        q: [T, Hq, D], k: [T, Hkv, D] float32|bfloat16|float16 NumPy arrays; positions: [T] non-negative integers.
        theta, rotary_dim, style, scaling: as `nkilab.kernels.rope` (validated).
        target: "inf2" | "trn1" | "trn2" | "trn3"; None = $NEURON_PLATFORM_TARGET_OVERRIDE or "trn2".

    Returns:
        (q', k'): new arrays of q's and k's shapes and dtype.
    """
    rows, table = cos_sin_table(positions, rotary_dim, theta, scaling)
    return launch(rope_kernel, np.ascontiguousarray(q), np.ascontiguousarray(k), rows, table, style == "gptj", False,
                  consecutive(positions), target=target)


def unsupported(**problem) -> str | None:
    """Why the NKI rope kernel cannot run `problem` (None when it can). Keys: dtype, q_heads, kv_heads, head_dim,
    rotary_dim, style, empty."""
    if problem.get("empty"):
        return EMPTY_REASON
    dtype, head_dim = problem.get("dtype"), problem.get("head_dim")
    if reason := dtype_reason(dtype):
        return reason
    if head_dim is not None and head_dim > MAX_ROW_ELEMS:
        return f"head_dim {head_dim} > {MAX_ROW_ELEMS}: one head must fit a partition row of the kernel's tiles"
    return None


def traceable(problem: dict, target: str | None):
    """(kernel, args, kwargs) at `problem`'s shapes with zero inputs, for trace mode on `target`.

    problem keys (`nkilab.kernels.ops.rope`): tokens, q_heads, kv_heads, head_dim, rotary_dim, style, dtype,
    consecutive (default False: a decode batch's positions; True: a prefill's). The table has one row per token
    (distinct positions, as a decode batch or a prefill has). `target` must be a Neuron target (ValueError
    otherwise); the kernel's gather branch follows the target the trace runs on.
    """
    neuron_target(target)
    dt = numpy_dtype(problem["dtype"])
    t, d = problem["tokens"], problem["head_dim"]
    q, k = np.zeros((t, problem["q_heads"], d), dt), np.zeros((t, problem["kv_heads"], d), dt)
    table = np.zeros((t, problem["rotary_dim"]), np.float32)
    return rope_kernel, (q, k, np.arange(t, dtype=np.int32), table, problem["style"] == "gptj", False,
                         bool(problem.get("consecutive", False))), {}
