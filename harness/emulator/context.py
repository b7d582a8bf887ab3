"""The state of one emulated kernel run, and of each of its LNC program instances.

Everything a `nisa`/`nl` call needs beyond its arguments lives in the active `ProgramContext` (set by
`jit.run`); calls outside a run raise, because NKI tensors only exist inside a kernel. The active
program is a `contextvars.ContextVar`, so every thread (and every LNC program thread) sees its own
run: concurrent `run`s in threads are independent.

`RunContext` holds what the program instances of one launch share: target, mode, the one trace
(instructions in issue order), allocation ids, the DMA queue counter, `shared_hbm` tensors and the
lifetimes of on-chip allocations (checked against capacity when the run ends, `liveness.py`).
`ProgramContext` holds what each program instance has alone: its id, its engine registers and its
physical SBUF/PSUM (for `address=`-placed tensors); each LNC program instance has its own SBUF and PSUM.
"""

from __future__ import annotations

import contextlib
import itertools
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from nkilab.harness.chips import NeuronTarget

from .trace import Trace


@dataclass
class RunContext:
    """State shared by all LNC program instances of one kernel run."""

    target: NeuronTarget
    mode: str  # "full" computes values; "trace" records instructions, computing only integer (index) values
    trace: Trace
    lnc: int = 1
    storage_ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))  # allocation ids, unique per run
    shared_hbm: list = field(default_factory=list)  # shared_hbm storages made by program 0, reused by the others
    dma_issued: Iterator[int] = field(default_factory=itertools.count)  # DMAs issued: round-robin queue assignment
    lifetimes: list = field(default_factory=list)  # liveness.Lifetime of every on-chip allocation, in order
    cores: object = None  # cores.CoreScheduler of an LNC 2 run (synchronization between program instances)

    @property
    def full(self) -> bool:
        return self.mode == "full"

    def next_dma_queue(self) -> int:
        return next(self.dma_issued) % self.target.dma_queues


class ProgramContext:
    """One LNC program instance of a run: the run's shared state (`run`, and its target/mode/trace/lnc as
    attributes) plus this instance's id, engine registers (undefined, NaN, until set) and physical memories."""

    __slots__ = ("run", "target", "mode", "full", "trace", "lnc", "program_id", "shared_seen", "act_regs",
                 "vec_acc", "rng", "physical", "sync_counts", "storage_id", "next_dma_queue")

    def __init__(self, run: RunContext, program_id: int):
        self.run, self.target, self.mode, self.full = run, run.target, run.mode, run.full
        self.trace, self.lnc, self.program_id = run.trace, run.lnc, program_id
        self.storage_id = run.storage_ids.__next__  # the run's counters (shared by its programs)
        self.next_dma_queue = run.next_dma_queue
        self.shared_seen = 0  # shared_hbm allocations made so far by this program
        self.act_regs = np.full(128, np.nan, np.float32)  # ScalarE reduce registers, one per lane
        self.vec_acc = np.full(128, np.nan, np.float32)  # VectorE accumulators, one per lane
        self.rng: dict = {}  # (program id, engine name) -> PRNG lane states, see isa/rng.py
        self.physical: dict[str, tuple] = {}  # buffer -> (trace id, [partitions, bytes] uint8), made on first use
        self.sync_counts: dict[tuple, int] = {}  # synchronization points reached per channel (isa/sync.py)

    @property
    def shared_hbm(self) -> list:
        return self.run.shared_hbm

    def memory(self, buffer: str) -> tuple[int, np.ndarray]:
        """This program's physical `buffer` ("sbuf" | "psum"): its id in the trace (placed tiles' footprints are
        recorded against it) and its bytes as [pmax, bytes per partition] uint8 (zeros at first use), which
        `address=`-placed tensors view."""
        mem = self.physical.get(buffer)
        if mem is None:
            t = self.target
            size = t.sbuf_bytes if buffer == "sbuf" else t.psum_bytes
            mem = self.physical[buffer] = (self.storage_id(), np.zeros((t.pmax, size), np.uint8))
        return mem


_ACTIVE: ContextVar[ProgramContext | None] = ContextVar("nkilab_emulator_program", default=None)


def current() -> ProgramContext:
    """The active program instance. Raises RuntimeError outside a kernel run."""
    ctx = _ACTIVE.get()
    if ctx is None:
        raise RuntimeError("NKI tensors and instructions exist only inside a running kernel: call it through "
                           "nki.simulate(kernel)(*arrays) or nkilab.harness.emulator.run(kernel, *arrays)")
    return ctx


# active() -> ProgramContext | None: the active program instance of this thread/task, or None outside a run
# (the context variable's own getter: called for every allocation)
active = _ACTIVE.get


@contextlib.contextmanager
def activated(ctx: ProgramContext):
    """Make `ctx` the active program instance of this thread/task inside the block."""
    token = _ACTIVE.set(ctx)
    try:
        yield ctx
    finally:
        _ACTIVE.reset(token)
