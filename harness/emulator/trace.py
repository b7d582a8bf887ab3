"""The emulator's instruction trace: what a kernel asked each engine to do.

This module is the contract between the emulator (which records one `Instruction` per `nisa` op, in
program order) and the performance model (`nkilab.harness.perf`), which costs each instruction per
engine and schedules them along the read/write dependencies recorded here.

Engines: "tensor" (TensorE: matmul, transpose), "vector" (VectorE), "scalar" (ScalarE/ACT),
"gpsimd" (GpSimdE), "dma" (DMA queues; also software-DGE descriptor generation).

Addresses: every access names the allocation it touches (`storage`, unique per run) and a
conservative footprint inside it. On-chip (SBUF/PSUM) storages are `[partitions, free elements]`;
an access covers partitions `[p_start, p_stop)` and, on each of them, free elements
`[start, stop)`. HBM storages are flat: `p_start = 0, p_stop = 1` and `[start, stop)` bound the
flat element offsets touched. Two accesses conflict when they share a storage and both intervals
overlap; a footprint may over-approximate (a strided view covers its bounding box), which can only
add dependencies, never drop one.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Iterable, Iterator, Mapping, NamedTuple

ENGINES = ("tensor", "vector", "scalar", "gpsimd", "dma")
HBM_BUFFERS = ("hbm", "shared_hbm", "private_hbm")
ON_CHIP_BUFFERS = ("sbuf", "psum")


class Access(NamedTuple):
    """One operand's footprint in one allocation (an immutable record; a NamedTuple, cheap to make per operand).

    Attributes:
        storage: id of the allocation, unique within a run.
        buffer: "hbm" | "shared_hbm" | "private_hbm" | "sbuf" | "psum".
        p_start, p_stop: partition range (on-chip) or 0, 1 (HBM).
        start, stop: free-element range per partition (on-chip) or flat element range (HBM).
        nbytes: bytes the operand actually moves (elements × itemsize), not the footprint size.
    """

    storage: int
    buffer: str
    p_start: int
    p_stop: int
    start: int
    stop: int
    nbytes: int

    def overlaps(self, other: "Access") -> bool:
        return (
            self.storage == other.storage
            and self.p_start < other.p_stop
            and other.p_start < self.p_stop
            and self.start < other.stop
            and other.start < self.stop
        )

    @property
    def is_hbm(self) -> bool:
        return self.buffer in HBM_BUFFERS


class Operand(NamedTuple):
    """One named operand of an instruction (`dst`, `src`, `stationary`, `moving`, `data1`, …)."""

    name: str
    shape: tuple[int, ...]
    dtype: str  # NKI dtype name: "bfloat16", "float32", "float8_e4m3", "int8", …
    buffer: str
    access: Access
    is_write: bool


class Instruction(NamedTuple):
    """One `nisa` instruction as issued by the kernel (an immutable record; a NamedTuple, cheap to make).

    Attributes:
        index: position in program order (0-based, per trace).
        engine: one of ENGINES.
        opcode: the nisa op name, e.g. "nc_matmul", "dma_copy", "activation".
        operands: every tensor operand, destinations first.
        flops: floating-point operations counted the roofline way (matmul: 2·K·M·N; elementwise:
            one per output element per ALU op); 0 for data movement.
        attrs: op-specific facts the cost model needs, e.g.
            nc_matmul: {"k", "m", "n", "in_dtype", "transpose"};
            vector/scalar/gpsimd ops: {"partitions", "free_elems"} (free elements per partition, of the
            largest operand);
            dma_copy / dma_compute: {"bytes", "chunks", "chunk_bytes", "indirect", "dge", "queue"},
            where `chunks` is the number of contiguous runs the transfer is made of and
            `chunk_bytes` their mean size in bytes;
            cross-core sync (core_barrier, sendrecv, nki.collectives): "sync" numbers the synchronization
            point of its channel, so the instructions of its partners share it.
        program_id: LNC program instance (0 or 1) that issued it.
    """

    index: int
    engine: str
    opcode: str
    operands: tuple
    flops: int = 0
    attrs: Mapping = MappingProxyType({})  # read-only when defaulted; `Trace.append` gives each its own dict
    program_id: int = 0

    @property
    def reads(self) -> tuple[Access, ...]:
        return tuple(o.access for o in self.operands if not o.is_write)

    @property
    def writes(self) -> tuple[Access, ...]:
        return tuple(o.access for o in self.operands if o.is_write)

    @property
    def hbm_bytes(self) -> int:
        """Bytes this instruction reads from or writes to HBM."""
        return sum(o.access.nbytes for o in self.operands if o.access.is_hbm)

    def __repr__(self) -> str:
        ops = ", ".join(f"{o.name}={list(o.shape)}:{o.dtype}@{o.buffer}" for o in self.operands)
        return f"#{self.index} {self.engine}.{self.opcode}({ops})"


class Allocation(NamedTuple):
    """One on-chip allocation, as the performance model sees it (which loop-local tiles may share a buffer).

    Attributes:
        site: the kernel's call path to the allocating line, ((file, line), ...) innermost first.
        buffer: "sbuf" | "psum".
        partitions: partition dim of the tile.
        nbytes: bytes per partition.
        dtype: NKI dtype name.
        program_id: LNC program instance that allocated it.
    """

    site: tuple
    buffer: str
    partitions: int
    nbytes: int
    dtype: str
    program_id: int = 0


@dataclass
class Trace:
    """Instructions of one kernel run, in program order.

    Attributes:
        kernel: the kernel's name.
        target: "inf2" | "trn1" | "trn2" | "trn3".
        lnc: logical NeuronCore degree the kernel was launched with (1 or 2).
        instructions: in issue order (interleaved across program ids for LNC 2).
        allocations: {storage id: Allocation} of the SBUF/PSUM tiles the kernel allocated (not placed ones).
    """

    kernel: str
    target: str
    lnc: int = 1
    instructions: list[Instruction] = field(default_factory=list)
    allocations: dict[int, Allocation] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Instruction]:
        return iter(self.instructions)

    def __len__(self) -> int:
        return len(self.instructions)

    def append(self, engine: str, opcode: str, operands: Iterable[Operand], *, flops: int = 0,
               attrs: dict | None = None, program_id: int = 0) -> Instruction:
        """Record one instruction; returns it."""
        if engine not in ENGINES:
            raise ValueError(f"engine: {engine!r} is not one of {ENGINES}")
        inst = Instruction(len(self.instructions), engine, opcode, tuple(operands), flops,
                           {} if attrs is None else attrs, program_id)
        self.instructions.append(inst)
        return inst

    @property
    def flops(self) -> int:
        return sum(i.flops for i in self.instructions)

    @property
    def hbm_bytes(self) -> int:
        return sum(i.hbm_bytes for i in self.instructions)

    def instruction_mix(self) -> dict[str, Counter]:
        """Instruction counts per engine and opcode: {"tensor": Counter({"nc_matmul": 512}), …}."""
        mix: dict[str, Counter] = {e: Counter() for e in ENGINES}
        for inst in self.instructions:
            mix[inst.engine][inst.opcode] += 1
        return mix
