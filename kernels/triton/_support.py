"""What the Triton backend can run, shared by its launchers' `unsupported(**problem)`: compute dtypes, GPU
capabilities, the head-dim limit of the attention kernels."""

import torch

from ._interpret import INTERPRET

MAX_HEAD_DIM = 256  # q, acc and a K/V tile of D_PAD lanes each must fit in registers / shared memory
FP8_CAPABILITY = (8, 9)  # float8e4nv (e4m3fn) casts and dots: Ada / Hopper and later
BF16_CAPABILITY = (8, 0)  # bfloat16 tensor cores: Ampere and later
COMPUTE_DTYPES = ("float16", "bfloat16", "float32")


def capability_below(needed: tuple[int, int]) -> bool:
    """True on a GPU older than `needed` (never under the interpreter, which emulates every dtype it supports)."""
    return not INTERPRET and torch.cuda.get_device_capability() < needed


def dtype_reason(dtype: str) -> str | None:
    """Why the kernels cannot compute in `dtype` here (None when they can)."""
    if dtype == "float64":
        return "dtype float64 has no Triton tensor-core path; use float32, or backend='reference'"
    if dtype == "bfloat16" and INTERPRET:
        return ("dtype bfloat16 needs a CUDA GPU: the Triton CPU interpreter has no bfloat16 arithmetic "
                "(triton-lang/triton#11584); use float16/float32 here")
    if dtype == "bfloat16" and capability_below(BF16_CAPABILITY):
        return f"dtype bfloat16 needs compute capability >= {BF16_CAPABILITY}"
    if dtype not in COMPUTE_DTYPES:
        return f"dtype {dtype} is not a supported compute dtype ({', '.join(COMPUTE_DTYPES)})"
    return None


def attention_reason(head_dim: int, dtype: str) -> str | None:
    """Why the attention kernels (dense and paged) cannot run a head dim / dtype here (None when they can)."""
    if head_dim > MAX_HEAD_DIM:
        return f"head_dim {head_dim} > {MAX_HEAD_DIM}"
    return dtype_reason(dtype)
