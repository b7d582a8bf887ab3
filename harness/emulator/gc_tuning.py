"""Fewer cyclic-GC passes while a kernel is emulated.

A trace-mode run creates hundreds of thousands of small objects that all stay alive until the run ends
(instructions, operands, footprints, views), so CPython's generation-0 collector, which runs every 700
new container objects by default, scans them again and again for nothing: measured here, 13–15 % of a
trace-mode run of the benchmark. `fewer_collections()` raises the generation-0 threshold to
`RUN_THRESHOLD` from the first concurrent run's entry to the last one's exit, then restores the previous
thresholds (`held_setting.py`). Collection still happens (memory is reclaimed as before, in fewer, larger passes); only its
frequency changes, for the whole process while any run is active.
"""

from __future__ import annotations

import gc

from .held_setting import HeldSetting

RUN_THRESHOLD = 20_000  # generation-0 threshold during runs (CPython's default: 700)


def _raise_threshold() -> tuple:
    before = gc.get_threshold()
    gc.set_threshold(max(RUN_THRESHOLD, before[0]), *before[1:])
    return before


fewer_collections = HeldSetting(_raise_threshold, lambda before: gc.set_threshold(*before))
