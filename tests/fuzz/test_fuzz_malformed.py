"""Malformed calls of every op x backend raise TypeError/ValueError naming the argument, and touch nothing (issue 10).

Each example draws a valid problem of the op (tests/strategies.py), breaks one documented rule of it (`fuzz.cases`:
the generic rules every op shares and the op's own), passes it as NumPy or torch, and asserts: the call raises
TypeError or ValueError (never another type, never a crash) whose message names the broken argument, and every
argument, caches included, is bitwise what it was. The op list is the registry's.
"""

import re

import pytest
from fuzz.calls import as_kind, run, snapshot
from fuzz.cases import BACKENDS, CASES, ERRORS, KINDS, generic_malformed, torch_only_malformed
from hypothesis import given
from hypothesis import strategies as st
from strategies import NormProblem

from nkilab.kernels import _registry


def names_one_of(message: str, names) -> bool:
    """The message cites one of `names` as a word (`q` in "q: ..." or "q's", never inside "query_start_loc")."""
    return any(re.search(rf"(?<![\w.]){re.escape(n)}(?!\w)", message) for n in names)


def test_every_registered_op_has_a_case():
    assert set(CASES) == set(_registry.OPS)


def test_names_one_of_matches_words_only():
    assert names_one_of("q, k, v: must share one dtype", ("k",))
    assert names_one_of("x: K=3 must equal qw.shape[0]=4", ("qw.shape",))
    assert not names_one_of("query_start_loc: must start at 0", ("q",))
    assert not names_one_of("qw.scales: must be finite", ("scales",))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", _registry.OPS)
@given(data=st.data())
def test_malformed_calls_raise_naming_the_argument(op, backend, data):
    case = CASES[op]
    call = case.call(data.draw(case.problems(backend), label="problem"))
    kind = data.draw(st.sampled_from(KINDS), label="kind")
    variants = [(v, None) for v in generic_malformed(case, call) + case.relational(call)]
    if kind == "torch":
        variants += torch_only_malformed(case, call)
    bad, grad = data.draw(st.sampled_from(variants), label="variant")
    if "read-only" in bad.rule:
        kind = "numpy"  # the torch conversion copies a read-only array, which would make it writable
    sent = as_kind(bad.call, kind, requires_grad=grad)
    before = snapshot(sent)
    with pytest.raises(ERRORS) as caught:
        run(case, sent, backend, None)
    message = str(caught.value)
    assert names_one_of(message, bad.names), f"{bad}: the error names none of {bad.names}: {message}"
    assert snapshot(sent) == before, f"{bad}: a failed call changed its arguments"



@pytest.mark.parametrize("backend", BACKENDS)
def test_a_0d_torch_argument_stays_0d_and_is_refused(backend):
    """Found by a 50-example run of the nightly settings (2026-12-02): `to_torch` turned a 0-d array into shape [1]
    (np.ascontiguousarray returns ndim >= 1), so the torch form of the "x 0-d" variant was a valid [1] tensor and
    rms_norm with H = 1 accepted it."""
    case = CASES["rms_norm"]
    call = case.call(NormProblem(lead=(1,), hidden=1, residual=False, eps=1e-6, dtype="float32", seed=0))
    bad = next(v for v in generic_malformed(case, call) if v.rule == "x 0-d")
    sent = as_kind(bad.call, "torch")
    assert tuple(sent.get("x").shape) == ()
    with pytest.raises(ERRORS) as caught:
        run(case, sent, backend, None)
    assert names_one_of(str(caught.value), ("x",)), str(caught.value)
