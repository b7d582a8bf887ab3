"""Place a trace's instructions in time: engines run in parallel, each in program order, along data dependencies.

Model (constants from `nkilab.harness.chips`, mechanisms in harness/perf/README.md):
  - Every (program id, compute engine) executes one instruction at a time; the engines (and the two physical
    cores of an LNC=2 kernel) run concurrently. The order within an engine's stream is the compiler's: NKI
    compilation "performs instruction scheduling" (nki/get-started/nki-language-guide.rst) and reorders
    instructions unless told not to (`no_reorder`, nki/guides/how-to-scheduling-apis.rst). The model schedules
    greedily in program order: each instruction takes the earliest gap on its engine at or after its inputs are
    ready, so an independent instruction is not held behind one that waits.
  - Dependencies are read-after-write, write-after-read and write-after-write on overlapping footprints of the same
    physical buffer (`buffers.py` maps loop-local allocations onto the buffers they reuse). A dependent
    instruction waits for the producer's output to be committed (`commit_s` after its engine time; none between
    matmuls accumulating in the TensorE pipeline) and, on another engine, for the semaphore: `semaphore_cycles`
    of the waiting engine after a compute producer, `dma_completion_s` after a DMA. A compute instruction that
    starts on a dependency pays its static overhead (`InstructionCost.stall_s`).
  - DMA: a transfer is ready when its inputs are; its descriptors are written (hardware DGE: the DGE instance
    free first, `hwdge_s`; software DGE: GpSimd, in order with GpSimd's other work; static: nothing); its first
    byte moves `dma_start_latency_s` later; each packet takes the earliest gap on its own DMA engine at or after
    that (the engines serve the 16 queues round robin, so a transfer waiting for its data holds back no other),
    and the HBM time it needs takes the earliest gap of the core's HBM. The transfer is done when its last
    packet and its HBM time are.
  - Cross-core synchronization (`sync.py`): the participants of a core_barrier, sendrecv or collective join the two
    cores' schedules. Each arrives when its inputs and its engine allow; the point releases `cross_core_sync_s` after
    the last arrival. A compute-engine participant (a barrier, a GpSimd-DMA sendrecv) holds its engine from its
    arrival to the release and then runs; a DMA participant's transfer is triggered at the release. A barrier's
    `data` counts as written at the release, so the accesses after it on either core wait for it.

Bookkeeping per buffer (`access_log.py`) keeps the earlier accesses still able to conflict, merged where that
cannot change a result.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from nkilab.harness.chips import NeuronTarget
from nkilab.harness.emulator.trace import ENGINES, Trace
from nkilab.harness.perf.access_log import AccessLog
from nkilab.harness.perf.buffers import physical_buffers
from nkilab.harness.perf.cost import InstructionCost, instruction_cost
from nkilab.harness.perf.sync import sync_groups


@dataclass
class Schedule:
    """The timed trace.

    Attributes:
        makespan_s: time from the first instruction's start to the last result being usable, s.
        engine_busy_s: per engine, the time it was occupied, averaged over the physical cores in use; for DMA
            the packet time summed over DMA engines divided by their number (so 1.0 x makespan = all busy).
        start_s, done_s: per instruction (trace order), when it started (DMA: its descriptors) and when its
            result was complete (compute: engine time end; DMA: last byte landed), s.
        costs: per instruction, its `InstructionCost`.
        cores: physical cores the trace ran on (distinct program ids).
        dma_pieces: per instruction, (where, start_s, end_s) of each piece of a transfer: `where` a DMA engine
            0 .. dma_queues - 1 of its core for each packet it carried, or "gpsimd" for the descriptors software DGE
            wrote there; () for compute instructions (`nkilab.harness.timeline`'s tracks).
    """

    makespan_s: float
    engine_busy_s: dict[str, float]
    start_s: list[float] = field(repr=False)
    done_s: list[float] = field(repr=False)
    costs: list[InstructionCost] = field(repr=False)
    cores: int = 1
    dma_pieces: list[tuple[tuple[int | str, float, float], ...]] = field(default_factory=list, repr=False)


_SCAN = 32  # intervals `_Timeline._gap` compares per slice


class _Timeline:
    """Busy intervals of one resource (a DMA engine, a core's HBM), kept sorted and merged, with earliest-gap
    placement."""

    __slots__ = ("starts", "ends")

    def __init__(self) -> None:
        self.starts: list[float] = []
        self.ends: list[float] = []

    def place(self, t: float, duration: float, after_idle: float | None = None) -> tuple[float, float]:
        """Reserve the earliest gap at or after `t`: `duration` long when the gap begins right at the end of a busy
        interval (the instruction issues behind another), else `after_idle` (default `duration`). Returns
        (start, end)."""
        i, t, need = self._gap(t, duration, duration if after_idle is None else after_idle)
        self._insert(i, t, t + need)
        return t, t + need

    def earliest(self, t: float, duration: float, after_idle: float | None = None) -> float:
        """Where `place` would start the same request, reserving nothing."""
        return self._gap(t, duration, duration if after_idle is None else after_idle)[1]

    def _gap(self, t: float, duration: float, after_idle: float) -> tuple[int, float, float]:
        """(insertion index, start, length) of the earliest fitting gap at or after `t`.

        The intervals are disjoint and sorted, so past the first candidate gap (the one `t` falls in or before)
        every gap begins at the end of a busy interval and needs `duration`: those are scanned in slices of
        `_SCAN` intervals (a fragmented timeline, e.g. GpSimd under software DGE, has long runs of short gaps)."""
        starts, ends = self.starts, self.ends
        i = bisect.bisect_right(ends, t)  # first interval that ends after t
        n = len(starts)
        need = duration if (i > 0 and ends[i - 1] == t) else after_idle
        if i >= n or starts[i] >= t + need:
            return i, t, need
        j = i + 1  # gap j lies between interval j - 1 and interval j
        while j < n:
            fits = [s >= e + duration for s, e in zip(starts[j:j + _SCAN], ends[j - 1:j - 1 + _SCAN])]
            if True in fits:
                j += fits.index(True)
                return j, ends[j - 1], duration
            j += _SCAN
        return n, ends[n - 1], duration

    def _insert(self, i: int, s: float, e: float) -> None:
        starts, ends = self.starts, self.ends
        if i > 0 and ends[i - 1] >= s:  # touches the previous interval: extend it
            i -= 1
            ends[i] = max(ends[i], e)
        else:
            starts.insert(i, s)
            ends.insert(i, e)
        if i + 1 < len(starts) and starts[i + 1] <= ends[i]:  # now touches the next one: merge
            ends[i] = max(ends[i], ends[i + 1])
            del starts[i + 1], ends[i + 1]


class _Core:
    """The resources of one physical core: compute engines, DGE instances, DMA engines, HBM."""

    def __init__(self, core: NeuronTarget) -> None:
        self.engines = {e: _Timeline() for e in ENGINES if e != "dma"}
        self.dge_free = [0.0] * core.hwdge_instances
        self.dma = [_Timeline() for _ in range(core.dma_queues)]
        self.hbm = _Timeline()


def schedule(trace: Trace, core: NeuronTarget) -> Schedule:
    """Time `trace` on NeuronCores of target `core` (one per program id); see the module docstring."""
    n = len(trace.instructions)
    start = [0.0] * n
    done = [0.0] * n
    costs: list[InstructionCost] = []
    cores: dict[int, _Core] = {}
    busy = {e: 0.0 for e in ENGINES}
    logs: dict[int, AccessLog] = {}
    pieces: list[tuple[tuple[int | str, float, float], ...]] = []
    phys = physical_buffers(trace, core)
    hz = {"tensor": core.tensor_hz, "vector": core.vector_hz, "scalar": core.scalar_hz, "gpsimd": core.gpsimd_hz}
    # a compute engine waiting on another engine's semaphore; a DMA trigger's wait is in dma_start_latency_s
    semaphore = {e: core.semaphore_cycles / f for e, f in hz.items()}
    semaphore["dma"] = 0.0

    groups = sync_groups(trace)
    releases: dict[int, float] = {}  # first participant's index -> when its synchronization point releases
    sync_ready: dict[int, float] = {}  # participant's index -> when its inputs are ready
    for i, inst in enumerate(trace.instructions):
        cost = instruction_cost(inst, core)
        costs.append(cost)
        engine = cost.engine
        res = _core_of(cores, inst.program_id, core)
        group = groups.get(i) if groups else None
        if group is None:
            ready, release = _ready(inst, engine, semaphore[engine], logs, phys), 0.0
        else:  # every participant's inputs are taken before any of them is placed
            if group[0] not in releases:
                releases[group[0]] = _release(group, trace, core, cores, logs, phys, semaphore, sync_ready)
            ready, release = sync_ready.pop(i), releases[group[0]]
        if engine == "dma":
            begin, end, placed = _place_dma(cost, max(ready, release), res, core, busy)
            pieces.append(placed)
            ready_same = ready_other = released = end + core.dma_completion_s
        else:
            pieces.append(())
            timeline = res.engines[engine]
            if group is None:
                begin, end = timeline.place(ready, cost.busy_s, cost.stall_s)
                busy[engine] += end - begin
            else:  # blocked from its arrival to the release, then its own work (the only part counted busy)
                hold = max(0.0, release - timeline.earliest(ready, cost.stall_s)) + cost.stall_s
                begin, end = timeline.place(ready, hold)
                busy[engine] += cost.stall_s
            committed = end + cost.commit_s
            ready_same = end if engine == "tensor" else committed
            ready_other = committed
            released = end
        start[i], done[i] = begin, end
        fence = group is not None and inst.opcode == "core_barrier"  # its data is ordered after it, on both cores
        for op in inst.operands:
            a = op.access
            key = phys.get(a.storage, a.storage)
            log = logs.get(key)
            if log is None:
                log = logs[key] = AccessLog()
            # a writer's output is readable at ready_*; a reader frees its operand when it is done with it
            is_write = op.is_write or fence
            same, other = (ready_same, ready_other) if is_write else (released, released)
            log.add(a.p_start, a.p_stop, a.start, a.stop, engine, is_write, same, other)

    ncores = len(cores) or 1
    makespan = (max(done) - min(start)) if n else 0.0
    return Schedule(makespan, {e: b / ncores for e, b in busy.items()}, start, done, costs, ncores, pieces)


def _ready(inst, engine: str, wait: float, logs: dict, phys: dict) -> float:
    """When `inst` may start on `engine` after the accesses it conflicts with (`wait`: its semaphore wait)."""
    ready = 0.0
    for op in inst.operands:
        a = op.access
        log = logs.get(phys.get(a.storage, a.storage))
        if log is not None:
            ready = max(ready, log.ready(a.p_start, a.p_stop, a.start, a.stop, engine, op.is_write, wait))
    return ready


def _core_of(cores: dict, program_id: int, core: NeuronTarget) -> _Core:
    res = cores.get(program_id)
    if res is None:
        res = cores[program_id] = _Core(core)
    return res


def _release(group: tuple, trace: Trace, core: NeuronTarget, cores: dict, logs: dict, phys: dict,
             semaphore: dict, sync_ready: dict) -> float:
    """When the synchronization point of participants `group` releases: `cross_core_sync_s` after the last one
    arrives (a DMA participant when its inputs are ready, a compute one when its engine can also take it). Each
    participant's input readiness goes into `sync_ready`."""
    arrivals = []
    for j in group:
        inst = trace.instructions[j]
        cost = instruction_cost(inst, core)
        ready = sync_ready[j] = _ready(inst, cost.engine, semaphore[cost.engine], logs, phys)
        if cost.engine != "dma":
            ready = _core_of(cores, inst.program_id, core).engines[cost.engine].earliest(ready, cost.stall_s)
        arrivals.append(ready)
    return max(arrivals) + core.cross_core_sync_s


def _place_dma(cost: InstructionCost, ready: float, res: _Core, core: NeuronTarget, busy: dict) -> tuple:
    """Descriptors, then packets and HBM time; returns (descriptor start, last byte landed, the pieces as
    (DMA engine or "gpsimd", start, end))."""
    dma = cost.dma
    begin = ready
    placed = []
    if dma.descriptors == "hwdge":
        k = min(range(len(res.dge_free)), key=res.dge_free.__getitem__)
        begin = max(ready, res.dge_free[k])
        res.dge_free[k] = issued = begin + dma.issue_s
    elif dma.descriptors == "swdge":
        begin, issued = res.engines["gpsimd"].place(ready, dma.issue_s)
        busy["gpsimd"] += dma.issue_s
        placed.append(("gpsimd", begin, issued))
    else:
        issued = ready
    first_byte = issued + core.dma_start_latency_s
    end = first_byte
    for engine, seconds in dma.packets:
        t0, stop = res.dma[engine].place(first_byte, seconds)
        placed.append((engine, t0, stop))
        if stop > end:
            end = stop
    busy["dma"] += dma.engine_s / core.dma_queues
    if dma.hbm_s > 0:
        end = max(end, res.hbm.place(first_byte, dma.hbm_s)[1])
    return begin, end, tuple(placed)
