"""Emulator speed benchmark (not a test): `python -m nkilab.harness.emulator.benchmark [--repeats N]`.

Measures, on this machine (emulation time, never device speed; every figure printed is measured):
1. full mode: the tutorial `tiled_matmul` on bf16 lhs_t [4096, 128] and rhs [4096, 4096] (M=128, K=N=4096)
   against `np.matmul` of the same arrays in float32, twice: with the machine's default BLAS threads and
   with single-threaded BLAS (the emulator always runs its matmuls on one BLAS thread, `blas.py`; the
   single-threaded line compares like with like). Goal: at most 3x with default threads.
2. trace mode: the same kernel at M=2048, K=N=8192 (≈50k instructions): instructions per CPU-second
   (`time.process_time`, which contention from other processes inflates less than wall time). Goal: at
   least 50k instructions per CPU-second (100k aimed at).
Times are the minimum over repeats (the machine may be shared).
"""

from __future__ import annotations

import argparse
import time

import ml_dtypes
import numpy as np

from . import blas
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
    """Emulated bf16 tiled matmul vs np.matmul on float32 copies (default and single-threaded BLAS): seconds and
    ratios."""
    rng = np.random.default_rng(0)
    lhs_t = rng.standard_normal((k, m)).astype(ml_dtypes.bfloat16)
    rhs = rng.standard_normal((k, n)).astype(ml_dtypes.bfloat16)
    lhs32, rhs32 = lhs_t.astype(np.float32).T.copy(), rhs.astype(np.float32)
    numpy_s = _best(lambda: np.matmul(lhs32, rhs32), repeats)
    with blas.single_threaded():
        numpy_1t_s = _best(lambda: np.matmul(lhs32, rhs32), repeats)
    emulator_s = _best(lambda: run(tiled_matmul, lhs_t, rhs), repeats)
    return {"numpy_s": numpy_s, "numpy_1thread_s": numpy_1t_s, "emulator_s": emulator_s,
            "ratio": emulator_s / numpy_s, "ratio_1thread": emulator_s / numpy_1t_s}


def trace_mode_time(m: int = 2048, k: int = 8192, n: int = 8192) -> dict:
    """Wall and CPU seconds to trace the tiled matmul at full size, the instruction count and rate."""
    lhs_t = np.zeros((k, m), ml_dtypes.bfloat16)
    rhs = np.zeros((k, n), ml_dtypes.bfloat16)
    t0, c0 = time.perf_counter(), time.process_time()
    res = run(tiled_matmul, lhs_t, rhs, mode="trace")
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"trace_s": seconds, "cpu_s": cpu, "instructions": len(res.trace),
            "us_per_instruction": 1e6 * seconds / len(res.trace), "per_cpu_s": len(res.trace) / cpu}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    full = full_mode_ratio(args.repeats)
    print(f"full mode  M=128 K=4096 N=4096 bf16: emulator {full['emulator_s'] * 1e3:.0f} ms; np.matmul fp32 "
          f"{full['numpy_s'] * 1e3:.0f} ms with default BLAS threads, ratio {full['ratio']:.1f}x (goal <= 3x); "
          f"{full['numpy_1thread_s'] * 1e3:.0f} ms single-threaded, ratio {full['ratio_1thread']:.1f}x (measured)")
    tr = min((trace_mode_time() for _ in range(args.repeats)), key=lambda r: r["cpu_s"])
    print(f"trace mode M=2048 K=8192 N=8192: {tr['instructions']} instructions in {tr['trace_s']:.2f} s wall, "
          f"{tr['cpu_s']:.2f} s CPU: {tr['per_cpu_s']:.0f} instructions per CPU-second (goal >= 50000; measured)")


if __name__ == "__main__":
    main()
