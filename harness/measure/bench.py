"""The GPU bench's engine: each op's Triton kernel checked against a float64 truth on the device, then timed and
metered next to the torch baselines the op declares (`Op.bench`), as rows of one Markdown table.

A failed check reports no speed. Every figure is measured (CUDA events via the timer the caller passes, normally
`nkilab.harness.measure.cuda.gpu_time`; NVML energy); FLOP and byte counts are the ops' roofline formulas.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from nkilab.harness.checks import check_truth
from nkilab.harness.measure.cuda import Timing
from nkilab.harness.measure.energy import measure_energy
from nkilab.harness.workloads import DEFAULT_MODEL, PHASES, Problem, model_problems

BENCH_DTYPE = "bfloat16"
TEST_TIMEOUT_S = 420  # the GPU suite compiles ~100 kernel variants (fp32 "ieee" dots take 10-40 s each)
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Row:
    """One line of the table; `timing`/`mj_per_token` are None when not measured, with `note` saying why."""

    op: str
    problem: str
    provider: str
    check: str
    timing: Timing | None = None
    tflops: float | None = None
    gbs: float | None = None
    mj_per_token: float | None = None
    speedup: float | None = None
    note: str = ""


def bench_problems(grid: str = "default", model: str = DEFAULT_MODEL) -> list[Problem]:
    """The decode and prefill problems of `model` on `grid` (bfloat16) of every op with a bench, each expanded by
    its op's `bench_variants` (e.g. qmatmul once per weight scheme)."""
    return [variant for phase in PHASES for p in model_problems(model, phase=phase, grid=grid, dtype=BENCH_DTYPE)
            if p.family.bench is not None for variant in p.family.bench_problems(p)]


def check_label(problem: Problem, out, truth) -> str:
    """"pass" or "FAIL: <first line of the report>" for the Triton output against the truth, by the op's rule."""
    ref64, ref_lowprec = truth()
    result = check_truth(problem.family, out, ref64, ref_lowprec)
    return "pass" if result.passed else "FAIL: " + str(result).splitlines()[0]


def energy_mj_per_token(run: Callable[[], object], tokens: int, meter, *, min_window_s: float):
    """(mJ per token, note): NVML energy of repeated synchronized calls over >= min_window_s (measured)."""
    import torch  # optional heavy dependency: only the GPU bench meters energy

    def synced():
        run()
        torch.cuda.synchronize()

    result = measure_energy(synced, meter, min_window_s=min_window_s).per_token(tokens)
    if result.joules_per_token is None:
        return None, result.reason
    return 1e3 * result.joules_per_token, ""


def bench_problem(problem: Problem, device, *, timer, energy, cache: dict) -> list[Row]:
    """Check the Triton output, then time and meter every provider of `problem` (rows in provider order).

    `timer(run) -> Timing`, `energy(run, tokens) -> (mJ/token or None, note)`; `cache` keeps what an op's bench
    reuses across problems (e.g. prepared weights)."""
    cases, truth = problem.family.bench(problem, device, cache)
    label = problem.name.split("/", 2)[-1]
    check = check_label(problem, cases[0][1](), truth)
    rows: list[Row] = []
    for provider, run in cases:
        is_triton = provider == "triton"
        if is_triton and check != "pass":
            rows.append(Row(problem.op, label, provider, check, note="failed check: no speed reported"))
            continue
        try:
            timing = timer(run)
        except Exception as e:  # a baseline torch does not support here (e.g. _scaled_mm scale layouts)
            rows.append(Row(problem.op, label, provider, check if is_triton else "–",
                            note=f"not run: {type(e).__name__}: {str(e).splitlines()[0][:80]}"))
            continue
        seconds = timing.p50_ms / 1e3
        mj, note = energy(run, problem.tokens)
        rows.append(Row(problem.op, label, provider, check if is_triton else "–", timing,
                        problem.flops() / seconds / 1e12 if problem.flops() else None,
                        problem.hbm_bytes() / seconds / 1e9, mj, note=note))
    triton = next((r for r in rows if r.provider == "triton" and r.timing), None)
    if triton is not None:
        rows = [replace(r, speedup=r.timing.p50_ms / triton.timing.p50_ms) if r.timing and r is not triton else r
                for r in rows]
    return rows


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}g}"


def markdown_table(rows: list[Row]) -> str:
    """The results as a Markdown table; the last column is provider p50 / Triton p50 (> 1: Triton faster)."""
    head = ("| op | problem | provider | check | p50 ms | p20–p80 ms | TFLOP/s | GB/s | mJ/token (NVML) | "
            "Triton speedup | note |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        t = r.timing
        spread = f"{t.p20_ms:.4g}–{t.p80_ms:.4g}" if t else "–"
        lines.append(f"| {r.op} | {r.problem} | {r.provider} | {r.check} | {_fmt(t.p50_ms if t else None, 4)} | "
                     f"{spread} | {_fmt(r.tflops)} | {_fmt(r.gbs)} | {_fmt(r.mj_per_token)} | "
                     f"{_fmt(r.speedup)} | {r.note} |")
    return "\n".join(lines)


def run_gpu_tests(timeout_s: float = TEST_TIMEOUT_S) -> tuple[int, str]:
    """(worst exit status, last lines of each output) of pytest on each tests/kernels/triton file, ci profile.

    One pytest process per file, all at once: on a GPU the suite's time is Triton compiling one kernel per
    constexpr combination (single-threaded per kernel), so files compile in parallel on the host's cores.
    """
    env = {**os.environ, "HYPOTHESIS_PROFILE": "ci"}
    files = sorted((REPO_ROOT / "tests/kernels/triton").glob("test_*.py"))
    procs = [(f, subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(f)],
                                  cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True)) for f in files]
    deadline = time.monotonic() + timeout_s
    worst, tails = 0, []
    for path, proc in procs:
        try:
            out, _ = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            proc.kill()
            out, rc = f"timed out after {timeout_s:.0f} s", 124
        worst = max(worst, rc)
        tails.append(f"{path.name}: exit {rc}\n" + "\n".join(out.strip().splitlines()[-6:]))
    return worst, "\n".join(tails)
