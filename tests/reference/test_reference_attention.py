"""nkilab.reference.attention matches its docstring's semantics, checked against a per-element brute-force loop."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from brute_force import brute_force_attention
from strategies import attention_options, attention_problems, head_counts

from nkilab.reference import attention, visible_keys
from nkilab.reference.dtypes import numpy_dtype


@given(
    problem=attention_problems(
        max_batch=2, max_seq=9, heads=head_counts(max_q_heads=4), dtypes=st.just("float32"),
        options=attention_options(max_window=4),
    )
)
def test_matches_brute_force(problem):
    q, k, v = (a.astype(np.float64) for a in problem.inputs())
    q, k, v = q[..., :8], k[..., :8], v[..., :8]  # D=8 keeps the Python loop fast; D does not change the rule
    expected = brute_force_attention(q, k, v, **problem.options())
    np.testing.assert_allclose(attention(q, k, v, **problem.options()), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "sq, skv, causal, window, softcap",
    [
        pytest.param(7, 11, True, None, None, id="causal-odd"),
        pytest.param(5, 5, True, 3, 30.0, id="window-softcap"),
        pytest.param(6, 3, True, None, None, id="sq>skv-masked-rows"),
        pytest.param(4, 9, False, 2, None, id="window-noncausal"),
    ],
)
def test_qwen_28_4_heads(sq, skv, causal, window, softcap):
    rng = np.random.default_rng(0)
    q = rng.standard_normal((1, sq, 28, 4))
    k = rng.standard_normal((1, skv, 4, 4))
    v = rng.standard_normal((1, skv, 4, 4))
    opts = dict(causal=causal, sliding_window=window, softcap=softcap)
    np.testing.assert_allclose(attention(q, k, v, **opts), brute_force_attention(q, k, v, **opts), rtol=0, atol=1e-12)


def test_single_visible_key_returns_its_value():
    rng = np.random.default_rng(1)
    q, k, v = rng.standard_normal((1, 4, 2, 8)), rng.standard_normal((1, 4, 2, 8)), rng.standard_normal((1, 4, 2, 8))
    out = attention(q, k, v, causal=True, sliding_window=1)  # query i sees only key i
    np.testing.assert_allclose(out, v, rtol=0, atol=1e-12)


def test_uniform_scores_give_mean_of_values():
    rng = np.random.default_rng(2)
    v = rng.standard_normal((2, 6, 1, 5))
    out = attention(np.zeros((2, 3, 1, 5)), rng.standard_normal((2, 6, 1, 5)), v)
    np.testing.assert_allclose(out, np.broadcast_to(v.mean(axis=1, keepdims=True), out.shape), rtol=0, atol=1e-12)


@given(problem=attention_problems(max_seq=8, dims=st.just(64), dtypes=st.just("float32")))
def test_gqa_equals_repeated_kv_heads(problem):
    q, k, v = (a.astype(np.float64) for a in problem.inputs())
    group = problem.hq // problem.hkv
    repeated = attention(q, np.repeat(k, group, axis=2), np.repeat(v, group, axis=2), **problem.options())
    np.testing.assert_allclose(attention(q, k, v, **problem.options()), repeated, rtol=0, atol=1e-12)


def test_fully_masked_rows_are_zero_not_nan():
    rng = np.random.default_rng(3)
    q, k = rng.standard_normal((1, 5, 1, 4)), rng.standard_normal((1, 2, 1, 4))
    out = attention(q, k, k, causal=True)  # bottom-right: queries 0..2 see no key
    assert np.all(out[0, :3] == 0)
    assert np.all(np.isfinite(out))


def test_visible_keys_bottom_right():
    assert visible_keys(2, 4, causal=True).tolist() == [[True, True, True, False], [True, True, True, True]]
    assert visible_keys(3, 3, causal=True, sliding_window=2).astype(int).tolist() == [[1, 0, 0], [1, 1, 0], [0, 1, 1]]


# Bounds: outputs are O(1), so the naive run is off by a few ulps of its dtype (eps 1.2e-7 / 9.8e-4 / 7.8e-3), and
# never by 0 (then compute_dtype would be ignored).
@pytest.mark.parametrize("compute_dtype, max_err", [("float32", 1e-5), ("float16", 2e-2), ("bfloat16", 1e-1)])
def test_working_precision_run_is_close_but_not_exact(compute_dtype, max_err):
    cd = numpy_dtype(compute_dtype)
    rng = np.random.default_rng(4)
    q, k, v = rng.standard_normal((1, 9, 4, 64)), rng.standard_normal((1, 9, 2, 64)), rng.standard_normal((1, 9, 2, 64))
    low = attention(q, k, v, causal=True, compute_dtype=cd)
    err = np.abs(low.astype(np.float64) - attention(q, k, v, causal=True)).max()
    assert low.dtype == np.dtype(cd)
    assert 0 < err < max_err


def test_fewer_keys_than_queries_hand_computed():
    """Sq=3, Skv=2, causal: query i sees keys j <= i - 1, so row 0 sees none (0), row 1 key 0, row 2 both."""
    v = np.array([1.0, 2.0]).reshape(1, 2, 1, 1)
    out = attention(np.zeros((1, 3, 1, 1)), np.zeros((1, 2, 1, 1)), v, causal=True)  # equal scores: means
    assert out.ravel().tolist() == [0.0, 1.0, 1.5]


def test_window_without_causal_hides_only_the_far_past():
    """Non-causal window w=2 at Sq=2, Skv=4: query i hides keys j < i + 2 - 2 + 1 and sees all later keys."""
    assert visible_keys(2, 4, causal=False, sliding_window=2).astype(int).tolist() == [[0, 1, 1, 1], [0, 0, 1, 1]]
