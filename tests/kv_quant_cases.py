"""Quantized KV caches for the tests: a hypothesis strategy of formats and scales, and the quantized (and poisoned)
copy of a paged problem's caches.

A `KvQuant` turns the float caches of `strategies.PagedProblem.inputs()` into what `write_kv_cache` would have
stored (the reference write of every live slot), with every slot no sequence reads poisoned: fp8 data NaN, int8 data
random codes, int8 scale slots NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

from nkilab.reference import paged
from nkilab.reference.kv_quant import storage_dtype
from nkilab.reference.quant import FP8_MAX

NKI_V2_V3_FORMATS = ("fp8_e4m3", "int8")  # what inf2 / trn1 / trn2 store
TRITON_FORMATS = ("fp8_e4m3fn", "int8")  # torch has no float8_e4m3
SCALE_STYLES = ("tensor", "head")
# fp8 scale = amax / max x factor: 1 maps the largest value to the format's max, 0.5 clips the top half of the range
SCALE_FACTORS = (0.5, 1.0, 3.0)


@dataclass(frozen=True)
class KvQuant:
    """A kv_cache_dtype; for fp8 also per-tensor or per-head scales of amax / max x factor."""

    kv_cache_dtype: str
    style: str = "tensor"
    factor: float = 1.0

    def scales(self, x: np.ndarray):
        """fp8 scale of the rows x [T, Hkv, D]: a float (per tensor) or float32 [Hkv] (per head)."""
        amax = np.abs(x.astype(np.float64)).max(axis=(0, 2)) if x.size else np.ones(x.shape[1])
        per_head = np.maximum(amax, 1e-3) / FP8_MAX[self.kv_cache_dtype] * self.factor
        return per_head.astype(np.float32) if self.style == "head" else float(per_head.max())

    def quantize_paged(self, inputs, live_slots, seed: int = 0):
        """(q, key_cache, value_cache, block_tables, seq_lens, query_start_loc) and the scale keywords of the
        quantized caches: live slots as the reference write stores them, every other slot poisoned."""
        q, key_cache, value_cache, *meta = inputs
        nb, bs, hkv, d = key_cache.shape
        slots = np.array(sorted(live_slots), np.int64)
        rows = [c.reshape(nb * bs, hkv, d)[slots] for c in (key_cache, value_cache)]
        dt = storage_dtype(self.kv_cache_dtype, str(key_cache.dtype))
        rng = np.random.default_rng(seed)
        if self.kv_cache_dtype == "int8":
            caches = [rng.integers(-127, 128, key_cache.shape).astype(np.int8) for _ in range(2)]
            extra = dict(k_scale_cache=np.full((nb, bs, hkv), np.nan, np.float32),
                         v_scale_cache=np.full((nb, bs, hkv), np.nan, np.float32))
        else:
            caches = [np.full(key_cache.shape, np.nan, np.float32).astype(dt) for _ in range(2)]
            extra = dict(k_scale=self.scales(rows[0]), v_scale=self.scales(rows[1]))
        paged.write_kv_cache(*rows, *caches, slots, kv_cache_dtype=self.kv_cache_dtype, **extra)
        return (q, *caches, *meta), dict(kv_cache_dtype=self.kv_cache_dtype, **extra)


@st.composite
def kv_quants(draw, *, formats=NKI_V2_V3_FORMATS):
    """A KvQuant of one of `formats`, fp8 with a drawn scale style and factor."""
    fmt = draw(st.sampled_from(tuple(formats)))
    if fmt == "int8":
        return KvQuant(fmt)
    return KvQuant(fmt, draw(st.sampled_from(SCALE_STYLES)), draw(st.sampled_from(SCALE_FACTORS)))
