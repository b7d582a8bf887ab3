"""Valid draws of every op x backend (NKI on inf2, trn1 and trn2) match the float64 reference, from NumPy or torch,
contiguous or as strided views, and never mutate an input (issue 10).

The error budget is the op's check rule (`fuzz.cases.assert_matches`).
"""

import pytest
from fuzz.calls import VIEWS, as_kind, assert_matches, copied, run, snapshot, with_views
from fuzz.cases import BACKEND_IDS, BACKEND_TARGETS, CASES, KINDS
from hypothesis import given, reject
from hypothesis import strategies as st

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
