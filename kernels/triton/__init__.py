"""Triton backend of nkilab.kernels: the four ops on torch tensors, on a CUDA GPU or under Triton's CPU interpreter.

Functions take the public signature minus `backend` (inputs already validated by nkilab.kernels; torch tensors in
and out). Without a CUDA device, importing this package sets TRITON_INTERPRET=1 first (see `_interpret.py`).
`unsupported(op, **problem)` says, before any work, why a problem cannot run here (None when it can).
"""

from ._interpret import INTERPRET  # noqa: I001  (first: fixes TRITON_INTERPRET before triton is imported)

import torch

from .attention import attention
from .kv_cache import write_kv_cache
from .paged_attention import paged_attention
from .qmatmul import PreparedActivation, PreparedWeight, prepare_activation, prepare_weight, qmatmul

__all__ = ["attention", "paged_attention", "prepare_activation", "prepare_weight", "PreparedActivation",
           "PreparedWeight", "qmatmul", "unsupported", "write_kv_cache", "INTERPRET"]

MAX_HEAD_DIM = 256  # q, acc and a K/V tile of D_PAD lanes each must fit in registers / shared memory
_GPU_MIN_GROUP = {"int4": 32, "int8": 16, "fp8_e4m3": 16, "fp8_e4m3fn": 16}  # BLOCK_K | G and tl.dot needs K >= 16
_FP8_CAPABILITY = (8, 9)  # float8e4nv (e4m3fn) casts and dots: Ada / Hopper and later
_BF16_CAPABILITY = (8, 0)  # bfloat16 tensor cores: Ampere and later


def _capability_below(needed: tuple[int, int]) -> bool:
    """True on a GPU older than `needed` (never under the interpreter, which emulates every dtype it supports)."""
    return not INTERPRET and torch.cuda.get_device_capability() < needed


def _dtype_reason(dtype: str) -> str | None:
    if dtype == "float64":
        return "dtype float64 has no Triton tensor-core path; use float32, or backend='reference'"
    if dtype == "bfloat16" and INTERPRET:
        return ("dtype bfloat16 needs a CUDA GPU: the Triton CPU interpreter has no bfloat16 arithmetic "
                "(triton-lang/triton#11584); use float16/float32 here")
    if dtype == "bfloat16" and _capability_below(_BF16_CAPABILITY):
        return f"dtype bfloat16 needs compute capability >= {_BF16_CAPABILITY}"
    if dtype not in ("float16", "bfloat16", "float32"):
        return f"dtype {dtype} is not a supported compute dtype (float16, bfloat16, float32)"
    return None


def _head_dim_reason(head_dim: int) -> str | None:
    return f"head_dim {head_dim} > {MAX_HEAD_DIM}" if head_dim > MAX_HEAD_DIM else None


def _qmatmul_reason(scheme, group_size, w8a8, dtype) -> str | None:
    if scheme.startswith("fp8") and _capability_below(_FP8_CAPABILITY):
        return f"{scheme} weights need fp8 (e4m3fn) support: compute capability >= {_FP8_CAPABILITY}"
    if not w8a8:
        reason = _dtype_reason(dtype)
        if reason:
            return reason
    if group_size is not None:
        # One K step never straddles two groups: BLOCK_K is the largest power of two dividing G.
        least = (2 if scheme == "int4" else 1) if INTERPRET else _GPU_MIN_GROUP[scheme]
        if group_size & -group_size < least:
            where = "" if INTERPRET else " on a GPU"
            return f"group_size {group_size} must be a multiple of {least} for {scheme}{where}"
    return None


def unsupported(op: str, **problem) -> str | None:
    """None when this backend runs `op` on `problem` here, else the reason (keys: see nkilab.kernels._registry).

    Example:
        >>> unsupported("attention", head_dim=320, dtype="float16", causal=True, sliding_window=None, softcap=None)
        'head_dim 320 > 256'
    """
    if op == "qmatmul":
        return _qmatmul_reason(problem["scheme"], problem["group_size"], problem["w8a8"], problem["dtype"])
    if op in ("attention", "paged_attention"):
        return _head_dim_reason(problem["head_dim"]) or _dtype_reason(problem["dtype"])
    if op == "write_kv_cache":
        return None  # a copy: every dtype and block size
    raise ValueError(f"op: unknown op {op!r}")
