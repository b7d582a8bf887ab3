"""Buffers on hand-made traces: reusing a tile makes the next write wait for the last read, so a single-buffered
loop cannot overlap load and compute while a double-buffered one can; loop-local allocations get copies while
SBUF has room (the compiler's space-time trade-off, nki/migration/index.rst)."""

import numpy as np
import pytest
from perf_traces import dma, elementwise, hbm, new_storage, tile

from nkilab.harness import estimate
from nkilab.harness.chips import get_target
from nkilab.harness.emulator import nisa, nl
from nkilab.harness.emulator.trace import Allocation, Trace
from nkilab.harness.perf.buffers import physical_buffers
from nkilab.harness.perf.schedule import schedule

TRN2 = get_target("trn2")
F = 2048  # [128, 2048] fp32 tiles: 8 KiB per partition
ITERATIONS = 8


def _loop(buffers_of, *, f: int = F, allocations: dict | None = None) -> Trace:
    """ITERATIONS x (load a [128, f] tile from HBM; ScalarE reads it into a fresh tile), the load's tile
    `buffers_of(i)` (a storage id)."""
    trace = Trace("loop", "trn2")
    src = new_storage()
    for i in range(ITERATIONS):
        t = buffers_of(i)
        dma(trace, tile(t, "sbuf", (128, f), "float32", is_write=True, name="dst"),
            hbm(src, (128, f), "float32", is_write=False, name="src", offset=i * 128 * f), chunks=128)
        elementwise(trace, "scalar", tile(new_storage(), "sbuf", (128, f), "float32", is_write=True, name="dst"),
                    tile(t, "sbuf", (128, f), "float32", is_write=False, name="data"), opcode="activation")
    trace.allocations.update(allocations or {})
    return trace


def _phases(trace: Trace):
    timed = schedule(trace, TRN2)
    load = timed.done_s[0] - timed.start_s[0]
    compute = timed.done_s[1] - timed.start_s[1]
    return timed.makespan_s, load, compute


def test_single_buffered_loop_cannot_overlap_load_and_compute():
    one = new_storage()
    makespan, load, compute = _phases(_loop(lambda i: one))
    # every load waits for the previous read of the one tile (semaphore and DMA latency included): serial
    assert makespan >= ITERATIONS * (load + compute)


def test_double_buffered_loop_overlaps_load_and_compute():
    two = (new_storage(), new_storage())
    makespan, load, compute = _phases(_loop(lambda i: two[i % 2]))
    single = _phases(_loop(lambda i, one=new_storage(): one))[0]
    assert makespan < 0.75 * single
    assert makespan <= ITERATIONS * max(load, compute) + load + compute + 2e-6


def _site_allocations(ids, nbytes: int) -> dict:
    return {s: Allocation(((__file__, 1),), "sbuf", 128, nbytes, "float32") for s in ids}


def test_loop_local_tiles_are_multi_buffered_while_sbuf_has_room():
    ids = [new_storage() for _ in range(ITERATIONS)]
    trace = _loop(ids.__getitem__, allocations=_site_allocations(ids, F * 4))
    assert physical_buffers(trace, TRN2) == {}  # 8 x 8 KiB (+ the outputs) fit 224 KiB: a buffer each
    fresh, load, compute = _phases(trace)
    assert fresh <= ITERATIONS * max(load, compute) + load + compute + 2e-6


def test_loop_local_tiles_that_fill_sbuf_are_single_buffered():
    """Tiles of 150 KiB per partition: one fills most of the 224-KiB partition, so each new load tile reuses the
    one before (and waits for its reader)."""
    f = 150 * 1024 // 4
    ids = [new_storage() for _ in range(ITERATIONS)]
    trace = _loop(ids.__getitem__, f=f, allocations=_site_allocations(ids, f * 4))
    mapping = physical_buffers(trace, TRN2)
    assert set(mapping.values()) == {ids[0]} and len(mapping) == ITERATIONS - 1
    makespan, load, compute = _phases(trace)
    assert makespan >= ITERATIONS * (load + compute)


def test_allocations_of_different_lines_never_share_a_buffer():
    ids = [new_storage() for _ in range(4)]
    allocations = {s: Allocation(((__file__, k),), "sbuf", 128, 200 * 1024, "float32") for k, s in enumerate(ids)}
    trace = _loop(lambda i: ids[i % 4], f=100, allocations=allocations)
    assert physical_buffers(trace, TRN2) == {}


def test_psum_counts_whole_banks():
    ids = [new_storage() for _ in range(12)]
    allocations = {s: Allocation(((__file__, 7),), "psum", 128, 64, "float32") for s in ids}
    trace = Trace("psum", "trn2")
    for s in ids:  # 12 tiles of 64 bytes: each takes a 2 KiB bank, 8 banks per partition
        elementwise(trace, "vector", tile(s, "psum", (128, 16), "float32", is_write=True, name="dst"),
                    tile(new_storage(), "sbuf", (128, 16), "float32", is_write=False, name="src"))
        elementwise(trace, "scalar", tile(new_storage(), "sbuf", (128, 16), "float32", is_write=True, name="dst"),
                    tile(s, "psum", (128, 16), "float32", is_write=False, name="src"))
    trace.allocations.update(allocations)
    assert len(physical_buffers(trace, TRN2)) == pytest.approx(12 - TRN2.psum_banks)


def _placed_loop(x, *, addresses):
    """Per [128, 2048] fp32 row block of x: load into a tile placed at addresses[i % len], exp it on ScalarE,
    store the result (the loop-local result tiles rotate freely)."""
    out = nl.ndarray(x.shape, dtype=x.dtype, buffer=nl.shared_hbm)
    for i in range(x.shape[0] // 128):
        rows = slice(i * 128, (i + 1) * 128)
        t = nl.ndarray((128, 2048), dtype=x.dtype, buffer=nl.sbuf, address=addresses[i % len(addresses)])
        nisa.dma_copy(dst=t, src=x[rows, :])
        res = nl.ndarray((128, 2048), dtype=x.dtype, buffer=nl.sbuf)
        nisa.activation(dst=res, op=nl.exp, data=t)
        nisa.dma_copy(dst=out[rows, :], src=res)
    return out


def test_tiles_placed_at_one_address_serialize_and_at_two_overlap():
    """`address=`: fresh tiles at the same address share bytes, so each load waits for the previous tile's reader;
    alternating two addresses double-buffers the loop."""
    x = np.zeros((128 * ITERATIONS, 2048), np.float32)
    one = estimate(_placed_loop, x, target="trn2", addresses=[(0, 0)])
    two = estimate(_placed_loop, x, target="trn2", addresses=[(0, 0), (0, 8192)])
    assert two.latency_s < 0.8 * one.latency_s
