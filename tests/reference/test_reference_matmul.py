"""nkilab.reference.matmul.qmatmul is x @ dequantize_weight(qw) in float64, and its working-precision runs."""

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given
from strategies import matmul_problems

from nkilab.reference import dequantize_activation, dequantize_weight, qmatmul, quantize_activation, quantize_weight


@given(problem=matmul_problems())
def test_qmatmul_is_float64_matmul_of_the_dequantized_weight(problem):
    x, qw = problem.inputs()
    xf = dequantize_activation(x) if problem.quant.w8a8 else x.astype(np.float64)
    w = dequantize_weight(qw)
    expected = np.array([[sum(xf[i, kk] * w[kk, j] for kk in range(problem.k)) for j in range(problem.n)]
                         for i in range(problem.m)])
    out = qmatmul(x, qw)
    assert out.dtype == np.float64 and out.shape == (problem.m, problem.n)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("compute_dtype", [np.float32, np.float16, ml_dtypes.bfloat16])
def test_working_precision_and_out_dtype(compute_dtype):
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((4, 64)), rng.standard_normal((64, 6))
    qw = quantize_weight(w, "int4", group_size=32)
    low = qmatmul(x, qw, compute_dtype=compute_dtype)
    assert low.dtype == np.dtype(compute_dtype)
    assert qmatmul(x, qw, out_dtype=np.float32).dtype == np.float32
    # The naive run differs from the truth by rounding only: a few ulps of the working dtype at |y| (~ sqrt(K)).
    eps = float(ml_dtypes.finfo(compute_dtype).eps)
    assert np.abs(low.astype(np.float64) - qmatmul(x, qw)).max() <= 64 * eps * np.abs(qmatmul(x, qw)).max()


def test_w8a8_requires_fp8_per_channel_weights():
    x = quantize_activation(np.ones((2, 32)))
    with pytest.raises(ValueError, match="qw"):
        qmatmul(x, quantize_weight(np.ones((32, 2)), "fp8_e4m3", group_size=32))
