"""Modeled records through the on-disk cache (`harness.cache`): what `run`, `bench` and `sweep` share.

A modeled record (one NKI kernel traced at real shapes for one Neuron target, costed by the performance model) is a
pure function of the sources it runs and of its inputs, so it is cached under

    {"what": "modeled-record", "v": RECORD_VERSION, "source": model_source_hash(), "op", "target", "lnc",
     "problem", "spec", "params", "power_w"}

`model_source_hash()` is a SHA-256 over every `.py` file of the NKI kernels and launchers (`kernels/nki`), the op
declarations (`kernels/ops`), the emulator (`harness/emulator`), the performance model (`harness/perf`) and the chip
tables (`harness/chips.py`), plus the kernels' tuning tables (`kernels/nki/*.tuning.json`, which decide the
default configs): an edit to a kernel, a tuning table or a model constant misses; nothing else does. The problem's
`params` carry any tunable values a launcher reads (the tuner's configs), so each config has its own entry.

The stored value is the record without the fields of the invocation that asked for it: its provenance (version,
commit, host, timestamp) and its reproduction `command` (which names the asker's grid, model-config path and size
overrides, none of which is in the key). A hit gets them fresh from the caller and `cache: "hit"` (a computed one
`cache: "miss"`), its other fields as first computed (`trace_wall_s` is the original trace's wall time). Tasks that
raise are never stored.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable

from nkilab.harness.cache import Cache, source_hash
from nkilab.harness.report.records import provenance
from nkilab.kernels import nki

RECORD_VERSION = 1  # bump when the stored record's layout changes


@functools.lru_cache(maxsize=1)
def model_source_hash() -> str:
    """Hash of every source a modeled record depends on (see the module docstring)."""
    harness = Path(__file__).resolve().parent
    kernels = Path(nki.__file__).resolve().parents[1]
    return source_hash([kernels / "nki", kernels / "ops", harness / "emulator", harness / "perf",
                        harness / "chips.py", *sorted((kernels / "nki").glob("*.tuning.json"))])


def record_key(task, power_w: float | None) -> dict:
    """The cache key parts of the modeled record of `task` (a `profile.Task` of kind "model")."""
    p = task.problem
    return {"what": "modeled-record", "v": RECORD_VERSION, "source": model_source_hash(), "op": task.op,
            "target": task.target, "lnc": task.lnc, "problem": p.record(), "spec": p.spec(), "params": p.params,
            "power_w": power_w}


def cached_record(cache: Cache, key_parts: dict, compute: Callable[[], dict], command: str) -> dict:
    """The record for `key_parts` from `cache`, or `compute()`'s (stored without its invocation fields first),
    with this invocation's provenance and reproduction `command`."""
    hits = cache.hits
    stored = cache.get_or_compute(key_parts, lambda: _without_invocation(compute()))
    return _with_invocation(stored, command, "hit" if cache.hits > hits else "miss")


def stored_record(cache: Cache, key_parts: dict, command: str) -> dict | None:
    """`cached_record`'s hit without a compute: the stored record with this invocation's fields, or None (a miss,
    nothing computed or counted)."""
    stored = cache.get(key_parts)
    if stored is None:
        return None
    cache.hits += 1
    return _with_invocation(stored, command, "hit")


def _with_invocation(stored: dict, command: str, cache: str) -> dict:
    return {**stored, **provenance(), "command": command, "cache": cache}


def _without_invocation(record: dict) -> dict:
    keys = {*provenance().keys(), "command"}  # git is asked once per process, when needed
    return {k: v for k, v in record.items() if k not in keys}
