"""RMSNorm reference: the formula, the fused residual, the naive working-precision runs, rows kept apart."""

import ml_dtypes
import numpy as np
import pytest

from nkilab.reference import rms_norm


def test_known_values_and_weight():
    x = np.array([[3.0, 4.0], [0.0, 0.0]])
    y = rms_norm(x, np.array([1.0, 2.0]), eps=0.0 + 1e-30)
    rms = np.sqrt(12.5)
    np.testing.assert_allclose(y[0], [3.0 / rms, 8.0 / rms], rtol=1e-15)
    np.testing.assert_array_equal(y[1], [0.0, 0.0])  # eps > 0: a zero row stays zero, never NaN


def test_leading_dims_and_eps_match_an_independent_formula():
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 3, 7)), rng.standard_normal(7)
    for eps in (1e-6, 0.5):
        expected = x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w
        np.testing.assert_allclose(rms_norm(x, w, eps=eps), expected, rtol=1e-14)


def test_residual_returns_the_normalized_sum_and_the_sum():
    rng = np.random.default_rng(1)
    x, r, w = rng.standard_normal((4, 9)), rng.standard_normal((4, 9)), rng.standard_normal(9)
    y, h = rms_norm(x, w, eps=1e-5, residual=r)
    np.testing.assert_array_equal(h, x + r)
    np.testing.assert_array_equal(y, rms_norm(x + r, w, eps=1e-5))


@pytest.mark.parametrize("dtype", [np.float32, np.float16, ml_dtypes.bfloat16])
def test_naive_runs_round_to_their_precision(dtype):
    rng = np.random.default_rng(2)
    x, r, w = (rng.standard_normal(s).astype(dtype) for s in ((5, 64), (5, 64), (64,)))
    y, h = rms_norm(x, w, residual=r, compute_dtype=dtype)
    assert y.dtype == np.dtype(dtype) and h.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(h, (x.astype(np.float32) + r.astype(np.float32)).astype(dtype))
    y64, _ = rms_norm(x, w, residual=r)
    eps_rel = float(ml_dtypes.finfo(dtype).eps)
    assert np.max(np.abs(y.astype(np.float64) - y64)) <= 4 * eps_rel * np.max(np.abs(y64))


def test_a_non_finite_value_stays_in_its_row():
    x = np.ones((3, 4))
    x[1, 2] = np.nan
    y = rms_norm(x, np.ones(4))
    assert np.isnan(y[1]).all() and np.isfinite(y[[0, 2]]).all()
