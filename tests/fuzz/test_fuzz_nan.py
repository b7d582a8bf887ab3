"""NaN isolation on every op x backend x target (issue 10, item 1): a non-finite element reaches exactly the outputs
that mathematically depend on it.

Each example poisons one element of one input (a token of x, a query or a key, a cache row, a key/value to write)
with NaN, +inf or -inf. The outputs that depend on it are those the float64 reference changes when the element
changes by a finite amount, or makes non-finite when the element is NaN or the drawn value: the ones that read it,
including through an exactly-zero weight (0 * NaN = NaN, which every backend computes too) or a softmax over one
key (whose weight is 1 whatever the score, yet inf - inf = NaN). The backend's poisoned run must be non-finite
wherever the reference is, and bitwise equal to its clean run on every output that does not depend on the element.
Values are never poisoned (a value row whose softmax weight is exactly 0 may spread a NaN: 0 * NaN = NaN, which
the README's reliability section documents per backend).
"""

import numpy as np
import pytest
from fuzz.calls import copied, run
from fuzz.cases import BACKEND_TARGETS, CASES
from hypothesis import given, reject
from hypothesis import strategies as st

from nkilab.kernels import _registry

POISONS = (np.nan, np.inf, -np.inf)


def _params():
    for op in _registry.OPS:
        for backend, target in BACKEND_TARGETS:
            yield pytest.param(op, backend, target, id=f"{op}-{backend}" + (f"-{target}" if target else ""))


def poisoned(a: np.ndarray, index: int, value) -> np.ndarray:
    b = a.copy()
    b.reshape(-1)[index] = value
    return b


def outputs(case, out) -> np.ndarray:
    return np.asarray(case.op.check.output(out), dtype=np.float64)


def reference64(case, call) -> np.ndarray:
    """The op's float64 reference on `call`, in the form of `outputs`."""
    reference = case.op.check.reference or case.op.reference
    fresh = copied(call)
    return np.asarray(reference(*fresh.args, compute_dtype=np.float64, **fresh.kwargs), dtype=np.float64)


def run_or_reject(case, call, backend, target):
    try:
        return run(case, copied(call), backend, target)
    except ValueError as e:
        if str(e).startswith(f"{case.name}: backend={backend!r} does not support this problem"):
            reject()
        raise


@pytest.mark.parametrize(("op", "backend", "target"), list(_params()))
@given(data=st.data())
def test_a_non_finite_element_reaches_only_its_dependents(op, backend, target, data):
    check_isolation(op, backend, target, data)


def check_isolation(op, backend, target, data):
    """One example: poison one element, compare the poisoned run with the clean run and the reference."""
    case = CASES[op]
    call = case.call(data.draw(case.problems(backend), label="problem"))
    name = data.draw(st.sampled_from(case.poison), label="poisoned argument")
    a = call.get(name)
    if not isinstance(a, np.ndarray) or a.size == 0:  # W8A8's x is a QuantizedActivation: finite by construction
        reject()
    index = data.draw(st.integers(0, a.size - 1), label="flat index")
    dirty = call.replace(**{name: poisoned(a, index, data.draw(st.sampled_from(POISONS), label="value"))})
    nudged = call.replace(**{name: poisoned(a, index, a.reshape(-1)[index] + 1)})
    nan = call.replace(**{name: poisoned(a, index, np.nan)})
    clean_ref, nudged_ref, nan_ref, dirty_ref = (reference64(case, c) for c in (call, nudged, nan, dirty))
    non_finite = ~np.isfinite(dirty_ref)
    dependent = non_finite | ~np.isfinite(nan_ref) | (nudged_ref.view(np.int64) != clean_ref.view(np.int64))
    clean_out = outputs(case, run_or_reject(case, call, backend, target))
    dirty_out = outputs(case, run_or_reject(case, dirty, backend, target))
    assert np.all(~np.isfinite(dirty_out[non_finite])), "an output the reference makes non-finite stayed finite"
    spread = np.argwhere(dirty_out[~dependent].view(np.int64) != clean_out[~dependent].view(np.int64))
    assert spread.size == 0, (f"{spread.size} of {int((~dependent).sum())} outputs that do not depend on {name}"
                              f"[{np.unravel_index(index, a.shape)}] changed")


def _hidden_key_calls(op: str, value: float):
    """(clean, poisoned) NumPy calls of a causal prefill of 4 queries over 4 keys in which the last key, seen by the
    last query only, is `value` in one lane; queries 0-2 cannot see it."""
    rng = np.random.default_rng(3)
    q = rng.standard_normal((4, 2, 16)).astype(np.float32)
    k = rng.standard_normal((4, 1, 16)).astype(np.float32)
    v = rng.standard_normal((4, 1, 16)).astype(np.float32)
    bad = k.copy()
    bad[3, 0, 5] = value
    if op == "attention":
        return [((q[None], kk[None], v[None]), dict(causal=True)) for kk in (k, bad)]
    meta = (np.array([[0]], np.int32), np.array([4], np.int32), np.array([0, 4], np.int32))
    return [((q, kk[None], v[None], *meta), dict(causal=True)) for kk in (k, bad)]


def _hidden_key_params():
    for op in ("attention", "paged_attention"):
        for backend, target in BACKEND_TARGETS:
            yield pytest.param(op, backend, target, id=f"{op}-{backend}" + (f"-{target}" if target else ""))


@pytest.mark.parametrize("value", [np.inf, np.nan], ids=["inf", "nan"])
@pytest.mark.parametrize(("op", "backend", "target"), list(_hidden_key_params()))
def test_a_key_the_causal_mask_hides_reaches_no_query(op, backend, target, value):
    case = CASES[op]
    (clean_args, kwargs), (dirty_args, _) = _hidden_key_calls(op, value)
    extra = {} if target is None else {"target": target}
    clean = np.asarray(case.op.api(*clean_args, **kwargs, backend=backend, **extra))
    dirty = np.asarray(case.op.api(*dirty_args, **kwargs, backend=backend, **extra))
    rows = (lambda a: a[0, :3]) if op == "attention" else (lambda a: a[:3])  # the queries that cannot see key 3
    assert rows(clean).tobytes() == rows(dirty).tobytes(), "a hidden key changed queries that cannot see it"
    last = dirty[0, 3] if op == "attention" else dirty[3]
    assert not np.isfinite(last).any(), "the query that sees the non-finite key stayed finite"
