"""What trace mode remembers to run fast, checked against what it stands for: interned view layouts (layout.py), views
remembered by index key, layout-level operand verdicts, allocation plans, allocation sites resolved late (sites.py)
and runs without automatic garbage collection (gc_tuning.py)."""

import gc
import sys
import threading

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nkilab.harness.emulator import NkiValidationError, nisa, nl, run, sites
from nkilab.harness.emulator.indexing import Place
from nkilab.harness.emulator.layout import layout_of


def _in_kernel(fn, target="trn2", mode="trace"):
    """Run fn() inside a kernel (trace mode unless told) and return what it returns."""
    box = {}

    def kernel():
        box["v"] = fn()

    run(kernel, target=target, mode=mode)
    return box["v"]


def test_fresh_tiles_of_one_shape_share_a_layout():
    def body():
        a = nl.ndarray((128, 512), nl.bfloat16, buffer=nl.sbuf)
        b = nl.ndarray((128, 512), nl.bfloat16, buffer=nl.sbuf)
        c = nl.ndarray((128, 512), nl.float32, buffer=nl.sbuf)
        d = nl.ndarray((128, 512), nl.bfloat16, buffer=nl.psum)
        return a.layout is b.layout, a.layout is c.layout, a.layout is d.layout, a[:, 0:128].layout is b[:, 0:128].layout
    assert _in_kernel(body) == (True, False, False, True)


@settings(max_examples=60, deadline=None)
@given(shape=st.lists(st.integers(1, 6), min_size=2, max_size=4), data=st.data())
def test_layout_geometry_matches_the_general_footprint(shape, data):
    """The trace footprint of a direct view from its layout (`trace_access`) equals the general footprint
    (`access`, the path of indirect views) for random views of random on-chip and HBM tensors."""
    buffer = data.draw(st.sampled_from(["sbuf", "hbm"]))

    def body():
        t = nl.ndarray(tuple(shape), nl.float32, buffer=buffer)
        key = []
        for n in shape[:data.draw(st.integers(1, len(shape)))]:
            a = data.draw(st.integers(0, n - 1))
            if data.draw(st.booleans()):
                key.append(a)
            else:
                key.append(slice(a, data.draw(st.integers(a + 1, n)), data.draw(st.sampled_from([None, 1, 2]))))
        v = t[tuple(key)]
        return v.trace_access(), v.access(Place(v.offset), v.size * v.itemsize), v.layout.size, v.size
    fast, general, lay_size, size = _in_kernel(body)
    assert fast == general
    assert lay_size == size


def test_a_view_is_remembered_per_index_key():
    def body():
        t = nl.ndarray((128, 1024), nl.float32, buffer=nl.sbuf)
        h = nl.ndarray((64, 32, 16), nl.float32, buffer=nl.shared_hbm)
        return (t[0:128, 0:512] is t[0:128, 0:512], t[:, 0:512] is t[0:128, 0:512], t[nl.ds(0, 128), 0:512] is
                t[0:128, 0:512], t[:, 512:1024] is t[:, 0:512], h[3, :, 0:8] is h[3, :, 0:8], h[3] is h[3, :, :],
                h[3].offset == h[3, :, :].offset == 3 * 32 * 16)
    assert _in_kernel(body) == (True, True, True, False, True, False, True)


@pytest.mark.parametrize("key", [(slice(0, 129), slice(0, 8)), (slice(0, 8), slice(8, 4)), (5, 300)],
                         ids=["stop-past-end", "empty", "int-past-end"])
def test_bad_keys_raise_every_time(key):
    def body():
        t = nl.ndarray((128, 256), nl.float32, buffer=nl.sbuf)
        for _ in range(2):
            with pytest.raises(NkiValidationError, match="getitem"):
                t[key]
        return True
    assert _in_kernel(body)


def test_remembered_views_read_and_write_the_same_elements():
    """Full mode: a remembered view is the view (same storage, offset, strides), so values land where they would."""
    def kernel(a):
        t = nl.ndarray((128, 64), nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=t, src=a)
        out = nl.ndarray((128, 64), nl.float32, buffer=nl.shared_hbm)
        for _ in range(2):  # the second pass goes through the remembered views
            nisa.dma_copy(dst=out[:, 32:64], src=t[:, 0:32])
            nisa.dma_copy(dst=out[:, 0:32], src=t[:, 32:64])
        return out
    a = np.arange(128 * 64, dtype=np.float32).reshape(128, 64)
    np.testing.assert_array_equal(run(kernel, a).outputs, np.concatenate([a[:, 32:], a[:, :32]], axis=1))


def test_a_layout_that_passed_still_checks_each_views_start_partition():
    """The operand rules remembered per layout are the offset-free ones: a fresh view of a layout that passed at
    partition 0 is still refused at a start partition the rule forbids (64 partitions from partition 32)."""
    def body():
        t = nl.ndarray((128, 64), nl.float32, buffer=nl.sbuf)
        nisa.memset(dst=t[0:64, :], value=0.0)
        with pytest.raises(NkiValidationError, match="start partition"):
            nisa.memset(dst=t[32:96, :], value=0.0)
        nisa.memset(dst=t[64:128, :], value=0.0)
        return True
    assert _in_kernel(body)


def test_a_dma_layout_verdict_does_not_cover_psum():
    def body():
        a = nl.ndarray((128, 64), nl.float32, buffer=nl.sbuf)
        h = nl.ndarray((128, 64), nl.float32, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=h, src=a)
        p = nl.ndarray((128, 64), nl.float32, buffer=nl.psum)
        with pytest.raises(NkiValidationError, match="PSUM"):
            nisa.dma_copy(dst=h, src=p)
        return True
    assert _in_kernel(body)


def test_allocation_plans_resolve_every_spelling_alike():
    def body():
        ts = [nl.ndarray((128, 64), nl.bfloat16, buffer=nl.sbuf), nl.ndarray([128, 64], "bfloat16", buffer="sbuf"),
              nl.ndarray((np.int64(128), 64), ml_dtypes.bfloat16, buffer=nl.sbuf)]
        return [(t.shape, t.dtype, t.buffer, type(t.shape[0])) for t in ts], ts[0].layout is ts[2].layout
    facts, shared = _in_kernel(body)
    assert facts == [((128, 64), np.dtype(ml_dtypes.bfloat16), "sbuf", int)] * 3
    assert shared


@pytest.mark.parametrize("shape, dtype, buffer, error", [
    ((129, 4), nl.float32, nl.sbuf, NkiValidationError), ((0, 4), nl.float32, nl.sbuf, ValueError),
    ((4, 4), np.float64, nl.sbuf, TypeError), ((4, 4), nl.float32, "dram", ValueError)],
    ids=["over-pmax", "empty", "float64", "bad-buffer"])
def test_bad_allocations_raise_every_time(shape, dtype, buffer, error):
    def body():
        for _ in range(2):
            with pytest.raises(error):
                nl.ndarray(shape, dtype, buffer=buffer)
        return True
    assert _in_kernel(body)


def test_a_placed_tile_is_read_as_a_scalar_offset():
    """A 1x1 index tile placed with address= (a [partitions, free] view of physical memory) feeds a scalar offset."""
    def kernel(table, rows):
        idx = nl.ndarray((1, 1), nl.int32, buffer=nl.sbuf, address=(0, 64))
        nisa.dma_copy(dst=idx, src=table[1:2, 0:1])
        out = nl.ndarray((1, 8), nl.float32, buffer=nl.shared_hbm)
        t = nl.ndarray((1, 8), nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=t, src=rows.ap([[8, 1], [1, 8]], offset=0, scalar_offset=idx, indirect_dim=0))
        nisa.dma_copy(dst=out, src=t)
        return out
    rows = np.arange(40, dtype=np.float32).reshape(5, 8)
    out = run(kernel, np.array([[0], [3]], np.int32), rows).outputs
    np.testing.assert_array_equal(out, rows[3:4])


def _frame_here():
    return sys._getframe(1)


def test_site_lines_are_the_lines_f_lineno_gives():
    frames = []

    def long_function():
        for i in range(3):
            frames.append(_frame_here())
        x = [
            _frame_here(),
        ]
        frames.append(x[0])
        frames.append(_frame_here()); frames.append(_frame_here())  # noqa: E702 - two calls on one line
    long_function()
    for f in frames:
        assert sites.line(f.f_code, f.f_lasti) == f.f_lineno


def test_allocation_records_name_the_kernel_lines():
    def helper():
        return nl.ndarray((128, 64), nl.float32, buffer=nl.sbuf)

    def kernel():
        t = helper()
        nisa.memset(dst=t, value=0.0)
        u = nl.ndarray((128, 64), nl.float32, buffer=nl.sbuf, address=(0, 0))  # placed: no record
        nisa.memset(dst=u, value=0.0)
    trace = run(kernel, mode="trace").trace
    (record,) = trace.allocations.values()
    code = test_allocation_records_name_the_kernel_lines.__code__
    inner, outer = record.site[:2]
    assert inner == (code.co_filename, helper.__code__.co_firstlineno + 1)
    assert outer == (code.co_filename, kernel.__code__.co_firstlineno + 1)
    assert (record.buffer, record.partitions, record.nbytes, record.dtype) == ("sbuf", 128, 256, "float32")


def test_runs_collect_no_garbage_and_restore_the_collector():
    seen = []

    def kernel():
        seen.append(gc.isenabled())
    assert gc.isenabled()
    run(kernel, mode="trace")
    assert seen == [False] and gc.isenabled()
    gc.disable()
    try:
        run(kernel, mode="trace")
        assert not gc.isenabled()  # off before: left off
    finally:
        gc.enable()


def _memset_kernel():
    t = nl.ndarray((128, 64), nl.float32, buffer=nl.sbuf)
    nisa.memset(dst=t, value=0.0)


def test_a_runs_objects_go_to_the_oldest_generation():
    trace = run(_memset_kernel, mode="trace").trace
    oldest = {id(o) for o in gc.get_objects(generation=2)}
    assert id(trace.instructions) in oldest and id(trace.allocations) in oldest  # no young-generation pass to pay
    assert gc.get_freeze_count() == 0


def test_a_callers_frozen_objects_stay_frozen():
    marker = [object()]
    gc.freeze()
    try:
        trace = run(_memset_kernel, mode="trace").trace
        tracked = {id(o) for o in gc.get_objects()}  # every generation but the permanent (frozen) one
        assert id(marker) not in tracked and id(trace.instructions) in tracked
        assert id(trace.instructions) not in {id(o) for o in gc.get_objects(generation=2)}  # no splice
    finally:
        gc.unfreeze()


def test_concurrent_runs_restore_the_collector_when_the_last_one_ends():
    inside, release = threading.Event(), threading.Event()

    def slow():
        inside.set()
        release.wait(10)

    worker = threading.Thread(target=lambda: run(slow, mode="trace"))
    worker.start()
    inside.wait(10)
    run(lambda: None, mode="trace")  # a second run ends while the first is still inside
    still_off = not gc.isenabled()
    release.set()
    worker.join()
    assert still_off and gc.isenabled()


def test_layout_table_starts_afresh_when_full(monkeypatch):
    from nkilab.harness.emulator import layout
    monkeypatch.setattr(layout, "_INTERNED_MAX", 2)
    monkeypatch.setattr(layout, "_INTERNED", {})
    lays = [layout_of("sbuf", np.dtype(np.float32), "float32", n, (4, n), (n, 1)) for n in (1, 2, 3)]
    assert len(layout._INTERNED) == 1 and lays[2].shape == (4, 3)
