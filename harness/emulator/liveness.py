"""On-chip capacity by liveness, as the compiler allocates.

A tensor's bytes count from its first access (normally its first write) to its last use, in program
order (instruction indices of the trace), not while a Python name refers to it: a tile declared but
never accessed costs nothing, and a large tile rebound in every loop iteration costs one tile when
each iteration's uses end before the next one's begin. Since the last use is only known when the
kernel ends, `check` runs when the run ends and sweeps the recorded live ranges of each program
instance (each has its own SBUF and PSUM).

Costs: an SBUF tile takes `prod(shape[1:]) * itemsize` bytes on every partition (the compiler may
pack partition ranges, which is not modelled); a PSUM tile takes whole 2 KiB banks (PSUM tiles start
on a bank boundary, S-MIG 0.1→0.2). A tile placed with `nl.ndarray(..., address=(partition, byte))`
takes exactly its bytes on its partitions; placed tiles whose bytes overlap share them (no extra
cost), and overlapping placed tiles whose live ranges overlap are a race the check reports.

Errors name the peak (its size, the instruction at which it happens), the tiles live there (largest
first) and the kernel line that allocated each.
"""

from __future__ import annotations

import os
import sys

import numpy as np

from .errors import NkiValidationError

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
# the emulator's implementation files: an allocation's site is the innermost frame outside them (the kernel's line;
# the tutorial kernels of examples.py are kernels too)
_INTERNAL = frozenset(os.path.join(root, f) for root, _, files in os.walk(_PACKAGE_DIR) for f in files
                      if f.endswith(".py") and f != "examples.py")
_SHOWN = 8  # live tiles listed in a capacity error


class Lifetime:
    """One on-chip allocation: footprint, placement and live range [first, last] (instruction indices; -1: the
    tensor was never accessed).

    Attributes:
        buffer: "sbuf" | "psum".
        program: LNC program instance that allocated it.
        nbytes: bytes per partition.
        partitions: (start, stop) absolute partitions it occupies.
        address: byte offset in each partition when placed with `address=`, else None.
        label: (name, shape, dtype name) for messages.
        site: (code object, line) of the kernel line that allocated it.
    """

    __slots__ = ("buffer", "program", "nbytes", "partitions", "address", "label", "site", "first", "last")

    def __init__(self, buffer: str, program: int, nbytes: int, partitions: tuple[int, int], address: int | None,
                 label: tuple, site):
        self.buffer, self.program, self.nbytes, self.partitions = buffer, program, nbytes, partitions
        self.address, self.label, self.site = address, label, site
        self.first = self.last = -1

    def where(self) -> str:
        """`file:line` of the allocation."""
        code, line = self.site
        return f"{os.path.basename(code.co_filename)}:{line}" if code is not None else "?"

    def describe(self) -> str:
        name, shape, dtype = self.label
        placed = "" if self.address is None else f" at address ({self.partitions[0]}, {self.address})"
        return (f"{name + ' ' if name else ''}{list(shape)} {dtype} {self.buffer} {self.nbytes} B/partition{placed} "
                f"({self.where()}) live #{self.first}-#{self.last}")

    def overlaps_bytes(self, other: "Lifetime") -> bool:
        (p0, p1), (q0, q1) = self.partitions, other.partitions
        return p0 < q1 and q0 < p1 and self.address < other.address + other.nbytes and \
            other.address < self.address + self.nbytes


def allocation_site():
    """(code, line) of the innermost caller frame outside the emulator package (the kernel line)."""
    frame = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename in _INTERNAL:
        frame = frame.f_back
    return (frame.f_code, frame.f_lineno) if frame is not None else (None, 0)


def allocation_path(depth: int = 8) -> tuple:
    """((file, line), ...) of the kernel frames that led to the caller's allocation, innermost first (up to `depth`
    frames outside the emulator package): the performance model's allocation site, which tells a helper's
    allocations for different callers apart."""
    frame = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename in _INTERNAL:
        frame = frame.f_back
    path = []
    while frame is not None and frame.f_code.co_filename not in _INTERNAL and len(path) < depth:
        path.append((frame.f_code.co_filename, frame.f_lineno))
        frame = frame.f_back
    return tuple(path)


def check(lifetimes: list[Lifetime], target) -> None:
    """Raise NkiValidationError if placed tiles race or the live tiles of a program exceed SBUF/PSUM at some
    instruction (see module docstring)."""
    groups: dict[tuple[int, str], list[Lifetime]] = {}
    for life in lifetimes:
        if life.first >= 0:
            groups.setdefault((life.program, life.buffer), []).append(life)
    for (_, buffer), lives in groups.items():
        _check_races([life for life in lives if life.address is not None], target)
        _check_peak(buffer, lives, target)


def _check_races(placed: list[Lifetime], target) -> None:
    """Two placed tiles sharing bytes may not be live at the same time (a sweep over live ranges by start)."""
    active: list[Lifetime] = []
    for life in sorted(placed, key=lambda x: x.first):
        active = [a for a in active if a.last >= life.first]
        for other in active:
            if life.overlaps_bytes(other):
                raise NkiValidationError("ndarray", "address", "tensors sharing bytes are never live at the same "
                                         "time (a write through one would race with the other's use)",
                                         f"{other.describe()} and {life.describe()}", target.name)
        active.append(life)


def _cost(life: Lifetime, buffer: str, bank: int) -> int:
    """Bytes per partition (SBUF) or banks (PSUM) a tile takes while live."""
    if buffer == "sbuf":
        return life.nbytes
    if life.address is None:
        return -(-life.nbytes // bank)
    return -(-(life.address + life.nbytes) // bank) - life.address // bank


def _check_peak(buffer: str, lives: list[Lifetime], target) -> None:
    """Sweep the live ranges: usage = unplaced costs (every partition) + the fullest partition of placed ones."""
    bank = target.psum_bank_bytes
    capacity = target.sbuf_bytes if buffer == "sbuf" else target.psum_banks
    if any(life.address is not None for life in lives):
        peak, peak_at = _sweep_placed(buffer, lives, target)
    else:
        first, last, cost = np.array([(life.first, life.last, _cost(life, buffer, bank)) for life in lives]).T
        peak, peak_at = _sweep(first, last, cost)
    if peak > capacity:
        _raise(buffer, peak, peak_at, lives, capacity, target)


def _sweep(first: np.ndarray, last: np.ndarray, cost: np.ndarray) -> tuple[int, int]:
    """(peak usage, instruction index where it first occurs) of intervals [first, last] each using `cost`."""
    times = np.concatenate([first, last + 1])
    deltas = np.concatenate([cost, -cost])
    order = np.lexsort((deltas > 0, times))  # at one index, the tiles that die there leave before new ones come
    times, usage = times[order], np.cumsum(deltas[order])
    settled = np.append(times[1:] != times[:-1], True)  # usage once every event of that index is counted
    usage = np.where(settled, usage, -1)
    k = int(np.argmax(usage))
    return int(usage[k]), int(times[k])


def _sweep_placed(buffer: str, lives: list[Lifetime], target) -> tuple[int, int]:
    """As `_sweep`, with placed tiles counted on their own partitions (one event at a time)."""
    bank = target.psum_bank_bytes
    events = sorted([(life.first, 1, i) for i, life in enumerate(lives)] +
                    [(life.last + 1, 0, i) for i, life in enumerate(lives)])
    placed = np.zeros(target.pmax, np.int64)
    plain = peak = 0
    peak_at = -1
    for k, (at, start, i) in enumerate(events):
        life = lives[i]
        cost = _cost(life, buffer, bank) * (1 if start else -1)
        if life.address is None:
            plain += cost
        else:
            placed[life.partitions[0]:life.partitions[1]] += cost
        if start and (k + 1 == len(events) or events[k + 1][0] != at):
            used = plain + int(placed.max())
            if used > peak:
                peak, peak_at = used, at
    return peak, peak_at


def _raise(buffer: str, peak: int, at: int, lives: list[Lifetime], capacity: int, target) -> None:
    live = sorted((life for life in lives if life.first <= at <= life.last), key=lambda x: -x.nbytes)
    shown = "; ".join(life.describe() for life in live[:_SHOWN])
    more = f"; and {len(live) - _SHOWN} more" if len(live) > _SHOWN else ""
    if buffer == "sbuf":
        limit, unit = f"live SBUF bytes per partition <= {capacity}", "bytes per partition"
    else:
        limit, unit = f"live PSUM banks <= {capacity} x {target.psum_bank_bytes} B", "banks"
    raise NkiValidationError("ndarray", f"{buffer} capacity", limit,
                             f"{peak} {unit} at instruction #{at}, {len(live)} tiles live: {shown}{more}",
                             target.name)
