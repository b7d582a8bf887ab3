"""silu_mul reference: the formula, silu's tails, the naive working-precision runs, rows kept apart."""

import ml_dtypes
import numpy as np
import pytest

from nkilab.reference import silu_mul


def test_known_values():
    got = silu_mul(np.array([[0.0, 1.0, -2.0, 2.0, 3.0, 0.5]]))
    sig = 1.0 / (1.0 + np.exp(-np.array([0.0, 1.0, -2.0])))
    np.testing.assert_allclose(got, [np.array([0.0, 1.0, -2.0]) * sig * [2.0, 3.0, 0.5]], rtol=1e-15)


def test_leading_dims_and_tails():
    x = np.zeros((2, 3, 8))
    x[..., :4] = [-1e4, -50.0, 50.0, 1e4]
    x[..., 4:] = 2.0
    out = silu_mul(x)
    assert out.shape == (2, 3, 4)
    np.testing.assert_allclose(out[0, 0], [-0.0, -50.0 * 2 / (1 + np.exp(50.0)), 100.0, 2e4], rtol=1e-14)
    assert silu_mul(np.array([np.inf, 1.0])) == np.inf
    assert np.isnan(silu_mul(np.array([-np.inf, 1.0]))).all()  # -inf * sigmoid(-inf) = -inf * 0, as torch


@pytest.mark.parametrize("dtype", [np.float32, np.float16, ml_dtypes.bfloat16])
def test_naive_runs_round_to_their_precision(dtype):
    x = np.random.default_rng(0).standard_normal((7, 64)).astype(dtype)
    low, truth = silu_mul(x, compute_dtype=dtype), silu_mul(x)
    assert low.dtype == np.dtype(dtype)
    a = x[:, :32].astype(np.float32)
    expected = ((a / (1 + np.exp(-a))).astype(dtype).astype(np.float32) * x[:, 32:].astype(np.float32)).astype(dtype)
    np.testing.assert_array_equal(low, expected)
    err = np.max(np.abs(low.astype(np.float64) - truth))
    assert err <= 2 * float(ml_dtypes.finfo(dtype).eps) * np.max(np.abs(truth))


def test_a_non_finite_value_stays_in_its_column_and_row():
    x = np.ones((3, 6))
    x[1, 1], x[2, 5] = np.nan, np.inf
    out = silu_mul(x)
    bad = np.zeros((3, 3), bool)
    bad[1, 1] = bad[2, 2] = True
    assert np.isnan(out[1, 1]) and out[2, 2] == np.inf and np.isfinite(out[~bad]).all()
