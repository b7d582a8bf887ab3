"""Memo of the performance model's per-instruction cost rules: instructions alike in everything a rule reads share
one cost (kernels issue thousands alike), per target.

An entry is keyed by the rule's key and the target object's id, and holds the target itself: a hit made for
another target that reused the id is recomputed, never returned. Bounded: a full memo is cleared (a sweep process
traces many kernels; a cost is cheap to recompute).
"""

from __future__ import annotations

from collections.abc import Callable

MAX_ENTRIES = 100_000


class CostMemo:
    """{(key, id(core)): (core, cost)} for one cost rule."""

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: dict = {}

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()

    def get(self, key: tuple, core, rule: Callable, inst):
        """`rule(inst, core)`, remembered under `key` (everything `rule` reads of `inst`) for target `core`."""
        full = (key, id(core))
        hit = self._entries.get(full)
        if hit is None or hit[0] is not core:
            if len(self._entries) >= MAX_ENTRIES:
                self.clear()
            hit = self._entries[full] = (core, rule(inst, core))
        return hit[1]
