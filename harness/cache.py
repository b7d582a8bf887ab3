"""A content-addressed on-disk cache of JSON values: what a slow, deterministic computation (a kernel trace and its
modeled estimate) returned for the same inputs.

    cache = Cache()                                   # $NKILAB_CACHE, else $XDG_CACHE_HOME/nkilab, else ~/.cache/nkilab
    value = cache.get_or_compute(key_parts, fn)       # fn() only on a miss; cache.hits / cache.misses count them

`key_parts` is any JSON-serialisable value (dicts, lists, str, numbers, None) naming *everything* the value depends
on — for a modeled kernel call: the kernel and model source hash (`source_hash`), the problem, the target and the
config. Its SHA-256 over canonical JSON (sorted keys, no whitespace) is the file name, so equal inputs share one
entry and changed sources miss. Values are JSON objects written atomically (temporary file, then rename): a reader
never sees half an entry, and concurrent writers of one key write the same bytes. An unreadable entry is recomputed.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Callable

CACHE_ENV = "NKILAB_CACHE"


def default_dir() -> Path:
    """$NKILAB_CACHE when set, else $XDG_CACHE_HOME/nkilab, else ~/.cache/nkilab."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "nkilab"


def key_of(key_parts) -> str:
    """SHA-256 hex digest of `key_parts` as canonical JSON (TypeError naming key_parts if not serialisable)."""
    try:
        text = json.dumps(key_parts, sort_keys=True, separators=(",", ":"), allow_nan=True)
    except TypeError as exc:
        raise TypeError(f"key_parts: must be JSON-serialisable (dict, list, str, number, None): {exc}") from None
    return hashlib.sha256(text.encode()).hexdigest()


def source_hash(paths) -> str:
    """SHA-256 over the bytes of every `.py` file under `paths` (files or directories), in sorted path order:
    a cache key part that changes whenever any of that source does."""
    digest = hashlib.sha256()
    files = []
    for path in map(Path, paths):
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    for file in sorted(files):
        digest.update(file.name.encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


class Cache:
    """The on-disk cache in `directory` (None = `default_dir()`); counts `hits` and `misses`."""

    def __init__(self, directory: str | os.PathLike | None = None):
        self.directory = Path(directory) if directory is not None else default_dir()
        self.hits = 0
        self.misses = 0

    def path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key_parts):
        """The stored value for `key_parts`, or None when absent or unreadable."""
        try:
            return json.loads(self.path(key_of(key_parts)).read_text())
        except (OSError, ValueError):
            return None

    def put(self, key_parts, value) -> None:
        """Store `value` (JSON-serialisable) for `key_parts`, atomically."""
        target = self.path(key_of(key_parts))
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(value, fh, allow_nan=True)
            os.replace(tmp, target)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def get_or_compute(self, key_parts, fn: Callable[[], object]):
        """The stored value for `key_parts`; on a miss, `fn()`'s value, stored first."""
        value = self.get(key_parts)
        if value is not None:
            self.hits += 1
            return value
        self.misses += 1
        value = fn()
        self.put(key_parts, value)
        return value


def get_or_compute(key_parts, fn: Callable[[], object], *, directory: str | os.PathLike | None = None):
    """`Cache(directory).get_or_compute(key_parts, fn)`: one lookup in the default (or given) cache."""
    return Cache(directory).get_or_compute(key_parts, fn)
