"""The cost rules' memo (`harness/perf/memo.py`): a hit only for the same key and the same target object, and a
bounded size."""

from nkilab.harness.perf import memo as memo_mod
from nkilab.harness.perf.memo import CostMemo


class _Core:
    """A stand-in target: the memo only compares identities."""


def _rule(inst, core):
    _rule.calls += 1
    return (inst, id(core))


def test_a_key_is_computed_once_per_target_object():
    _rule.calls = 0
    m, a, b = CostMemo(), _Core(), _Core()
    assert m.get(("k",), a, _rule, "x") == ("x", id(a))
    assert m.get(("k",), a, _rule, "x") == ("x", id(a))
    assert _rule.calls == 1
    assert m.get(("k",), b, _rule, "x") == ("x", id(b))  # another target: its own cost
    assert m.get(("j",), a, _rule, "y") == ("y", id(a))
    assert _rule.calls == 3 and len(m) == 3


def test_a_full_memo_starts_again(monkeypatch):
    monkeypatch.setattr(memo_mod, "MAX_ENTRIES", 4)
    _rule.calls = 0
    m, core = CostMemo(), _Core()
    for i in range(4):
        m.get((i,), core, _rule, i)
    assert len(m) == 4
    assert m.get((4,), core, _rule, 4) == (4, id(core))
    assert len(m) == 1 and _rule.calls == 5
    assert m.get((0,), core, _rule, 0) == (0, id(core)) and _rule.calls == 6  # cleared: computed again
