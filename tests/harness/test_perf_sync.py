"""Cross-core synchronization in the performance model: core_barrier, sendrecv and collectives join the two cores'
schedules at the last arrival plus `cross_core_sync_s` (hand-made traces, and one traced LNC=2 kernel)."""

import numpy as np
import pytest
from perf_traces import dma, elementwise, hbm, new_storage, tile

from nkilab.harness.chips import get_target
from nkilab.harness.emulator import nisa, nki, nl, run
from nkilab.harness.emulator.trace import Trace
from nkilab.harness.perf import model_trace
from nkilab.harness.perf.schedule import schedule
from nkilab.harness.perf.sync import sync_groups

CORE = get_target("trn2")
F = 8192  # free elements of the slow core's op: ~4 us of VectorE, ~7 us of GpSimd


def _slow_write(trace: Trace, program_id: int, engine: str = "vector"):
    """A long op on `program_id`'s `engine` writing a fresh SBUF tile; returns the instruction."""
    return elementwise(trace, engine, tile(new_storage(), "sbuf", (128, F), "float32", is_write=True, name="dst"),
                       tile(new_storage(), "sbuf", (128, F), "float32", is_write=False, name="src"),
                       program_id=program_id)


def _barrier(trace: Trace, shared: int, program_id: int, seq: int = 0):
    return trace.append("gpsimd", "core_barrier", [hbm(shared, (128, 64), "float32", is_write=False, name="data")],
                        program_id=program_id, attrs={"cores": [0, 1], "sync": seq, "partitions": 1, "free_elems": 1})


def test_a_barrier_releases_both_cores_after_the_last_arrival_plus_the_sync_latency():
    trace = Trace("barrier", "trn2", lnc=2)
    shared = new_storage()
    busy = _slow_write(trace, 0, engine="gpsimd")  # core 0's GpSimd is busy ~7 us before it can take the barrier
    b0, b1 = _barrier(trace, shared, 0), _barrier(trace, shared, 1)
    after = dma(trace, tile(new_storage(), "sbuf", (128, 64), "float32", is_write=True, name="dst"),
                hbm(shared, (128, 64), "float32", is_write=False, name="src"), chunks=128, program_id=1)
    timed = schedule(trace, CORE)
    release = timed.done_s[busy.index] + CORE.cross_core_sync_s
    stall = timed.costs[b1.index].stall_s
    assert timed.start_s[b1.index] == pytest.approx(0.0)  # core 1 arrives at once and blocks GpSimd until release
    for b in (b0, b1):
        assert timed.done_s[b.index] == pytest.approx(release + stall)
    # core 1's read of the shared tensor is ordered after its barrier
    assert timed.start_s[after.index] == pytest.approx(timed.done_s[b1.index] + timed.costs[b1.index].commit_s)
    assert timed.engine_busy_s["gpsimd"] == pytest.approx((timed.costs[0].stall_s + 2 * stall) / 2)  # waiting: no work


def test_sendrecv_transfers_start_when_both_cores_have_arrived():
    trace = Trace("sendrecv", "trn2", lnc=2)
    srcs = {0: _slow_write(trace, 0).operands[0].access.storage, 1: new_storage()}
    sends = []
    for pid in (0, 1):
        sends.append(trace.append("dma", "sendrecv", [
            tile(new_storage(), "sbuf", (128, 64), "float32", is_write=True, name="dst"),
            tile(srcs[pid], "sbuf", (128, 64), "float32", is_write=False, name="src")], program_id=pid,
            attrs={"bytes": 128 * 64 * 4, "chunks": 128, "chunk_bytes": 256.0, "indirect": False, "dge": "none",
                   "queue": 0, "send_to_rank": 1 - pid, "recv_from_rank": 1 - pid, "pipe_id": 0, "sync": 0}))
    timed = schedule(trace, CORE)
    slow = timed.done_s[0] + timed.costs[0].commit_s  # core 0's source is readable by its DMA
    release = slow + CORE.cross_core_sync_s
    for s in sends:
        assert timed.start_s[s.index] == pytest.approx(release)
        assert timed.done_s[s.index] > release + CORE.dma_start_latency_s


def test_a_gpsimd_dma_sendrecv_holds_gpsimd_until_the_release_then_moves_its_tile():
    trace = Trace("sendrecv gpsimd", "trn2", lnc=2)
    late = _slow_write(trace, 0)  # core 0's source is ready ~4 us in
    srcs = {0: late.operands[0].access.storage, 1: new_storage()}
    sends = [trace.append("gpsimd", "sendrecv", [
        tile(new_storage(), "sbuf", (128, 64), "float32", is_write=True, name="dst"),
        tile(srcs[pid], "sbuf", (128, 64), "float32", is_write=False, name="src")], program_id=pid,
        attrs={"send_to_rank": 1 - pid, "recv_from_rank": 1 - pid, "pipe_id": 3, "sync": 0}) for pid in (0, 1)]
    timed = schedule(trace, CORE)
    release = timed.done_s[late.index] + timed.costs[late.index].commit_s + CORE.semaphore_cycles / CORE.gpsimd_hz \
        + CORE.cross_core_sync_s
    assert timed.start_s[sends[1].index] == pytest.approx(0.0)  # core 1 is there at once, and waits
    for s in sends:
        assert timed.done_s[s.index] == pytest.approx(release + timed.costs[s.index].stall_s)


def test_only_points_shared_by_two_cores_join():
    trace = Trace("one core", "trn2")
    _barrier(trace, new_storage(), 0)
    assert sync_groups(trace) == {}
    trace = Trace("two points", "trn2", lnc=2)
    shared = new_storage()
    for seq in (0, 1):
        _barrier(trace, shared, 0, seq)
        _barrier(trace, shared, 1, seq)
    assert sync_groups(trace) == {0: (0, 1), 1: (0, 1), 2: (2, 3), 3: (2, 3)}


def test_a_traced_lnc2_kernel_waits_for_the_slower_core_at_its_barrier():
    """Core 1 does four times the work before the barrier; both cores' reads of the shared tensor follow it."""
    def kernel(a):
        pid = nl.program_id(0)
        shared = nl.ndarray(a.shape, a.dtype, buffer=nl.shared_hbm)
        t = nl.ndarray((128, 512), a.dtype, buffer=nl.sbuf)
        nisa.dma_copy(dst=t, src=a[pid * 128:(pid + 1) * 128, :])
        for _ in range(1 + 3 * pid):
            nisa.activation(dst=t, op=nl.exp, data=t)
        nisa.dma_copy(dst=shared[pid * 128:(pid + 1) * 128, :], src=t)
        nisa.core_barrier(data=shared, cores=(0, 1))
        other = nl.ndarray((128, 512), a.dtype, buffer=nl.sbuf)
        nisa.dma_copy(dst=other, src=shared[(1 - pid) * 128:(2 - pid) * 128, :])
        out = nl.ndarray(a.shape, a.dtype, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=out[pid * 128:(pid + 1) * 128, :], src=other)
        return out

    trace = run(nki.jit(kernel)[2], np.zeros((256, 512), np.float32), target="trn2", mode="trace").trace
    timed = schedule(trace, CORE)
    barriers = [i.index for i in trace if i.opcode == "core_barrier"]
    reads = [i.index for i in trace.instructions[barriers[-1] + 1:] if i.reads and i.reads[0].buffer == "shared_hbm"]
    stores = [i.index for i in trace.instructions[:barriers[0]] if i.writes[0].buffer == "shared_hbm"]
    release = max(timed.done_s[s] for s in stores) + CORE.dma_completion_s + CORE.cross_core_sync_s
    assert [trace.instructions[b].program_id for b in barriers] == [0, 1]
    for b in barriers:
        assert timed.done_s[b] == pytest.approx(release + timed.costs[b].stall_s)
    assert len(reads) == 2 and all(timed.start_s[r] >= release for r in reads)
    assert model_trace(trace, CORE).lnc == 2


def test_a_traced_all_reduce_starts_when_the_slower_core_arrives():
    group = nki.collectives.ReplicaGroup([[0, 1]])

    def kernel(a):
        pid = nl.program_id(0)
        t = nl.ndarray((128, 512), a.dtype, buffer=nl.sbuf)
        nisa.dma_copy(dst=t, src=a[pid])
        for _ in range(1 + 3 * pid):  # core 1 is late
            nisa.activation(dst=t, op=nl.exp, data=t)
        mine = nl.ndarray((128, 512), a.dtype, buffer=nl.private_hbm)
        nisa.dma_copy(dst=mine, src=t)
        summed = nl.ndarray((128, 512), a.dtype, buffer=nl.private_hbm)
        nki.collectives.all_reduce(srcs=[mine], dsts=[summed], replica_group=group, op=nl.add)
        out = nl.ndarray((2, 128, 512), a.dtype, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=out[pid], src=summed)
        return out

    trace = run(nki.jit(kernel)[2], np.zeros((2, 128, 512), np.float32), target="trn2", mode="trace").trace
    timed = schedule(trace, CORE)
    reduces = [i.index for i in trace if i.opcode == "all_reduce"]
    stores = [i.index for i in trace.instructions[:reduces[0]] if i.writes[0].buffer == "hbm"]
    release = max(timed.done_s[s] for s in stores) + CORE.dma_completion_s + CORE.cross_core_sync_s
    assert len(reduces) == 2 and len(stores) == 2
    assert timed.done_s[stores[1]] > timed.done_s[stores[0]] + 1e-6  # the cores arrive apart
    for r in reduces:
        assert timed.start_s[r] == pytest.approx(release)
