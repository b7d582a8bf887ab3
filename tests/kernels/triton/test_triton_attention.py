"""Triton dense attention matches the float64 reference within 2× the naive working-precision error."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from strategies import AttentionProblem, attention_options, attention_problems, head_counts, head_dims

import nkilab.kernels.triton as triton_backend
from nkilab.harness.checks import check_against_reference
from nkilab.kernels import attention
from nkilab.reference.attention import attention as reference_attention

# The CPU interpreter has no bfloat16 arithmetic (triton-lang/triton#11584): bfloat16 only where a GPU runs the tests.
DTYPES = ("float32", "float16") if triton_backend.INTERPRET else ("float32", "float16", "bfloat16")


def _check(problem: AttentionProblem) -> None:
    # NumPy in: the API moves the arrays to the GPU when there is one (bfloat16 as ml_dtypes bits).
    q, k, v = problem.inputs()
    out = attention(q, k, v, **problem.options(), backend="triton")
    result = check_against_reference(out, reference_attention, q, k, v, **problem.options())
    assert result.passed, str(result)


def _pinned(batch, sq, skv, hq, hkv, d, causal=True, window=None, softcap=None, dtype="float16", seed=0):
    return AttentionProblem(batch, sq, skv, hq, hkv, d, causal, window, softcap, dtype, seed)


PINNED = [
    pytest.param(_pinned(1, 5, 9, 28, 4, 128), id="qwen-28/4-heads"),
    pytest.param(_pinned(2, 7, 7, 4, 1, 80, causal=False, dtype="float32"), id="mqa-d80-noncausal"),
    pytest.param(_pinned(1, 9, 4, 2, 2, 64), id="sq>skv-masked-rows"),
    pytest.param(_pinned(1, 20, 20, 2, 1, 64, window=3, softcap=30.0), id="window3-softcap"),
    pytest.param(_pinned(1, 3, 6, 2, 1, 256, dtype="float32"), id="d256"),
    pytest.param(_pinned(1, 4, 33, 2, 2, 96, window=40, causal=False), id="d96-window-noncausal"),
    pytest.param(_pinned(1, 1, 37, 4, 2, 64), id="single-query-decode"),
]


@pytest.mark.parametrize("problem", PINNED)
def test_pinned_cases(problem):
    _check(problem)


@given(problem=attention_problems(max_seq=12, heads=head_counts(max_q_heads=4), dims=head_dims(choices=(64, 80)),
                                  dtypes=st.sampled_from(DTYPES)))
def test_matches_reference(problem):
    _check(problem)


def test_fully_masked_rows_are_zero_not_nan():
    # Sq > Skv with a causal mask: the first Sq - Skv queries see no key at all.
    problem = _pinned(1, 6, 2, 2, 1, 64, dtype="float32")
    q, k, v = problem.inputs()
    out = attention(q, k, v, causal=True, backend="triton")
    assert np.all(out[:, :4] == 0.0)
    assert np.all(np.isfinite(out)) and np.any(out[:, 4:] != 0.0)


def test_torch_strided_inputs_and_kind():
    # A transposed view (non-contiguous q) goes through strides, and torch in gives torch out.
    problem = _pinned(1, 6, 6, 2, 2, 64, dtype="float32", seed=3)
    q, k, v = problem.inputs()
    qt = torch.from_numpy(np.ascontiguousarray(q.transpose(0, 2, 1, 3))).transpose(1, 2)
    assert not qt.is_contiguous()
    out = attention(qt, torch.from_numpy(k), torch.from_numpy(v), causal=True, backend="triton")
    assert isinstance(out, torch.Tensor)
    result = check_against_reference(out, reference_attention, q, k, v, causal=True)
    assert result.passed, str(result)


@pytest.mark.gpu
@given(problem=attention_problems(max_seq=300, heads=head_counts(max_q_heads=8), dims=head_dims(choices=(64, 128, 256),
                                                                                           max_head_dim=256),
                                  dtypes=st.sampled_from(("bfloat16", "float16")),
                                  options=attention_options(max_window=200)))
def test_gpu_bf16_fp16_large(problem):
    _check(problem)
