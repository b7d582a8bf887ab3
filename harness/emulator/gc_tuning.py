"""Fewer cyclic-GC passes while a kernel is emulated.

A trace-mode run creates hundreds of thousands of small objects that all stay alive until the run ends
(instructions, operands, footprints, views), so CPython's generation-0 collector, which runs every 700
new container objects by default, scans them again and again for nothing: measured here, 13–15 % of a
trace-mode run of the benchmark. `fewer_collections()` raises the generation-0 threshold to
`RUN_THRESHOLD` from the first concurrent run's entry to the last one's exit, then restores the previous
thresholds. Collection still happens (memory is reclaimed as before, in fewer, larger passes); only its
frequency changes, for the whole process while any run is active.
"""

from __future__ import annotations

import contextlib
import gc
import threading

RUN_THRESHOLD = 20_000  # generation-0 threshold during runs (CPython's default: 700)
_LOCK = threading.Lock()
_state = {"inside": 0, "before": None}


@contextlib.contextmanager
def fewer_collections():
    """Generation-0 GC threshold `RUN_THRESHOLD` inside the block (reference-counted across threads)."""
    with _LOCK:
        if _state["inside"] == 0:
            _state["before"] = gc.get_threshold()
            gc.set_threshold(max(RUN_THRESHOLD, _state["before"][0]), *_state["before"][1:])
        _state["inside"] += 1
    try:
        yield
    finally:
        with _LOCK:
            _state["inside"] -= 1
            if _state["inside"] == 0:
                gc.set_threshold(*_state["before"])
