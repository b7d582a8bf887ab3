"""What the modeled perf-goal tests share (`tests/kernels/nki/test_perf_goals_*.py`).

A goal table is `ROWS = {name: {"metric", "floor", "goal", ...}}` plus `NOT_MET = {name: the binding limit}`: every
row's floor is asserted (a benchmark guard: the model is deterministic), every row with a goal gets a goal test,
a strict xfail naming its limit while the goal is not met. "mbu"/"mfu" rows must reach their bound; "x_roofline"
rows (a latency over the useful roofline time) must stay at or under theirs.
"""

from typing import Callable

import pytest


HIGHER_IS_BETTER = {"mbu": True, "mfu": True, "x_roofline": False}


def meets(row: dict, value: float, bound: float) -> bool:
    """`value` of `row`'s metric within `bound` (at least it for a utilization, at most it for a roofline ratio)."""
    return value >= bound if HIGHER_IS_BETTER[row["metric"]] else value <= bound


def check(name: str, row: dict, value: float, bound_key: str) -> None:
    """Assert `row`'s modeled `value` meets its `bound_key` ("floor" or "goal"), naming the row."""
    assert meets(row, value, row[bound_key]), \
        f"{name}: modeled {row['metric']} {value:.3f} misses its {bound_key} {row[bound_key]}"


def goal_params(rows: dict, not_met: dict) -> list:
    """The goal tests' parameters: every row with a goal, unmet ones as strict xfails with their reason."""
    return [pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=f"goal not met: {not_met[name]}"))
            if name in not_met else name
            for name, row in rows.items() if row["goal"] is not None]


def memoized(rows: dict, modeled: Callable[[dict], float]) -> Callable[[str], float]:
    """`name -> modeled(rows[name])`, each row traced once (a row is traced for its floor and its goal test)."""
    cache: dict[str, float] = {}

    def get(name: str) -> float:
        if name not in cache:
            cache[name] = modeled(rows[name])
        return cache[name]

    return get
