"""The sweep's results.jsonl: one record per line, appended and flushed as each task finishes.

An interrupted sweep leaves every finished record on disk, and at most one half-written last line; `ResultsFile`
drops that line when it opens the file again, and `done` holds the `sweep_key`s already written, so a resumed
sweep runs only the rest and writes each record once.
"""

from __future__ import annotations

import json
import os

from nkilab.harness.report.records import json_line


class ResultsFile:
    """results.jsonl at `path`, opened for appending; `records` are the complete ones already there."""

    def __init__(self, path: str):
        self.path = path
        self.records = _read_complete(path)
        self.done = {r.get("sweep_key") for r in self.records}
        self._fh = open(path, "a")

    def append(self, record: dict) -> None:
        """Write one record as a line and flush it to the OS (a kill after this keeps it); a record whose
        `sweep_key` is already written is a ValueError (the sweep never duplicates)."""
        key = record.get("sweep_key")
        if key in self.done:
            raise ValueError(f"record: sweep_key {key} is already in {self.path}")
        self._fh.write(json_line(record) + "\n")
        self._fh.flush()
        self.done.add(key)
        self.records.append(record)

    def close(self) -> None:
        self._fh.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _read_complete(path: str) -> list[dict]:
    """The complete records of `path` (none if it does not exist); a torn last line is cut off the file."""
    if not os.path.exists(path):
        return []
    with open(path, "rb") as fh:
        data = fh.read()
    records, good = [], 0
    for line in data.splitlines(keepends=True):
        try:
            if not line.endswith(b"\n"):
                raise ValueError("torn line")
            records.append(json.loads(line))
        except ValueError:
            break
        good += len(line)
    if good < len(data):
        with open(path, "r+b") as fh:
            fh.truncate(good)
    return records
