"""The one prepared GPU script: Triton kernels checked, timed and metered on a CUDA GPU against torch baselines.

Usage, on a machine with a CUDA GPU, from the repository root:

    python -m nkilab.harness.gpu_bench [--grid quick|default] [--skip-tests | --tests-only]
                                       [--energy-window-s 1.0] [--out FILE]

The tests take a few minutes (most of it Triton compiling ~100 kernel variants), the quick grid about 3 min with
energy; where one command may run at most 10 min, run `--tests-only`, then `--skip-tests --out FILE`.

Steps:
  1. pytest on tests/kernels/triton (one process per file, in parallel) with HYPOTHESIS_PROFILE=ci: on a GPU
     every Triton test runs on CUDA, the `gpu` ones (bfloat16, fp8, larger shapes) included.
  2. For each Llama-3.1-8B problem of nkilab.harness.workloads (bfloat16): build the inputs on the GPU, check the
     Triton output against a float64 torch computation on the GPU (nkilab.harness.checks.compare; the naive
     bfloat16 run is the error budget), then time every provider (`gpu_time`: CUDA events, median of repeats after
     warm-up) and meter its energy (NVML total-energy counter over a >= 1 s window of repeated, synchronized
     calls, via nkilab.harness.energy). A failed check reports no speed.
  3. Print one Markdown table: op | problem | provider | check | p50 ms | p20-p80 ms | TFLOP/s | GB/s | mJ/token |
     Triton speedup. Every figure is measured; FLOP and byte counts are the roofline formulas of `workloads`.
Baselines: qmatmul — dequantize-then-matmul in torch (every call) and a plain bf16 matmul on pre-dequantized weights;
W8A8 also `torch._scaled_mm` (per-token × per-channel scales); attention — `scaled_dot_product_attention`;
paged decode — SDPA over the same keys stored densely (no paging); write_kv_cache — `index_copy_`.
Without CUDA the script exits with status 2 and says why. Exit status 1 when a test or a check failed.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from nkilab.harness.gpu_timing import Timing, gpu_time, require_cuda
from nkilab.harness.workloads import DEFAULT_MODEL, Problem, Quant, make_inputs, model_problems

QUANTS = (Quant("int8"), Quant("int4", 128), Quant("int4", 128, symmetric=False), Quant("fp8_e4m3fn"),
          Quant("fp8_e4m3fn", w8a8=True))
PROJECTIONS = ("qkv", "down")  # Llama-3.1-8B 4096→6144 and 14336→4096: one wide-N and one long-K GEMM
BENCH_DTYPE = "bfloat16"
TEST_TIMEOUT_S = 420  # the GPU suite compiles ~100 kernel variants (fp32 "ieee" dots take 10-40 s each)
REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Case:
    """One provider's way to run a problem: `run()` launches the work (no sync) and returns the output."""

    provider: str
    run: Callable[[], object]


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


# --- problems -----------------------------------------------------------------------------------------------


def bench_problems(grid: str = "default", model: str = DEFAULT_MODEL) -> list[Problem]:
    """The decode and prefill problems of `model` on `grid` (bfloat16), qmatmul once per scheme in QUANTS for the
    projections in PROJECTIONS."""
    out: list[Problem] = []
    for phase in ("decode", "prefill"):
        for p in model_problems(model, phase=phase, grid=grid, dtype=BENCH_DTYPE):
            if p.op != "qmatmul":
                out.append(p)
            elif p.params["projection"] in PROJECTIONS:
                out.extend(replace(p, quant=q, name=f"{p.name}/{q.label}") for q in QUANTS)
    return out


# --- torch baselines and float64 truth ----------------------------------------------------------------------


def dequantize_torch(prepared, dtype):
    """W[K, N] = (q − z) · s in torch `dtype` from a PreparedWeight (the baseline's dequantization, every call)."""
    import torch

    src = prepared.source
    k, n = src.shape
    data = prepared.data
    if src.scheme == "int4":
        lo = (data & 0xF).to(torch.int16)
        hi = (data >> 4).to(torch.int16)
        if src.symmetric:
            lo, hi = torch.where(lo >= 8, lo - 16, lo), torch.where(hi >= 8, hi - 16, hi)
        q = torch.stack((lo, hi), dim=1).reshape(k, n)  # row 2i = low nibble of byte row i, 2i + 1 = high
    elif src.scheme.startswith("fp8"):
        q = data.view(torch.float8_e4m3fn)  # e4m3 (max 240) shares every e4m3fn encoding up to 240
    else:
        q = data
    q = q.to(dtype)
    rows = src.group_size or k
    if prepared.zeros is not None:
        q = q - prepared.zeros.to(dtype).repeat_interleave(rows, dim=0)
    return q * prepared.scales.to(dtype).repeat_interleave(rows, dim=0)


def attention_torch(q, k, v, *, causal, scale, sliding_window=None, softcap=None, dtype):
    """DESIGN §3.2 attention of one sequence in torch `dtype` (float64 = the truth on the GPU; bfloat16 = the naive
    working-precision run): q [Sq, Hq, D], k/v [Skv, Hkv, D] -> [Sq, Hq, D]. The float64 NumPy reference would take
    minutes at these shapes; this is the same formula (nkilab.reference.attention) on the device."""
    import torch

    sq, hq, _ = q.shape
    skv, hkv, _ = k.shape
    group = hq // hkv
    qh = q.to(dtype).transpose(0, 1)
    kh = k.to(dtype).repeat_interleave(group, dim=1).transpose(0, 1)
    vh = v.to(dtype).repeat_interleave(group, dim=1).transpose(0, 1)
    s = (qh @ kh.transpose(1, 2)) * scale
    if softcap is not None:
        s = softcap * torch.tanh(s / softcap)
    i = torch.arange(sq, device=q.device)[:, None]
    j = torch.arange(skv, device=q.device)[None, :]
    diagonal = i + skv - sq
    visible = torch.ones(sq, skv, dtype=torch.bool, device=q.device)
    if causal:
        visible &= j <= diagonal
    if sliding_window is not None:
        visible &= j >= diagonal - sliding_window + 1
    s = s.masked_fill(~visible, float("-inf"))
    # Softmax accumulates in fp32 for 16-bit work (as the NumPy reference does), in float64 for the truth.
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    p = torch.softmax(s.to(acc), dim=-1).nan_to_num(0.0).to(dtype)  # fully masked rows: NaN -> 0
    return (p @ vh).transpose(0, 1)


def paged_attention_torch(q, key_cache, value_cache, block_tables, seq_lens, query_start_loc, *, scale, dtype,
                          causal=True, sliding_window=None, softcap=None):
    """Gather each sequence's live keys through its block table, then `attention_torch` (DESIGN §3.3)."""
    import torch

    block_size = key_cache.shape[1]
    outs = []
    for i, length in enumerate(seq_lens.tolist()):
        pos = torch.arange(length, device=q.device)
        blocks = block_tables[i].long()[pos // block_size]
        k = key_cache[blocks, pos % block_size]
        v = value_cache[blocks, pos % block_size]
        rows = slice(int(query_start_loc[i]), int(query_start_loc[i + 1]))
        outs.append(attention_torch(q[rows], k, v, causal=causal, scale=scale, sliding_window=sliding_window,
                                    softcap=softcap, dtype=dtype))
    return torch.cat(outs)


def _sdpa(q, k, v, *, causal):
    """torch SDPA on [B, H, S, D] views; GQA through `enable_gqa` (torch >= 2.5)."""
    import torch.nn.functional as F

    return F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=q.shape[1] != k.shape[1])


# --- per-op cases -------------------------------------------------------------------------------------------


def _to_device(arrays, device):
    from nkilab.kernels._adapter import to_torch

    return [to_torch(a, device=device) for a in arrays]


def _qmatmul_cases(problem: Problem, device, weights: dict):
    """(cases, truth) for a qmatmul problem; prepared weights are cached per (K, N, scheme) in `weights` (the
    bench's ten weights take < 0.5 GB of GPU memory; quantizing them is the slow part)."""
    import torch

    import nkilab.kernels.triton as tb
    from nkilab.reference.quant import quantize_activation, quantize_weight

    p, quant = problem.params, problem.quant
    key = (p["k"], p["n"], quant.scheme, quant.group_size, quant.symmetric)
    if key not in weights:
        rng = np.random.default_rng(0)
        w = rng.standard_normal((p["k"], p["n"]), dtype=np.float32) * 0.05
        weights[key] = tb.prepare_weight(quantize_weight(w, quant.scheme, quant.group_size, quant.symmetric), device)
    pw = weights[key]
    dtype = torch.bfloat16 if problem.dtype == "bfloat16" else getattr(torch, problem.dtype)
    x = torch.randn(p["m"], p["k"], device=device, dtype=torch.float32)
    w_pre = dequantize_torch(pw, dtype)
    if quant.w8a8:
        xa = tb.prepare_activation(quantize_activation(x.cpu().numpy(), quant.scheme), device)
        x_deq = xa.data.view(torch.float8_e4m3fn).to(torch.float32) * xa.scales[:, None]
        x_truth = xa.data.view(torch.float8_e4m3fn).double() * xa.scales.double()[:, None]
        cases = [Case("triton", lambda: tb.qmatmul(xa, pw, out_dtype=dtype)),
                 Case("torch dequant+matmul", lambda: x_deq.to(dtype) @ dequantize_torch(pw, dtype))]
        xq = xa.data.view(torch.float8_e4m3fn)
        wq = pw.data.view(torch.float8_e4m3fn).t().contiguous().t()  # _scaled_mm wants B column-major
        cases.append(Case("torch._scaled_mm", lambda: torch._scaled_mm(
            xq, wq, scale_a=xa.scales[:, None], scale_b=pw.scales, out_dtype=dtype)))
    else:
        xb = x.to(dtype)
        cases = [Case("triton", lambda: tb.qmatmul(xb, pw, out_dtype=dtype)),
                 Case("torch dequant+matmul", lambda: xb @ dequantize_torch(pw, dtype)),
                 Case("torch matmul (pre-dequantized)", lambda: xb @ w_pre)]
        x_truth = xb

    def truth():
        ref64 = x_truth.double() @ dequantize_torch(pw, torch.float64)
        return ref64, x_truth.to(dtype) @ w_pre  # the naive run: dequantized operands in bfloat16

    return cases, truth


def _attention_cases(problem: Problem, device):
    import nkilab.kernels.triton as tb

    (q, k, v), opts = make_inputs(problem)
    q, k, v = _to_device((q, k, v), device)
    scale = q.shape[-1] ** -0.5
    qt, kt, vt = (a.transpose(1, 2) for a in (q, k, v))
    cases = [Case("triton", lambda: tb.attention(q, k, v, scale=scale, **opts))]
    if opts["sliding_window"] is None and opts["softcap"] is None and q.shape[1] == k.shape[1]:
        cases.append(Case("torch SDPA", lambda: _sdpa(qt, kt, vt, causal=opts["causal"])))

    def truth():
        import torch

        def run(dtype):
            return torch.stack([attention_torch(q[b], k[b], v[b], scale=scale, dtype=dtype, **opts)
                                for b in range(q.shape[0])])

        return run(torch.float64), run(q.dtype)

    return cases, truth


def _paged_cases(problem: Problem, device):
    import torch

    import nkilab.kernels.triton as tb

    args, opts = make_inputs(problem)
    q, kc, vc, bt, sl, qsl = _to_device(args, device)
    scale = q.shape[-1] ** -0.5
    cases = [Case("triton", lambda: tb.paged_attention(q, kc, vc, bt, sl, qsl, scale=scale, **opts))]
    contexts = problem.contexts()
    if set(problem.q_lens()) == {1} and len(set(contexts)) == 1 and opts["sliding_window"] is None:
        # The same keys stored densely: [B, Hkv, ctx, D], one query per sequence (decode sees every key).
        ctx, bs = contexts[0], kc.shape[1]
        pos = torch.arange(ctx, device=device)
        blocks = bt.long()[:, pos // bs]
        dense_k = kc[blocks, pos % bs].transpose(1, 2).contiguous()
        dense_v = vc[blocks, pos % bs].transpose(1, 2).contiguous()
        q4 = q[:, :, None, :]
        cases.append(Case("torch SDPA (dense KV, no paging)", lambda: _sdpa(q4, dense_k, dense_v, causal=False)))

    def truth():
        def run(dtype):
            return paged_attention_torch(q, kc, vc, bt, sl, qsl, scale=scale, dtype=dtype, **opts)

        return run(torch.float64), run(q.dtype)

    return cases, truth


def _write_cases(problem: Problem, device):
    import torch

    import nkilab.kernels.triton as tb

    args, _ = make_inputs(problem)
    key, value, kc, vc, slots = _to_device(args, device)
    live = slots >= 0
    live_slots, live_key, live_value = slots[live], key[live], value[live]
    flat_k = kc.view(-1, *kc.shape[2:])
    flat_v = vc.view(-1, *vc.shape[2:])
    cases = [Case("triton", lambda: tb.write_kv_cache(key, value, kc, vc, slots)),
             Case("torch index_copy_ (padding pre-filtered)",
                  lambda: (flat_k.index_copy_(0, live_slots, live_key), flat_v.index_copy_(0, live_slots, live_value)))]

    def truth():
        expected_k = torch.full_like(kc, float("nan")).view(-1, *kc.shape[2:]).index_copy_(0, live_slots, live_key)
        return expected_k.view_as(kc), None

    return cases, truth


# --- running --------------------------------------------------------------------------------------------------


def check_triton(problem: Problem, out, truth) -> str:
    """"pass" or "FAIL: <report>" for the Triton output against the float64 truth (write: exact)."""
    import torch

    from nkilab.harness.checks import compare

    ref64, ref_low = truth()
    if problem.op == "write_kv_cache":
        key_cache = out[0]
        same = torch.equal(torch.isnan(key_cache), torch.isnan(ref64)) and torch.equal(
            key_cache.nan_to_num(0.0), ref64.nan_to_num(0.0))
        return "pass" if same else "FAIL: cache differs from index_copy_ of the live tokens"
    result = compare(out, ref64.double(), ref_low)
    return "pass" if result.passed else "FAIL: " + str(result).splitlines()[0]


def energy_meter():
    """An NvmlEnergyMeter for GPU 0 (nkilab.harness.energy; imported here so the rest works without it)."""
    try:
        from nkilab.harness.energy import NvmlEnergyMeter
    except ImportError as e:
        raise RuntimeError("nkilab.harness.energy.NvmlEnergyMeter is missing: the GPU bench needs the harness "
                           f"energy module for NVML energy ({e})") from e
    return NvmlEnergyMeter()


def energy_mj_per_token(run: Callable[[], object], tokens: int, meter, *, min_window_s: float):
    """(mJ per token, note): NVML energy of repeated synchronized calls over >= min_window_s (measured)."""
    try:
        from nkilab.harness.energy import measure_energy
    except ImportError as e:
        raise RuntimeError("nkilab.harness.energy.measure_energy is missing: the GPU bench needs the harness "
                           f"energy module for NVML energy ({e})") from e
    import torch

    def synced():
        run()
        torch.cuda.synchronize()

    result = measure_energy(synced, meter, min_window_s=min_window_s).per_token(tokens)
    if result.joules_per_token is None:
        return None, result.reason
    return 1e3 * result.joules_per_token, ""


def bench_problem(problem: Problem, device, *, timer, energy, weights: dict) -> list[Row]:
    """Check the Triton output, then time and meter every provider of `problem` (rows in provider order)."""
    if problem.op == "qmatmul":
        cases, truth = _qmatmul_cases(problem, device, weights)
    elif problem.op == "attention":
        cases, truth = _attention_cases(problem, device)
    elif problem.op == "paged_attention":
        cases, truth = _paged_cases(problem, device)
    else:
        cases, truth = _write_cases(problem, device)
    label = problem.name.split("/", 2)[-1]
    check = check_triton(problem, cases[0].run(), truth)
    rows: list[Row] = []
    for case in cases:
        is_triton = case.provider == "triton"
        if is_triton and check != "pass":
            rows.append(Row(problem.op, label, case.provider, check, note="failed check: no speed reported"))
            continue
        try:
            timing = timer(case.run)
        except Exception as e:  # a baseline torch does not support here (e.g. _scaled_mm scale layouts)
            rows.append(Row(problem.op, label, case.provider, check if is_triton else "–",
                            note=f"not run: {type(e).__name__}: {str(e).splitlines()[0][:80]}"))
            continue
        seconds = timing.p50_ms / 1e3
        mj, note = energy(case.run, problem.tokens)
        rows.append(Row(problem.op, label, case.provider, check if is_triton else "–", timing,
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nkilab.harness.gpu_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--grid", choices=("quick", "default"), default="quick",
                        help="workload grid: quick = 36 problems (~3 min with energy), default = 65 (~6 min)")
    parser.add_argument("--skip-tests", action="store_true", help="do not run pytest first")
    parser.add_argument("--tests-only", action="store_true", help="run pytest, print its summary, stop")
    parser.add_argument("--energy-window-s", type=float, default=1.0,
                        help="NVML window per measurement, s (>= 1 for a meaningful counter delta; 0 = skip energy)")
    parser.add_argument("--out", type=Path, help="also write the report (Markdown) to this file")
    args = parser.parse_args(argv)
    try:
        torch = require_cuda("nkilab.harness.gpu_bench")
        meter = energy_meter()
    except RuntimeError as e:
        print(f"gpu_bench: {e}", file=sys.stderr)
        return 2
    import triton

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

        rows: list[Row] = []
        weights: dict = {}
        problems = bench_problems(args.grid)
        for i, problem in enumerate(problems, 1):
            print(f"[{i}/{len(problems)}] {problem.name}", file=sys.stderr, flush=True)
            rows += bench_problem(problem, "cuda", timer=gpu_time, energy=energy, weights=weights)
        failed = failed or any(r.check.startswith("FAIL") for r in rows)
        emit("## Triton vs torch", markdown_table(rows))
    if args.out:
        args.out.write_text("\n".join(report) + "\n")
    return int(failed)


if __name__ == "__main__":
    sys.exit(main())
