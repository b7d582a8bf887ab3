"""nkilab.reference.sums: the sequential summation order of the naive runs is the same sum, added term by term,
and every reference that sums takes it."""

import numpy as np
import pytest

from nkilab.reference import attention, paged_attention, qmatmul, quantize_weight, rms_norm
from nkilab.reference.sums import SUM_ORDERS, check_sum_order, sequential_einsum, sequential_sum


def _running_sum(terms: np.ndarray) -> np.float32:
    total = np.float32(0)
    for t in terms:
        total = np.float32(total + t)
    return total


def test_sequential_einsum_is_a_running_sum_in_index_order():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((3, 257)).astype(np.float32), rng.standard_normal((257, 2)).astype(np.float32)
    got = sequential_einsum("mk,kn->mn", a, b)
    want = np.array([[_running_sum(a[m] * b[:, n]) for n in range(2)] for m in range(3)])
    assert got.dtype == np.float32 and np.array_equal(got, want)
    np.testing.assert_allclose(sequential_einsum("mk,kn->mn", a.astype(np.float64), b.astype(np.float64)),
                               a.astype(np.float64) @ b, rtol=1e-12)


def test_sequential_sum_is_a_running_sum_and_keeps_the_axis():
    x = np.random.default_rng(1).standard_normal((4, 1000)).astype(np.float32)
    got = sequential_sum(x)
    assert got.shape == (4, 1) and np.array_equal(got[:, 0], [_running_sum(r) for r in x])
    assert not np.array_equal(got, x.sum(axis=-1, keepdims=True))  # NumPy's pairwise order rounds differently


def test_empty_sums_are_zeros_of_the_output_shape():
    assert np.array_equal(sequential_einsum("ik,kj->ij", np.ones((2, 0)), np.ones((0, 3))), np.zeros((2, 3)))
    assert np.array_equal(sequential_sum(np.ones((2, 0))), np.zeros((2, 1)))


def test_unknown_sum_order_names_the_argument():
    with pytest.raises(ValueError, match=r"sum_order: must be one of \('numpy', 'sequential'\), got 'pairwise'"):
        check_sum_order("pairwise")
    with pytest.raises(ValueError, match="sum_order"):
        attention(np.zeros((1, 1, 1, 2)), np.zeros((1, 1, 1, 2)), np.zeros((1, 1, 1, 2)), sum_order="blas")


def _calls():
    rng = np.random.default_rng(2)
    q, k, v = (rng.standard_normal(s) for s in [(1, 5, 4, 16), (1, 7, 2, 16), (1, 7, 2, 16)])
    kc, vc = k[0].reshape(7, 1, 2, 16), v[0].reshape(7, 1, 2, 16)
    x, w = rng.standard_normal((3, 64)), rng.standard_normal((64, 5))
    return {
        "attention": (attention, (q, k, v), dict(causal=True)),
        "paged_attention": (paged_attention, (q[0], kc, vc, np.arange(7)[None], np.array([7]), np.array([0, 5])), {}),
        "qmatmul": (qmatmul, (x, quantize_weight(w, "int8")), {}),
        "rms_norm": (rms_norm, (x, w[:, 0]), dict(eps=1e-6)),
    }


@pytest.mark.parametrize("name", list(_calls()))
def test_every_summing_reference_takes_both_orders_and_they_agree_in_float64(name):
    fn, args, kwargs = _calls()[name]
    runs = [fn(*args, **kwargs, compute_dtype=np.float64, sum_order=order) for order in SUM_ORDERS]
    np.testing.assert_allclose(runs[1], runs[0], rtol=1e-12, atol=1e-12)
    low = [np.asarray(fn(*args, **kwargs, compute_dtype=np.float32, sum_order=o)) for o in SUM_ORDERS]
    np.testing.assert_allclose(low[1], low[0], rtol=1e-5, atol=1e-5)
