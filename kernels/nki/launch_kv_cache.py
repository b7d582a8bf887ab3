"""Host side of the NKI paged-KV cache write: the backend's `write_kv_cache`, `unsupported` and `traceable` (the
launcher contract of `nkilab.kernels.ops._op`).

The kernel scatters into the caller's caches in place; slots arrive as int32 (the kernel's index dtype).
"""

from __future__ import annotations

import math

import numpy as np

from nkilab.kernels._adapter import numpy_dtype

from ._launch import DTYPES, EMPTY_REASON, launch, neuron_target
from .kv_cache import write_kv_cache_kernel


def write_kv_cache(key, value, key_cache, value_cache, slot_mapping, *, target: str | None = None):
    """Write key/value [T, Hkv, D] into the paged caches [num_blocks, block_size, Hkv, D] at slot_mapping [T]
    (-1 = skip), in place on the caller's arrays; returns (key_cache, value_cache), the same arrays."""
    if key.shape[0] == 0:
        return key_cache, value_cache
    launch(write_kv_cache_kernel, key, value, key_cache, value_cache, np.asarray(slot_mapping, dtype=np.int32),
           target=target)
    return key_cache, value_cache


def unsupported(**problem) -> str | None:
    """Why the NKI cache write cannot run `problem` (None when it can); keys: head_dim, block_size, dtype, empty.
    A copy runs at every head_dim and block size."""
    if problem.get("empty"):
        return EMPTY_REASON
    dtype = problem.get("dtype")
    if dtype is not None and str(dtype) not in DTYPES:
        return f"dtype {dtype} not in {DTYPES}"
    return None


def traceable(problem: dict, target: str | None):
    """(kernel, args, kwargs) of the write at `problem`'s shapes for trace mode on `target`: zero data, slots 0..T-1
    into ceil(T / block_size) + 1 blocks. problem keys: t, hkv, head_dim, block_size, dtype (default bfloat16).
    `target` must be a Neuron target; the kernel's v2 / v3+ DMA branch follows the target the trace runs on."""
    neuron_target(target)
    dtype = numpy_dtype(str(problem.get("dtype", "bfloat16")))
    t, hkv, d, bs = problem["t"], problem["hkv"], problem["head_dim"], problem["block_size"]
    cache = np.zeros((math.ceil(t / bs) + 1, bs, hkv, d), dtype)
    new = np.zeros((t, hkv, d), dtype)
    return write_kv_cache_kernel, (new, new, cache, cache.copy(), np.arange(t, dtype=np.int32)), {}
