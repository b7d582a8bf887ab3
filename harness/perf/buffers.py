"""Which physical buffer each on-chip allocation of a trace occupies: the model's stand-in for the compiler's
allocator, so that reusing a buffer makes the next write wait for the last read of the previous contents.

The rules, from the NKI migration guide's "Removing block dimensions" (nki/migration/index.rst):
  - A tile allocated once and used in every iteration of a loop is one buffer: "the execution will be serialized
    because the loop carries a dependency". Nothing to do here: the trace already names one storage.
  - A tile allocated inside the loop body is a new allocation per iteration, and "the compiler could unroll the loop
    and materialize multiple copies of the tensor": a space-time trade-off within SBUF/PSUM capacity. Here the
    allocations of one kernel line (same call path, size and dtype) form a ring. Taken in program order (first
    use), an allocation gets a buffer of its own while the buffers in use (live tiles, and dead ones kept as
    copies) fit the memory; when they would not, it takes the buffer of its ring freed longest ago, and waits for
    that buffer's last reader. Dead buffers of other rings are given up (freed longest ago first) only when its
    ring has none; that memory is taken to be free in time (no dependency is drawn). So a loop-local tile is
    multi-buffered as far as the memory allows, and single-buffered when it fills it.
  - Tiles placed with `address=` are already mapped by the emulator onto their program's physical memory (same
    storage id, byte footprints), so overlapping placements conflict where they share bytes.

PSUM counts whole 2 KiB banks per tile. Partition ranges are not tracked (every tile is taken to span them all),
which can only lower `extra`. Traces without allocation records (hand-made ones) keep one buffer per storage.
"""

from __future__ import annotations

import heapq
import math
from collections import defaultdict, deque

from nkilab.harness.chips import NeuronTarget
from nkilab.harness.emulator.trace import Trace


def physical_buffers(trace: Trace, core: NeuronTarget) -> dict[int, int]:
    """{storage id: physical buffer id} for the on-chip allocations that reuse an earlier one's buffer; an id not in
    the map is its own buffer."""
    allocations = getattr(trace, "allocations", None) or {}
    if not allocations:
        return {}
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for inst in trace.instructions:
        for op in inst.operands:
            s = op.access.storage
            if s in allocations:
                if s not in first:
                    first[s] = inst.index
                last[s] = inst.index
    groups: dict[tuple[int, str], list[int]] = defaultdict(list)
    for s in sorted(first, key=first.get):
        a = allocations[s]
        groups[(a.program_id, a.buffer)].append(s)
    mapping: dict[int, int] = {}
    for (_, buffer), storages in groups.items():
        capacity = core.sbuf_bytes if buffer == "sbuf" else core.psum_bytes
        _assign(storages, allocations, first, last, capacity, lambda a: _cost(a, buffer, core), mapping)
    return mapping


def _cost(allocation, buffer: str, core: NeuronTarget) -> int:
    """Bytes per partition a tile takes (PSUM: whole banks)."""
    if buffer == "psum":
        return math.ceil(allocation.nbytes / core.psum_bank_bytes) * core.psum_bank_bytes
    return allocation.nbytes


def _ring_key(allocation) -> tuple:
    return (allocation.site, allocation.buffer, allocation.partitions, allocation.nbytes, allocation.dtype)


def _assign(storages, allocations, first, last, capacity: int, cost, mapping: dict[int, int]) -> None:
    """The allocation policy of the module docstring, over one program's storages of one memory in first-use
    order."""
    holders: list = []  # heap of (last use, buffer id, ring) of live tiles
    ring_free: dict[tuple, deque] = defaultdict(deque)  # ring -> dead buffers kept as copies, freed longest ago first
    all_free: deque = deque()  # (buffer id, ring) of every dead buffer kept, freed longest ago first
    size: dict[int, int] = {}  # buffer id -> bytes per partition, for buffers still held (live or kept)
    used = 0
    for s in storages:
        a = allocations[s]
        ring, need = _ring_key(a), cost(a)
        while holders and holders[0][0] < first[s]:
            _, buffer, r = heapq.heappop(holders)
            ring_free[r].append(buffer)
            all_free.append((buffer, r))
        if used + need > capacity and ring_free[ring]:
            buffer = ring_free[ring].popleft()
            mapping[s] = buffer
        else:
            while used + need > capacity and all_free:
                old, r = all_free.popleft()
                if old in size and old in ring_free[r]:
                    ring_free[r].remove(old)
                    used -= size.pop(old)
            buffer = s
            size[buffer] = need
            used += need
        heapq.heappush(holders, (last[s], buffer, ring))
