"""NaN isolation of the NKI flash-attention kernel: a non-finite q or k element reaches exactly the outputs that
depend on it, on every target (issue 10 item 1).

Each test runs the kernel twice, on clean inputs and with one Inf/NaN planted, and asserts that every output that
cannot see the planted element is bitwise the clean output, and that those that see a NaN are NaN. On NeuronCore-v2
the kernel cleans q / k before its identity-matmul transposes and flags the rows (`_attention_finite`); on v3+ the
transposes are exact; on both the causal / window mask is a selection, so a hidden key's Inf/NaN score reaches no
output. (v is not covered: a non-finite value row reaches, as 0 · NaN, the rows whose P·V contracts over it.)
"""

import numpy as np
import pytest

from nkilab.kernels.nki._launch import launch
from nkilab.kernels.nki.attention import flash_attention
from nkilab.reference.dtypes import numpy_dtype

TARGETS = ("inf2", "trn1", "trn2")
BAD = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf}


def _inputs(sq, skv, hq, hkv, d, dtype="bfloat16", seed=0):
    rng = np.random.default_rng(seed)
    dt = numpy_dtype(dtype)
    return (rng.standard_normal((1, sq, hq, d)).astype(dt), rng.standard_normal((1, skv, hkv, d)).astype(dt),
            rng.standard_normal((1, skv, hkv, d)).astype(dt))


def _run(q, k, v, target, **options):
    out = launch(flash_attention, q, k, v, target=target, scale=q.shape[3] ** -0.5, **options)
    return out.astype(np.float32)


def _sees(sq, skv, causal, window):
    """[Sq, Skv] bool: query i sees key j (bottom-right causal alignment, as the kernel documents)."""
    i = np.arange(sq)[:, None] + skv - sq
    j = np.arange(skv)[None, :]
    visible = np.ones((sq, skv), bool)
    if causal:
        visible &= j <= i
    if window is not None:
        visible &= j >= i - window + 1
    return visible


def _assert_isolated(clean, dirty, affected, nan_expected):
    """affected: [Sq, Hq] bool, the outputs that depend on the planted element. The rest are bitwise clean; the
    affected rows are NaN when a NaN was planted (an Inf may legitimately give ±inf / finite there, as IEEE does)."""
    others = ~affected
    np.testing.assert_array_equal(dirty[0][others], clean[0][others])
    if nan_expected:
        assert np.isnan(dirty[0][affected]).all(), "an output that sees the NaN is not NaN"


@pytest.mark.parametrize("bad", BAD)
@pytest.mark.parametrize("target", TARGETS)
def test_nonfinite_query_reaches_only_its_row(target, bad):
    """One Inf/NaN in query row 5 of head 0: on main NeuronCore-v2 turned all 128 rows of that head's tile NaN."""
    q, k, v = _inputs(200, 200, 4, 2, 64)
    clean = _run(q, k, v, target, causal=True)
    q[0, 5, 0, 17] = BAD[bad]
    dirty = _run(q, k, v, target, causal=True)
    affected = np.zeros((200, 4), bool)
    affected[5, 0] = True
    _assert_isolated(clean, dirty, affected, nan_expected=True)


@pytest.mark.parametrize("bad", BAD)
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("options", [dict(causal=True), dict(causal=True, softcap=20.0),
                                     dict(causal=True, sliding_window=20), dict(causal=False, sliding_window=33)],
                         ids=["causal", "causal-softcap", "window", "noncausal-window"])
def test_nonfinite_key_reaches_only_the_rows_that_see_it(target, bad, options):
    """An Inf/NaN in key 150 of kv head 0: rows that do not see it (causal / window hidden, or reading kv head 1)
    stay bitwise clean — on main the additive mask let it into every row of the diagonal tile (and on v2 the kᵀ
    transpose into every row that sees any key of its 128-key chunk)."""
    q, k, v = _inputs(200, 230, 4, 2, 64)
    clean = _run(q, k, v, target, **options)
    k[0, 150, 0, 40] = BAD[bad]
    dirty = _run(q, k, v, target, **options)
    affected = np.zeros((200, 4), bool)
    affected[:, :2] = _sees(200, 230, options["causal"], options.get("sliding_window"))[:, 150:151]
    assert 0 < affected.sum() < 400
    _assert_isolated(clean, dirty, affected, nan_expected=bad == "nan")


@pytest.mark.parametrize("target", ("inf2", "trn2"))
def test_streamed_key_steps_isolate_keys(target):
    """resident_kv_bytes=0: key tiles are loaded (and, on v2, cleaned) per step instead of once per kv head."""
    q, k, v = _inputs(150, 600, 2, 1, 64)
    options = dict(causal=True, sliding_window=200, resident_kv_bytes=0)
    clean = _run(q, k, v, target, **options)
    k[0, 500, 0, 3] = np.nan
    dirty = _run(q, k, v, target, **options)
    affected = np.repeat(_sees(150, 600, True, 200)[:, 500:501], 2, axis=1)
    _assert_isolated(clean, dirty, affected, nan_expected=True)


@pytest.mark.parametrize("target", ("inf2", "trn2"))
def test_nonfinite_key_across_key_steps(target):
    """Skv = 2200 is two online-softmax steps; key 2150 (second step) is hidden from rows p < 80 (diag = 2070)."""
    q, k, v = _inputs(130, 2200, 1, 1, 64)
    clean = _run(q, k, v, target, causal=True)
    k[0, 2150, 0, 0] = np.nan
    dirty = _run(q, k, v, target, causal=True)
    affected = _sees(130, 2200, True, None)[:, 2150:2151]
    assert affected[:80].sum() == 0 and affected[80:].all()
    _assert_isolated(clean, dirty, affected, nan_expected=True)


@pytest.mark.parametrize("target", TARGETS)
def test_rows_that_see_no_key_stay_zero_with_a_nonfinite_query(target):
    """Causal Sq > Skv: rows i < Sq - Skv see no key, so a NaN in their query changes nothing (zeros)."""
    q, k, v = _inputs(300, 20, 2, 1, 64)
    q[0, 3, :, :] = np.nan
    q[0, 290, 1, 0] = np.nan
    out = _run(q, k, v, target, causal=True)
    assert np.all(out[0, :280] == 0.0)
    assert np.isnan(out[0, 290, 1]).all() and np.isfinite(out[0, 280:, 0]).all()
    assert np.isfinite(np.delete(out[0, 280:, 1], 10, axis=0)).all()
