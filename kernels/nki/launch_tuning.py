"""Host side of the tuning tables: the tunable values a launcher passes its kernel, per (target, shape class), as
`nkilab tune` found them.

A launcher that has tunables declares, beside its kernel:
    TUNING_CHOICES = {name: (value, ...)}      the values `nkilab tune` searches (each a compile-time kernel keyword)
    shape_class(problem) -> str               the table row a problem (the launcher's problem dict) belongs to
    TUNING_TABLE = table_path(__file__)       its table: `launch_<family>.tuning.json` beside the launcher
of this form:
    {"op": name, "default": {name: value}, "targets": {target: {shape_class: {name: value}}}, "notes": ...}
`settings` = the default, overlaid by the (target, class) row, overlaid by explicit overrides (`problem["tunables"]`
in trace mode). The values in a table are modeled choices (the performance model's, not measured).
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

def table_path(launcher_file: str | os.PathLike) -> Path:
    """The tuning table of the launcher module at `launcher_file`: the same name, `.tuning.json`."""
    return Path(launcher_file).resolve().with_suffix(".tuning.json")


def load(path: str | os.PathLike) -> dict:
    """The tuning table at `path` (re-read when the file changes)."""
    return _load(str(path), os.stat(path).st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _load(path: str, mtime_ns: int) -> dict:
    with open(path) as fh:
        return json.load(fh)


def settings(table: dict, target: str, shape_class: str, overrides: dict | None = None) -> dict:
    """{name: value} for a call: the table's default, its (target, shape_class) row, then `overrides` (ValueError
    naming `tunables` for a name the table does not declare; TypeError when it is not a dict)."""
    values = dict(table["default"])
    values.update(table.get("targets", {}).get(target, {}).get(shape_class, {}))
    if overrides is None:
        return values
    if not isinstance(overrides, dict):
        raise TypeError(f"tunables: must be a dict {{name: value}} or None, got {type(overrides).__name__}")
    unknown = sorted(set(overrides) - set(values))
    if unknown:
        raise ValueError(f"tunables: unknown name(s) {unknown}; {table['op']} declares {sorted(values)}")
    values.update(overrides)
    return values
