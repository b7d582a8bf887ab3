"""Measured (CPU wall time of this machine, one process): writing one token into a small and a large paged KV cache
on every backend, NumPy and torch caches. O(new tokens) writes cost the same at both sizes.

    python tests/runtime/cache_write_bench.py            # prints the table (min of 7 calls per cell, ms)
"""

from __future__ import annotations

import time

import numpy as np
import torch

import nkilab.kernels as K

HKV, D, BLOCK = 8, 128, 16  # Llama-3.1-8B's kv heads and head dim, fp32 caches
BACKENDS = ("reference", "nki", "triton")


def caches(mib: int, kind: str):
    """Key and value caches of `mib` MiB together (zero pages: only the touched slot is ever materialized)."""
    slots = mib * 2**20 // (2 * HKV * D * 4)
    shape = (slots // BLOCK, BLOCK, HKV, D)
    kc, vc = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    return (kc, vc) if kind == "numpy" else (torch.from_numpy(kc), torch.from_numpy(vc))


def one_token_ms(backend: str, kind: str, mib: int, reps: int = 7) -> float:
    """Min wall time (ms) of one write_kv_cache call of one token into caches of `mib` MiB."""
    kc, vc = caches(mib, kind)
    key = np.random.default_rng(0).standard_normal((1, HKV, D)).astype(np.float32)
    slot = np.array([kc.shape[0] * BLOCK // 2], np.int64)
    args = (key, key.copy(), kc, vc, slot) if kind == "numpy" else (
        torch.from_numpy(key), torch.from_numpy(key.copy()), kc, vc, torch.from_numpy(slot))
    K.write_kv_cache(*args, backend=backend)  # first call: imports, interpreter / emulator warm-up
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        K.write_kv_cache(*args, backend=backend)
        times.append(time.perf_counter() - start)
    assert np.array_equal(np.asarray(kc[slot[0] // BLOCK, slot[0] % BLOCK]), key[0])
    return 1e3 * min(times)


def table(small: int = 8, large: int = 512) -> list[tuple[str, str, float, float]]:
    """[(backend, kind, ms at `small` MiB, ms at `large` MiB)]."""
    return [(b, kind, one_token_ms(b, kind, small), one_token_ms(b, kind, large))
            for b in BACKENDS for kind in ("numpy", "torch")]


if __name__ == "__main__":
    print("| backend | caches | 8 MiB (ms) | 512 MiB (ms) | ratio |\n|---|---|---|---|---|")
    for backend, kind, t_small, t_large in table():
        print(f"| {backend} | {kind} | {t_small:.3f} | {t_large:.3f} | {t_large / t_small:.2f} |")
