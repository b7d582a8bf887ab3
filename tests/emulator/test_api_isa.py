"""Value tests of the `nki.isa` names NKI 0.6 documents beyond the ops `test_ops.py` covers: enums (values, order,
raw values), registers, NkiInstruction, the RNG family, GpSimd gathers / index ops, VectorE search and shuffle."""

import ml_dtypes
import numpy as np
import pytest
from api_coverage import covers

from nkilab.harness.emulator import TARGETS, NkiValidationError, nisa, nl, run

ALL_TARGETS = tuple(TARGETS)
GEN3_PLUS = ("trn2", "trn3")


def _out(v):
    h = nl.ndarray(v.shape, v.dtype, buffer=nl.shared_hbm)
    nisa.dma_copy(dst=h, src=v)
    return h


@covers("nisa.engine", "nisa.reduce_cmd", "nisa.dge_mode", "nisa.oob_mode", "nisa.matmul_perf_mode",
        "nisa.nc_version", "nisa.dma_engine", "nisa.tensor_engine", "nisa.vector_engine", "nisa.scalar_engine",
        "nisa.gpsimd_engine", "nisa.unknown_engine", "nisa.constants.dge_mode", "nisa.constants.oob_mode")
def test_enum_values_order_and_raw_values(run_tiles):
    assert [nisa.engine[n].value for n in ("unknown", "tensor", "scalar", "gpsimd", "dma", "vector", "sync")] == \
        [0, 1, 2, 3, 4, 5, 6]
    assert [m.value for m in nisa.reduce_cmd] == [0, 1, 2, 3, 4] and nisa.dge_mode.none.value == 3
    assert (nisa.oob_mode.skip.value, nisa.matmul_perf_mode.double_row.value) == (1, "double_row")
    assert (nisa.dma_engine.dma.value, nisa.dma_engine.gpsimd_dma.value) == (1, 2)
    assert nisa.nc_version.gen2 < nisa.nc_version.gen3 < nisa.nc_version.gen4 and max(nisa.nc_version).name == "gen4"
    assert (nisa.vector_engine, nisa.tensor_engine, nisa.scalar_engine, nisa.gpsimd_engine, nisa.unknown_engine) == (
        nisa.engine.vector, nisa.engine.tensor, nisa.engine.scalar, nisa.engine.gpsimd, nisa.engine.unknown)
    assert nisa.constants.dge_mode is nisa.dge_mode and nisa.constants.oob_mode is nisa.oob_mode
    x = np.arange(8, dtype=np.float32).reshape(1, 8)

    def body(t):  # raw values are the members they encode (AWS's nki-library passes dge_mode=3)
        a, b = nl.ndarray(t.shape, t.dtype), nl.ndarray(t.shape, t.dtype)
        nisa.dma_copy(dst=a, src=t, dge_mode=3, oob_mode=0)
        nisa.tensor_copy(dst=b, src=a, engine=nisa.vector_engine)
        return (b,)
    np.testing.assert_array_equal(run_tiles(body, x)[0], x)
    with pytest.raises(NkiValidationError) as e:
        run_tiles(lambda t: (nisa.dma_copy(dst=nl.ndarray(t.shape, t.dtype), src=t, dge_mode=9),), x)
    assert e.value.operand == "dge_mode"


@covers("nisa.register_alloc", "nisa.register_move", "nisa.register_load", "nisa.register_store",
        "nisa.VirtualRegister")
def test_registers_move_values():
    def kernel(v):
        sb = nl.ndarray((1, 1), nl.int32)
        nisa.dma_copy(dst=sb, src=v)
        a, b, c = nisa.register_alloc(7), nisa.register_alloc(), nisa.register_alloc()
        nisa.register_load(b, sb)
        nisa.register_move(c, b)
        assert isinstance(c, nisa.VirtualRegister)
        outs = []
        for r in (a, c):
            t = nl.ndarray((1, 1), nl.int32)
            nisa.register_store(t, r)
            outs.append(_out(t))
        return tuple(outs)
    a, c = run(kernel, np.array([[-3]], np.int32)).outputs
    assert (a[0, 0], c[0, 0]) == (7, -3)


@covers("nisa.NkiInstruction", "nisa.get_nc_sub_version", "nisa.get_nc_version", "nisa.NkiValidationError")
@pytest.mark.parametrize("target", ALL_TARGETS)
def test_instruction_handles_and_versions(target):
    seen = []

    def kernel():
        a, b = nisa.NkiInstruction(1), nisa.NkiInstruction(2)
        seen.append((b.depends_on(a) is b, nisa.get_nc_version(), nisa.get_nc_sub_version()))
        with pytest.raises(TypeError):
            b.depends_on("x")
    run(kernel, target=target)
    assert seen == [(True, nisa.nc_version(TARGETS[target].gen), 0)]
    assert issubclass(nisa.NkiValidationError, Exception)


@covers("nisa.rng", "nisa.set_rng_seed")
@pytest.mark.parametrize("target", ALL_TARGETS)
def test_rng_bits_uniform_and_seeded(target):
    def kernel():
        seed = nl.full((1, 1), 123, nl.int32)
        nisa.set_rng_seed(src_seeds=seed)
        a, b, c = nl.ndarray((128, 256), nl.uint32), nl.ndarray((128, 256), nl.uint32), nl.ndarray((128, 64), nl.uint8)
        nisa.rng(dst=a)
        nisa.set_rng_seed(src_seeds=seed)
        nisa.rng(dst=b)
        nisa.rng(dst=c)
        return _out(a), _out(b), _out(c)
    a, b, c = run(kernel, target=target).outputs
    np.testing.assert_array_equal(a, b)
    bits = np.unpackbits(a.view(np.uint8))
    assert abs(bits.mean() - 0.5) < 0.005 and len(np.unique(a)) > 0.99 * a.size
    assert abs(np.bincount(c.reshape(-1), minlength=256).std() / (c.size / 256) - 0) < 0.2  # flat over 0..255


@covers("nisa.rand_set_state", "nisa.rand_get_state")
@pytest.mark.parametrize("engine,words,target", [("gpsimd", 6, "trn2"), ("gpsimd", 6, "trn3"), ("vector", 24, "trn3")])
def test_rand_state_round_trip_and_advance(engine, words, target):
    eng = nisa.engine[engine]
    state = np.random.default_rng(4).integers(1, 2 ** 32, (16, words), dtype=np.uint32)

    def kernel(s):
        sb = nl.ndarray(s.shape, nl.uint32)
        nisa.dma_copy(dst=sb, src=s)
        nisa.rand_set_state(src_seeds=sb, engine=eng)
        got, draws, after = nl.ndarray(s.shape, nl.uint32), nl.ndarray((16, 8), nl.uint32), nl.ndarray(s.shape, nl.uint32)
        nisa.rand_get_state(dst=got, engine=eng)
        nisa.rng(dst=draws, engine=eng)
        nisa.rand_get_state(dst=after, engine=eng)
        return _out(got), _out(draws), _out(after)
    got, draws, after = run(kernel, state, target=target).outputs
    np.testing.assert_array_equal(got, state)
    assert not np.array_equal(after, state) and len(np.unique(draws)) == draws.size
    with pytest.raises(NkiValidationError, match="NeuronCore-v"):
        run(kernel, state, target="trn1")


@covers("nisa.rand2")
def test_rand2_uniform_in_range_trn3():
    def kernel():
        lo = nl.full((128, 1), -2.0, nl.float32)
        d, i = nl.ndarray((128, 512), nl.float32), nl.ndarray((128, 512), nl.int32)
        nisa.rand2(dst=d, min=lo, max=3.0)
        nisa.rand2(dst=i, min=0.0, max=10.0)
        return _out(d), _out(i)
    d, i = run(kernel, target="trn3").outputs
    assert d.min() >= -2.0 and d.max() < 3.0 and abs(d.mean() - 0.5) < 0.02 and abs(d.var() - 25 / 12) < 0.05
    assert set(np.unique(i)) <= set(range(11))
    with pytest.raises(NkiValidationError, match="NeuronCore-v4"):
        run(kernel, target="trn2")


@covers("nisa.dropout")
@pytest.mark.parametrize("target", ALL_TARGETS)
def test_isa_dropout_per_partition_probability(target, run_tiles):
    x = np.ones((128, 1024), np.float32) * 3.0
    p = np.linspace(0.0, 1.0, 128, dtype=np.float32).reshape(128, 1)
    xi = np.full((128, 64), 5, np.int32)

    def body(t, prob, ti):
        d, di = nl.ndarray(t.shape, t.dtype), nl.ndarray(ti.shape, ti.dtype)
        nisa.dropout(dst=d, data=t, prob=prob)
        nisa.dropout(dst=di, data=ti, prob=0.5)
        return d, di
    d, di = run_tiles(body, x, p, xi, target=target)
    rate = (d == 0).mean(axis=1)
    assert rate[0] == 0.0 and rate[-1] == 1.0 and np.abs(rate - p[:, 0]).max() < 0.08
    assert set(np.unique(d)) <= {0.0, 3.0} and set(np.unique(di)) <= {0, 5}


@covers("nisa.local_gather")
def test_local_gather_matches_the_documented_numpy(run_tiles):
    rng = np.random.default_rng(5)
    src = rng.random((128, 512, 4)).astype(np.float32)
    idx16 = rng.integers(0, 512, (16, 4)).astype(np.uint16)
    idx = np.tile(idx16, (8, 1)) * 4  # element offsets of num_elem_per_idx=4 runs, as S-ISA's example
    (got,) = run_tiles(lambda s, i: (_gather(s, i),), src.reshape(128, -1), idx)
    expected = np.empty((128, 64, 4), np.float32)
    for core in range(8):
        rows = slice(16 * core, 16 * core + 16)
        flat = idx[rows].reshape(-1, order="F") // 4
        expected[rows] = src[rows][:, flat]
    np.testing.assert_array_equal(got.reshape(128, 64, 4), expected)


def _gather(s, i):
    dst = nl.ndarray((128, 64 * 4), s.dtype)
    nisa.local_gather(dst=dst, src_buffer=s, index=i, num_elem_per_idx=4, num_valid_indices=64)
    return dst


@covers("nisa.nc_n_gather")
def test_nc_n_gather(run_tiles):
    data = np.arange(8 * 32, dtype=np.float32).reshape(8, 2, 16)
    idx = np.random.default_rng(6).integers(0, 32, (8, 10)).astype(np.uint32)
    (got,) = run_tiles(lambda d, i: (_n_gather(d, i),), data, idx)
    np.testing.assert_array_equal(got, np.take_along_axis(data.reshape(8, 32), idx.astype(np.int64), axis=1))


def _n_gather(d, i):
    dst = nl.ndarray(i.shape, d.dtype)
    nisa.nc_n_gather(dst=dst, data=d, indices=i)
    return dst


@covers("nisa.nonzero_with_count")
@pytest.mark.parametrize("target", GEN3_PLUS)
def test_nonzero_with_count_on_core_partitions(target, run_tiles):
    x = np.zeros((32, 8), np.float32)
    x[0] = [0, 1, 1, 0, 0, 1, 0, 0]
    x[16] = [2, 0, 0, 0, 0, 0, 0, 3]
    x[1] = 1  # not a core's first partition: not read

    def body(t):
        d = nl.full((32, 9), 7, nl.int32)
        nisa.nonzero_with_count(dst=d, src=t, index_offset=16, padding_val=-1)
        return (d,)
    (d,) = run_tiles(body, x, target=target)
    np.testing.assert_array_equal(d[0], [17, 18, 21, -1, -1, -1, -1, -1, 3])  # S-ISA's example
    np.testing.assert_array_equal(d[16], [16, 23, -1, -1, -1, -1, -1, -1, 2])
    assert (d[1] == 7).all()


@covers("nisa.sequence_bounds")
def test_sequence_bounds_documented_example(run_tiles):
    ids = np.array([[0, 1, 1, 2, 2, 2, 0, 3, 3]], np.float32)

    def body(t):
        d = nl.ndarray((1, 2, 9), nl.float32)
        nisa.sequence_bounds(dst=d, segment_ids=t)
        return (d,)
    (d,) = run_tiles(body, ids)
    np.testing.assert_array_equal(d[0], [[9, 1, 1, 3, 3, 3, 9, 7, 7], [-1, 3, 3, 6, 6, 6, -1, 9, 9]])


@covers("nisa.topk")
def test_topk_of_each_16_partition_snake(run_tiles):
    n, k = 42, 8
    vals = np.random.default_rng(7).permutation(np.arange(32 * 3, dtype=np.float32)).reshape(32, 3)
    snake = vals.astype(ml_dtypes.bfloat16)

    def body(s):
        v, i = nl.ndarray((32, k), nl.bfloat16), nl.ndarray((32, k), nl.uint32)
        nisa.topk(val_dst=v, idx_dst=i, src=s, n=n)
        return v, i
    v, i = run_tiles(body, snake)
    for g in range(2):
        flat = snake[16 * g:16 * g + 16].astype(np.float32).T.reshape(-1)[:n]
        order = np.argsort(-flat)[:k][::-1]
        np.testing.assert_array_equal(v[16 * g:16 * g + 16].astype(np.float32), np.tile(flat[order], (16, 1)))
        np.testing.assert_array_equal(i[16 * g], order)


@covers("nl.average")
def test_average_partition_reduce(run_tiles):
    x = np.arange(16 * 8, dtype=np.float32).reshape(16, 8)

    def body(t):
        d = nl.ndarray((1, 8), nl.float32)
        nisa.tensor_partition_reduce(dst=d, op=nl.average, data=t)
        return (d,)
    np.testing.assert_allclose(run_tiles(body, x)[0], x.mean(axis=0, keepdims=True), rtol=1e-6)
    with pytest.raises(TypeError, match="operator constant"):
        nl.average(x, x)


@covers("nisa.nc_find_index8", "nisa.nc_match_replace8")
def test_find_index8_and_match_replace8_documented_duplicates(run_tiles):
    data = np.array([[1, 2, 3, 4, 8, 8, 8, 8, 8, 8, 8, 5]], np.float32)
    vals = np.array([[3, 8, 8, 8, 8, 8, 8, 8]], np.float32)
    miss = np.array([[3, 9, 1, 1, 4, 4, 4, 4]], np.float32)

    def body(d, v, m):
        fi, fm = nl.ndarray((1, 8), nl.uint32), nl.ndarray((1, 8), nl.uint16)
        nisa.nc_find_index8(dst=fi, data=d, vals=v)
        nisa.nc_find_index8(dst=fm, data=d, vals=m)
        rep, idx = nl.ndarray(d.shape, d.dtype), nl.ndarray((1, 8), nl.uint32)
        nisa.nc_match_replace8(dst=rep, data=d, vals=v, imm=-1.0, dst_idx=idx)
        return fi, fm, rep, idx
    fi, fm, rep, idx = run_tiles(body, data, vals, miss)
    np.testing.assert_array_equal(fi, [[2, 4, 5, 6, 7, 8, 9, 10]])  # successive occurrences, ascending
    np.testing.assert_array_equal(fm, [[2, 0xFFFF, 0, 0xFFFF, 3, 0xFFFF, 0xFFFF, 0xFFFF]])
    np.testing.assert_array_equal(idx, [[2, 10, 9, 8, 7, 6, 5, 4]])  # S-ISA's example: reverse order
    np.testing.assert_array_equal(rep, [[1, 2, -1, 4, -1, -1, -1, -1, -1, -1, -1, 5]])


@covers("nisa.nc_stream_shuffle")
def test_stream_shuffle_rotate_broadcast_and_keep(run_tiles):
    x = np.arange(128 * 4, dtype=np.float32).reshape(128, 4)
    row = np.arange(4, dtype=np.float32).reshape(1, 4) + 100
    mask = [(i - 1) % 32 for i in range(32)]

    def body(t, r):
        rot, bc = nl.ndarray(t.shape, t.dtype), nl.full((32, 4), -1.0, nl.float32)
        nisa.nc_stream_shuffle(dst=rot, src=t, shuffle_mask=mask)
        nisa.nc_stream_shuffle(dst=bc, src=r, shuffle_mask=[0] * 31 + [255])
        nisa.nc_stream_shuffle(dst=t, src=t, shuffle_mask=mask)  # in place
        return rot, bc, t
    rot, bc, inplace = run_tiles(body, x, row)
    expected = x.reshape(4, 32, 4)[:, mask].reshape(128, 4)
    np.testing.assert_array_equal(rot, expected)
    np.testing.assert_array_equal(inplace, expected)
    np.testing.assert_array_equal(bc[:31], np.tile(row, (31, 1)))
    assert (bc[31] == -1).all()  # 255 keeps the destination partition
