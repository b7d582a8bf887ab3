"""The quantized-KV-cache arguments shared by `write_kv_cache` and `paged_attention`: their rules and the keywords
the backends receive.

Both ops take the same five keywords (formats and arithmetic: `nkilab.reference.kv_quant`):

    kv_cache_dtype   "auto" (default: the caches hold q's / key's float dtype) | "fp8_e4m3" | "fp8_e4m3fn" | "int8"
    k_scale, v_scale fp8 only: a finite number > 0 (per tensor) or a float32 [Hkv] array / tensor (per kv head),
                     None = 1.0
    k_scale_cache,   int8 only, required: float32 [num_blocks, block_size, Hkv], one scale per (slot, kv head),
    v_scale_cache    the arrays' kind and device; `write_kv_cache` writes them in place beside the data caches,
                     `paged_attention` reads them

A backend receives `quant_keywords(...)`: nothing for "auto" (its signature is unchanged), else kv_cache_dtype and
either k_scale / v_scale (float, or float32 [Hkv] NumPy) or k_scale_cache / v_scale_cache (the backend's kind).
"""

from __future__ import annotations

import numbers

import numpy as np

from nkilab.kernels import _checks
from nkilab.kernels._adapter import dtype_name, is_torch, kind, to_numpy
from nkilab.kernels.ops._problem import Problem
from nkilab.reference import paged
from nkilab.reference.kv_quant import KV_CACHE_DTYPES, KV_STORAGE, storage_dtype
from nkilab.reference.quant import FP8_MAX

SCALE_KEYWORDS = ("k_scale", "v_scale", "k_scale_cache", "v_scale_cache")


def check_dtype(kv_cache_dtype) -> str:
    """kv_cache_dtype is one of KV_CACHE_DTYPES."""
    if not isinstance(kv_cache_dtype, str) or kv_cache_dtype not in KV_CACHE_DTYPES:
        raise ValueError(f"kv_cache_dtype: must be one of {KV_CACHE_DTYPES}, got {kv_cache_dtype!r}")
    return kv_cache_dtype


def storage(kv_cache_dtype: str) -> str | None:
    """The data caches' dtype name a quantized kv_cache_dtype requires (None for "auto": any float dtype)."""
    return KV_STORAGE.get(kv_cache_dtype)


def check_scales(kv_cache_dtype: str, key_cache, *, k_scale, v_scale, k_scale_cache, v_scale_cache,
                 writing: bool) -> dict:
    """Validate the scale arguments against kv_cache_dtype and the caches; returns the backend keywords.

    Raises:
        ValueError: a scale given that the format does not use, a missing int8 scale cache, a scale of the wrong
            shape, a scale that is not finite and > 0.
        TypeError: a scale cache that is not float32, or not of the data caches' kind / device.
    """
    given = dict(k_scale=k_scale, v_scale=v_scale, k_scale_cache=k_scale_cache, v_scale_cache=v_scale_cache)
    uses = {"auto": (), "int8": ("k_scale_cache", "v_scale_cache")}.get(kv_cache_dtype, ("k_scale", "v_scale"))
    for name, value in given.items():
        if value is not None and name not in uses:
            raise ValueError(f"{name}: kv_cache_dtype={kv_cache_dtype!r} takes no {name} (fp8 takes k_scale / v_scale, "
                             f"int8 takes k_scale_cache / v_scale_cache), got a value")
    if kv_cache_dtype == "auto":
        return {}
    hkv = int(key_cache.shape[2])
    if kv_cache_dtype == "int8":
        for name in uses:
            _scale_cache(name, given[name], key_cache, writing)
        return dict(kv_cache_dtype=kv_cache_dtype, k_scale_cache=k_scale_cache, v_scale_cache=v_scale_cache)
    return dict(kv_cache_dtype=kv_cache_dtype, k_scale=_fp8_scale("k_scale", k_scale, hkv),
                v_scale=_fp8_scale("v_scale", v_scale, hkv))


def _fp8_scale(name: str, value, hkv: int):
    """float (per tensor) or float32 [Hkv] NumPy (per kv head), finite and > 0."""
    if value is None:
        return 1.0
    if isinstance(value, bool):
        raise TypeError(f"{name}: must be a number or a float32 [Hkv] array, got {value!r}")
    if isinstance(value, numbers.Real):
        return _checks.positive_number(name, value)
    if kind(value) == "other":
        raise TypeError(f"{name}: must be a number or a float32 [Hkv={hkv}] array / tensor, got {type(value).__name__}")
    if tuple(value.shape) == ():
        return _checks.positive_number(name, float(to_numpy(value)))
    if tuple(value.shape) != (hkv,):
        raise ValueError(f"{name}: per-head scales must be [Hkv={hkv}], got shape {tuple(value.shape)}")
    if dtype_name(value) != "float32":
        raise TypeError(f"{name}: per-head scales must be float32, got {dtype_name(value)}")
    s = np.ascontiguousarray(to_numpy(value), np.float32)
    bad = np.flatnonzero(~(np.isfinite(s) & (s > 0)))
    if bad.size:
        raise ValueError(f"{name}: every scale must be finite and > 0, got {name}[{bad[0]}] = {s[bad[0]]}")
    return s


def _scale_cache(name: str, cache, key_cache, writing: bool) -> None:
    """An int8 scale cache: float32 [num_blocks, block_size, Hkv] of key_cache's kind and device (writable when
    `writing`); its unused slots may hold anything (NaN included)."""
    if cache is None:
        raise ValueError(f"{name}: kv_cache_dtype='int8' needs float32 scale caches [num_blocks, block_size, Hkv] "
                         f"beside the data caches, got None")
    if kind(cache) != kind(key_cache):
        raise TypeError(f"{name}: must be of key_cache's kind ({kind(key_cache)}), got {type(cache).__name__}")
    if is_torch(cache) and str(cache.device) != str(key_cache.device):
        raise ValueError(f"{name}: must be on key_cache's device {key_cache.device}, got {cache.device}")
    want = tuple(key_cache.shape[:3])
    if tuple(cache.shape) != want:
        raise ValueError(f"{name}: must be [num_blocks, block_size, Hkv] = {want}, got shape {tuple(cache.shape)}")
    if dtype_name(cache) != "float32":
        raise TypeError(f"{name}: must be float32, got {dtype_name(cache)}")
    if writing:
        _checks.writable(name, cache)


def check_finite(kv_cache_dtype: str, **named) -> None:
    """A quantized write needs finite keys and values (an inf or NaN has no fp8 / int8 code that dequantizes back)."""
    if kv_cache_dtype == "auto":
        return
    for name, a in named.items():
        values = to_numpy(a)
        if values.size and not np.isfinite(values.astype(np.float32)).all():
            raise ValueError(f"{name}: must be finite to be quantized to {kv_cache_dtype} (found NaN or inf)")


# --- workloads ------------------------------------------------------------------------------------------------------

WORKLOAD_DTYPES = ("fp8_e4m3", "int8")  # the quantized rows of the model grids: what NeuronCore-v2/v3 store
# The quantized smoke rows of the check pass: (kv_cache_dtype, fp8 scale granularity). fp8_e4m3fn is left out: the
# NKI emulator checks at its default target, which has no e4m3fn (tests/kernels/test_kv_quant.py covers it on trn3).
SMOKE_FORMATS = (("fp8_e4m3", "head"), ("int8", None))


def workload_variants(problems: list[Problem], block_size: int | None) -> list[Problem]:
    """The model-dtype rows at `block_size` again over each quantized cache of WORKLOAD_DTYPES, named
    .../<op>/<kv_cache_dtype>/<rest> with param kv_cache_dtype (their speed-up is against the same row over "auto")."""
    out = []
    for kv in WORKLOAD_DTYPES:
        for p in problems:
            if p.params["block_size"] == block_size:
                head, tail = p.name.rsplit("/", 1)
                out.append(Problem(p.family, f"{head}/{kv}/{tail}", p.phase, {**p.params, "kv_cache_dtype": kv},
                                   p.dtype, p.tokens, p.model))
    return out


def smoke_variants(problem: Problem) -> list[Problem]:
    """`problem` over each quantized cache of SMOKE_FORMATS, named smoke/<op>/<kv_cache_dtype>[-head]/<rest>, with
    params kv_cache_dtype and fp8_scales ("head" = per-kv-head fp8 scales, None = per tensor / int8)."""
    head, tail = problem.name.rsplit("/", 1)
    return [Problem(problem.family, f"{head}/{kv}{'-' + scales if scales else ''}/{tail}", problem.phase,
                    {**problem.params, "kv_cache_dtype": kv, "fp8_scales": scales}, problem.dtype, problem.tokens,
                    problem.model) for kv, scales in SMOKE_FORMATS]


def scale_bytes(kv_cache_dtype: str, rows: int, hkv: int) -> float:
    """HBM bytes of the int8 scales of `rows` cached tokens of K and V (0 for the other formats)."""
    return 4.0 * 2 * rows * hkv if kv_cache_dtype == "int8" else 0.0


def quantized_caches(kv_cache_dtype: str, key_cache, value_cache, live_slots, zeros: bool, per_head: bool = False):
    """(key_cache, value_cache, scale keywords) of float caches quantized the way `write_kv_cache` stores them: the
    live slots through the reference write, every other slot NaN (fp8) / random codes with NaN scales (int8); fp8
    scales amax / max (no clipping), per tensor (floats) or, with `per_head`, per kv head (float32 [Hkv], amax over
    each head's live rows). zeros: trace mode, zero codes and unit / zero scales."""
    nb, bs, hkv, d = key_cache.shape
    dt = storage_dtype(kv_cache_dtype, str(key_cache.dtype))
    if zeros:
        caches = [np.zeros(key_cache.shape, dt) for _ in range(2)]
        if kv_cache_dtype == "int8":
            return (*caches, {n: np.zeros((nb, bs, hkv), np.float32) for n in ("k_scale_cache", "v_scale_cache")})
        return (*caches, dict(k_scale=1.0, v_scale=1.0))
    slots = np.asarray(sorted(live_slots), np.int64)
    rows = [c.reshape(nb * bs, hkv, d)[slots] for c in (key_cache, value_cache)]
    if kv_cache_dtype == "int8":
        rng = np.random.default_rng(0)
        caches = [rng.integers(-127, 128, key_cache.shape).astype(np.int8) for _ in range(2)]
        extra = {n: np.full((nb, bs, hkv), np.nan, np.float32) for n in ("k_scale_cache", "v_scale_cache")}
    else:
        caches = [np.full(key_cache.shape, np.nan, np.float32).astype(dt) for _ in range(2)]
        axes = (0, 2) if per_head else None
        extra = {name: np.maximum(np.abs(r.astype(np.float64)).max(axis=axes, initial=0.0), 1e-3)
                 / FP8_MAX[kv_cache_dtype] for name, r in zip(("k_scale", "v_scale"), rows)}
        extra = {name: v.astype(np.float32) if per_head else float(v) for name, v in extra.items()}
    paged.write_kv_cache(*rows, *caches, slots, kv_cache_dtype=kv_cache_dtype, **extra)
    return (*caches, extra)
