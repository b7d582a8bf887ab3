"""TensorE instructions (nc_matmul and its accumulation, transpose and double-row modes, nc_transpose) value by value
against NumPy, on every target where they exist."""

import ml_dtypes
import numpy as np
import pytest

from nkilab.harness.emulator import TARGETS, NkiValidationError, nisa, nl, run
from emulator_cases import ALL_TARGETS, bf16, uniform_f32


@pytest.mark.parametrize("target", ALL_TARGETS)
@pytest.mark.parametrize("dtype", [np.float32, bf16, ml_dtypes.float8_e4m3, ml_dtypes.float8_e5m2],
                         ids=["fp32", "bf16", "fp8e4m3", "fp8e5m2"])
def test_nc_matmul_accumulates_over_k(target, dtype):
    k_tiles = 3
    a = uniform_f32(128 * k_tiles, 96, seed=4).astype(dtype)  # stationary: [K, M]
    b = uniform_f32(128 * k_tiles, 200, seed=5).astype(dtype)  # moving: [K, N]

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
    s, m = uniform_f32(32, 16, seed=6), uniform_f32(32, 8, seed=7)
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
    x = uniform_f32(8, 6, seed=46)
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
    s = uniform_f32(128, 2, 64, seed=42).astype(ml_dtypes.float8_e4m3)
    m = uniform_f32(128, 2, 100, seed=43).astype(ml_dtypes.float8_e5m2)

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
    s, m = uniform_f32(8, 4, seed=40), uniform_f32(8, 4, seed=41)

    def body(s, m):
        p = nl.ndarray((4, 4), nl.float32, buffer=nl.psum)
        nisa.nc_matmul(dst=p, stationary=s, moving=m, accumulate=True)
        return (p,)
    with pytest.warns(RuntimeWarning, match="accumulate=True onto PSUM"):
        (p,) = run_tiles(body, s, m)
    assert np.isnan(p).all()  # added onto the NaN sentinel


def test_nc_matmul_bf16_psum_on_trn3(run_tiles):
    s, m = uniform_f32(64, 32, seed=8), uniform_f32(64, 1000, seed=9)

    def body(s, m):
        p = nl.ndarray((32, 1000), nl.bfloat16, buffer=nl.psum)  # N > 512: gen4 only
        nisa.nc_matmul(dst=p, stationary=s, moving=m)
        return (p,)
    (p,) = run_tiles(body, s, m, target="trn3")
    # fp32 products rounded once (RNE) into the bf16 PSUM tile: within half a bf16 ulp of the fp32 result
    np.testing.assert_allclose(p.astype(np.float32), s.T @ m, rtol=2 ** -8, atol=1e-6)


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_nc_transpose(target, run_tiles):
    x = uniform_f32(96, 40)
    y = uniform_f32(20, 30)

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
    x = uniform_f32(6, 5, seed=12)
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
