"""Value tests of the documented `nki.language` data APIs (NKI 0.6): dtypes, memory regions, tile sizes, tensor
creation and constants, views and broadcasts, loads/stores, loops, program ids, NKIObject, nki.typing."""

from dataclasses import dataclass, field

import ml_dtypes
import numpy as np
import pytest
from api_coverage import covers

from nkilab.harness.emulator import TARGETS, NkiTraceError, NkiValidationError, nisa, nki, nl, run

ALL_TARGETS = tuple(TARGETS)
SCALAR_DTYPES = ("bool_", "int8", "int16", "int32", "uint8", "uint16", "uint32", "float16", "float32", "bfloat16",
                 "tfloat32", "float8_e4m3", "float8_e4m3fn", "float8_e5m2", "float8_e8m0fnu")
PACKED = ("float8_e5m2_x4", "float8_e4m3fn_x4", "float4_e2m1fn_x4")


@covers("nl.DType", *(f"nl.{n}" for n in SCALAR_DTYPES))
@pytest.mark.parametrize("name", SCALAR_DTYPES)
def test_dtypes_store_values_rounded_to_nearest_even(name, run_tiles):
    dt = getattr(nl, name)
    assert isinstance(dt, nl.DType)
    x = np.array([[0.0, 1.0, 2.0, 3.0, 0.5, 1.0625, 100.0, 7.0]], np.float32)

    def body(t):
        out = nl.ndarray(t.shape, dt)
        nisa.tensor_copy(dst=out, src=t)
        back = nl.ndarray(t.shape, nl.float32)
        nisa.tensor_copy(dst=back, src=out)
        return (back,)
    (got,) = run_tiles(body, x)
    if name == "bool_":
        expected = (x != 0).astype(np.float32)
    elif name in ("float32", "tfloat32"):
        expected = x
    elif np.dtype(dt).kind in "iu":
        expected = np.clip(np.rint(x), np.iinfo(dt).min, np.iinfo(dt).max)
    else:
        expected = x.astype(dt).astype(np.float32)
    np.testing.assert_array_equal(got, expected)


@covers(*(f"nl.{n}" for n in PACKED))
@pytest.mark.parametrize("name", PACKED)
def test_packed_x4_dtypes_move_bits_unchanged(name):
    dt = getattr(nl, name)
    bits = np.random.default_rng(0).integers(0, 2 ** 16, (4, 32)).astype(np.uint16)

    def kernel(src):
        n = 32 * 2 // dt.itemsize
        t = nl.ndarray((4, n), dt)
        nisa.dma_copy(dst=t, src=src.ap(pattern=[[n, 4], [1, n]], offset=0, dtype=dt))
        z = nl.ndarray((4, n), dt)
        nisa.memset(dst=z, value=0)
        out = nl.ndarray((4, 32), nl.uint16, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=out.ap(pattern=[[n, 4], [1, n]], offset=0, dtype=dt), src=t)
        zeros = nl.ndarray((4, 32), nl.uint16, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=zeros.ap(pattern=[[n, 4], [1, n]], offset=0, dtype=dt), src=z)
        return out, zeros
    out, zeros = run(kernel, bits, target="trn3").outputs
    np.testing.assert_array_equal(out, bits)
    assert not zeros.any()

    def nonzero_memset(src):
        nisa.memset(dst=nl.ndarray((4, 8), dt), value=1)
    with pytest.raises(NkiValidationError, match="value=0"):
        run(nonzero_memset, bits, target="trn3")


@covers("nl.sbuf", "nl.psum", "nl.hbm", "nl.private_hbm", "nl.shared_hbm", "nl.MemoryRegion", "nl.is_hbm",
        "nl.is_on_chip", "nl.is_psum", "nl.is_sbuf", "nl.ndarray")
def test_memory_regions_hold_values_and_predicates():
    def kernel(a):
        assert a.buffer == nl.hbm and nl.is_hbm(a) and not nl.is_on_chip(a)
        s = nl.ndarray(a.shape, a.dtype, buffer=nl.sbuf)
        p = nl.ndarray(a.shape, a.dtype, buffer=nl.psum)
        h = nl.ndarray(a.shape, a.dtype, buffer=nl.private_hbm)
        out = nl.ndarray(a.shape, a.dtype, buffer=nl.shared_hbm)
        assert nl.is_sbuf(s) and nl.is_psum(nl.MemoryRegion.psum) and nl.is_on_chip(p) and nl.is_hbm(h)
        nisa.dma_copy(dst=h, src=a)
        nisa.dma_copy(dst=s, src=h)
        nisa.tensor_copy(dst=p, src=s)
        nisa.tensor_copy(dst=s, src=p)
        nisa.dma_copy(dst=out, src=s)
        return out
    x = np.arange(32, dtype=np.float32).reshape(4, 8)
    np.testing.assert_array_equal(run(kernel, x).outputs, x)
    assert nl.hbm is nl.private_hbm and isinstance(nl.shared_hbm, nl.MemoryRegion)
    with pytest.raises(ValueError, match="buffer"):
        nl.is_hbm("dram")


@covers("nl.tile_size")
@pytest.mark.parametrize("target", ALL_TARGETS)
def test_tile_size_per_target(target):
    seen = {}

    def kernel():
        ts = nl.tile_size
        seen.update(pmax=ts.pmax, bank=ts.psum_bank_fmax, stat=ts.gemm_stationary_fmax, mov=ts.gemm_moving_fmax,
                    banks=ts.psum_num_banks, bn=ts.bn_stats_fmax, sbuf=ts.sbuf_fmax_bytes)
    run(kernel, target=target)
    assert seen == dict(pmax=128, bank=512, stat=128, mov=512, banks=8, bn=512, sbuf=TARGETS[target].sbuf_bytes)


@covers("nl.zeros", "nl.ones", "nl.full", "nl.zeros_like", "nl.empty_like", "nl.copy", "nl.load", "nl.store")
def test_creation_and_load_store(run_tiles):
    def kernel(a):
        t = nl.load(a)
        z, o, f = nl.zeros(t.shape, nl.float32), nl.ones(t.shape, nl.int32), nl.full(t.shape, 2.5, nl.bfloat16)
        zl, el = nl.zeros_like(t), nl.empty_like(t, dtype=nl.float16)
        nisa.tensor_copy(dst=el, src=t)
        c = nl.copy(t, dtype=nl.bfloat16)
        outs = []
        for v in (z, o, f, zl, el, c):
            h = nl.ndarray(v.shape, v.dtype, buffer=nl.shared_hbm)
            nl.store(h, v)
            outs.append(h)
        return tuple(outs)
    x = np.linspace(-1, 1, 16, dtype=np.float32).reshape(2, 8)
    z, o, f, zl, el, c = run(kernel, x).outputs
    assert not z.any() and (o == 1).all() and (f.astype(np.float32) == 2.5).all() and not zl.any()
    np.testing.assert_array_equal(el, x.astype(np.float16))
    np.testing.assert_array_equal(c, x.astype(ml_dtypes.bfloat16))


@covers("nl.rand", "nl.random_seed")
@pytest.mark.parametrize("target", ALL_TARGETS)
def test_rand_uniform_and_reseedable(target):
    def kernel():
        seed = nl.full((1, 1), 42, dtype=nl.int32)
        nl.random_seed(seed)
        a = nl.rand((128, 512), dtype=nl.float32)
        nl.random_seed(seed)
        b = nl.rand((128, 512), dtype=nl.float32)
        c = nl.rand((128, 512), dtype=nl.float32)
        outs = []
        for v in (a, b, c):
            h = nl.ndarray(v.shape, v.dtype, buffer=nl.shared_hbm)
            nisa.dma_copy(dst=h, src=v)
            outs.append(h)
        return tuple(outs)
    a, b, c = run(kernel, target=target).outputs
    np.testing.assert_array_equal(a, b)  # same seed, same sequence
    assert not np.array_equal(a, c)
    assert a.min() >= 0.0 and a.max() < 1.0 and abs(a.mean() - 0.5) < 0.01 and abs(a.var() - 1 / 12) < 0.005


@covers("nl.shared_constant", "nl.shared_identity_matrix")
def test_constants(tmp_path):
    c = np.arange(12, dtype=np.int32).reshape(3, 4)
    np.save(tmp_path / "c.npy", c)

    def kernel():
        h1, h2 = nl.shared_constant(c), nl.shared_constant(str(tmp_path / "c.npy"))
        eye = nl.shared_identity_matrix(16, dtype=nl.bfloat16)
        out = nl.ndarray((16, 16), nl.bfloat16, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=out, src=eye)
        assert h1.buffer == nl.shared_hbm
        return h1, h2, out
    h1, h2, eye = run(kernel).outputs
    np.testing.assert_array_equal(h1, c)
    np.testing.assert_array_equal(h2, c)
    np.testing.assert_array_equal(eye.astype(np.float32), np.eye(16))


@covers("nl.expand_dims", "nl.broadcast_to", "nl.ds")
@pytest.mark.parametrize("target", ALL_TARGETS)
def test_views_and_broadcast(target, run_tiles):
    row = np.arange(8, dtype=np.float32).reshape(1, 8)
    col = np.arange(4, dtype=np.float32).reshape(4, 1)

    def body(r, c):
        e = nl.expand_dims(r, 1)
        assert e.shape == (1, 1, 8)
        sliced = r[:, nl.ds(2, 4)]
        return nl.broadcast_to(r, (128, 8)), nl.broadcast_to(c, (4, 6), dtype=nl.bfloat16), nl.copy(sliced)
    rb, cb, s = run_tiles(body, row, col, target=target)
    np.testing.assert_array_equal(rb, np.broadcast_to(row, (128, 8)))
    np.testing.assert_array_equal(cb.astype(np.float32), np.broadcast_to(col, (4, 6)))
    np.testing.assert_array_equal(s, row[:, 2:6])


@covers("nl.transpose", "nl.matmul", "nl.load_transpose2d")
@pytest.mark.parametrize("target", ALL_TARGETS)
def test_transposes_and_matmul(target):
    a = np.random.default_rng(1).standard_normal((64, 32)).astype(np.float32)
    b = np.random.default_rng(2).standard_normal((64, 48)).astype(np.float32)

    def kernel(a, b):
        at = nl.load_transpose2d(a)
        ta = nl.copy(nl.transpose(nl.load(a)))
        mm = nl.copy(nl.matmul(nl.load(a), nl.load(b), transpose_x=True))
        outs = []
        for v in (at, ta, mm):
            h = nl.ndarray(v.shape, v.dtype, buffer=nl.shared_hbm)
            nl.store(h, v)
            outs.append(h)
        return tuple(outs)
    at, ta, mm = run(kernel, a, b, target=target).outputs
    np.testing.assert_array_equal(at, a.T)
    np.testing.assert_array_equal(ta, a.T)
    np.testing.assert_allclose(mm, a.T @ b, rtol=1e-5, atol=1e-5)


@covers("nl.gather_flattened")
def test_gather_flattened(run_tiles):
    data = np.arange(4 * 16, dtype=np.float32).reshape(4, 16)
    idx = np.random.default_rng(3).integers(0, 16, (4, 5)).astype(np.int32)
    (got,) = run_tiles(lambda d, i: (nl.gather_flattened(d, i),), data, idx)
    np.testing.assert_array_equal(got, np.take_along_axis(data, idx, axis=1))


@covers("nl.affine_range", "nl.sequential_range", "nl.static_range", "nl.dynamic_range", "nl.fori_loop",
        "nl.while_loop", "nl.no_reorder")
def test_loops():
    counts = {}

    def kernel(n):
        acc = nl.zeros((1, 1), nl.int32)
        one = nl.ones((1, 1), nl.int32)
        with nl.no_reorder():
            for r in (nl.affine_range(2), nl.sequential_range(1, 3), nl.static_range(0, 4, 2)):
                for _ in r:
                    nisa.tensor_tensor(dst=acc, data1=acc, data2=one, op=nl.add)
        reg = nisa.register_alloc()
        nsb = nl.ndarray((1, 1), nl.int32)
        nisa.dma_copy(dst=nsb, src=n)
        nisa.register_load(reg, nsb)
        for _ in nl.dynamic_range(reg):
            nisa.tensor_tensor(dst=acc, data1=acc, data2=one, op=nl.add)
        nl.fori_loop(0, reg, lambda i: nisa.tensor_tensor(dst=acc, data1=acc, data2=one, op=nl.add), step=2)

        def body(r):
            counts["while"] = counts.get("while", 0) + 1
            nisa.tensor_tensor(dst=nsb, data1=nsb, data2=one, op=nl.subtract)
            nisa.register_load(r, nsb)
            return r
        nl.while_loop(reg, body)
        out = nl.ndarray((1, 1), nl.int32, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=out, src=acc)
        return out
    out = run(kernel, np.array([[5]], np.int32)).outputs
    assert out[0, 0] == 2 + 2 + 2 + 5 + 3 and counts["while"] == 5


def test_while_loop_unknown_condition_in_trace_mode_raises():
    def kernel(n):
        nsb = nl.ndarray((1, 1), nl.float32)
        nisa.dma_copy(dst=nsb, src=n)
        cnt = nl.ndarray((1, 1), nl.int32)
        nisa.tensor_copy(dst=cnt, src=nsb)
        reg = nisa.register_alloc()
        nisa.register_load(reg, cnt)
        nl.while_loop(reg, lambda r: r)
    with pytest.raises(NkiTraceError, match="while_loop"):
        run(kernel, np.array([[1.0]], np.float32), mode="trace")


@covers("nl.program_id", "nl.num_programs", "nl.program_ndim", "nl.device_print")
def test_program_ids(capsys):
    seen = []

    def kernel(a):
        seen.append((nl.program_id(0), nl.num_programs(), nl.program_ndim()))
        nl.device_print("x=", nl.load(a))
    run(nki.jit(kernel)[2], np.ones((1, 2), np.float32), target="trn2")
    assert seen == [(0, 2, 1), (1, 2, 1)]
    assert "x=" in capsys.readouterr().out


class Plain(nl.NKIObject):
    x: int
    y: bool = False
    scale = 2.0  # a plain class attribute is a field too

    def toggle(self):
        self.y = not self.y


@dataclass
class WithDataclass(nl.NKIObject):
    a: int = 1
    items: list = field(default_factory=list)


@dataclass
class DataclassPlainAttrs(nl.NKIObject):
    section_idx = None
    offset = 0

    def __post_init__(self):
        self.end = (self.offset or 0) + 1


@covers("nl.NKIObject")
def test_nkiobject_synthesized_initializers():
    c = Plain(1)
    c.toggle()
    assert (c.x, c.y, c.scale) == (1, True, 2.0) and Plain(x=1, y=True) == c and Plain(2) != c
    assert Plain().x is None
    assert WithDataclass(3).a == 3 and WithDataclass().items == [] and WithDataclass().items is not WithDataclass().items
    d = DataclassPlainAttrs(section_idx=4, offset=7)
    assert (d.section_idx, d.offset, d.end) == (4, 7, 8)
    with pytest.raises(TypeError, match="unexpected keyword argument 'z'"):
        Plain(z=1)
    seen = []
    run(lambda cfg: seen.append(cfg.x), Plain(x=5))
    assert seen == [5]


@covers("nl.NkiTensor", "nt.tensor")
def test_nkitensor_rearrange_ap_dtype_and_typing(run_tiles):
    def body(t: nki.typing.tensor[128, 24]):
        assert isinstance(t, nl.NkiTensor)
        v = t.rearrange(("b", ("h", "w")), ("b", "w", "h"), {"h": 4})
        raw = t.ap(pattern=[[48, 128], [1, 48]], offset=0, dtype=nl.bfloat16)
        return nl.copy(v), nl.copy(raw)
    x = np.arange(128 * 24, dtype=np.float32).reshape(128, 24)
    v, raw = run_tiles(body, x)
    np.testing.assert_array_equal(v, x.reshape(128, 4, 6).transpose(0, 2, 1))
    np.testing.assert_array_equal(raw.view(np.uint16), x.view(np.uint16).reshape(128, 48))
    assert nki.typing.tensor[128, 24].shape == (128, 24)
    with pytest.raises(NkiValidationError, match="rearrange"):
        run_tiles(lambda t: (nl.copy(t.rearrange(("b", "c"), ("b", "d"))),), x)
