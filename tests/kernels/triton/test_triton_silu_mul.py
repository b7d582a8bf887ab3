"""Triton silu_mul matches the float64 reference within the naive working-precision error, any strides."""

import numpy as np
import pytest
import torch
from hypothesis import given
from strategies import FLOAT_DTYPES, INTERPRETER_DTYPES, SiluMulProblem, dtypes, silu_mul_problems

import nkilab.kernels.triton as triton_backend
from nkilab.harness.checks import check_output
from nkilab.kernels import _registry, silu_mul
from nkilab.kernels.triton.silu_mul import silu_mul as triton_silu_mul

OP = _registry.get("silu_mul")
DTYPES = INTERPRETER_DTYPES if triton_backend.INTERPRET else FLOAT_DTYPES


def _check(problem: SiluMulProblem) -> None:
    (x,), kwargs = problem.inputs()
    out = silu_mul(torch.from_numpy(x), backend="triton")
    result = check_output(OP, out, (x,), kwargs)
    assert result.passed, str(result)


# exp(-a) overflows to inf for a << 0 (the GPU's result too: silu -> -0); the interpreter's NumPy says so
@pytest.mark.filterwarnings("ignore:overflow encountered in exp:RuntimeWarning")
@given(problem=silu_mul_problems(max_rows=70, max_inter=200, dtypes=dtypes(allowed=DTYPES)))
def test_matches_reference(problem):
    _check(problem)


def test_several_column_blocks_and_row_blocks():
    _check(SiluMulProblem((37,), 2500, 4.0, "float32", seed=3))  # > one 1024-wide block, ragged row blocks


def test_strided_views_give_the_contiguous_result():
    base = torch.from_numpy(np.random.default_rng(4).standard_normal((64, 30)).astype(np.float32))
    x = base.t()  # [30, 64] with non-unit strides
    assert torch.equal(triton_silu_mul(x), triton_silu_mul(x.contiguous()))


def test_declines_float64_and_interpreted_bfloat16():
    assert "float64" in triton_backend.unsupported("silu_mul", dtype="float64", intermediate=8)
    bf16 = triton_backend.unsupported("silu_mul", dtype="bfloat16", intermediate=8)
    assert (bf16 is not None) == triton_backend.INTERPRET


@pytest.mark.gpu
@given(problem=silu_mul_problems(max_rows=300, max_inter=20000, dtypes=dtypes(allowed=FLOAT_DTYPES)))
def test_gpu_matches_reference(problem):
    _check(problem)
