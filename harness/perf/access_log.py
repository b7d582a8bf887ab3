"""The scheduler's per-buffer record of earlier accesses: what a new access of the buffer must wait for.

An entry is a footprint — partitions [p_start, p_stop) and free bytes [start, stop) of one physical buffer — with
the engine that made the access and two times, `ready_same` / `ready_other`: when a conflicting instruction on the
same / another engine may start (before the waiting engine's own semaphore cost, which `ready` adds). A read must
wait for the overlapping writes, a write for the overlapping writes and reads.

Invariants that make the log small without changing any schedule (bit for bit, compared with keeping every earlier
access in a list and scanning it):
  - `ready` is a maximum over the overlapping entries, so neither their order nor repeats matter.
  - Reads of the same footprint by the same engine are one entry holding the latest of each time. For any later
    access either all of them overlap it or none does, each would give the same branch (`ready_same`, or
    `ready_other` plus the same wait), and max(a, b) + w == max(a + w, b + w) in floating point (rounding is
    monotone), so the merged entry gives the same maximum. Without this a loop that reads a whole tile after
    filling it piece by piece (four transposes into a PSUM tile, one copy out) keeps one read per iteration, none
    of them covered by any single later write, and every write rescans all of them.
  - A write drops every entry whose footprint it covers, since anything that conflicts with that entry also
    conflicts with (and waits for) the write. So a footprint holds at most one write, and the write of an equal
    footprint replaces it.
"""

from __future__ import annotations

Footprint = tuple[int, int, int, int, str]  # (p_start, p_stop, start, stop, engine)


class AccessLog:
    """Earlier reads and writes of one buffer: {(p_start, p_stop, start, stop, engine): (ready_same, ready_other)},
    partitions and free-byte offsets as the trace's accesses give them, times in s."""

    __slots__ = ("reads", "writes")

    def __init__(self) -> None:
        self.reads: dict[Footprint, tuple[float, float]] = {}
        self.writes: dict[Footprint, tuple[float, float]] = {}

    def ready(self, p0: int, p1: int, s0: int, s1: int, engine: str, is_write: bool, wait: float) -> float:
        """When an access of partitions [p0, p1) and bytes [s0, s1) by `engine` may start (0.0 when nothing
        conflicts); `wait` is that engine's semaphore wait on a compute producer (none after a DMA)."""
        t = _latest(self.writes, p0, p1, s0, s1, engine, wait)
        return max(t, _latest(self.reads, p0, p1, s0, s1, engine, wait)) if is_write else t

    def add(self, p0: int, p1: int, s0: int, s1: int, engine: str, is_write: bool, same: float,
            other: float) -> None:
        """Record an access by `engine` whose conflicting successors may start at `same` (same engine) / `other`
        (another engine), s."""
        key = (p0, p1, s0, s1, engine)
        if is_write:
            for entries in (self.writes, self.reads):
                for q in [q for q in entries if q[0] >= p0 and q[1] <= p1 and q[2] >= s0 and q[3] <= s1]:
                    del entries[q]
            self.writes[key] = (same, other)
        else:
            old = self.reads.get(key)
            self.reads[key] = (same, other) if old is None else (max(old[0], same), max(old[1], other))


def _latest(entries: dict, p0: int, p1: int, s0: int, s1: int, engine: str, wait: float) -> float:
    """The latest ready time among `entries` that overlap the footprint, for a successor on `engine`."""
    latest = 0.0
    for (q0, q1, t0, t1, eng), (same, other) in entries.items():
        if q0 < p1 and p0 < q1 and t0 < s1 and s0 < t1:
            t = same if eng == engine else other + (0.0 if eng == "dma" else wait)
            if t > latest:
                latest = t
    return latest
