"""The GPU bench script and timing helper: what can be checked without a GPU (refusal, checks, table, baselines)."""

import importlib
import time
from dataclasses import replace

import numpy as np
import pytest
import torch
from strategies import QuantConfig

import nkilab.kernels.triton as triton_backend
from nkilab.harness import gpu_bench
from nkilab.harness.measure import bench
from nkilab.harness.measure.cuda import Timing, gpu_time, quantiles_ms
from nkilab.harness.workloads import Quant, smoke_problems
from nkilab.kernels import OPS
from nkilab.kernels.ops.attention import attention_torch
from nkilab.kernels.ops.paged_attention import paged_attention_torch
from nkilab.kernels.ops.qmatmul import BENCH_QUANTS, dequantize_torch
from nkilab.reference import build_paged_cache, paged_attention
from nkilab.reference.attention import attention as reference_attention
from nkilab.reference.quant import dequantize_weight, quantize_weight

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")


def _cpu_timer(run) -> Timing:
    """One call timed on the host: enough to exercise the bench's bookkeeping (emulation time, not speed)."""
    start = time.perf_counter()
    run()
    ms = (time.perf_counter() - start) * 1e3
    return Timing(ms, ms, ms, 1, 0, "no", kind="emulation")


def _no_energy(run, tokens):
    return None, "no meter in this test"


@no_cuda
def test_gpu_time_refuses_without_cuda():
    with pytest.raises(RuntimeError, match="needs a CUDA GPU"):
        gpu_time(lambda: None)


@no_cuda
def test_main_exits_2_without_cuda(capsys):
    assert gpu_bench.main(["--skip-tests"]) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().err


def test_quantiles():
    assert quantiles_ms([4.0]) == (4.0, 4.0, 4.0)
    p20, p50, p80 = quantiles_ms([float(v) for v in range(1, 11)])
    assert (p20, p50, p80) == pytest.approx((2.8, 5.5, 8.2))


def test_bench_problems_cover_every_op_and_scheme():
    problems = bench.bench_problems("quick")
    assert {p.op for p in problems} == set(OPS)
    schemes = {p.quant for p in problems if p.op == "qmatmul"}
    assert schemes == set(BENCH_QUANTS)


def test_bench_rows_on_cpu():
    # Smoke shapes through the whole per-problem path (inputs, check against float64 torch, baselines, table).
    # Those the bench declines (`Op.bench_variants`: the quantized-cache rows) it never runs.
    problems = [p for p in smoke_problems("float16") if p.family.bench_problems(p)]
    problems.append(replace(problems[2], quant=Quant("fp8_e4m3fn", w8a8=True), name="smoke/qmatmul/w8a8"))
    rows = []
    for problem in problems:
        rows += bench.bench_problem(problem, "cpu", timer=_cpu_timer, energy=_no_energy, cache={})
    triton_rows = [r for r in rows if r.provider == "triton"]
    assert len(triton_rows) == len(problems)
    assert all(r.check == "pass" and r.timing is not None for r in triton_rows), [r.check for r in triton_rows]
    baselines = [r for r in rows if r.provider != "triton" and r.timing is not None]
    assert baselines and all(r.speedup is not None and r.speedup > 0 for r in baselines)
    table = bench.markdown_table(rows).splitlines()
    assert table[0].startswith("| op | problem | provider | check | p50 ms")
    assert len(table) == 2 + len(rows)


def test_failed_check_reports_no_speed(monkeypatch):
    problem = smoke_problems("float16")[3]
    assert problem.op == "attention"
    launcher = importlib.import_module("nkilab.kernels.triton.attention")
    monkeypatch.setattr(launcher, "attention", lambda q, k, v, **kw: torch.zeros_like(q))
    rows = bench.bench_problem(problem, "cpu", timer=_cpu_timer, energy=_no_energy, cache={})
    assert rows[0].check.startswith("FAIL") and rows[0].timing is None


@pytest.mark.parametrize("config", [QuantConfig("int8", None), QuantConfig("int4", 32),
                                    QuantConfig("int4", 32, symmetric=False), QuantConfig("fp8_e4m3fn", 64),
                                    QuantConfig("fp8_e4m3", None)], ids=repr)
def test_torch_dequantization_matches_reference(config):
    qw = quantize_weight(np.random.default_rng(0).standard_normal((64, 12)), config.scheme, config.group_size,
                         config.symmetric)
    got = dequantize_torch(triton_backend.prepare_weight(qw, "cpu"), torch.float64).numpy()
    np.testing.assert_array_equal(got, dequantize_weight(qw))


@pytest.mark.parametrize("sq,skv,causal,window,softcap", [(5, 9, True, None, None), (9, 4, True, 3, 20.0),
                                                          (6, 6, False, 2, None)])
def test_torch_truth_matches_reference(sq, skv, causal, window, softcap):
    rng = np.random.default_rng(1)
    q, k, v = rng.standard_normal((sq, 4, 16)), rng.standard_normal((skv, 2, 16)), rng.standard_normal((skv, 2, 16))
    got = attention_torch(*(torch.from_numpy(a) for a in (q, k, v)), causal=causal, scale=0.25,
                          sliding_window=window, softcap=softcap, dtype=torch.float64).numpy()
    want = reference_attention(q[None], k[None], v[None], causal=causal, scale=0.25, sliding_window=window,
                               softcap=softcap)[0]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_torch_paged_truth_matches_reference():
    rng = np.random.default_rng(2)
    seq_lens, q_lens, bs = np.array([5, 9], np.int32), np.array([1, 3], np.int32), 4
    tables = np.array([[3, 1, -1], [0, 4, 2]], np.int32)
    keys = [rng.standard_normal((n, 1, 16)) for n in seq_lens]
    values = [rng.standard_normal((n, 1, 16)) for n in seq_lens]
    kc, vc = build_paged_cache(keys, values, tables, num_blocks=5, block_size=bs)
    qsl = np.concatenate([[0], np.cumsum(q_lens)]).astype(np.int32)
    q = rng.standard_normal((int(qsl[-1]), 2, 16))
    args = (q, kc, vc, tables, seq_lens, qsl)
    got = paged_attention_torch(*(torch.from_numpy(a) for a in args), scale=0.25, dtype=torch.float64,
                                sliding_window=3).numpy()
    np.testing.assert_allclose(got, paged_attention(*args, scale=0.25, sliding_window=3), rtol=1e-12, atol=1e-12)
