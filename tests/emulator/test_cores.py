"""LNC 2: the two program instances interleaved at their synchronization points (core_barrier, sendrecv,
nki.collectives), data exchanged between the cores, deadlocks reported, sync instructions in the trace."""

import numpy as np
import pytest

from nkilab.harness.emulator import NkiValidationError, nisa, nki, nl, run

ncc = nki.collectives


def _load(src):
    t = nl.ndarray(src.shape, src.dtype)
    nisa.dma_copy(dst=t, src=src)
    return t


def test_sendrecv_swaps_tiles_between_the_cores():
    def kernel(a):
        pid = nl.program_id(0)
        rows = a.shape[0] // 2
        mine = _load(a[pid * rows:(pid + 1) * rows, :])
        got = nl.ndarray(mine.shape, mine.dtype)
        nisa.sendrecv(src=mine, dst=got, send_to_rank=1 - pid, recv_from_rank=1 - pid, pipe_id=0)
        out = nl.ndarray(a.shape, a.dtype, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=out[pid * rows:(pid + 1) * rows, :], src=got)
        return out

    a = np.arange(64, dtype=np.float32).reshape(8, 8)
    res = run(kernel, a, lnc=2)
    np.testing.assert_array_equal(res.outputs, np.concatenate([a[4:], a[:4]]))
    sends = [i for i in res.trace if i.opcode == "sendrecv"]
    assert [i.program_id for i in sends] == [0, 1] and all(i.engine == "dma" for i in sends)
    assert sends[0].attrs["bytes"] == 4 * 8 * 4 and sends[0].attrs["sync"] == 0 == sends[1].attrs["sync"]
    assert (sends[0].attrs["send_to_rank"], sends[0].attrs["recv_from_rank"]) == (1, 1)


def test_core_barrier_orders_the_cores_writes_before_their_reads():
    def kernel(a):
        pid = nl.program_id(0)
        rows = a.shape[0] // 2
        shared = nl.ndarray(a.shape, a.dtype, buffer=nl.shared_hbm)
        t = _load(a[pid * rows:(pid + 1) * rows, :])
        nisa.tensor_scalar(dst=t, data=t, op0=nl.add, operand0=float(10 * (pid + 1)))
        nisa.dma_copy(dst=shared[pid * rows:(pid + 1) * rows, :], src=t)
        nisa.core_barrier(data=shared, cores=(0, 1))
        other = _load(shared[(1 - pid) * rows:(2 - pid) * rows, :])  # the half the other core wrote
        out = nl.ndarray(a.shape, a.dtype, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=out[pid * rows:(pid + 1) * rows, :], src=other)
        return out

    a = np.ones((8, 4), np.float32)
    res = run(nki.jit(kernel)[2], a)
    np.testing.assert_array_equal(res.outputs, np.concatenate([np.full((4, 4), 21.0), np.full((4, 4), 11.0)]))
    order = [(i.program_id, i.opcode) for i in res.trace]
    barrier = order.index((0, "core_barrier"))
    assert order[barrier + 1] == (1, "core_barrier")  # both barriers recorded where the cores meet
    assert {p for p, _ in order[:barrier]} == {0, 1}  # interleaved: both cores' writes come before the barrier
    assert all(op != "core_barrier" for _, op in order[barrier + 2:])
    inst = res.trace.instructions[barrier]
    assert inst.engine == "gpsimd" and inst.attrs["cores"] == [0, 1] and inst.reads[0].buffer == "shared_hbm"


def test_barrier_on_one_core_only_is_a_deadlock_error():
    def kernel(a):
        shared = nl.ndarray(a.shape, a.dtype, buffer=nl.shared_hbm)
        if nl.program_id(0) == 0:
            nisa.core_barrier(data=shared, cores=(0, 1))
        return shared

    with pytest.raises(NkiValidationError, match=r"core_barrier: cores .*deadlock.*program 0 waits at core_barrier"
                                                  r".*program 1 ended"):
        run(nki.jit(kernel)[2], np.zeros((2, 2), np.float32))


def test_sendrecv_on_different_pipes_deadlocks():
    def kernel(a):
        pid = nl.program_id(0)
        t = _load(a)
        got = nl.ndarray(t.shape, t.dtype)
        nisa.sendrecv(src=t, dst=got, send_to_rank=1 - pid, recv_from_rank=1 - pid, pipe_id=pid)
        return a

    with pytest.raises(NkiValidationError, match="deadlock"):
        run(nki.jit(kernel)[2], np.zeros((2, 2), np.float32))


def test_errors_in_one_program_reach_the_caller():
    def kernel(a):
        if nl.program_id(0) == 1:
            nl.ndarray((129, 1), nl.float32)
        nisa.core_barrier(data=a, cores=(0, 1))
        return a

    with pytest.raises(NkiValidationError, match="partition dim <= 128"):
        run(nki.jit(kernel)[2], np.zeros((2, 2), np.float32))


def test_sync_ops_need_lnc2_on_gen3():
    def kernel(a):
        nisa.core_barrier(data=a, cores=(0, 1))

    with pytest.raises(NkiValidationError, match="kernel launched with LNC 2"):
        run(kernel, np.zeros((2, 2), np.float32))
    with pytest.raises(NkiValidationError, match="LNC 2 only on trn2/trn3"):
        run(nki.jit(kernel)[2], np.zeros((2, 2), np.float32), target="trn1")


def test_all_reduce_and_all_gather_between_the_cores():
    group = ncc.ReplicaGroup([[0, 1]])

    def kernel(a):
        pid = nl.program_id(0)
        mine = nl.ndarray((4, 8), a.dtype, buffer=nl.private_hbm)  # each core's own (shared_hbm is one tensor)
        nisa.dma_copy(dst=mine, src=a[pid])
        summed = nl.ndarray((4, 8), a.dtype, buffer=nl.private_hbm)
        ncc.all_reduce(srcs=[mine], dsts=[summed], replica_group=group, op=nl.add)
        gathered = nl.ndarray((8, 8), a.dtype, buffer=nl.private_hbm)
        ncc.all_gather(srcs=[mine], dsts=[gathered], replica_group=group, collective_dim=0)
        out = nl.ndarray((2, 12, 8), a.dtype, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=out[pid, 0:4, :], src=summed)
        nisa.dma_copy(dst=out[pid, 4:12, :], src=gathered)
        return out

    a = np.random.default_rng(0).standard_normal((2, 4, 8)).astype(np.float32)
    out = run(nki.jit(kernel)[2], a).outputs
    for pid in range(2):
        np.testing.assert_array_equal(out[pid, :4], a[0] + a[1])
        np.testing.assert_array_equal(out[pid, 4:], np.concatenate([a[0], a[1]]))


def test_reduce_scatter_all_to_all_permute_and_rank_id():
    group = ncc.ReplicaGroup([[0, 1]])

    def kernel(a):
        pid = nl.program_id(0)
        rank = ncc.rank_id()
        mine = nl.ndarray((4, 8), a.dtype, buffer=nl.private_hbm)
        rows = a.reshape((2, 32)).ap(pattern=[[8, 4], [1, 8]], offset=0, scalar_offset=rank, indirect_dim=0)
        nisa.dma_copy(dst=mine, src=rows)  # rows 4r..4r+4 through the rank register
        scattered, swapped, permuted = (nl.ndarray(s, a.dtype, buffer=nl.private_hbm)
                                        for s in ((2, 8), (4, 8), (4, 8)))
        ncc.reduce_scatter(srcs=[mine], dsts=[scattered], replica_group=group, collective_dim=0, op=nl.maximum)
        ncc.all_to_all(srcs=[mine], dsts=[swapped], replica_group=group, collective_dim=0)
        ncc.collective_permute(srcs=[mine], dsts=[permuted], source_target_pairs=[(0, 1), (1, 0)])
        out = nl.ndarray((2, 10, 8), a.dtype, buffer=nl.shared_hbm)
        for k, (t, rows) in enumerate(((scattered, slice(0, 2)), (swapped, slice(2, 6)), (permuted, slice(6, 10)))):
            nisa.dma_copy(dst=out[pid, rows, :], src=t)
        return out

    a = np.random.default_rng(1).standard_normal((8, 8)).astype(np.float32)
    halves = a[:4], a[4:]  # rank r's src
    out = run(nki.jit(kernel)[2], a).outputs
    for r in range(2):
        np.testing.assert_array_equal(out[r, 0:2], np.maximum(halves[0], halves[1])[2 * r:2 * r + 2])
        np.testing.assert_array_equal(out[r, 2:6], np.concatenate([halves[0][2 * r:2 * r + 2],
                                                                   halves[1][2 * r:2 * r + 2]]))
        np.testing.assert_array_equal(out[r, 6:10], halves[1 - r])


def test_collectives_must_match_across_ranks():
    group = ncc.ReplicaGroup([[0, 1]])

    def kernel(a):
        d = nl.ndarray(a.shape, a.dtype, buffer=nl.shared_hbm)
        if nl.program_id(0) == 0:
            ncc.all_reduce(srcs=[a], dsts=[d], replica_group=group, op=nl.add)
        else:
            ncc.all_gather(srcs=[a], dsts=[d], replica_group=group, collective_dim=0)
        return d

    with pytest.raises(NkiValidationError, match="the same collective on every rank"):
        run(nki.jit(kernel)[2], np.zeros((2, 2), np.float32))


def test_lnc2_without_sync_points_runs_program_0_then_1():
    def kernel(a):
        t = _load(a)
        nisa.tensor_scalar(dst=t, data=t, op0=nl.add, operand0=1.0)
        return a

    order = [i.program_id for i in run(nki.jit(kernel)[2], np.zeros((2, 2), np.float32)).trace]
    assert order == [0, 0, 1, 1]


def test_ring_permute_and_its_processing_rank():
    group = ncc.ReplicaGroup([[0, 1]])

    def kernel(a):
        pid = nl.program_id(0)
        mine, got, summed = (nl.ndarray((4, 8), a.dtype, buffer=nl.private_hbm) for _ in range(3))
        nisa.dma_copy(dst=mine, src=a[pid])
        ncc.collective_permute_implicit(srcs_by_channel=[[mine]], dsts_by_channel=[[got]], replica_group=group)
        ncc.collective_permute_implicit_reduce(srcs0_by_channel=[[mine]], srcs1_by_channel=[[got]],
                                               dsts_by_channel=[[summed]], replica_group=group, op=nl.add)
        step1 = ncc.collective_permute_implicit_current_processing_rank_id(iteration_id=1, replica_group=group)
        out = nl.ndarray((2, 9, 8), a.dtype, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=out[pid, 0:4, :], src=got)
        nisa.dma_copy(dst=out[pid, 4:8, :], src=summed)
        ids = nl.ndarray((1, 8), nl.int32)
        nisa.iota(dst=ids, offset=step1, pattern=[[0, 8]])  # the register's value in every element
        fl = nl.ndarray((1, 8), a.dtype)
        nisa.tensor_copy(dst=fl, src=ids)
        nisa.dma_copy(dst=out[pid, 8:9, :], src=fl)
        return out

    a = np.random.default_rng(2).standard_normal((2, 4, 8)).astype(np.float32)
    out = run(nki.jit(kernel)[2], a).outputs
    for r in range(2):
        np.testing.assert_array_equal(out[r, 0:4], a[1 - r])  # from the ring predecessor
        np.testing.assert_array_equal(out[r, 4:8], a[r] + a[1 - r])  # the predecessor's mine + got
        np.testing.assert_array_equal(out[r, 8], np.full(8, 1 - r))  # at step 1 a rank processes its predecessor's
