"""Host side of the NKI paged-KV cache write: the backend's `write_kv_cache`, `unsupported` and `traceable` (the
launcher contract of `nkilab.kernels.ops._op`).

The kernel scatters into the caller's caches in place; slots arrive as int32 (the kernel's index dtype).
"""

from __future__ import annotations

import math

import numpy as np

from nkilab.kernels._adapter import numpy_dtype

from nkilab.reference.kv_quant import INV_INT8_MAX, TINY, reciprocal32, storage_dtype
from nkilab.reference.quant import FP8_MAX, INT8_MAX

from ._kv_cache_tunables import resolve
from ._launch import EMPTY_REASON, dtype_reason, launch, neuron_target
from .kv_cache import write_kv_cache_kernel

FP8_E4M3FN_TARGETS = ("trn3",)  # OCP float8_e4m3fn is a NeuronCore-v4 format (harness.chips: matmul_fp8_e4m3fn)


def write_kv_cache(key, value, key_cache, value_cache, slot_mapping, *, target: str | None = None,
                   kv_cache_dtype: str = "auto", k_scale=None, v_scale=None, k_scale_cache=None, v_scale_cache=None,
                   tunables: dict | None = None):
    """Write key/value [T, Hkv, D] into the paged caches [num_blocks, block_size, Hkv, D] at slot_mapping [T]
    (-1 = skip), in place on the caller's arrays (quantized per `kv_cache_dtype`, scales as the public API's);
    returns (key_cache, value_cache), the same arrays. tunables: None, or {name: int} overriding the kernel's
    defaults (names, meaning and defaults in `_kv_cache_tunables`; TypeError / ValueError naming a bad one)."""
    quant = kernel_quant(kv_cache_dtype, k_scale, v_scale, int(key.shape[1]), target)
    overrides = _tunables(tunables)
    if key.shape[0] == 0:
        return key_cache, value_cache
    scale_caches = (k_scale_cache, v_scale_cache) if kv_cache_dtype == "int8" else (None, None)
    launch(write_kv_cache_kernel, key, value, key_cache, value_cache, np.asarray(slot_mapping, dtype=np.int32),
           *scale_caches, quant=quant, target=target, **overrides)
    return key_cache, value_cache


def _tunables(tunables: dict | None) -> dict:
    """The kernel keywords of a tunables override, checked on the host (`_kv_cache_tunables.resolve`)."""
    if tunables is None:
        return {}
    if not isinstance(tunables, dict):
        raise TypeError(f"tunables: must be a dict {{name: int}} or None, got {type(tunables).__name__}")
    resolve(False, tunables)
    return dict(tunables)


def kernel_quant(kv_cache_dtype: str, k_scale, v_scale, hkv: int, target: str | None):
    """The write kernel's compile-time `quant` of a kv_cache_dtype (see `write_kv_cache_kernel`), after
    `check_target_format`."""
    check_target_format(kv_cache_dtype, target)
    if kv_cache_dtype == "auto":
        return None
    if kv_cache_dtype == "int8":
        return ("int8", float(INT8_MAX), INV_INT8_MAX, TINY)
    invs = [tuple(float(x) for x in np.broadcast_to(reciprocal32(s), (hkv,))) for s in (k_scale, v_scale)]
    return ("fp8", float(FP8_MAX[kv_cache_dtype]), *invs)


def check_target_format(kv_cache_dtype: str, target: str | None) -> None:
    """ValueError naming kv_cache_dtype when the Neuron target has no such fp8 format (float8_e4m3fn off trn3)."""
    name = neuron_target(target)
    if kv_cache_dtype == "fp8_e4m3fn" and name not in FP8_E4M3FN_TARGETS:
        raise ValueError(f"kv_cache_dtype: 'fp8_e4m3fn' (OCP e4m3, max 448) needs a NeuronCore-v4 target "
                         f"{FP8_E4M3FN_TARGETS}, got target {name!r}; use 'fp8_e4m3' (max 240, native on v2/v3)")


def unsupported(**problem) -> str | None:
    """Why the NKI cache write cannot run `problem` (None when it can); keys: head_dim, block_size, dtype (key's),
    kv_cache_dtype, empty. A copy runs at every head_dim and block size; every kv_cache_dtype is written (the
    target's fp8 format is checked at the call, `kernel_quant`)."""
    if problem.get("empty"):
        return EMPTY_REASON
    return dtype_reason(problem.get("dtype"))


def traceable(problem: dict, target: str | None):
    """(kernel, args, kwargs) of the write at `problem`'s shapes for trace mode on `target`: zero data, slots 0..T-1
    into ceil(T / block_size) + 1 blocks. problem keys: t, hkv, head_dim, block_size, dtype (default bfloat16),
    kv_cache_dtype (fp8: unit scales; int8: zero scale caches), tunables (as in `write_kv_cache`). `target` must be
    a Neuron target; the kernel's v2 / v3+ DMA branch follows the target the trace runs on."""
    neuron_target(target)
    dtype = numpy_dtype(str(problem.get("dtype", "bfloat16")))
    kv_dtype = problem.get("kv_cache_dtype") or "auto"
    t, hkv, d, bs = problem["t"], problem["hkv"], problem["head_dim"], problem["block_size"]
    cache = np.zeros((math.ceil(t / bs) + 1, bs, hkv, d), storage_dtype(kv_dtype, dtype.name))
    new = np.zeros((t, hkv, d), dtype)
    scale_caches = (np.zeros(cache.shape[:3], np.float32),) * 2 if kv_dtype == "int8" else (None, None)
    quant = kernel_quant(kv_dtype, 1.0, 1.0, hkv, target)
    return write_kv_cache_kernel, (new, new, cache, cache.copy(), np.arange(t, dtype=np.int32), *scale_caches), dict(
        quant=quant, **_tunables(problem.get("tunables")))
