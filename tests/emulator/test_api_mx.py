"""Value tests of the NeuronCore-v4 instructions of NKI 0.6: activate2, quantize_mx (block scale of the 0.5
release notes) and nc_matmul_mx, against NumPy models of their documented semantics; the other generations
reject them naming the op."""

import ml_dtypes
import numpy as np
import pytest
from api_coverage import covers

from nkilab.harness.emulator import NkiValidationError, nisa, nl, run

QUADRANT = 32


def _x(*shape, seed=0, lo=-2.0, hi=2.0):
    return np.random.default_rng(seed).uniform(lo, hi, shape).astype(np.float32)


def _out(v):
    h = nl.ndarray(v.shape, v.dtype, buffer=nl.shared_hbm)
    nisa.dma_copy(dst=h, src=v)
    return h


@covers("nisa.activate2", "nl.prelu", "nl.bypass")
def test_activate2_pipelines_prelu_and_reduce(run_tiles):
    x = _x(16, 64, seed=1)
    imm = _x(16, 1, seed=2)

    def body(t, i):
        a, b, c = nl.ndarray(t.shape, nl.float32), nl.ndarray(t.shape, nl.float32), nl.ndarray(t.shape, nl.bfloat16)
        red = nl.ndarray((16, 1), nl.float32)
        nisa.activate2(dst=a, op=nl.exp, data=t, imm0=0.5, imm1=i, op0=nl.multiply, op1=nl.subtract, reverse1=True,
                       reduce_op=nl.add, reduce_res=red, reduce_cmd=nisa.reduce_cmd.reset_reduce)
        nisa.activate2(dst=b, op=nl.prelu, data=t, imm0=0.0, imm1=0.0, op0=nl.bypass, op1=nl.bypass, relu_param=0.1)
        nisa.activate2(dst=c, op=nl.copy, data=t, imm0=i, imm1=0.0, op0=nl.add, op1=nl.bypass)
        return a, b, c, red
    a, b, c, red = run_tiles(body, x, imm, target="trn3")
    ea = np.exp(imm - 0.5 * x)  # reverse1: imm1 - (data * imm0)
    np.testing.assert_allclose(a, ea, rtol=1e-6)
    np.testing.assert_allclose(red[:, 0], ea.sum(axis=1), rtol=1e-5)
    np.testing.assert_allclose(b, np.where(x > 0, x, 0.1 * x), rtol=1e-6)
    np.testing.assert_array_equal(c, (x + imm).astype(ml_dtypes.bfloat16))


def test_activate2_rules():
    def kernel(op0, op1, target_ok=True):
        def k(a):
            t = nl.load(a)
            nisa.activate2(dst=nl.ndarray(t.shape, t.dtype), op=nl.exp, data=t, imm0=1.0, imm1=1.0, op0=op0, op1=op1)
        return k
    x = _x(4, 8)
    with pytest.raises(NkiValidationError, match="op0/op1"):
        run(kernel(nl.add, nl.multiply), x, target="trn3")
    with pytest.raises(NkiValidationError, match="NeuronCore-v4"):
        run(kernel(nl.multiply, nl.add), x, target="trn2")


def _mx_reference(x: np.ndarray, e_max: int, element):
    """0.5 release notes' quantize_mx: X = 2^(floor(log2 amax) - (E_max - 1)) per 8 x 4 group (2^-127 if zero)."""
    p, f = x.shape
    g = x.astype(np.float32).reshape(p // 8, 8, f // 4, 4)
    amax = np.abs(g).max(axis=(1, 3))
    exp = np.where(amax > 0, np.floor(np.log2(np.where(amax > 0, amax, 1))) - (e_max - 1), -127).astype(np.int32)
    q = (g / np.exp2(exp.astype(np.float64))[:, None, :, None]).reshape(p, f).astype(element)
    return q, (exp + 127).astype(np.uint8)


@covers("nisa.quantize_mx", "nl.float8_e8m0fnu")
@pytest.mark.parametrize("dtype,e_max,element", [("float8_e4m3fn_x4", 8, ml_dtypes.float8_e4m3fn),
                                                 ("float8_e5m2_x4", 15, ml_dtypes.float8_e5m2)])
def test_quantize_mx_block_scale_is_twice_ocp(dtype, e_max, element):
    x = (_x(64, 32, seed=3) * np.exp2(np.random.default_rng(4).integers(-6, 6, (64, 1)))).astype(ml_dtypes.bfloat16)
    x[8:16, 4:8] = 0  # an all-zero group: scale 2^-127

    def kernel(a):
        src = nl.load(a)
        q, s = nl.ndarray((64, 8), getattr(nl, dtype)), nl.ndarray((64, 8), nl.float8_e8m0fnu)
        nisa.memset(dst=s, value=1.0)  # 2^0: e8m0 code 127 (e8m0 has no zero)
        nisa.quantize_mx(dst=q, src=src, dst_scale=s)
        return _out(q), _out(s)
    q, s = run(kernel, x, target="trn3").outputs
    ref_q, ref_code = _mx_reference(x, e_max, element)
    np.testing.assert_array_equal(np.ascontiguousarray(q).view(np.uint8).reshape(64, 32), ref_q.view(np.uint8))
    rows = (np.arange(8) // 4) * QUADRANT + np.arange(8) % 4  # group g's scale sits in its own quadrant
    np.testing.assert_array_equal(s.view(np.uint8)[rows], ref_code)
    assert s.view(np.uint8)[rows[1], 1] == 0  # 2^-127 for the zero group
    others = np.setdiff1d(np.arange(64), rows)
    assert (s.view(np.uint8)[others] == 127).all()  # rows of no group keep their values


def _pack_fp8(values: np.ndarray, element) -> np.ndarray:
    return np.ascontiguousarray(values.astype(element)).view(np.uint8).view(np.uint32)


@covers("nisa.nc_matmul_mx", "nl.float8_e5m2_x4", "nl.float8_e4m3fn_x4", "nl.float4_e2m1fn_x4")
@pytest.mark.parametrize("mx_dtype,element", [("float8_e5m2_x4", ml_dtypes.float8_e5m2),
                                              ("float8_e4m3fn_x4", ml_dtypes.float8_e4m3fn),
                                              ("float4_e2m1fn_x4", ml_dtypes.float4_e2m1fn)])
def test_nc_matmul_mx_dequantizes_and_contracts_4k(mx_dtype, element):
    k, m, n = 64, 32, 48
    rng = np.random.default_rng(5)
    grid = np.array([0.5, 1.0, 1.5, 2.0, -0.5, -1.0, -3.0, 4.0], np.float32)  # exact in fp4/fp8
    st, mv = rng.choice(grid, (k, m, 4)), rng.choice(grid, (k, n, 4))
    st_code, mv_code = rng.integers(120, 134, (k // 8, m)).astype(np.uint8), rng.integers(120, 134, (k // 8, n)).astype(np.uint8)
    if element is ml_dtypes.float4_e2m1fn:
        def pack(v):
            nib = v.astype(element).view(np.uint8) & 0xF
            return (nib[..., 0] | nib[..., 1] << 4 | nib[..., 2].astype(np.uint16) << 8 |
                    nib[..., 3].astype(np.uint16) << 12).astype(np.uint16)
    else:
        def pack(v):
            return _pack_fp8(v.reshape(v.shape[0], -1), element)
    rows = (np.arange(k // 8) // 4) * QUADRANT + np.arange(k // 8) % 4
    sts, mvs = np.zeros((k, m), np.uint8), np.zeros((k, n), np.uint8)
    sts[rows], mvs[rows] = st_code, mv_code
    dt = getattr(nl, mx_dtype)

    def kernel(a, b, sa, sb):
        tiles = []
        for src, free in ((a, m), (b, n)):
            t = nl.ndarray((k, free), dt)
            nisa.dma_copy(dst=t, src=src.ap(pattern=[[free, k], [1, free]], offset=0, dtype=dt))
            tiles.append(t)
        scales = [nl.load(sa), nl.load(sb)]
        ps = nl.ndarray((m, n), nl.float32, buffer=nl.psum)
        nisa.nc_matmul_mx(dst=ps, stationary=tiles[0], moving=tiles[1], stationary_scale=scales[0],
                          moving_scale=scales[1])
        return _out(nl.copy(ps))
    out = run(kernel, pack(st), pack(mv), sts, mvs, target="trn3").outputs
    s_deq = st * np.exp2(np.repeat(st_code, 8, axis=0).astype(np.float64) - 127)[:, :, None]
    m_deq = mv * np.exp2(np.repeat(mv_code, 8, axis=0).astype(np.float64) - 127)[:, :, None]
    # fp32 accumulation of 4K = 256 products (TensorE accumulates in fp32) against a float64 sum
    np.testing.assert_allclose(out, np.einsum("kiq,kjq->ij", s_deq, m_deq), rtol=2e-5)


@pytest.mark.parametrize("target", ["trn1", "trn2"])
def test_mx_ops_need_gen4(target):
    def kernel(a):
        src = nl.load(a)
        nisa.quantize_mx(dst=nl.ndarray((32, 1), nl.float8_e4m3fn_x4), src=src,
                         dst_scale=nl.ndarray((4, 1), nl.uint8))
    with pytest.raises(NkiValidationError, match="NeuronCore-v4") as e:
        run(kernel, _x(32, 4).astype(ml_dtypes.bfloat16), target=target)
    assert e.value.op == "quantize_mx"
