"""Emulator speed benchmark (not a test): `python -m nkilab.harness.emulator.benchmark [--repeats N]`.

Measures, on this machine (wall time = emulation time, never device speed):
1. full mode: the tutorial `tiled_matmul` on bf16 lhs_t [4096, 128] and rhs [4096, 4096] (M=128, K=N=4096)
   against `np.matmul` of the same arrays in float32 — goal: at most 10x;
2. trace mode: the same kernel at M=2048, K=N=8192 (≈50k instructions) — goal: under 20 s on one core.
Times are the minimum over repeats (the machine may be shared); trace mode also reports CPU time, which
contention from other processes does not inflate. BLAS threads follow the environment
(OPENBLAS_NUM_THREADS=1 compares the two on one core).
"""

from __future__ import annotations

import argparse
import time

import ml_dtypes
import numpy as np

from .examples import tiled_matmul
from .jit import run


def _best(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def full_mode_ratio(repeats: int = 3, m: int = 128, k: int = 4096, n: int = 4096) -> dict:
    """Emulated bf16 tiled matmul vs np.matmul on float32 copies; returns seconds and their ratio."""
    rng = np.random.default_rng(0)
    lhs_t = rng.standard_normal((k, m)).astype(ml_dtypes.bfloat16)
    rhs = rng.standard_normal((k, n)).astype(ml_dtypes.bfloat16)
    lhs32, rhs32 = lhs_t.astype(np.float32).T.copy(), rhs.astype(np.float32)
    numpy_s = _best(lambda: np.matmul(lhs32, rhs32), repeats)
    emulator_s = _best(lambda: run(tiled_matmul, lhs_t, rhs), repeats)
    return {"numpy_s": numpy_s, "emulator_s": emulator_s, "ratio": emulator_s / numpy_s}


def trace_mode_time(m: int = 2048, k: int = 8192, n: int = 8192) -> dict:
    """Seconds to trace the tiled matmul at full size, and the instruction count."""
    lhs_t = np.zeros((k, m), ml_dtypes.bfloat16)
    rhs = np.zeros((k, n), ml_dtypes.bfloat16)
    t0, c0 = time.perf_counter(), time.process_time()
    res = run(tiled_matmul, lhs_t, rhs, mode="trace")
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"trace_s": seconds, "cpu_s": cpu, "instructions": len(res.trace),
            "us_per_instruction": 1e6 * seconds / len(res.trace)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    full = full_mode_ratio(args.repeats)
    print(f"full mode  M=128 K=4096 N=4096 bf16: emulator {full['emulator_s'] * 1e3:.0f} ms, np.matmul fp32 "
          f"{full['numpy_s'] * 1e3:.0f} ms, ratio {full['ratio']:.1f}x (goal <= 10x; measured)")
    tr = trace_mode_time()
    print(f"trace mode M=2048 K=8192 N=8192: {tr['trace_s']:.2f} s wall, {tr['cpu_s']:.2f} s CPU for "
          f"{tr['instructions']} instructions ({tr['us_per_instruction']:.0f} us each; goal < 20 s; measured)")


if __name__ == "__main__":
    main()
