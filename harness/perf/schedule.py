"""Place a trace's instructions in time: engines run in parallel, each in program order, along data dependencies.

Model:
  - Every (program id, engine) is an in-order queue, as each NeuronCore engine executes its instruction stream
    in order; different engines (and the two physical cores of an LNC=2 kernel) run concurrently.
  - DMA: each program id owns `core.dma_queues` DMA engines, each processing its descriptors in order. A
    transfer split over q of them takes the q that free up first, in program order, and each piece starts when
    its engine is free and the transfer's inputs are ready — so a store waiting for its data holds back the
    transfers issued after it on the engines it took (the calibration kernels' prefetch depth comes from this).
  - An instruction starts when its engine is free and every earlier instruction it conflicts with is done:
    read-after-write, write-after-read and write-after-write on overlapping footprints (`Access.overlaps`).
    "Done" is the end of its engine time plus its completion latency (DMA semaphore latency).

Bookkeeping per allocation keeps the earlier accesses still able to conflict; an access wholly covered by a
later write is dropped, since anything that conflicts with it also conflicts with (and waits for) that write.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from nkilab.harness.emulator.trace import ENGINES, Trace
from nkilab.harness.chips import NeuronTarget
from nkilab.harness.perf.cost import InstructionCost, instruction_cost


@dataclass
class Schedule:
    """The timed trace.

    Attributes:
        makespan_s: time from the first instruction's start to the last result being usable, s.
        engine_busy_s: per engine, the time it was occupied, averaged over the physical cores in use; for DMA
            the occupancy summed over DMA engines divided by their number (so 1.0 x makespan = all busy).
        start_s, done_s: per instruction (trace order), when it started and when its result was usable, s.
        costs: per instruction, its `InstructionCost`.
        cores: physical cores the trace ran on (distinct program ids).
        dma_pieces: per instruction, (DMA engine 0 .. dma_queues - 1 of its core, start_s, end_s) of each piece of
            a transfer, when that engine held it; () for compute instructions (`nkilab.harness.timeline`'s tracks).
    """

    makespan_s: float
    engine_busy_s: dict[str, float]
    start_s: list[float] = field(repr=False)
    done_s: list[float] = field(repr=False)
    costs: list[InstructionCost] = field(repr=False)
    cores: int = 1
    dma_pieces: list[tuple[tuple[int, float, float], ...]] = field(default_factory=list, repr=False)


class _AccessLog:
    """Earlier reads and writes of one allocation: (p_start, p_stop, start, stop, done_s) tuples."""

    __slots__ = ("reads", "writes")

    def __init__(self) -> None:
        self.reads: list[tuple[int, int, int, int, float]] = []
        self.writes: list[tuple[int, int, int, int, float]] = []

    @staticmethod
    def _latest(entries, p0: int, p1: int, s0: int, s1: int) -> float:
        latest = 0.0
        for q0, q1, t0, t1, done in entries:
            if q0 < p1 and p0 < q1 and t0 < s1 and s0 < t1 and done > latest:
                latest = done
        return latest

    def ready_for_read(self, p0: int, p1: int, s0: int, s1: int) -> float:
        return self._latest(self.writes, p0, p1, s0, s1)

    def ready_for_write(self, p0: int, p1: int, s0: int, s1: int) -> float:
        return max(self._latest(self.writes, p0, p1, s0, s1), self._latest(self.reads, p0, p1, s0, s1))

    def add_write(self, p0: int, p1: int, s0: int, s1: int, done: float) -> None:
        def covered(e):
            return e[0] >= p0 and e[1] <= p1 and e[2] >= s0 and e[3] <= s1

        self.writes = [e for e in self.writes if not covered(e)]
        self.reads = [e for e in self.reads if not covered(e)]
        self.writes.append((p0, p1, s0, s1, done))

    def add_read(self, p0: int, p1: int, s0: int, s1: int, done: float) -> None:
        self.reads.append((p0, p1, s0, s1, done))


def schedule(trace: Trace, core: NeuronTarget) -> Schedule:
    """Time `trace` on NeuronCores of target `core` (one per program id); see the module docstring."""
    n = len(trace.instructions)
    start = [0.0] * n
    done = [0.0] * n
    costs: list[InstructionCost] = []
    engine_free: dict[tuple[int, str], float] = {}
    dma_free: dict[int, list[tuple[float, int]]] = {}  # per program id: a heap of (free at, DMA engine)
    pieces: list[tuple[tuple[int, float, float], ...]] = []
    busy = {e: 0.0 for e in ENGINES}
    logs: dict[int, _AccessLog] = {}

    for i, inst in enumerate(trace.instructions):
        cost = instruction_cost(inst, core)
        costs.append(cost)
        ready = 0.0
        for op in inst.operands:
            a = op.access
            log = logs.get(a.storage)
            if log is None:
                continue
            if op.is_write:
                ready = max(ready, log.ready_for_write(a.p_start, a.p_stop, a.start, a.stop))
            else:
                ready = max(ready, log.ready_for_read(a.p_start, a.p_stop, a.start, a.stop))

        if cost.engine == "dma":
            heap = dma_free.setdefault(inst.program_id, [(0.0, q) for q in range(core.dma_queues)])
            free_at = [heapq.heappop(heap) for _ in range(cost.queues)]
            begin = max(ready, free_at[0][0])
            end = max(ready, free_at[-1][0]) + cost.busy_s
            for t, q in free_at:
                heapq.heappush(heap, (max(ready, t) + cost.busy_s, q))
            busy["dma"] += cost.busy_s * cost.queues / core.dma_queues
            pieces.append(tuple((q, max(ready, t), max(ready, t) + cost.busy_s) for t, q in free_at))
        else:
            pieces.append(())
            key = (inst.program_id, cost.engine)
            begin = max(ready, engine_free.get(key, 0.0))
            end = begin + cost.busy_s
            engine_free[key] = end
            busy[cost.engine] += cost.busy_s
        start[i] = begin
        done[i] = end + cost.latency_s

        for op in inst.operands:
            a = op.access
            log = logs.get(a.storage)
            if log is None:
                log = logs[a.storage] = _AccessLog()
            if op.is_write:
                log.add_write(a.p_start, a.p_stop, a.start, a.stop, done[i])
            else:
                log.add_read(a.p_start, a.p_stop, a.start, a.stop, done[i])

    cores = len({inst.program_id for inst in trace.instructions}) or 1
    makespan = (max(done) - min(start)) if n else 0.0
    return Schedule(makespan, {e: b / cores for e, b in busy.items()}, start, done, costs, cores, pieces)
