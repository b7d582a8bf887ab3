"""No automatic cyclic-GC passes while a kernel is emulated.

A trace-mode run creates hundreds of thousands of small objects that all stay alive until the run ends
(instructions, operands, footprints, views, lifetimes), and none of them is part of a reference cycle.
CPython's collector, which runs after every 700 new container objects by default and traverses older
generations every 10 and 100 passes, scans them again and again for nothing. Measured here (trace mode,
CPU time): the benchmark's tiled matmul 0.99 s with a generation-0 threshold of 20 000 (the previous
setting), 0.73 s at 100 000, 0.63 s with automatic collection off; nkilab's paged-attention, attention
and qmatmul kernels spend 10-23 % of their trace time in collections that find nothing to free
(0 objects collected in every one of them).

`no_collections()` turns automatic collection off from the first concurrent run's entry to the last
one's exit, then restores the previous state (`held_setting.py`; it stays off if it was off before).
Memory is still reclaimed by reference counting as before; only garbage in reference cycles waits:
a kernel that makes cycles keeps them until the run ends (the next full collection frees them).
The setting is process-wide while any run is active.

On the way out, before collection is turned back on, every tracked object goes straight to the oldest
generation (`gc.freeze()` then `gc.unfreeze()`, two list splices): otherwise the first young-generation
pass after the run traverses every object the run made, found alive. Measured here (CPU time): that pass
was 5 % of a paged-attention trace's time (py-spy samples), 0.08 s per million live objects; after the
splices it is 0.5 ms. The objects are then traversed only by full collections, as long-lived ones are;
cyclic garbage among them (and among the caller's objects still young when the run ended) waits for
the next full collection. Not done while the process has frozen objects of its own (`gc.freeze()` before
a fork): unfreezing would release them.
"""

from __future__ import annotations

import gc

from .held_setting import HeldSetting


def _disable() -> bool:
    enabled = gc.isenabled()
    gc.disable()
    return enabled


def _restore(enabled: bool) -> None:
    if enabled:
        if gc.get_freeze_count() == 0:  # (a caller's own frozen objects must stay frozen: then no splice)
            gc.freeze()  # (module docstring: the young generations' objects go to the oldest one)
            gc.unfreeze()
        gc.enable()


no_collections = HeldSetting(_disable, _restore)
