"""nkilab.harness.checks.compare: the FlashAttention error-budget rule (its module docstring), NaN/inf disagreement,
readable reports."""

import ml_dtypes
import numpy as np
import pytest
import torch

from nkilab.harness.checks import FLOOR_ULPS, check_against_reference, check_output, compare, default_floor
from nkilab.reference import attention


def test_passes_within_c_times_naive_error():
    ref = np.array([1.0, 2.0, 3.0])
    low = ref + np.array([0.0, 0.01, 0.0])
    res = compare((ref + 0.019).astype(np.float32), ref, low, floor=0.0)
    assert res.passed and res.bound == pytest.approx(0.02)
    assert res.max_abs_err == pytest.approx(0.019, rel=1e-5)


def test_fails_beyond_the_bound_and_reports_worst_index():
    ref = np.zeros((2, 3))
    out = ref.copy()
    out[1, 2] = 0.5
    res = compare(out.astype(np.float32), ref, ref + 0.1, c=2.0, floor=0.0)
    assert not res.passed and res.worst_index == (1, 2)
    assert "FAIL" in str(res) and "(1, 2)" in res.message and "over the bound" in res.message


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_disagreement_always_fails(bad):
    ref = np.ones(4)
    out = ref.copy()
    out[2] = bad
    res = compare(out, ref, ref, floor=1e9)
    assert not res.passed and "NaN/inf disagreements" in res.message and "(2,)" in res.message


def test_matching_nonfinite_values_agree():
    ref = np.array([np.nan, np.inf, 1.0])
    assert compare(ref.astype(np.float32), ref, ref).passed
    assert not compare(np.array([np.nan, -np.inf, 1.0]), ref, ref).passed


def test_default_floor_is_two_ulps_of_the_output_dtype_at_the_reference_magnitude():
    ref = np.array([0.5, -4.0])
    assert default_floor(np.float32, ref) == FLOOR_ULPS * 2.0**-23 * 4.0
    assert default_floor(ml_dtypes.bfloat16, ref) == FLOOR_ULPS * 2.0**-7 * 4.0
    # a correctly rounded output passes even when the naive run happens to be exact
    out = np.array([1 / 3], dtype=np.float32)
    assert compare(out, np.array([1 / 3]), np.array([1 / 3])).passed


def test_shape_mismatch_fails_with_message():
    res = compare(np.zeros(3), np.zeros(4), np.zeros(4))
    assert not res.passed and "shape mismatch" in res.message


def test_accepts_torch_outputs():
    ref = np.linspace(-1, 1, 8)
    out = torch.from_numpy(ref).to(torch.bfloat16)
    assert compare(out, ref, ref.astype(ml_dtypes.bfloat16)).passed


def test_check_against_reference_catches_a_wrong_kernel():
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal(s).astype(np.float16) for s in [(1, 6, 2, 64), (1, 9, 1, 64), (1, 9, 1, 64)])
    good = attention(q, k, v, causal=True, compute_dtype=np.float32).astype(np.float16)
    assert check_against_reference(good, attention, q, k, v, causal=True).passed
    wrong = attention(q, k, v, causal=False, compute_dtype=np.float32).astype(np.float16)  # forgot the mask
    assert not check_against_reference(wrong, attention, q, k, v, causal=True).passed


def test_exact_naive_run_still_leaves_a_floor_that_catches_a_one_percent_error():
    ref = np.linspace(1, 2, 16)
    res = compare((ref * 1.01).astype(np.float32), ref, ref)  # ref_lowprec == ref64: bound = floor alone
    assert not res.passed and 0 < res.bound < 1e-5


@pytest.mark.parametrize("kwargs, match", [(dict(c=float("inf")), "c: must be"), (dict(c=0.0), "c: must be"),
                                           (dict(c=float("nan")), "c: must be"), (dict(floor=float("inf")), "floor"),
                                           (dict(floor=-1.0), "floor"), (dict(floor=float("nan")), "floor")])
def test_slack_that_would_decide_every_case_is_rejected(kwargs, match):
    ref = np.ones(3)
    with pytest.raises(ValueError, match=match):
        compare(ref, ref, ref, **kwargs)


def test_integer_outputs_are_rejected():
    with pytest.raises(TypeError, match="out: must have a float dtype"):
        compare(np.ones(3, np.int32), np.ones(3), np.ones(3))


def test_naive_run_overflow_does_not_widen_the_bound_or_warn():
    import warnings

    ref = np.array([1.0, np.inf, 2.0])
    low = np.array([1.0, -np.inf, np.inf])  # overflowed naive run: no finite error to learn from
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = compare(np.array([1.0, np.inf, 2.5]), ref, low)
    assert not res.passed and res.bound == pytest.approx(default_floor(np.float64, ref))


def test_shape_mismatch_of_ref_lowprec_fails():
    assert not compare(np.zeros(3), np.zeros(3), np.zeros((1, 3))).passed


def _stop21_attention():
    """float32 attention q [2, 109, 28, 128], k/v [2, 28, 4, 128] (GQA 7), no mask: NumPy's order errs 6.8e-7, one
    running sum 1.9e-6 and the NKI kernel 2.4e-6 (measured 2026-12-03; the module docstring's case)."""
    from strategies import AttentionProblem

    p = AttentionProblem(2, 109, 28, 28, 4, 128, False, None, None, "float32", 228)
    return p.inputs(), p.options()


@pytest.mark.parametrize("target", ["inf2", "trn1", "trn2"])
def test_budget_is_the_worse_sum_order_of_the_naive_run(target):
    from nkilab.kernels import attention as attention_api

    (q, k, v), options = _stop21_attention()
    out = attention_api(q, k, v, **options, backend="nki", target=target)
    ref64 = attention(q, k, v, **options)
    numpy_order = attention(q, k, v, **options, compute_dtype=np.float32)
    assert not compare(out, ref64, numpy_order).passed  # NumPy's order alone: 2.4e-6 > 2 x 6.8e-7 + floor
    result = check_against_reference(out, attention, q, k, v, **options)
    assert result.passed and "sum order: sequential" in result.message, str(result)


def test_the_worse_sum_order_still_catches_a_kernel_three_times_the_running_sums_error():
    (q, k, v), options = _stop21_attention()
    ref64 = attention(q, k, v, **options)
    running = attention(q, k, v, **options, compute_dtype=np.float32, sum_order="sequential").astype(np.float64)
    sloppy = (ref64 + 3 * (running - ref64)).astype(np.float32)
    result = check_against_reference(sloppy, attention, q, k, v, **options)
    assert not result.passed and "sum order: sequential" in result.message, str(result)


def test_a_reference_without_sum_orders_is_checked_once():
    calls = []

    def reference(x, *, compute_dtype):
        calls.append(compute_dtype)
        return np.asarray(x, dtype=compute_dtype)

    assert not check_against_reference(np.float32([1.5]), reference, np.array([1.0])).passed
    assert calls == [np.float64, np.float32]


def _cancelling_qmatmul():
    """x [1, 128] float32 times one int4 g64 column: 0.0269 from terms whose |sum| is 7.6 (`sum_magnitude`)."""
    from strategies import MatmulProblem, QuantConfig

    return MatmulProblem(1, 128, 1, QuantConfig("int4", 64, symmetric=True), "float32", seed=20446).inputs()


def _sign_split_sum(x, qw):
    """x @ dequantized qw [1, 1] in float32, summed in one fixed order: every positive term, then every other one (a
    legitimate float32 order whose error does not depend on the machine's BLAS, unlike np.matmul's or the Triton
    interpreter's: 8e-9 .. 2.0e-7 seen for `_cancelling_qmatmul`)."""
    from nkilab.reference.quant import dequantize_weight
    from nkilab.reference.sums import sequential_sum

    terms = x[0].astype(np.float32) * dequantize_weight(qw, compute_dtype=np.float32)[:, 0]
    return sequential_sum(np.concatenate([terms[terms > 0], terms[terms <= 0]])[None, :])


def test_qmatmul_floor_is_taken_at_the_magnitude_its_sums_round_at():
    from nkilab.kernels import _registry
    from nkilab.kernels.ops.qmatmul import sum_magnitude
    from nkilab.reference import qmatmul

    op = _registry.get("qmatmul")
    x, qw = _cancelling_qmatmul()
    ref64 = qmatmul(x, qw)
    out = _sign_split_sum(x, qw)
    assert abs(float(out[0, 0]) - ref64[0, 0]) == pytest.approx(6.92e-7, rel=1e-2)
    assert not check_against_reference(out, qmatmul, x, qw).passed  # floor at |0.0269|: 2 x the naive error + 4.6e-8
    assert sum_magnitude(x, qw) == pytest.approx(7.645, rel=1e-3)
    result = check_output(op, out, (x, qw), {})
    naive = abs(float(qmatmul(x, qw, compute_dtype=np.float32)[0, 0]) - ref64[0, 0])  # NumPy's order, this machine's
    assert result.passed and result.bound == pytest.approx(2 * naive + FLOOR_ULPS * 2.0**-23 * 7.645, rel=1e-2)


def test_qmatmul_magnitude_floor_still_catches_tf32_inputs():
    from nkilab.kernels import _registry
    from nkilab.reference import qmatmul

    x, qw = _cancelling_qmatmul()
    tf32 = (x.view(np.uint32) & np.uint32(0xFFFFE000)).view(np.float32)  # 10 mantissa bits, as tf32 MMA inputs
    out = qmatmul(tf32, qw).astype(np.float32)  # errs 6.8e-6 > the 1.8e-6 bound
    assert not check_output(_registry.get("qmatmul"), out, (x, qw), {}).passed


def test_sum_magnitude_ignores_non_finite_elements():
    from nkilab.kernels.ops.qmatmul import sum_magnitude

    x, qw = _cancelling_qmatmul()
    poisoned = x.copy()
    poisoned[0, 3] = np.nan
    assert np.isfinite(sum_magnitude(poisoned, qw)) and sum_magnitude(poisoned, qw) < sum_magnitude(x, qw)
