"""Valid draws of every op x backend (NKI on inf2, trn1 and trn2) match the float64 reference, from NumPy or torch,
contiguous or as strided views, and never mutate an input (issue 10).

The error budget is the op's check rule (`fuzz.calls.assert_matches`).
"""

import ml_dtypes
import numpy as np
import pytest
from fuzz.calls import VIEWS, Call, as_kind, assert_matches, copied, run, snapshot, with_views
from fuzz.cases import BACKEND_IDS, BACKEND_TARGETS, CASES, KINDS
from hypothesis import given, reject
from hypothesis import strategies as st
from strategies import MatmulProblem, PagedProblem, PageTable, QuantConfig

from nkilab.harness.checks import check_against_reference
from nkilab.kernels import _registry

LAYOUTS = ("contiguous",) + VIEWS


def declined(error: ValueError, op: str, backend: str) -> bool:
    """The backend's documented refusal of a valid problem (`unsupported`), e.g. a group size it cannot tile."""
    return str(error).startswith(f"{op}: backend={backend!r} does not support this problem")


def call_backend(case, sent, backend, target):
    """Run, or reject the draw when the backend declines the problem (never any other error)."""
    try:
        return run(case, sent, backend, target)
    except ValueError as e:
        if declined(e, case.name, backend):
            reject()
        raise


def unwritten(case, snap: dict) -> dict:
    return {name: v for name, v in snap.items() if name not in case.written}


@pytest.mark.parametrize(("backend", "target"), BACKEND_TARGETS, ids=BACKEND_IDS)
@pytest.mark.parametrize("op", _registry.OPS)
@given(data=st.data())
def test_valid_draws_match_the_float64_reference(op, backend, target, data):
    case = CASES[op]
    call = case.call(data.draw(case.problems(backend), label="problem"))
    kind = data.draw(st.sampled_from(KINDS), label="kind")
    layout = data.draw(st.sampled_from(LAYOUTS), label="layout")
    if layout == "contiguous":
        sent, values = as_kind(copied(call), kind), call
    else:
        sent, values = with_views(case, call, layout, kind)
    before = snapshot(sent)
    out = call_backend(case, sent, backend, target)
    assert unwritten(case, snapshot(sent)) == unwritten(case, before), "an input was mutated"
    assert_matches(case, backend, out, values)
    if case.written:  # written in place: the result is the caller's own arrays
        assert all(o is sent.get(name) for o, name in zip(out, case.written))


@pytest.mark.parametrize("target", ["inf2", "trn1", "trn2"])
def test_nki_qmatmul_budget_covers_its_rounding_of_x(target):
    """Found by a 50-example run of the nightly settings (2026-12-02): fp16 x [2, 32] (two equal rows) times an int8
    per-channel column, whose result 0.0159 is a sum of terms of about 0.05 that cancel. NKI rounds x to bfloat16
    (error 9.6e-4, as x_bf16 @ W in float64 gives); the naive bfloat16 run happens to err by only 1.2e-4, so its
    budget alone (2.8e-4) failed a kernel doing what it documents. `assert_matches` then takes the naive run that
    rounds x only; this pins that it passes here, and that the bfloat16 run's budget alone does not."""
    x, qw = MatmulProblem(2, 32, 1, QuantConfig("int8", None), "float16", seed=1).inputs()
    x = np.repeat(x[:1], 2, axis=0)
    case = CASES["qmatmul"]
    out = case.op.api(x, qw, backend="nki", target=target)
    naive_only = check_against_reference(out, case.op.reference, x, qw, compute_dtype=ml_dtypes.bfloat16)
    assert not naive_only.passed, str(naive_only)
    assert_matches(case, "nki", out, Call(("x", "qw"), (x, qw)))


def test_expanded_paged_caches_stay_a_valid_draw():
    """Found by a nightly run of `[paged_attention-triton]` (2026-12-03): the expanded layout copied block 0's NaN
    fill (slot 6, unused by its 6-key sequence) into a live value row of the 7-key sequence of block 2, and the
    reference's P @ V multiplied it by the 0 weights of the queries that cannot see it (README: non-finite values)
    while Triton skipped it. `view_of` now zeroes the expanded row's non-finite fill."""
    problem = PagedProblem(q_lens=(1, 2, 6), hq=6, hkv=2, d=16, causal=True, sliding_window=None, softcap=None,
                           dtype="float32", seed=0,
                           table=PageTable(seq_lens=(6, 3, 7), block_size=16, num_blocks=3, rows=((0,), (1,), (2,)),
                                           layout="identity"))
    case = CASES["paged_attention"]
    call = case.call(problem)
    assert np.isnan(call.arrays()["value_cache"]).any()  # the unused slots' fill
    sent, values = with_views(case, call, "expanded", "numpy")
    assert all(np.isfinite(values.arrays()[name]).all() for name in ("key_cache", "value_cache"))
    assert_matches(case, "triton", run(case, sent, "triton", None), values)


@pytest.mark.xfail(strict=False, reason="open finding (stop 25): the float32 budget is tight for this correct-looking "
                   "draw, likely cancellation in P @ V (sum_j p_j |v_j| = 1.79 against |out| = 0.81 at the worst "
                   "element), which the qmatmul-only `Check.magnitude` rule does not cover for attention; fails the "
                   "same at the kernel before stop 25's changes. Not strict: whether it is over depends on the CPU's "
                   "BLAS (the emulator's float32 matmuls and NumPy's naive order both run through np.matmul)")
def test_inf2_paged_float32_draw_with_cancelling_values_is_within_the_budget():
    """Found by a `thorough` run of `[paged_attention-nki-inf2]` (2026-12-03): one sequence of 2 query tokens over 6
    keys (block_size 1, causal), out [0, 0, 2] = -0.8078 off by 6.885e-7 against a bound of 6.026e-7 (2 x the naive
    running sum's 1.30e-7 + a floor of 2 ulps at max|ref64| = 1.44). Pinned until the attention budget's magnitude
    (including the score rounding term) is derived. Over on the machine that found it; within the bound on an AMD EPYC
    with OpenBLAS 0.3.31 (2026-12-04), where np.matmul sums in another order, so the xfail is not strict."""
    problem = PagedProblem(q_lens=(0, 0, 2), hq=6, hkv=2, d=16, causal=True, sliding_window=None, softcap=None,
                           dtype="float32", seed=14,
                           table=PageTable(seq_lens=(1, 7, 6), block_size=1, num_blocks=14,
                                           rows=((0, -1, -1, -1, -1, -1, -1), (1, 2, 3, 4, 5, 6, 7),
                                                 (8, 9, 10, 11, 12, 13, -1)), layout="identity"))
    case = CASES["paged_attention"]
    call = case.call(problem)
    sent, values = with_views(case, call, "contiguous", "numpy")
    assert_matches(case, "nki", run(case, sent, "nki", "inf2"), values)
