"""NKI flash attention matches the float64 reference within the naive working-precision error, on every target."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import attention_problems, head_counts, head_dims

from nkilab.harness import checks
from nkilab.harness.emulator import run
from nkilab.kernels.nki import launch_attention
from nkilab.kernels.nki._launch import launch
from nkilab.kernels.nki.attention import flash_attention
from nkilab.reference.attention import attention as reference_attention
from nkilab.reference.dtypes import numpy_dtype

TARGETS = ("inf2", "trn1", "trn2")

# (B, Sq, Skv, Hq, Hkv, D, dtype, options): odd lengths, decode-like Sq < Skv, Sq > Skv with fully masked rows
# (a whole 128-row tile of them at 300/20), Qwen's 28/4 GQA, MQA, D = 64/80/128 and past 128, windows, softcaps
PINNED = {
    "causal-37x37-d64-bf16": (1, 37, 37, 2, 1, 64, "bfloat16", dict(causal=True)),
    "decode-5x130-mqa-d128-bf16": (1, 5, 130, 4, 1, 128, "bfloat16", dict(causal=True)),
    "masked-rows-300x20-fp32": (1, 300, 20, 2, 2, 64, "float32", dict(causal=True)),
    "qwen-gqa-28x4-7x9-d80-bf16": (1, 7, 9, 28, 4, 80, "bfloat16", dict(causal=True)),
    "batch2-gqa-33x45-d128-fp16": (2, 33, 45, 4, 2, 128, "float16", dict(causal=False)),
    "window-150x150-w40-bf16": (1, 150, 150, 2, 1, 64, "bfloat16", dict(causal=True, sliding_window=40)),
    "window-noncausal-40x60-w7-fp32": (1, 40, 60, 2, 1, 64, "float32", dict(causal=False, sliding_window=7)),
    "softcap-37x50-c5-fp16": (1, 37, 50, 4, 1, 64, "float16", dict(causal=False, softcap=5.0)),
    "softcap-window-causal-40x40-bf16": (1, 40, 40, 2, 1, 64, "bfloat16",
                                         dict(causal=True, sliding_window=9, softcap=30.0)),
    "mqa-8x1-20x24-d64-bf16": (1, 20, 24, 8, 1, 64, "bfloat16", dict(causal=True)),
    "d192-causal-33x40-fp32": (1, 33, 40, 2, 1, 192, "float32", dict(causal=True)),
    "d256-33x140-bf16": (1, 33, 140, 2, 2, 256, "bfloat16", dict(causal=False)),
}
# two 2048-key softmax steps (the running max and sum are rescaled) and a causal diagonal inside the second one
MULTI_STEP = {
    "noncausal-130x2100-bf16": (1, 130, 2100, 2, 1, 64, "bfloat16", dict(causal=False)),
    "causal-140x2200-softcap-fp32": (1, 140, 2200, 1, 1, 64, "float32", dict(causal=True, softcap=20.0)),
}
LLAMA_8B_PREFILL = dict(b=1, sq=4096, skv=4096, hq=32, hkv=8, head_dim=128, causal=True, sliding_window=None,
                        softcap=None, dtype="bfloat16")  # Llama-3.1-8B, 4096-token prefill (harness.workloads.models)


def _inputs(b, sq, skv, hq, hkv, d, dtype, seed=0):
    rng = np.random.default_rng(seed)
    dt = numpy_dtype(dtype)
    return (rng.standard_normal((b, sq, hq, d)).astype(dt), rng.standard_normal((b, skv, hkv, d)).astype(dt),
            rng.standard_normal((b, skv, hkv, d)).astype(dt))


def _assert_matches(out, q, k, v, options):
    """The check rule (nkilab.harness.checks): the kernel within 2x the error of the naive reference in the inputs' own dtype."""
    scale = q.shape[3] ** -0.5
    ref64 = reference_attention(q, k, v, scale=scale, **options)
    ref_lowprec = reference_attention(q, k, v, scale=scale, compute_dtype=q.dtype, **options)
    assert out.shape == q.shape and out.dtype == q.dtype
    result = checks.compare(out, ref64, ref_lowprec)
    assert result.passed, str(result)


def _attention(q, k, v, options, target, **kernel_kwargs):
    if not kernel_kwargs:
        return launch_attention.attention(q, k, v, scale=q.shape[3] ** -0.5, target=target, **options)
    return launch(flash_attention, q, k, v, target=target, scale=q.shape[3] ** -0.5, **options, **kernel_kwargs)


@pytest.mark.parametrize("case", PINNED.values(), ids=PINNED.keys())
@pytest.mark.parametrize("target", TARGETS)
def test_pinned_shapes_and_options(target, case):
    *shape, options = case
    q, k, v = _inputs(*shape)
    _assert_matches(_attention(q, k, v, options, target), q, k, v, options)


@pytest.mark.parametrize("case", MULTI_STEP.values(), ids=MULTI_STEP.keys())
@pytest.mark.parametrize("target", ("trn1", "trn2"))
def test_online_softmax_across_key_steps(target, case):
    *shape, options = case
    q, k, v = _inputs(*shape)
    _assert_matches(_attention(q, k, v, options, target), q, k, v, options)


@pytest.mark.parametrize("target", ("inf2", "trn2"))
def test_streamed_key_tiles_match_resident(target):
    """resident_kv_bytes=0 loads each key step per query tile instead of keeping kᵀ/v of a kv head in SBUF."""
    q, k, v = _inputs(1, 150, 600, 4, 2, 64, "bfloat16")
    options = dict(causal=True, sliding_window=200)
    streamed = _attention(q, k, v, options, target, resident_kv_bytes=0)
    _assert_matches(streamed, q, k, v, options)
    np.testing.assert_array_equal(streamed, _attention(q, k, v, options, target))


def test_rows_that_see_no_key_are_exact_zeros():
    """Causal Sq > Skv: query i < Sq - Skv sees no key; its row is written as zeros, never NaN."""
    q, k, v = _inputs(1, 300, 20, 2, 1, 64, "bfloat16")
    out = _attention(q, k, v, dict(causal=True), "trn2").astype(np.float32)
    assert np.all(out[:, :280] == 0.0)
    assert np.all(np.isfinite(out)) and np.all(np.abs(out[:, 280:]).max(axis=-1) > 0)


@given(problem=attention_problems(max_batch=2, max_seq=160, heads=head_counts(max_q_heads=8),
                                  dims=head_dims(choices=(64, 80, 128))),
       target=st.sampled_from(TARGETS))
def test_property_matches_reference(problem, target):
    q, k, v = problem.inputs()
    options = problem.options()
    _assert_matches(_attention(q, k, v, options, target), q, k, v, options)


def test_unsupported_names_the_limit():
    assert launch_attention.unsupported(head_dim=128, dtype="bfloat16", causal=True) is None
    assert "head_dim 640 > 512" in launch_attention.unsupported(head_dim=640, dtype="bfloat16")
    assert "float64" in launch_attention.unsupported(head_dim=64, dtype="float64")


def test_kernel_rejects_mismatched_kv():
    q, k, v = _inputs(1, 8, 8, 4, 2, 64, "float32")
    with pytest.raises(ValueError, match="k, v"):
        launch(flash_attention, q, k, v[:, :4], target="trn2", scale=0.125)


def _trace(problem, target="trn2"):
    kernel, args, kwargs = launch_attention.traceable(problem, target)
    return run(kernel, *args, target=target, mode="trace", **kwargs).trace


def _check_real_shape_trace(trace, p):
    """No validation error got us here; q, k, v are read once and out written once; the matmuls cover every
    visible (query, key) pair (4·D FLOPs per pair and head) and beyond that only the upper halves of the 128x128
    diagonal blocks (masking is a selection on VectorE: no mask matmuls)."""
    b, s, hq, d = p["b"], p["sq"], p["hq"], p["head_dim"]
    assert trace.hbm_bytes == 2 * d * b * (2 * s * hq + 2 * p["skv"] * p["hkv"])  # bfloat16
    # N = 1 matmuls are NeuronCore-v2's counts of non-finite keys per query row (`_attention_finite`), not attention
    matmul_flops = sum(i.flops for i in trace if i.opcode == "nc_matmul" and i.attrs["n"] > 1)
    visible = s * (s + 1) // 2  # causal, Sq == Skv
    diagonal_waste = s * 127 // 2
    assert 4 * d * visible * hq * b < matmul_flops <= 4 * d * (visible + diagonal_waste) * hq * b
    mix = trace.instruction_mix()
    assert mix["tensor"]["nc_transpose"] > 0 and mix["scalar"]["activation"] > 0, mix


def test_trace_mode_prefill_1024():
    """Llama-3.1-8B heads at a 1024-token prefill: the kernel is a valid trn2 program at real head counts."""
    problem = dict(LLAMA_8B_PREFILL, sq=1024, skv=1024)
    _check_real_shape_trace(_trace(problem), problem)


# 56k instructions: 5-16 s of trace-mode emulation per target, which the CI budget affords for the real shape
# (trn2's is traced by test_perf_goals_attention.py, which pins its modeled MFU)
@pytest.mark.parametrize("target", ("trn1",))
def test_trace_mode_llama_8b_prefill_4096(target):
    _check_real_shape_trace(_trace(LLAMA_8B_PREFILL, target), LLAMA_8B_PREFILL)
