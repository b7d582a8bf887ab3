"""Running the program instances of a launch: LNC 2 programs interleaved at their synchronization points.

LNC 1 runs the kernel in the calling thread. LNC 2 (`kernel[2]`) runs each program instance in its own
thread, taking turns so that exactly one runs at a time and the run is deterministic: program 0 runs
until it reaches a synchronization point (`nisa.core_barrier`, `nisa.sendrecv`, an `nki.collectives`
op) or ends, then program 1 runs until it does, and so on. A synchronization point completes when
every participant has reached it: the last one to arrive performs the exchange (the data movement and
one trace instruction per participant), then the lowest-numbered runnable program continues. A kernel
without synchronization points therefore runs program 0 to its end, then program 1, as before.

Matching: the n-th arrival of a program on a channel (the op and its key, e.g. a sendrecv `pipe_id`)
matches the n-th arrival of every other participant on that channel. If no program can run and some
wait (a barrier on one core only, a sendrecv whose peer never comes), the run raises a deadlock error
naming every program's position instead of hanging.
"""

from __future__ import annotations

import contextvars
import threading
from dataclasses import dataclass, field
from typing import Callable

from . import context
from .context import ProgramContext, RunContext
from .errors import NkiValidationError


class _Aborted(BaseException):
    """Unwinds a program thread when another program failed or the run deadlocked (not a user-visible error)."""


@dataclass
class _Point:
    """A synchronization point on one channel: who must arrive, who did (program id -> payload), what to do."""

    participants: tuple[int, ...]
    complete: Callable[[dict], None]
    arrived: dict = field(default_factory=dict)
    done: bool = False


class CoreScheduler:
    """Runs `fn` once per program instance of an LNC 2 launch, interleaved at synchronization points."""

    def __init__(self, run_ctx: RunContext, fn, args, kwargs):
        self.run_ctx, self.fn, self.args, self.kwargs = run_ctx, fn, args, kwargs
        self.n = run_ctx.lnc
        self.cv = threading.Condition()
        self.turn = 0  # the program allowed to run
        self.finished = [False] * self.n
        self.waiting: list[tuple | None] = [None] * self.n  # (op, channel, arrival index) while blocked
        self.arrivals: dict[tuple, list[int]] = {}  # channel -> arrivals per program
        self.points: dict[tuple, _Point] = {}  # (channel, arrival index) -> point
        self.results: list = [None] * self.n
        self.error: BaseException | None = None

    def run(self):
        """Run every program instance; returns program 0's result, or raises the first error."""
        threads = [threading.Thread(target=contextvars.copy_context().run, args=(self._program, pid), daemon=True,
                                    name=f"nki-program-{pid}") for pid in range(self.n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if self.error is not None:
            raise self.error
        return self.results[0]

    def _program(self, pid: int) -> None:
        try:
            with self.cv:
                self._wait_turn(pid)
            with context.activated(ProgramContext(self.run_ctx, pid)):
                self.results[pid] = self.fn(*self.args, **self.kwargs)
        except _Aborted:
            return
        except BaseException as exc:  # noqa: BLE001 - handed to the launching thread, which re-raises it
            with self.cv:
                self.error = self.error or exc
                self.cv.notify_all()
            return
        with self.cv:
            self.finished[pid] = True
            self._pass_turn()

    def _wait_turn(self, pid: int) -> None:
        """Block (holding the condition) until it is `pid`'s turn and it is not waiting; raise _Aborted on failure."""
        while self.error is None and (self.turn != pid or self.waiting[pid] is not None):
            self.cv.wait()
        if self.error is not None:
            raise _Aborted()

    def _pass_turn(self) -> None:
        """Give the turn to the lowest-numbered runnable program; if none can run but some wait, deadlock."""
        runnable = [p for p in range(self.n) if not self.finished[p] and self.waiting[p] is None]
        if runnable:
            self.turn = runnable[0]
        elif not all(self.finished):
            self.error = self._deadlock()
        self.cv.notify_all()

    def _deadlock(self) -> NkiValidationError:
        where = []
        for p in range(self.n):
            if self.finished[p]:
                where.append(f"program {p} ended")
            else:
                op, channel, k = self.waiting[p]
                where.append(f"program {p} waits at {op} {list(channel[1:])} (its arrival #{k + 1} there)")
        op = next(w[0] for w in self.waiting if w is not None)
        return NkiValidationError(op, "cores", "every participating program instance reaches the matching "
                                  "synchronization point (deadlock)", "; ".join(where), self.run_ctx.target.name)

    def synchronize(self, ctx: ProgramContext, op: str, channel: tuple, participants: tuple[int, ...], payload,
                    complete: Callable[[dict], None]) -> None:
        """Block program `ctx` at synchronization point `op` on `channel` until every participant arrived; the last
        one to arrive calls `complete({program id: payload})` (the exchange) before any proceeds."""
        pid = ctx.program_id
        with self.cv:
            counts = self.arrivals.setdefault(channel, [0] * self.n)
            k = counts[pid]
            counts[pid] += 1
            point = self.points.setdefault((channel, k), _Point(participants, complete))
            if point.participants != participants:
                self.error = NkiValidationError(op, "participants", "the same participants in every program "
                                                f"instance at arrival #{k + 1}", f"{participants} vs "
                                                f"{point.participants}", self.run_ctx.target.name)
                self.cv.notify_all()
                raise _Aborted()
            point.arrived[pid] = payload
            if set(point.arrived) == set(participants):
                try:
                    point.complete(point.arrived)
                finally:
                    point.done = True
                    del self.points[(channel, k)]
                    for p in participants:
                        self.waiting[p] = None
            else:
                self.waiting[pid] = (op, channel, k)
            self._pass_turn()
            self._wait_turn(pid)


def run_programs(run_ctx: RunContext, fn, args, kwargs):
    """Run the kernel's program instances (see module docstring); returns program 0's result."""
    if run_ctx.lnc == 1:
        with context.activated(ProgramContext(run_ctx, 0)):
            return fn(*args, **kwargs)
    run_ctx.cores = CoreScheduler(run_ctx, fn, args, kwargs)
    return run_ctx.cores.run()


def synchronize(op: str, channel: tuple, participants, payload, complete: Callable[[dict], None]) -> None:
    """Synchronization point of the active program instance (see `CoreScheduler.synchronize`).

    Raises:
        NkiValidationError: the kernel was not launched with LNC 2, or `participants` are not its program ids.
    """
    ctx = context.current()
    participants = tuple(sorted(int(p) for p in participants))
    if len(set(participants)) != len(participants) or not set(participants) <= set(range(ctx.lnc)) or \
            ctx.program_id not in participants:
        raise NkiValidationError(op, "cores", f"distinct program instances of this launch including this one "
                                 f"(0..{ctx.lnc - 1}; launch with kernel[2] for LNC 2)", participants, ctx.target.name)
    if len(participants) == 1:
        complete({ctx.program_id: payload})
        return
    ctx.run.cores.synchronize(ctx, op, channel, participants, payload, complete)
