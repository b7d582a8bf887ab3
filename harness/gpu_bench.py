"""The one prepared GPU script: Triton kernels checked, timed and metered on a CUDA GPU against torch baselines.

Usage, on a machine with a CUDA GPU, from the repository root:

    python -m nkilab.harness.gpu_bench [--grid quick|default] [--skip-tests | --tests-only]
                                       [--energy-window-s 1.0] [--out FILE]

The tests take a few minutes (most of it Triton compiling ~100 kernel variants), the quick grid about 3 min with
energy; where one command may run at most 10 min, run `--tests-only`, then `--skip-tests --out FILE`.

Steps:
  1. pytest on tests/kernels/triton (one process per file, in parallel) with HYPOTHESIS_PROFILE=ci: on a GPU
     every Triton test runs on CUDA, the `gpu` ones (bfloat16, fp8, larger shapes) included.
  2. For each Llama-3.1-8B problem of nkilab.harness.workloads (bfloat16) of every op that declares a bench
     (`Op.bench`): build the inputs on the GPU, check the Triton output against a float64 computation on the GPU
     by the op's check rule (nkilab.harness.checks, the one comparator), then time every provider
     (nkilab.harness.measure.cuda.gpu_time: CUDA events, median of repeats after warm-up) and meter its energy
     (NVML total-energy counter over a >= 1 s window of repeated, synchronized calls). A failed check reports no
     speed.
  3. Print one Markdown table: op | problem | provider | check | p50 ms | p20-p80 ms | TFLOP/s | GB/s | mJ/token |
     Triton speedup. Every figure is measured; FLOP and byte counts are the ops' roofline formulas.
Baselines are declared per op (`nkilab.kernels.ops.<op>.bench`), e.g. qmatmul — dequantize-then-matmul in torch
and a matmul on pre-dequantized weights; attention — `scaled_dot_product_attention`; write_kv_cache — `index_copy_`.
Without CUDA the script exits with status 2 and says why. Exit status 1 when a test or a check failed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from nkilab.harness.measure.bench import (
    BENCH_DTYPE,
    bench_problem,
    bench_problems,
    energy_mj_per_token,
    markdown_table,
    run_gpu_tests,
)
from nkilab.harness.measure.cuda import gpu_time, require_cuda
from nkilab.harness.measure.energy import NvmlEnergyMeter
from nkilab.harness.workloads import DEFAULT_MODEL


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m nkilab.harness.gpu_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--grid", choices=("quick", "default"), default="quick",
                        help="workload grid: quick = 36 problems (~3 min with energy), default = 65 (~6 min)")
    parser.add_argument("--skip-tests", action="store_true", help="do not run pytest first")
    parser.add_argument("--tests-only", action="store_true", help="run pytest, print its summary, stop")
    parser.add_argument("--energy-window-s", type=float, default=1.0,
                        help="NVML window per measurement, s (>= 1 for a meaningful counter delta; 0 = skip energy)")
    parser.add_argument("--out", type=Path, help="also write the report (Markdown) to this file")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        torch = require_cuda("nkilab.harness.gpu_bench")
    except RuntimeError as e:
        print(f"gpu_bench: {e}", file=sys.stderr)
        return 2
    import triton  # optional heavy dependency: only for its version in the report header

    meter = NvmlEnergyMeter()
    report: list[str] = []

    def emit(*lines: str) -> None:
        report.extend(lines)
        print("\n".join(lines), flush=True)

    emit(f"# nkilab Triton GPU bench — {torch.cuda.get_device_name(0)}",
         f"torch {torch.__version__}, triton {triton.__version__}, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; "
         f"{DEFAULT_MODEL} shapes, {BENCH_DTYPE}; all figures measured (CUDA events; NVML energy)", "")
    failed = False
    if not args.skip_tests:
        rc, tail = run_gpu_tests()
        emit(f"## pytest tests/kernels/triton (worst exit status {rc})", "```", tail, "```", "")
        failed = rc != 0
    if not args.tests_only:
        if not meter.available:
            emit(f"Energy not measured: {meter.reason}", "")

        def energy(run, tokens):
            if args.energy_window_s <= 0:
                return None, "energy skipped (--energy-window-s 0)"
            if not meter.available:
                return None, "NVML unavailable"
            return energy_mj_per_token(run, tokens, meter, min_window_s=args.energy_window_s)

        rows, cache = [], {}
        problems = bench_problems(args.grid)
        for i, problem in enumerate(problems, 1):
            print(f"[{i}/{len(problems)}] {problem.name}", file=sys.stderr, flush=True)
            rows += bench_problem(problem, "cuda", timer=gpu_time, energy=energy, cache=cache)
        failed = failed or any(r.check.startswith("FAIL") for r in rows)
        emit("## Triton vs torch", markdown_table(rows))
    if args.out:
        args.out.write_text("\n".join(report) + "\n")
    return int(failed)


if __name__ == "__main__":
    sys.exit(main())
