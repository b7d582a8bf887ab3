"""Triton quantized matmul matches the float64 reference on the quantized weights, for every scheme."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from strategies import MatmulProblem, QuantConfig, matmul_problems, quant_configs

import nkilab.kernels.triton as triton_backend
from nkilab.harness.checks import check_against_reference
from nkilab.kernels import qmatmul
from nkilab.kernels.triton.qmatmul import qmatmul as triton_qmatmul
from nkilab.reference.matmul import qmatmul as reference_qmatmul
from nkilab.reference.quant import quantize_weight

# The CPU interpreter has no bfloat16 arithmetic (triton-lang/triton#11584): bfloat16 only where a GPU runs the tests.
DTYPES = ("float32", "float16") if triton_backend.INTERPRET else ("float32", "float16", "bfloat16")


def _assert_matches(out, x, qw, compute_dtype=None) -> None:
    # Against the reference on the *quantized* weights; the working precision is out's dtype unless given
    # (W8A8: float32, its default output).
    result = check_against_reference(out, reference_qmatmul, x, qw, compute_dtype=compute_dtype)
    assert result.passed, str(result)


def _check(problem: MatmulProblem) -> None:
    x, qw = problem.inputs()
    _assert_matches(qmatmul(x, qw, backend="triton"), x, qw)


SCHEMES = [
    QuantConfig("int8", None), QuantConfig("int8", 32),
    QuantConfig("int4", None), QuantConfig("int4", 32), QuantConfig("int4", 64, symmetric=False),
    QuantConfig("int4", None, symmetric=False),
    QuantConfig("fp8_e4m3fn", None), QuantConfig("fp8_e4m3fn", 64), QuantConfig("fp8_e4m3", None),
    QuantConfig("fp8_e4m3", 32),
    QuantConfig("fp8_e4m3fn", None, w8a8=True), QuantConfig("fp8_e4m3", None, w8a8=True),
]


@pytest.mark.parametrize("config", SCHEMES, ids=repr)
@pytest.mark.parametrize("dtype", DTYPES)
def test_every_scheme(config, dtype):
    _check(MatmulProblem(m=5, k=128, n=33, quant=config, dtype=dtype, seed=7))


@given(problem=matmul_problems(dtypes=st.sampled_from(DTYPES)))
def test_matches_reference(problem):
    _check(problem)


@pytest.mark.parametrize("config", [QuantConfig("int8", 32), QuantConfig("int4", 32, symmetric=False),
                                    QuantConfig("fp8_e4m3fn", None), QuantConfig("int4", None)], ids=repr)
@pytest.mark.parametrize("split_k", [2, 3])
def test_split_k_decode_path(config, split_k):
    # The decode path (M <= 16) splits K across programs; the fp32 partials must sum to the same product.
    x, qw = MatmulProblem(m=3, k=192, n=40, quant=config, dtype="float32", seed=1).inputs()
    _assert_matches(triton_qmatmul(torch.from_numpy(x), qw, split_k=split_k), x, qw)


def test_prepared_weight_is_reused():
    x, qw = MatmulProblem(m=4, k=64, n=16, quant=QuantConfig("int4", 32), dtype="float16", seed=2).inputs()
    prepared = triton_backend.prepare_weight(qw, "cpu")
    once = triton_qmatmul(torch.from_numpy(x), prepared)
    again = triton_qmatmul(torch.from_numpy(x), qw)
    assert torch.equal(once, again)


@pytest.mark.parametrize("out_dtype", ["float16", "bfloat16", "float32"])
def test_w8a8_output_dtypes(out_dtype):
    # 16-bit outputs take the native fp8 MMA, float32 outputs the exact fp16 widening (see the kernel docstring).
    if out_dtype == "bfloat16" and triton_backend.INTERPRET:
        pytest.skip("bfloat16 outputs need a GPU: the interpreter has no bfloat16 arithmetic (triton#11584)")
    x, qw = MatmulProblem(m=6, k=96, n=20, quant=QuantConfig("fp8_e4m3fn", None, w8a8=True), dtype="float32",
                          seed=9).inputs()
    out = qmatmul(x, qw, out_dtype=out_dtype, backend="triton")
    assert str(out.dtype) == out_dtype
    _assert_matches(out, x, qw)


def test_out_dtype_and_odd_k_per_channel():
    # Per channel, K need not be a multiple of BLOCK_K: the K tail is masked.
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 50)).astype(np.float32)
    qw = quantize_weight(rng.standard_normal((50, 7)), "int8")
    out = qmatmul(x, qw, out_dtype="float16", backend="triton")
    assert out.dtype == np.float16
    _assert_matches(out, x, qw, compute_dtype=np.float32)


@pytest.mark.gpu
@given(problem=matmul_problems(max_m=300, max_n=300, max_k_groups=8,
                               quant=quant_configs(group_sizes=(None, 32, 128)),
                               dtypes=st.sampled_from(("bfloat16", "float16"))))
def test_gpu_bf16_fp16_fp8_large(problem):
    _check(problem)
