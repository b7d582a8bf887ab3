"""The state of one emulated kernel run: target, mode, trace, program id, on-chip capacity, engine registers.

Everything a `nisa`/`nl` call needs beyond its arguments lives in the active `RunContext` (set by
`jit.run`). Calls outside a run raise, because NKI tensors only exist inside a kernel.

Capacity model (stricter than the official simulator, which checks none): each SBUF allocation
takes `prod(shape[1:]) * itemsize` bytes on every partition, each PSUM allocation whole 2 KiB banks
(PSUM tiles start on a bank boundary, S-MIG §0.1→0.2). An allocation is freed when its storage
— the `NkiTensor` and every view of it — is garbage-collected (`Storage.__del__`), so a tile
re-allocated in every loop iteration counts at most twice (the new one is made before the old name
is rebound), like the compiler's rotating buffers; capacity errors flag only tensors alive together.
Each LNC program instance has its own SBUF and PSUM.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nkilab.harness.chips import NeuronTarget

from .errors import NkiValidationError
from .trace import Trace


@dataclass
class RunContext:
    """State of one kernel run (all LNC program instances)."""

    target: NeuronTarget
    mode: str  # "full" computes values; "trace" records instructions, computing only integer (index) values
    trace: Trace
    lnc: int = 1
    program_id: int = 0
    next_storage_id: int = 0
    sbuf_live: dict = field(default_factory=dict)  # program id -> live SBUF bytes per partition
    psum_live: dict = field(default_factory=dict)  # program id -> live PSUM banks
    shared_hbm: list = field(default_factory=list)  # shared_hbm storages made by program 0, reused by the others
    shared_seen: int = 0  # shared_hbm allocations made so far by the current program
    dma_issued: int = 0  # DMA instructions issued, for round-robin queue assignment
    act_regs: np.ndarray = field(default_factory=lambda: np.full(128, np.nan, np.float32))  # ScalarE reduce_regs
    vec_acc: np.ndarray = field(default_factory=lambda: np.full(128, np.nan, np.float32))  # VectorE accumulators
    rng: dict = field(default_factory=dict)  # (program id, engine name) -> PRNG lane states, see isa/rng.py

    @property
    def full(self) -> bool:
        return self.mode == "full"

    def storage_id(self) -> int:
        self.next_storage_id += 1
        return self.next_storage_id

    def reserve(self, buffer: str, per_partition_bytes: int, op: str) -> int:
        """Account a new on-chip allocation; returns the amount to release later (bytes or banks).

        Raises:
            NkiValidationError: the allocation does not fit next to the live ones.
        """
        pid, t = self.program_id, self.target
        if buffer == "sbuf":
            live = self.sbuf_live.get(pid, 0) + per_partition_bytes
            if live > t.sbuf_bytes:
                raise NkiValidationError(op, "sbuf allocation", f"live SBUF bytes per partition <= {t.sbuf_bytes}",
                                         f"{live} ({per_partition_bytes} new)", t.name)
            self.sbuf_live[pid] = live
            return per_partition_bytes
        if per_partition_bytes > t.psum_bytes:
            raise NkiValidationError(op, "psum allocation", f"PSUM bytes per partition <= {t.psum_bytes}",
                                     per_partition_bytes, t.name)
        banks = -(-per_partition_bytes // t.psum_bank_bytes)
        live = self.psum_live.get(pid, 0) + banks
        if live > t.psum_banks:
            raise NkiValidationError(op, "psum allocation",
                                     f"live PSUM banks <= {t.psum_banks} x {t.psum_bank_bytes} B",
                                     f"{live} banks ({banks} new)", t.name)
        self.psum_live[pid] = live
        return banks

    def release(self, program_id: int, buffer: str, amount: int) -> None:
        live = self.sbuf_live if buffer == "sbuf" else self.psum_live
        live[program_id] = live.get(program_id, 0) - amount

    def start_program(self, program_id: int) -> None:
        """Enter LNC program instance `program_id`: its own engine registers, which start undefined (NaN) so
        reading them before a reset shows up."""
        self.program_id, self.shared_seen = program_id, 0
        self.act_regs[...] = np.nan
        self.vec_acc[...] = np.nan

    def next_dma_queue(self) -> int:
        queue = self.dma_issued % self.target.dma_queues
        self.dma_issued += 1
        return queue


_ACTIVE: list[RunContext] = []


def current() -> RunContext:
    """The active run. Raises RuntimeError outside a kernel run."""
    if not _ACTIVE:
        raise RuntimeError("NKI tensors and instructions exist only inside a running kernel: call it through "
                           "nki.simulate(kernel)(*arrays) or nkilab.harness.emulator.run(kernel, *arrays)")
    return _ACTIVE[-1]


def active() -> RunContext | None:
    return _ACTIVE[-1] if _ACTIVE else None


def push(ctx: RunContext) -> None:
    _ACTIVE.append(ctx)


def pop() -> None:
    _ACTIVE.pop()
