"""Where in a kernel an allocation was made: its kernel frames, captured cheaply, resolved to lines when needed.

An allocation's site is the stack of kernel frames (frames outside the emulator package; the tutorial kernels of
`examples.py` count as kernel code) that led to it, innermost first, at most `DEPTH` of them. Reading a frame's
line (`frame.f_lineno`) scans its function's line table, microseconds per frame in a long kernel function (measured
here: ~5 us at the end of a 300-line function), for every tile a kernel allocates. So `capture` keeps each frame's
code object and bytecode offset (`f_lasti`, a field read), and `line` turns an offset into the line `f_lineno` would
have given (the line of the instruction at that offset) only when a message or the trace asks, once per distinct
(code, offset) of a run (`allocations`).

Used by `liveness.Lifetime` (the kernel line in capacity errors) and for the trace's `Allocation` records (the
performance model's allocation site, which tells a helper's allocations for different callers apart), made from
the run's lifetimes when it ends (`allocations`).
"""

from __future__ import annotations

import os
import sys

from .trace import Allocation

DEPTH = 8  # kernel frames kept per allocation site

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
# the emulator's implementation files: an allocation's site starts at the innermost frame outside them
_INTERNAL = frozenset(os.path.join(root, f) for root, _, files in os.walk(_PACKAGE_DIR) for f in files
                      if f.endswith(".py") and f != "examples.py")


def capture() -> tuple:
    """(code, offset, code, offset, …) of the kernel frames that led to the caller, innermost first (at most
    `DEPTH`; empty when none)."""
    frame = sys._getframe(2)
    internal = _INTERNAL
    while frame is not None and frame.f_code.co_filename in internal:
        frame = frame.f_back
    out = []
    while frame is not None and len(out) < 2 * DEPTH:
        code = frame.f_code
        if code.co_filename in internal:
            break
        out += (code, frame.f_lasti)
        frame = frame.f_back
    return tuple(out)


def line(code, offset: int) -> int | None:
    """The source line of the instruction at bytecode `offset` of `code` (what `frame.f_lineno` gives for a frame
    stopped there; None where the instruction has no line)."""
    if offset < 0:
        return code.co_firstlineno
    for start, end, lineno in code.co_lines():
        if start <= offset < end:
            return lineno
    return None


def innermost(frames: tuple) -> tuple:
    """(code, line) of the innermost frame of `capture`'s frames; (None, 0) when there are none."""
    return (frames[0], line(frames[0], frames[1])) if frames else (None, 0)


def allocations(lifetimes: list, out: dict) -> None:
    """Fill `out` (a trace's `allocations`) with the `Allocation` record of every on-chip allocation not placed with
    `address=` (`lifetimes`: the run's `liveness.Lifetime`s, in allocation order), its site resolved to
    ((file, line), …), each distinct (code, offset) once. The code objects are alive (the captured frames hold
    them), so their ids tell them apart."""
    lines: dict[tuple[int, int], tuple[str, int | None]] = {}
    for life in lifetimes:
        if life.address is not None:
            continue  # placed tiles: the model maps them by address
        frames = life.frames
        path = []
        for k in range(0, len(frames), 2):
            code, offset = frames[k], frames[k + 1]
            key = (id(code), offset)
            at = lines.get(key)
            if at is None:
                at = lines[key] = (code.co_filename, line(code, offset))
            path.append(at)
        p0, p1 = life.partitions
        out[life.storage] = _new_tuple(Allocation, (tuple(path), life.buffer, p1 - p0, life.nbytes, life.label[2],
                                                    life.program))


_new_tuple = tuple.__new__  # a NamedTuple record without its constructor's Python frame
