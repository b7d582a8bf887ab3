"""Triton RMSNorm matches the float64 reference within the naive working-precision error, any strides."""

import numpy as np
import pytest
import torch
from hypothesis import given
from strategies import INTERPRETER_DTYPES, FLOAT_DTYPES, NormProblem, dtypes, norm_problems

import nkilab.kernels.triton as triton_backend
from nkilab.harness.checks import check_output
from nkilab.kernels import _registry, rms_norm
from nkilab.kernels.triton.rms_norm import rms_norm as triton_rms_norm

OP = _registry.get("rms_norm")
DTYPES = INTERPRETER_DTYPES if triton_backend.INTERPRET else FLOAT_DTYPES


def _check(problem: NormProblem) -> None:
    (x, w), kwargs = problem.inputs()
    out = rms_norm(torch.from_numpy(x), torch.from_numpy(w), eps=kwargs["eps"],
                   residual=None if kwargs["residual"] is None else torch.from_numpy(kwargs["residual"]),
                   backend="triton")
    result = check_output(OP, out, (x, w), kwargs)
    assert result.passed, str(result)


@given(problem=norm_problems(max_rows=70, max_hidden=200, dtypes=dtypes(allowed=DTYPES)))
def test_matches_reference(problem):
    _check(problem)


@pytest.mark.parametrize("residual", [False, True])
def test_several_hidden_chunks_and_row_blocks(residual):
    _check(NormProblem((45,), 1500, residual, 1e-5, "float32", seed=3))  # > one 1024-wide chunk, ragged blocks


def test_strided_views_give_the_contiguous_result():
    rng = np.random.default_rng(4)
    base = torch.from_numpy(rng.standard_normal((64, 40)).astype(np.float32))
    x, r = base.t(), base.t().flip(0)  # [40, 64] views with non-unit strides
    w = torch.from_numpy(rng.standard_normal(128).astype(np.float32))[::2]
    y, h = triton_rms_norm(x, w, eps=1e-6, residual=r)
    y_c, h_c = triton_rms_norm(x.contiguous(), w.contiguous(), eps=1e-6, residual=r.contiguous())
    assert torch.equal(y, y_c) and torch.equal(h, h_c)
    assert torch.equal(h, x + r)


def test_declines_float64_and_interpreted_bfloat16():
    assert "float64" in triton_backend.unsupported("rms_norm", dtype="float64", hidden=8, residual=False)
    bf16 = triton_backend.unsupported("rms_norm", dtype="bfloat16", hidden=8, residual=False)
    assert (bf16 is not None) == triton_backend.INTERPRET


@pytest.mark.gpu
@given(problem=norm_problems(max_rows=300, max_hidden=9000, dtypes=dtypes(allowed=FLOAT_DTYPES)))
def test_gpu_matches_reference(problem):
    _check(problem)
