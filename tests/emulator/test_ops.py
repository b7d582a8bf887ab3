"""Every nisa op value-by-value against NumPy computations of its documented semantics, on every target
where it exists."""

import ml_dtypes
import numpy as np
import pytest

from nkilab.harness.emulator import TARGETS, NkiValidationError, nisa, nl, run

ALL_TARGETS = tuple(TARGETS)
GEN3_PLUS = ("trn2", "trn3")
bf16 = ml_dtypes.bfloat16


def _f32(*shape, seed=0, lo=-2.0, hi=2.0):
    return np.random.default_rng(seed).uniform(lo, hi, shape).astype(np.float32)


def _new(t, dtype=None, shape=None, buffer=nl.sbuf):
    return nl.ndarray(shape or t.shape, dtype or t.dtype, buffer=buffer)


# ---- data movement ---------------------------------------------------------------------------------
@pytest.mark.parametrize("target", ALL_TARGETS)
def test_dma_copy_casts_round_to_nearest_even(target, run_tiles):
    x = np.array([[1.00390625, 1.01171875, 2.5, -2.5, 3.5, 1e10, -1e10, np.nan]], np.float32)

    def body(t):
        b = _new(t, nl.bfloat16)
        i = _new(t, nl.int32)
        u = _new(t, nl.uint8)
        for d in (b, i, u):
            nisa.dma_copy(dst=d, src=t)
        return b, i, u
    b, i, u = run_tiles(body, x, target=target)
    np.testing.assert_array_equal(b.view(np.uint16), x.astype(bf16).view(np.uint16))
    np.testing.assert_array_equal(i, [[1, 1, 2, -2, 4, 2**31 - 1, -2**31, 0]])
    np.testing.assert_array_equal(u, [[1, 1, 2, 0, 4, 255, 0, 0]])


@pytest.mark.parametrize("target", GEN3_PLUS)
def test_dma_indirect_gather_and_scatter(target):
    data = _f32(10, 6)
    idx = np.array([[7], [0], [3], [3]], np.int32)

    def kernel(data, idx, dst_hbm):
        ix = nl.ndarray((4, 1), nl.int32)
        nisa.dma_copy(dst=ix, src=idx)
        g = nl.ndarray((4, 6), nl.float32)
        nisa.dma_copy(dst=g, src=data.ap(pattern=[[6, 4], [1, 6]], vector_offset=ix, indirect_dim=0))
        nisa.dma_copy(dst=dst_hbm.ap(pattern=[[6, 4], [1, 6]], vector_offset=ix, indirect_dim=0), src=g)
        out = nl.ndarray((4, 6), nl.float32, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=out, src=g)
        return out
    dst = np.zeros((10, 6), np.float32)
    out = run(kernel, data, idx, dst, target=target).outputs
    np.testing.assert_array_equal(out, data[idx[:, 0]])
    expected = np.zeros_like(dst)
    expected[idx[:, 0]] = data[idx[:, 0]]
    np.testing.assert_array_equal(dst, expected)  # input written in place


@pytest.mark.parametrize("target", GEN3_PLUS)
def test_dma_indirect_oob_skip_keeps_rows(target):
    data = _f32(5, 3)
    idx = np.array([[1], [9], [4]], np.int32)

    def kernel(data, idx):
        ix = nl.ndarray((3, 1), nl.int32)
        nisa.dma_copy(dst=ix, src=idx)
        g = nl.ndarray((3, 3), nl.float32)
        nisa.memset(dst=g, value=-1.0)
        nisa.dma_copy(dst=g, src=data.ap(pattern=[[3, 3], [1, 3]], vector_offset=ix, indirect_dim=0),
                      oob_mode=nisa.oob_mode.skip)
        out = nl.ndarray((3, 3), nl.float32, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=out, src=g)
        return out
    out = run(kernel, data, idx, target=target).outputs
    np.testing.assert_array_equal(out, np.stack([data[1], -np.ones(3, np.float32), data[4]]))


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_dma_scalar_offset_oob_skip_moves_nothing(target):
    data = _f32(4, 3, seed=33)

    def kernel(data):
        bad = nisa.register_alloc(4)  # row 4 of a 4-row tensor
        g = nl.ndarray((1, 3), nl.float32)
        nisa.memset(dst=g, value=-1.0)
        nisa.dma_copy(dst=g, src=data.ap(pattern=[[3, 1], [1, 3]], offset=0, scalar_offset=bad, indirect_dim=0),
                      oob_mode=nisa.oob_mode.skip)  # gather skipped: g keeps -1
        nisa.dma_copy(dst=data.ap(pattern=[[3, 1], [1, 3]], offset=0, scalar_offset=bad, indirect_dim=0), src=g,
                      oob_mode=nisa.oob_mode.skip)  # scatter skipped: data untouched
        out = nl.ndarray((1, 3), nl.float32, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=out, src=g)
        return out
    before = data.copy()
    np.testing.assert_array_equal(run(kernel, data, target=target).outputs, -np.ones((1, 3), np.float32))
    np.testing.assert_array_equal(data, before)


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_fori_loop_register_as_scalar_offset(target):
    data = _f32(6, 4)

    def kernel(data):
        out = nl.ndarray((6, 4), nl.float32, buffer=nl.shared_hbm)

        def body(i):
            row = nl.ndarray((1, 4), nl.float32)
            nisa.dma_copy(dst=row, src=data.ap(pattern=[[4, 1], [1, 4]], offset=0, scalar_offset=i, indirect_dim=0))
            nisa.activation(dst=row, op=nl.copy, data=row, scale=2.0)
            nisa.dma_copy(dst=out.ap(pattern=[[4, 1], [1, 4]], offset=0, scalar_offset=i, indirect_dim=0), src=row)
        nl.fori_loop(0, 6, body)
        return out
    np.testing.assert_array_equal(run(kernel, data, target=target).outputs, data * 2)


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_dma_compute_adds(target, run_tiles):
    a, b, c = _f32(4, 8, seed=1), _f32(4, 8, seed=2), _f32(4, 8, seed=3)

    def body(x, y, z):
        out = _new(x, nl.bfloat16)
        nisa.dma_compute(dst=out, srcs=[x, y, z], reduce_op=nl.add)
        return (out,)
    (out,) = run_tiles(body, a, b, c, target=target)
    np.testing.assert_array_equal(out, (a + b + c).astype(bf16))


@pytest.mark.parametrize("target", GEN3_PLUS)
def test_dma_compute_read_modify_write(target):
    table = _f32(6, 4, seed=31)
    upd = _f32(3, 4, seed=32)
    idx = np.array([[4], [0], [2]], np.int32)

    def operands(table, upd, idx):
        """(table rows idx as a vector_offset view, upd in SBUF)."""
        ix = nl.ndarray((3, 1), nl.int32)
        nisa.dma_copy(dst=ix, src=idx)
        u = nl.ndarray((3, 4), nl.float32)
        nisa.dma_copy(dst=u, src=upd)
        return table.ap(pattern=[[4, 3], [1, 4]], vector_offset=ix, indirect_dim=0), u

    def kernel(table, upd, idx):
        rows, u = operands(table, upd, idx)
        nisa.dma_compute(dst=rows, srcs=[rows, u], reduce_op=nl.add)  # scatter RMW: table[idx] += u
        acc = nl.ndarray((3, 4), nl.float32)
        nisa.memset(dst=acc, value=1.0)
        nisa.dma_compute(dst=acc, srcs=[acc, rows], reduce_op=nl.add)  # gather RMW: acc += table[idx]
        out = nl.ndarray((3, 4), nl.float32, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=out, src=acc)
        return out
    expected = table.copy()
    expected[idx[:, 0]] += upd
    out = run(kernel, table, upd, idx, target=target).outputs
    np.testing.assert_array_equal(table, expected)  # HBM input updated in place
    np.testing.assert_array_equal(out, 1.0 + expected[idx[:, 0]])

    def three_srcs(table, upd, idx):
        rows, u = operands(table, upd, idx)
        nisa.dma_compute(dst=rows, srcs=[rows, u, u], reduce_op=nl.add)
    with pytest.raises(NkiValidationError, match="exactly 2 sources"):
        run(three_srcs, table, upd, idx, target=target)


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_tensor_copy_and_memset(target, run_tiles):
    x = _f32(8, 16)
    ints = np.arange(-64, 64, dtype=np.int32).reshape(8, 16) * 1000003

    def body(t, i):
        c = _new(t, nl.bfloat16)
        nisa.tensor_copy(dst=c, src=t)
        ci = _new(i)
        nisa.tensor_copy(dst=ci, src=i, engine=nisa.engine.gpsimd)  # bit-exact for equal dtypes
        m = _new(t)
        nisa.memset(dst=m, value=0.25)
        mi = _new(i, nl.int16)
        nisa.memset(dst=mi, value=-7)
        return c, ci, m, mi
    c, ci, m, mi = run_tiles(body, x, ints, target=target)
    np.testing.assert_array_equal(c, x.astype(bf16))
    np.testing.assert_array_equal(ci, ints)
    assert (m == 0.25).all() and (mi == -7).all() and mi.dtype == np.int16


# ---- tensor engine ---------------------------------------------------------------------------------
@pytest.mark.parametrize("target", ALL_TARGETS)
@pytest.mark.parametrize("dtype", [np.float32, bf16, ml_dtypes.float8_e4m3, ml_dtypes.float8_e5m2],
                         ids=["fp32", "bf16", "fp8e4m3", "fp8e5m2"])
def test_nc_matmul_accumulates_over_k(target, dtype):
    k_tiles = 3
    a = _f32(128 * k_tiles, 96, seed=4).astype(dtype)  # stationary: [K, M]
    b = _f32(128 * k_tiles, 200, seed=5).astype(dtype)  # moving: [K, N]

    def kernel(a, b):
        acc = nl.ndarray((96, 200), nl.float32, buffer=nl.psum)
        for k in range(k_tiles):
            s = nl.ndarray((128, 96), a.dtype)
            m = nl.ndarray((128, 200), b.dtype)
            nisa.dma_copy(dst=s, src=a[k * 128:(k + 1) * 128, :])
            nisa.dma_copy(dst=m, src=b[k * 128:(k + 1) * 128, :])
            nisa.nc_matmul(dst=acc, stationary=s, moving=m)
        res = nl.ndarray((96, 200), nl.float32)
        nisa.tensor_copy(dst=res, src=acc)
        out = nl.ndarray((96, 200), nl.float32, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=out, src=res)
        return out
    out = run(kernel, a, b, target=target).outputs
    ref = a.astype(np.float64).T @ b.astype(np.float64)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-4)  # fp32 accumulation order differs from NumPy's


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_nc_matmul_accumulate_flags(target, run_tiles):
    s, m = _f32(32, 16, seed=6), _f32(32, 8, seed=7)
    prod = s.T @ m

    def body(s, m):
        p = nl.ndarray((16, 8), nl.float32, buffer=nl.psum)
        nisa.nc_matmul(dst=p, stationary=s, moving=m)  # first write: overwrite (NaN sentinel gone)
        nisa.nc_matmul(dst=p, stationary=s, moving=m, accumulate=True)  # 2x
        q = nl.ndarray((16, 8), nl.float32, buffer=nl.psum)
        nisa.memset(dst=q, value=5.0)
        nisa.nc_matmul(dst=q, stationary=s, moving=m)  # memset is not a matmul write: overwrite
        nisa.nc_matmul(dst=q, stationary=s, moving=m, accumulate=False)
        r = nl.ndarray((16, 8), nl.float32, buffer=nl.psum)  # auto-detection is per PSUM location:
        nisa.nc_matmul(dst=r[:, 0:4], stationary=s, moving=m[:, 0:4])  # columns 0:4 written once
        nisa.nc_matmul(dst=r, stationary=s, moving=m)  # 0:4 accumulate, 4:8 first write: overwrite the NaN
        return p, q, r
    p, q, r = run_tiles(body, s, m, target=target)
    np.testing.assert_allclose(p, 2 * prod, rtol=1e-6)
    np.testing.assert_allclose(q, prod, rtol=1e-6)
    np.testing.assert_allclose(r[:, 0:4], 2 * prod[:, 0:4], rtol=1e-6)
    np.testing.assert_allclose(r[:, 4:8], prod[:, 4:8], rtol=1e-6)


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_nc_matmul_transpose_mode(target, run_tiles):
    x = _f32(8, 6, seed=46)
    x[3, 2] = np.nan

    def body(x):
        eye = nl.ndarray((8, 8), nl.float32)
        nisa.iota(dst=eye, pattern=[[-1, 8]], offset=0, channel_multiplier=1)  # p - f
        nisa.tensor_scalar(dst=eye, data=eye, op0=nl.equal, operand0=0.0)
        p = nl.ndarray((6, 8), nl.float32, buffer=nl.psum)
        nisa.nc_matmul(dst=p, stationary=x, moving=eye, is_transpose=True)
        return (p,)
    (p,) = run_tiles(body, x, target=target)
    if TARGETS[target].gen >= 3:  # transpose mode: bit-accurate
        np.testing.assert_array_equal(p, x.T)
    else:  # v2: a plain matmul with the identity, NaN * 0 spreads along the output row
        expected = x.T.copy()
        expected[2, :] = np.nan
        np.testing.assert_array_equal(p, expected)


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_nc_matmul_double_row_fp8(target):
    s = _f32(128, 2, 64, seed=42).astype(ml_dtypes.float8_e4m3)
    m = _f32(128, 2, 100, seed=43).astype(ml_dtypes.float8_e5m2)

    def kernel(s, m):
        st, mv = nl.load(s), nl.load(m)
        p = nl.ndarray((64, 100), nl.float32, buffer=nl.psum)
        nisa.nc_matmul(dst=p, stationary=st, moving=mv, perf_mode=nisa.matmul_perf_mode.double_row)
        out = nl.ndarray((64, 100), nl.float32, buffer=nl.shared_hbm)
        nl.store(out, nl.copy(p))
        return out
    if TARGETS[target].gen < 3:
        with pytest.raises(NkiValidationError, match="double_row needs NeuronCore-v3"):
            run(kernel, s, m, target=target)
        return
    res = run(kernel, s, m, target=target)

    def column_tiled(s, m):
        st, mv = nl.load(s), nl.load(m)
        nisa.nc_matmul(dst=nl.ndarray((64, 100), nl.float32, buffer=nl.psum), stationary=st, moving=mv,
                       perf_mode=nisa.matmul_perf_mode.double_row, tile_position=(0, 0), tile_size=(128, 64))
    with pytest.raises(NkiValidationError, match="double_row without column tiling"):
        run(column_tiled, s, m, target=target)
    ref = s.astype(np.float64).reshape(256, 64).T @ m.astype(np.float64).reshape(256, 100)
    np.testing.assert_allclose(res.outputs, ref, rtol=1e-5, atol=1e-5)
    mm = next(i for i in res.trace if i.opcode == "nc_matmul")
    assert mm.attrs["k"] == 256 and mm.attrs["double_row"] and mm.flops == 2 * 256 * 64 * 100


def test_nc_matmul_accumulate_true_on_fresh_psum_warns(run_tiles):
    s, m = _f32(8, 4, seed=40), _f32(8, 4, seed=41)

    def body(s, m):
        p = nl.ndarray((4, 4), nl.float32, buffer=nl.psum)
        nisa.nc_matmul(dst=p, stationary=s, moving=m, accumulate=True)
        return (p,)
    with pytest.warns(RuntimeWarning, match="accumulate=True onto PSUM"):
        (p,) = run_tiles(body, s, m)
    assert np.isnan(p).all()  # added onto the NaN sentinel


def test_nc_matmul_bf16_psum_on_trn3(run_tiles):
    s, m = _f32(64, 32, seed=8), _f32(64, 1000, seed=9)

    def body(s, m):
        p = nl.ndarray((32, 1000), nl.bfloat16, buffer=nl.psum)  # N > 512: gen4 only
        nisa.nc_matmul(dst=p, stationary=s, moving=m)
        return (p,)
    (p,) = run_tiles(body, s, m, target="trn3")
    # fp32 products rounded once (RNE) into the bf16 PSUM tile: within half a bf16 ulp of the fp32 result
    np.testing.assert_allclose(p.astype(np.float32), s.T @ m, rtol=2 ** -8, atol=1e-6)


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_nc_transpose(target, run_tiles):
    x = _f32(96, 40)
    y = _f32(20, 30)

    def body(x, y):
        t = nl.ndarray((40, 96), nl.float32, buffer=nl.psum)
        nisa.nc_transpose(dst=t, data=x)  # TensorE
        v = nl.ndarray((30, 20), nl.float32)
        nisa.nc_transpose(dst=v, data=y, engine=nisa.engine.vector)
        return t, v
    t, v = run_tiles(body, x, y, target=target)
    np.testing.assert_array_equal(t, x.T)
    np.testing.assert_array_equal(v, y.T)


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_nc_transpose_nan_inf_on_tensor_engine(target, run_tiles):
    x = _f32(6, 5, seed=12)
    x[2, 1], x[4, 3] = np.nan, np.inf  # column 1 holds a NaN, column 3 an inf

    def body(x):
        t = nl.ndarray((5, 6), nl.float32, buffer=nl.psum)
        nisa.nc_transpose(dst=t, data=x)  # TensorE
        v = nl.ndarray((5, 6), nl.float32)
        nisa.nc_transpose(dst=v, data=x, engine=nisa.engine.vector)
        return t, v
    t, v = run_tiles(body, x, target=target)
    np.testing.assert_array_equal(v, x.T)  # VectorE: bit-exact on every generation
    expected = x.T.copy()
    if TARGETS[target].gen == 2:  # x @ I: inf * 0 and NaN * 0 poison the rest of the output row
        expected[1, :] = np.nan
        expected[3, :] = np.nan
        expected[3, 4] = np.inf  # inf * 1 + finite * 0
    np.testing.assert_array_equal(t, expected)


# ---- vector / scalar / gpsimd ----------------------------------------------------------------------
BINARY = {"add": np.add, "subtract": np.subtract, "multiply": np.multiply, "maximum": np.maximum,
          "minimum": np.minimum, "greater_equal": lambda a, b: (a >= b).astype(np.float32),
          "less": lambda a, b: (a < b).astype(np.float32), "not_equal": lambda a, b: (a != b).astype(np.float32)}


@pytest.mark.parametrize("target", ALL_TARGETS)
@pytest.mark.parametrize("name", sorted(BINARY))
def test_tensor_tensor_arith(target, name, run_tiles):
    a, b = _f32(16, 24, seed=10), _f32(16, 24, seed=11)
    b[0, :4] = a[0, :4]

    def body(x, y):
        z = _new(x)
        nisa.tensor_tensor(dst=z, data1=x, data2=y, op=getattr(nl, name))
        return (z,)
    np.testing.assert_array_equal(run_tiles(body, a, b, target=target)[0], BINARY[name](a, b))


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_tensor_tensor_bitvec_and_int32(target, run_tiles):
    a = np.arange(64, dtype=np.int32).reshape(4, 16) * 3 + 2**30
    b = np.arange(64, dtype=np.int32).reshape(4, 16) % 5

    def body(x, y):
        outs = []
        for op in (nl.bitwise_and, nl.bitwise_xor, nl.left_shift, nl.right_shift, nl.add):
            z = _new(x)
            nisa.tensor_tensor(dst=z, data1=x, data2=y, op=op)
            outs.append(z)
        return outs
    got = run_tiles(body, a, b, target=target)
    expected = [a & b, a ^ b, a << b, a >> b, a + b]  # bit ops wrap to 32 bits
    for g, e in zip(got, expected):
        np.testing.assert_array_equal(g, e)


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_bitvec_uses_bit_patterns(target, run_tiles):
    a = np.array([[-8, 5, 127, -128]], np.int8)
    u = np.array([[0x0F, 0xA5, 0x80, 0x01]], np.uint8)

    def body(x, y):
        inv, shr, nib = _new(x), _new(x), _new(y)
        nisa.tensor_scalar(dst=inv, data=x, op0=nl.invert, operand0=None)
        nisa.tensor_scalar(dst=shr, data=x, op0=nl.right_shift, operand0=1)  # logical: 0xF8 >> 1 = 0x7C
        nisa.tensor_scalar(dst=nib, data=y, op0=nl.right_shift, operand0=4, op1=nl.bitwise_and, operand1=0x7)
        return inv, shr, nib
    inv, shr, nib = run_tiles(body, a, u, target=target)
    np.testing.assert_array_equal(inv, ~a)
    np.testing.assert_array_equal(shr, (a.view(np.uint8) >> 1).view(np.int8))
    np.testing.assert_array_equal(nib, (u >> 4) & 0x7)


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_tensor_scalar(target, run_tiles):
    a, v, w = _f32(8, 12, seed=12), _f32(8, 1, seed=13), _f32(8, 1, seed=14, lo=0.5)

    def body(x, v, w):
        r1, r2, r3 = _new(x), _new(x), _new(x, nl.bfloat16)
        nisa.tensor_scalar(dst=r1, data=x, op0=nl.multiply, operand0=3.0, op1=nl.add, operand1=v)
        nisa.tensor_scalar(dst=r2, data=x, op0=nl.subtract, operand0=v, reverse0=True)
        nisa.tensor_scalar(dst=r3, data=x, op0=nl.maximum, operand0=0.0, op1=nl.subtract, operand1=w, reverse1=True)
        return r1, r2, r3
    r1, r2, r3 = run_tiles(body, a, v, w, target=target)
    np.testing.assert_array_equal(r1, a * np.float32(3.0) + v)
    np.testing.assert_array_equal(r2, v - a)
    np.testing.assert_array_equal(r3, (w - np.maximum(a, 0)).astype(bf16))


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_tensor_scalar_unary_operators(target, run_tiles):
    a = _f32(8, 12, seed=29)

    def body(x):
        r1, r2, r3 = _new(x), _new(x), _new(x)
        nisa.tensor_scalar(dst=r1, data=x, op0=nl.abs, operand0=None, op1=nl.add, operand1=1.0)
        nisa.tensor_scalar(dst=r2, data=r1, op0=nl.rsqrt, operand0=0, engine=nisa.engine.gpsimd)
        nisa.tensor_scalar(dst=r3, data=x, op0=nl.square, operand0=None)
        return r1, r2, r3
    r1, r2, r3 = run_tiles(body, a, target=target)
    np.testing.assert_array_equal(r1, np.abs(a) + np.float32(1.0))
    np.testing.assert_allclose(r2, 1 / np.sqrt(r1), rtol=1e-6)
    np.testing.assert_array_equal(r3, a * a)

    def bad(x):
        nisa.tensor_scalar(dst=_new(x), data=x, op0=nl.abs, operand0=2.0)
        return ()
    with pytest.raises(NkiValidationError, match="None or 0 for the unary operator abs"):
        run_tiles(bad, a, target=target)


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_scalar_tensor_tensor(target, run_tiles):
    a, v, b = _f32(8, 12, seed=15), _f32(8, 1, seed=16), _f32(8, 12, seed=17)

    def body(x, v, y):
        r = _new(x)
        nisa.scalar_tensor_tensor(dst=r, data=x, op0=nl.multiply, operand0=v, op1=nl.subtract, operand1=y,
                                  reverse1=True)
        return (r,)
    np.testing.assert_array_equal(run_tiles(body, a, v, b, target=target)[0], b - a * v)


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_tensor_reduce(target, run_tiles):
    a = _f32(8, 4, 6, seed=18)

    def body(x):
        s = nl.ndarray((8, 4), nl.float32)
        nisa.tensor_reduce(dst=s, op=nl.add, data=x, axis=2)
        m = nl.ndarray((8, 1), nl.float32)
        nisa.tensor_reduce(dst=m, op=nl.maximum, data=x, axis=(1, 2), negate=True)
        k = nl.ndarray((8, 4, 1), nl.float32)
        nisa.tensor_reduce(dst=k, op=nl.minimum, data=x, axis=-1, keepdims=True)
        return s, m, k
    s, m, k = run_tiles(body, a, target=target)
    for axis, dst_shape in ((0, (1, 24)), (1, (8, 6)), ((0, 1, 2), (1, 1)), (2, (8, 6))):
        def bad(x, axis=axis, dst_shape=dst_shape):  # partition axis, non-trailing axes, wrong dst size
            nisa.tensor_reduce(dst=nl.ndarray(dst_shape, nl.float32), op=nl.add, data=x, axis=axis)
            return ()
        with pytest.raises(NkiValidationError, match="tensor_reduce: (axis|dst)"):
            run_tiles(bad, a, target=target)
    np.testing.assert_allclose(s, a.sum(axis=2), rtol=1e-6)
    np.testing.assert_array_equal(m, -a.max(axis=(1, 2))[:, None])
    np.testing.assert_array_equal(k, a.min(axis=2, keepdims=True))


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_tensor_scalar_reduce_accumulates(target, run_tiles):
    a, b = _f32(8, 10, seed=19), _f32(8, 10, seed=20)

    def body(x, y):
        d1, d2, r = _new(x), _new(y), nl.ndarray((8, 1), nl.float32)
        nisa.tensor_scalar_reduce(dst=d1, data=x, op0=nl.multiply, operand0=2.0, reduce_op=nl.add, reduce_res=r)
        nisa.tensor_scalar_reduce(dst=d2, data=y, op0=nl.add, operand0=1.0, reduce_op=nl.add, reduce_res=r,
                                  reduce_cmd=nisa.reduce_cmd.reduce)
        return d1, r
    d1, r = run_tiles(body, a, b, target=target)
    np.testing.assert_array_equal(d1, a * 2)
    np.testing.assert_allclose(r[:, 0], (a * 2).sum(1) + (b + 1).sum(1), rtol=1e-5)


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_tensor_scalar_reduce_max_and_load_reduce(target, run_tiles):
    a = _f32(8, 10, seed=21, lo=-5.0, hi=-1.0)  # all negative: a max accumulator reset to 0 would show

    def body(x):
        d, r1, r2 = _new(x), nl.ndarray((8, 1), nl.float32), nl.ndarray((8, 1), nl.float32)
        nisa.tensor_scalar_reduce(dst=d, data=x, op0=nl.add, operand0=0.5, reduce_op=nl.maximum, reduce_res=r1)
        nisa.tensor_scalar_reduce(dst=d, data=x, op0=nl.multiply, operand0=1.0, reduce_op=nl.add, reduce_res=r2,
                                  reduce_cmd=nisa.reduce_cmd.load_reduce, reduce_init=100.0)
        return r1, r2
    r1, r2 = run_tiles(body, a, target=target)
    np.testing.assert_array_equal(r1[:, 0], (a + np.float32(0.5)).max(1))  # reset_reduce: max identity is -inf
    np.testing.assert_allclose(r2[:, 0], 100.0 + a.sum(1), rtol=1e-6)

    def bad(**kw):
        def inner(x):
            nisa.tensor_scalar_reduce(dst=_new(x), data=x, op0=nl.subtract, operand0=1.0, reduce_op=nl.add,
                                      reduce_res=nl.ndarray((8, 1), nl.float32), **kw)
            return ()
        return inner
    with pytest.raises(NkiValidationError, match="reverse0"):
        run_tiles(bad(reverse0=True), a, target=target)
    with pytest.raises(NkiValidationError, match="reduce_init"):
        run_tiles(bad(reduce_cmd=nisa.reduce_cmd.load_reduce), a, target=target)
    with pytest.raises(NkiValidationError, match="reduce_init"):
        run_tiles(bad(reduce_init=1.0), a, target=target)


ACTIVATIONS = {"exp": np.exp, "copy": lambda x: x, "tanh": np.tanh, "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
               "silu": lambda x: x / (1 + np.exp(-x)), "square": np.square, "relu": lambda x: np.maximum(x, 0),
               "rsqrt": lambda x: 1 / np.sqrt(np.abs(x) + 0.5), "reciprocal": lambda x: 1 / (np.abs(x) + 0.5),
               "gelu": lambda x: 0.5 * x * (1 + np.vectorize(__import__("math").erf)(x / np.sqrt(2)))}


@pytest.mark.parametrize("target", ALL_TARGETS)
@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_functions(target, name, run_tiles):
    a = _f32(16, 32, seed=21)
    shift = name in ("rsqrt", "reciprocal")

    def body(x):
        y = _new(x)
        if shift:  # keep inputs in the functions' valid range: |x| + 0.5
            nisa.tensor_scalar(dst=y, data=x, op0=nl.abs, operand0=None, op1=nl.add, operand1=0.5)
            nisa.activation(dst=y, op=getattr(nl, name), data=y)
        else:
            nisa.activation(dst=y, op=getattr(nl, name), data=x)
        return (y,)
    got = run_tiles(body, a, target=target)[0]
    np.testing.assert_allclose(got, ACTIVATIONS[name](a.astype(np.float64)), rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_activation_scale_bias_and_reduce(target, run_tiles):
    a, s, b = _f32(8, 20, seed=22), _f32(8, 1, seed=23), _f32(8, 1, seed=24)

    def body(x, s, b):
        y, r, y2, r2 = _new(x), nl.ndarray((8, 1), nl.float32), _new(x), nl.ndarray((8, 1), nl.float32)
        nisa.activation(dst=y, op=nl.exp, data=x, bias=b, scale=s, reduce_op=nl.add, reduce_res=r,
                        reduce_cmd=nisa.reduce_cmd.reset_reduce)
        nisa.activation_reduce(dst=y2, op=nl.tanh, data=x, reduce_op=nl.add, reduce_res=r2, scale=0.5)
        return y, r, y2, r2
    y, r, y2, r2 = run_tiles(body, a, s, b, target=target)
    ey = np.exp(a * s + b)
    np.testing.assert_allclose(y, ey, rtol=1e-6)
    np.testing.assert_allclose(r[:, 0], ey.sum(1), rtol=1e-5)
    np.testing.assert_allclose(y2, np.tanh(a * 0.5), rtol=1e-6)
    np.testing.assert_allclose(r2[:, 0], np.tanh(a * 0.5).sum(1), rtol=1e-5, atol=1e-6)


def test_activation_valid_input_ranges(run_tiles):
    x = np.array([[0.0, 2.0 ** -70, 1.0, 4.0, 2.0 ** 70, -1.0, 2.0 ** -50, 2.0]], np.float32)

    def body(x):
        outs = []
        for op in (nl.log, nl.sqrt, nl.rsqrt, nl.reciprocal, nl.arctan, nl.exp):
            y = _new(x)
            nisa.activation(dst=y, op=op, data=x)
            outs.append(y)
        return tuple(outs)
    log, sqrt, rsqrt, recip, atan, exp = run_tiles(body, x)
    nan = np.nan
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(log, [[nan, nan, 0.0, np.log(np.float32(4)), nan, nan, np.log(x[0, 6]),
                                             np.log(np.float32(2))]])
        np.testing.assert_array_equal(sqrt, [np.where((x[0] >= 2.0 ** -116) & (x[0] <= 2.0 ** 118), np.sqrt(x[0]),
                                                      nan)])
        np.testing.assert_array_equal(np.isnan(rsqrt), [[True, False, False, False, False, True, False, False]])
        np.testing.assert_array_equal(np.isnan(recip), [[True, True, False, False, True, False, True, False]])
    np.testing.assert_array_equal(np.isnan(atan), [[False, False, False, True, True, False, False, True]])
    assert not np.isnan(exp).any()  # exp takes [-inf, inf]


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_activation_reduce_cmd_sequence(target, run_tiles):
    a, b = _f32(8, 6, seed=36), _f32(8, 6, seed=37)
    sa, sb = np.exp(a).sum(1), np.exp(b).sum(1)

    def body(x, y):
        rs = [nl.ndarray((8, 1), nl.float32) for _ in range(5)]
        z = _new(x)
        nisa.activation(dst=z, op=nl.exp, data=x, reduce_res=rs[0], reduce_cmd=nisa.reduce_cmd.reset)  # 0
        nisa.activation(dst=z, op=nl.exp, data=x, reduce_op=nl.add, reduce_cmd=nisa.reduce_cmd.reduce)  # sa
        nisa.activation(dst=z, op=nl.exp, data=y, reduce_op=nl.add, reduce_res=rs[1])  # idle: still sa
        nisa.activation(dst=z, op=nl.exp, data=y, reduce_op=nl.add, reduce_res=rs[2],
                        reduce_cmd=nisa.reduce_cmd.reduce)  # sa + sb
        nisa.activation(dst=z, op=nl.exp, data=x, reduce_op=nl.add, reduce_res=rs[3],
                        reduce_cmd=nisa.reduce_cmd.reset_reduce)  # sa
        nisa.activation_reduce(dst=z, op=nl.exp, data=y, reduce_op=nl.add, reduce_res=rs[4])  # resets: sb
        return tuple(rs)
    r0, r1, r2, r3, r4 = (r[:, 0] for r in run_tiles(body, a, b, target=target))
    np.testing.assert_array_equal(r0, 0.0)
    np.testing.assert_allclose(r1, sa, rtol=1e-6)
    np.testing.assert_allclose(r2, sa + sb, rtol=1e-6)
    np.testing.assert_allclose(r3, sa, rtol=1e-6)
    np.testing.assert_allclose(r4, sb, rtol=1e-6)


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_engine_registers_are_per_partition_lane(target, run_tiles):
    a = _f32(128, 6, seed=35)
    low, high = np.exp(a[:64]).sum(1), np.exp(a[64:]).sum(1)

    def body(x):
        z = _new(x)
        r_lo, r_hi = nl.ndarray((64, 1), nl.float32), nl.ndarray((64, 1), nl.float32)
        nisa.activation(dst=z, op=nl.exp, data=x, reduce_cmd=nisa.reduce_cmd.reset)  # all 128 registers = 0
        nisa.activation(dst=z[64:128], op=nl.exp, data=x[64:128], reduce_op=nl.add,
                        reduce_cmd=nisa.reduce_cmd.reduce)  # lanes 64..127 only
        nisa.activation(dst=z[0:64], op=nl.exp, data=x[0:64], reduce_res=r_lo)  # idle: read lanes 0..63
        nisa.activation(dst=z[64:128], op=nl.exp, data=x[64:128], reduce_res=r_hi)  # read lanes 64..127
        v_lo, v_hi, d = nl.ndarray((64, 1), nl.float32), nl.ndarray((64, 1), nl.float32), _new(x)
        nisa.tensor_scalar_reduce(dst=d[64:128], data=x[64:128], op0=nl.add, operand0=0.0, reduce_op=nl.add,
                                  reduce_res=v_hi)  # VectorE lanes 64..127 = row sums
        nisa.tensor_scalar_reduce(dst=d[0:64], data=x[0:64], op0=nl.add, operand0=0.0, reduce_op=nl.add,
                                  reduce_res=v_lo, reduce_cmd=nisa.reduce_cmd.reduce)  # lanes 0..63: never reset
        return r_lo, r_hi, v_lo, v_hi
    r_lo, r_hi, v_lo, v_hi = run_tiles(body, a, target=target)
    np.testing.assert_array_equal(r_lo, 0.0)
    np.testing.assert_allclose(r_hi[:, 0], high, rtol=1e-6)
    assert np.isnan(v_lo).all()
    np.testing.assert_allclose(v_hi[:, 0], a[64:].sum(1), rtol=1e-5, atol=1e-6)
    assert not np.allclose(low, high)


def test_vector_accumulators_undefined_after_idle(run_tiles):
    a = _f32(4, 8, seed=38)

    def body(x):
        d, r1, r2 = _new(x), nl.ndarray((4, 1), nl.float32), nl.ndarray((4, 1), nl.float32)
        pred = nl.ndarray((4, 8), nl.uint8)
        nisa.memset(dst=pred, value=1)
        nisa.tensor_scalar_reduce(dst=d, data=x, op0=nl.add, operand0=0.0, reduce_op=nl.add, reduce_res=r1)
        nisa.select_reduce(dst=d, predicate=pred, on_true=x, on_false=0.0)  # reduce_cmd=idle
        nisa.tensor_scalar_reduce(dst=d, data=x, op0=nl.add, operand0=0.0, reduce_op=nl.add, reduce_res=r2,
                                  reduce_cmd=nisa.reduce_cmd.reduce)
        return r1, r2
    r1, r2 = run_tiles(body, a)
    np.testing.assert_allclose(r1[:, 0], a.sum(1), rtol=1e-6)
    assert np.isnan(r2).all()  # `reduce` onto accumulators an idle instruction may have modified


def test_engine_registers_start_undefined(run_tiles):
    a = _f32(4, 8, seed=39)

    def body(x):
        y, r = _new(x), nl.ndarray((4, 1), nl.float32)
        nisa.activation(dst=y, op=nl.exp, data=x, reduce_op=nl.add, reduce_res=r, reduce_cmd=nisa.reduce_cmd.reduce)
        return (r,)
    assert np.isnan(run_tiles(body, a)[0]).all()  # `reduce` without a reset reads undefined registers


@pytest.mark.parametrize("target", GEN3_PLUS)
def test_activation_scalar_bias(target, run_tiles):
    a = _f32(4, 8, seed=25)

    def body(x):
        y = _new(x)
        nisa.activation(dst=y, op=nl.copy, data=x, bias=1.5, scale=-1.0)
        return (y,)
    np.testing.assert_array_equal(run_tiles(body, a, target=target)[0], -a + np.float32(1.5))


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_reciprocal(target, run_tiles):
    a = _f32(8, 8, seed=26, lo=0.1, hi=3.0)

    def body(x):
        y = _new(x)
        nisa.reciprocal(dst=y, data=x)
        return (y,)
    np.testing.assert_array_equal(run_tiles(body, a, target=target)[0], np.float32(1) / a)


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_iota_and_affine_select(target, run_tiles):
    a = _f32(32, 24, seed=27)

    def body(x):
        io = nl.ndarray((32, 4, 6), nl.int32)
        nisa.iota(dst=io, pattern=[[10, 4], [1, 6]], offset=3, channel_multiplier=100)
        fio = nl.ndarray((32, 24), nl.float32)
        nisa.iota(dst=fio, pattern=[[-1, 24]], offset=0, channel_multiplier=1)
        causal = _new(x)  # keep x[p, f] where p - f >= 0
        nisa.affine_select(dst=causal, pattern=[[-1, 24]], channel_multiplier=1, on_true_tile=x,
                           on_false_value=-1e30, cmp_op=nl.greater_equal, offset=0)
        return io, fio, causal
    io, fio, causal = run_tiles(body, a, target=target)
    p = np.arange(32)[:, None, None]
    np.testing.assert_array_equal(io, 3 + 100 * p + 10 * np.arange(4)[None, :, None] + np.arange(6)[None, None, :])
    np.testing.assert_array_equal(fio, np.arange(32)[:, None] - np.arange(24)[None, :])
    mask = np.arange(32)[:, None] >= np.arange(24)[None, :]
    np.testing.assert_array_equal(causal, np.where(mask, a, np.float32(-1e30)))


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_affine_select_copies_bits_for_equal_dtypes(target, run_tiles):
    big = (np.arange(4 * 8, dtype=np.int32).reshape(4, 8) + 2**24 + 1) * 3  # not exact in float32
    x = _f32(4, 8, seed=28)

    def body(i, x):
        keep_i = _new(i)  # int32 -> int32: bit-exact
        nisa.affine_select(dst=keep_i, pattern=[[1, 8]], channel_multiplier=0, on_true_tile=i, on_false_value=-5.0,
                           cmp_op=nl.greater_equal, offset=-3)
        to_bf16 = _new(x, nl.bfloat16)  # float32 -> bfloat16: cast (RNE)
        nisa.affine_select(dst=to_bf16, pattern=[[1, 8]], channel_multiplier=0, on_true_tile=x, on_false_value=0.0,
                           cmp_op=nl.greater_equal, offset=0)
        return keep_i, to_bf16
    keep_i, to_bf16 = run_tiles(body, big, x, target=target)
    np.testing.assert_array_equal(keep_i, np.where(np.arange(8) >= 3, big, -5))
    np.testing.assert_array_equal(to_bf16.view(np.uint16), x.astype(bf16).view(np.uint16))


@pytest.mark.parametrize("target", GEN3_PLUS)
def test_range_select(target, run_tiles):
    a = _f32(8, 16, seed=28)
    lo = np.arange(8, dtype=np.float32)[:, None]
    hi = lo + 5

    def body(x, lo, hi):
        y, r = _new(x), nl.ndarray((8, 1), nl.float32)
        nisa.range_select(dst=y, on_true_tile=x, comp_op0=nl.greater_equal, comp_op1=nl.less, bound0=lo, bound1=hi,
                          reduce_res=r, range_start=2)
        return y, r
    y, r = run_tiles(body, a, lo, hi, target=target)
    f = 2 + np.arange(16)[None, :]
    expected = np.where((f >= lo) & (f < hi), a, np.finfo(np.float32).min)
    np.testing.assert_array_equal(y, expected)
    np.testing.assert_array_equal(r, expected.max(1, keepdims=True))


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_select_reduce(target, run_tiles):
    a, v = _f32(8, 16, seed=29), _f32(8, 1, seed=30)
    pred = (np.random.default_rng(31).random((8, 16)) > 0.5).astype(np.uint8)

    def body(x, v, p):
        y, r = _new(x), nl.ndarray((8, 1), nl.float32)
        nisa.select_reduce(dst=y, predicate=p, on_true=x, on_false=v, reduce_res=r,
                           reduce_cmd=nisa.reduce_cmd.reset_reduce, reverse_pred=True)
        return y, r
    y, r = run_tiles(body, a, v, pred, target=target)
    expected = np.where(pred == 0, a, v)
    np.testing.assert_array_equal(y, expected)
    np.testing.assert_array_equal(r, expected.max(1, keepdims=True))

    def int_result(x, v, p):
        nisa.select_reduce(dst=_new(x), predicate=p, on_true=x, on_false=v, reduce_res=nl.ndarray((8, 1), nl.int32),
                           reduce_cmd=nisa.reduce_cmd.reset_reduce)
        return ()
    with pytest.raises(NkiValidationError, match="select_reduce: reduce_res.*float"):
        run_tiles(int_result, a, v, pred, target=target)


def test_exponential_on_trn3(run_tiles):
    a, m = _f32(8, 16, seed=32), _f32(8, 1, seed=33)

    def body(x, m):
        y, r = _new(x), nl.ndarray((8, 1), nl.float32)
        nisa.exponential(dst=y, src=x, max_value=m, reduce_res=r, reduce_cmd=nisa.reduce_cmd.reset_reduce)
        return y, r
    y, r = run_tiles(body, a, m, target="trn3")
    np.testing.assert_allclose(y, np.exp(a - m), rtol=1e-6)
    np.testing.assert_allclose(r[:, 0], np.exp(a - m).sum(1), rtol=1e-5)

    def loaded(x, m):
        y, r = _new(x), nl.ndarray((8, 1), nl.float32)
        nisa.exponential(dst=y, src=x, max_value=m, reduce_res=r, reduce_cmd=nisa.reduce_cmd.load_reduce,
                         reduce_init=2.0)
        return (r,)
    np.testing.assert_allclose(run_tiles(loaded, a, m, target="trn3")[0][:, 0], 2.0 + np.exp(a - m).sum(1), rtol=1e-5)

    def stray_init(x, m):
        nisa.exponential(dst=_new(x), src=x, max_value=m, reduce_cmd=nisa.reduce_cmd.reset_reduce, reduce_init=2.0)
        return ()
    with pytest.raises(NkiValidationError, match="exponential: reduce_init"):
        run_tiles(stray_init, a, m, target="trn3")


# ---- nl convenience ops ----------------------------------------------------------------------------
@pytest.mark.parametrize("target", ALL_TARGETS)
def test_language_ops(target):
    a, b, v = _f32(16, 32, seed=34), _f32(16, 32, seed=35), _f32(16, 1, seed=36)

    def kernel(a, b, v):
        x, y, vv = nl.load(a), nl.load(b), nl.load(v)
        outs = [nl.add(x, y), nl.multiply(x, 2.0), nl.subtract(x, vv), nl.exp(x), nl.sum(x, axis=1),
                nl.max(x, axis=1, keepdims=True), nl.mean(x, axis=1), nl.softmax(x, axis=1),
                nl.copy(x, dtype=nl.bfloat16),
                nl.maximum(x, 0.0)]
        res = []
        for o in outs:
            h = nl.ndarray(o.shape, o.dtype, buffer=nl.shared_hbm)
            nl.store(h, o)
            res.append(h)
        return tuple(res)
    got = run(kernel, a, b, v, target=target).outputs
    e = np.exp(a - a.max(1, keepdims=True))
    expected = [a + b, a * 2, a - v, np.exp(a), a.sum(1)[:, None], a.max(1, keepdims=True), a.mean(1)[:, None],
                e / e.sum(1, keepdims=True), a.astype(bf16), np.maximum(a, 0)]
    for g, x in zip(got, expected):
        np.testing.assert_allclose(g.astype(np.float32), x.astype(np.float32), rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_language_matmul_and_transpose(target):
    a, b = _f32(64, 32, seed=37), _f32(64, 48, seed=38)

    def kernel(a, b):
        p = nl.matmul(nl.load(a), nl.load(b), transpose_x=True)
        t = nl.transpose(nl.load(b))
        outs = []
        for o in (nl.copy(p), nl.copy(t)):
            h = nl.ndarray(o.shape, o.dtype, buffer=nl.shared_hbm)
            nl.store(h, o)
            outs.append(h)
        return tuple(outs)
    p, t = run(kernel, a, b, target=target).outputs
    np.testing.assert_allclose(p, a.T @ b, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(t, b.T)


# ---- statistics, scans, predicated copies, transposing DMA, partition reduce ---------------------------
@pytest.mark.parametrize("target", ALL_TARGETS)
def test_bn_stats_aggr_and_max8(target, run_tiles):
    a, b = _f32(8, 100, seed=44), _f32(8, 51, seed=45)

    def body(x, y):
        stats = nl.ndarray((8, 12), nl.float32)
        nisa.bn_stats(dst=stats[:, 0:6], data=x)
        nisa.bn_stats(dst=stats[:, 6:12], data=y)
        agg = nl.ndarray((8, 2), nl.float32)
        nisa.bn_aggr(dst=agg, data=stats)
        top = nl.ndarray((8, 8), nl.float32)
        nisa.max8(dst=top, src=x)
        return agg, top
    agg, top = run_tiles(body, a, b, target=target)
    both = np.concatenate([a, b], axis=1).astype(np.float64)
    np.testing.assert_allclose(agg, np.stack([both.mean(1), both.var(1)], 1), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(top, -np.sort(-a, axis=1)[:, :8])


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_scans(target, run_tiles):
    a, b, init = _f32(4, 10, seed=46), _f32(4, 10, seed=47), _f32(4, 1, seed=48)

    def body(x, y, i0):
        s = _new(x)
        nisa.tensor_tensor_scan(dst=s, data0=x, data1=y, initial=i0, op0=nl.multiply, op1=nl.add)
        c = _new(x)
        nisa.tensor_scalar_cumulative(dst=c, src=x, op0=nl.multiply, op1=nl.add, imm0=2.0)
        c2 = _new(x)  # continues from c's last value through the shared accumulator
        nisa.tensor_scalar_cumulative(dst=c2, src=x, op0=nl.add, op1=nl.maximum, imm0=0.0,
                                      reduce_cmd=nisa.reduce_cmd.reduce)
        c3 = _new(x)
        nisa.tensor_scalar_cumulative(dst=c3, src=x, op0=nl.multiply, op1=nl.add, imm0=1.0, imm1=i0,
                                      reduce_cmd=nisa.reduce_cmd.load_reduce)
        return s, c, c2, c3
    s, c, c2, c3 = run_tiles(body, a, b, init, target=target)
    np.testing.assert_allclose(c2, np.maximum.accumulate(np.concatenate([np.cumsum(2 * a, axis=1)[:, -1:], a], 1),
                                                         axis=1)[:, 1:], rtol=1e-5)
    np.testing.assert_allclose(c3, init + np.cumsum(a, axis=1), rtol=1e-5, atol=1e-6)
    prev, expected = init[:, 0], []
    for i in range(10):
        prev = a[:, i] * prev + b[:, i]
        expected.append(prev)
    np.testing.assert_allclose(s, np.stack(expected, 1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(c, np.cumsum(2 * a, axis=1), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_tensor_copy_predicated_and_where(target):
    a, b = _f32(8, 16, seed=49), _f32(8, 16, seed=50)

    def kernel(a, b):
        x, y = nl.load(a), nl.load(b)
        cond = nl.greater(x, y)  # bool tile
        w = nl.where(cond, x, y)
        out = nl.ndarray((8, 16), nl.float32, buffer=nl.shared_hbm)
        nl.store(out, w)
        return out
    np.testing.assert_array_equal(run(kernel, a, b, target=target).outputs, np.maximum(a, b))


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_dma_transpose(target):
    a = _f32(16, 64, seed=51).astype(bf16)

    def kernel(a):
        t = nl.ndarray((64, 16), nl.bfloat16)
        nisa.dma_transpose(dst=t, src=a)
        out = nl.ndarray((64, 16), nl.bfloat16, buffer=nl.shared_hbm)
        nl.store(out, t)
        return out
    if TARGETS[target].gen < 3:
        with pytest.raises(NkiValidationError, match="dma_transpose needs NeuronCore-v3"):
            run(kernel, a, target=target)
        return
    np.testing.assert_array_equal(run(kernel, a, target=target).outputs, a.T)

    def hw(shape, dtype=nl.bfloat16, dge=nisa.dge_mode.hwdge):
        def kernel(x):
            nisa.dma_transpose(dst=nl.ndarray(shape[::-1], dtype), src=x, dge_mode=dge)
        return kernel, np.zeros(shape, np.float32).astype(nl.bfloat16 if dtype == nl.bfloat16 else dtype)
    run(*hw((16, 128)), target=target)
    for shape, dtype, dge, match in (((16, 128), nl.float32, nisa.dge_mode.hwdge, "2-byte"),
                                     ((8, 128), nl.bfloat16, nisa.dge_mode.hwdge, "shape \\[16"),
                                     ((16, 100), nl.bfloat16, nisa.dge_mode.hwdge, "shape \\[16"),
                                     ((16, 128), nl.bfloat16, nisa.dge_mode.swdge, "direct transpose")):
        with pytest.raises(NkiValidationError, match=f"dma_transpose: .*{match}"):
            run(*hw(shape, dtype, dge), target=target)


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_tensor_partition_reduce(target, run_tiles):
    a = _f32(32, 12, seed=52)

    def body(x):
        s, m = nl.ndarray((1, 12), nl.float32), nl.ndarray((1, 12), nl.float32)
        nisa.tensor_partition_reduce(dst=s, op=nl.add, data=x)
        nisa.tensor_partition_reduce(dst=m, op=nl.maximum, data=x)
        return s, m
    s, m = run_tiles(body, a, target=target)
    np.testing.assert_allclose(s, a.sum(0, keepdims=True), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(m, a.max(0, keepdims=True))
