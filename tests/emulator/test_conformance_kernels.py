"""Conformance: kernels written the way the NKI tutorials and guides write them — layernorm with bn_stats /
bn_aggr, softmax, a fused mamba-style selective scan, transposes (TensorE, VectorE, DMA), average pooling through
an access pattern, an address=-placed PSUM ring — each checked against NumPy on every target whose generation has
the ops, and against the capacity rules where they apply."""

import ml_dtypes
import numpy as np
import pytest

from nkilab.harness.emulator import TARGETS, NkiValidationError, nisa, nl, run

ALL_TARGETS = tuple(TARGETS)
GEN3_PLUS = ("trn2", "trn3")


def _rand(*shape, seed=0, lo=-2.0, hi=2.0, dtype=np.float32):
    return np.random.default_rng(seed).uniform(lo, hi, shape).astype(dtype)


def _store(v, out=None):
    out = out if out is not None else nl.ndarray(v.shape, v.dtype, buffer=nl.shared_hbm)
    nisa.dma_copy(dst=out, src=v)
    return out


def layernorm(x, gamma, beta, eps=1e-5):
    """Rows of x [N, H] (H a multiple of 512) normalised with bn_stats per 512-chunk and bn_aggr, then
    (x - mean) * rstd * gamma + beta; gamma / beta [1, H] broadcast to the 128 partitions by DMA."""
    n, h = x.shape
    chunks = h // nl.tile_size.bn_stats_fmax
    out = nl.ndarray((n, h), x.dtype, buffer=nl.shared_hbm)
    g, b = nl.ndarray((128, h), nl.float32), nl.ndarray((128, h), nl.float32)
    nisa.dma_copy(dst=g, src=gamma.ap(pattern=[[0, 128], [1, h]], offset=0))
    nisa.dma_copy(dst=b, src=beta.ap(pattern=[[0, 128], [1, h]], offset=0))
    for r in range(0, n, 128):
        p = min(128, n - r)
        t = nl.ndarray((p, h), x.dtype)
        nisa.dma_copy(dst=t, src=x[r:r + p, :])
        stats = nl.ndarray((p, chunks, 6), nl.float32)
        for c in range(chunks):
            nisa.bn_stats(dst=stats[:, c, :], data=t[:, c * 512:(c + 1) * 512])
        mv = nl.ndarray((p, 2), nl.float32)
        nisa.bn_aggr(dst=mv, data=stats)
        rstd = nl.ndarray((p, 1), nl.float32)
        nisa.tensor_scalar(dst=rstd, data=mv[:, 1:2], op0=nl.add, operand0=eps, op1=nl.rsqrt, operand1=None)
        y = nl.ndarray((p, h), nl.float32)
        nisa.tensor_scalar(dst=y, data=t, op0=nl.subtract, operand0=mv[:, 0:1], op1=nl.multiply, operand1=rstd)
        nisa.tensor_tensor(dst=y, data1=y, data2=g[0:p], op=nl.multiply)
        o = nl.ndarray((p, h), x.dtype)
        nisa.tensor_tensor(dst=o, data1=y, data2=b[0:p], op=nl.add)
        nisa.dma_copy(dst=out[r:r + p, :], src=o)
    return out


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_layernorm_bn_stats(target):
    x = _rand(200, 1024, seed=1, dtype=ml_dtypes.bfloat16)
    gamma, beta = _rand(1, 1024, seed=2), _rand(1, 1024, seed=3)
    out = run(layernorm, x, gamma, beta, target=target).outputs
    xf = x.astype(np.float64)
    ref = (xf - xf.mean(1, keepdims=True)) / np.sqrt(xf.var(1, keepdims=True) + 1e-5) * gamma + beta
    np.testing.assert_allclose(out.astype(np.float32), ref, rtol=2e-2, atol=3e-2)  # one bf16 rounding of |y| < 8


def softmax_rows(x):
    """Row softmax of x [128, F] in tiles of 512: running max via tensor_reduce, exp(x - max) with the row sum
    accumulated in the ScalarE reduce registers, one VectorE reciprocal, one scale."""
    p, f = x.shape
    t = nl.ndarray((p, f), x.dtype)
    nisa.dma_copy(dst=t, src=x)
    neg_max = nl.ndarray((p, 1), nl.float32)
    nisa.tensor_reduce(dst=neg_max, op=nl.maximum, data=t, axis=1, negate=True)
    e = nl.ndarray((p, f), nl.float32)
    total = nl.ndarray((p, 1), nl.float32)
    for c in range(f // 512):
        cmd = nisa.reduce_cmd.reset_reduce if c == 0 else nisa.reduce_cmd.reduce
        nisa.activation(dst=e[:, c * 512:(c + 1) * 512], op=nl.exp, data=t[:, c * 512:(c + 1) * 512], bias=neg_max,
                        reduce_op=nl.add, reduce_res=total, reduce_cmd=cmd)
    inv = nl.ndarray((p, 1), nl.float32)
    nisa.reciprocal(dst=inv, data=total)
    o = nl.ndarray((p, f), nl.float32)
    nisa.tensor_scalar(dst=o, data=e, op0=nl.multiply, operand0=inv)
    return _store(o)


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_softmax(target):
    x = _rand(128, 1536, seed=4, lo=-8, hi=8)
    out = run(softmax_rows, x, target=target).outputs
    e = np.exp(x - x.max(1, keepdims=True))
    np.testing.assert_allclose(out, e / e.sum(1, keepdims=True), rtol=1e-5, atol=1e-8)


def mamba_scan(delta, u, a, b, c):
    """Selective scan of the fused-mamba tutorial for one batch: channels on partitions; per state s,
    h_t = exp(delta_t * A_s) * h_{t-1} + delta_t * B_{s,t} * u_t (tensor_tensor_scan), y += C_{s,t} * h_t. B and C
    rows are broadcast to the channel partitions by DMA."""
    ch, seq = delta.shape
    states = a.shape[1]
    d, x = nl.ndarray((ch, seq), nl.float32), nl.ndarray((ch, seq), nl.float32)
    nisa.dma_copy(dst=d, src=delta)
    nisa.dma_copy(dst=x, src=u)
    at = nl.ndarray((ch, states), nl.float32)
    nisa.dma_copy(dst=at, src=a)
    du = nl.ndarray((ch, seq), nl.float32)
    nisa.tensor_tensor(dst=du, data1=d, data2=x, op=nl.multiply)
    y = nl.zeros((ch, seq), nl.float32)
    for s in range(states):
        da = nl.ndarray((ch, seq), nl.float32)
        nisa.activation(dst=da, op=nl.exp, data=d, scale=at[:, s:s + 1])
        bs, cs = nl.ndarray((ch, seq), nl.float32), nl.ndarray((ch, seq), nl.float32)
        nisa.dma_copy(dst=bs, src=b.ap(pattern=[[0, ch], [1, seq]], offset=s * seq))
        nisa.dma_copy(dst=cs, src=c.ap(pattern=[[0, ch], [1, seq]], offset=s * seq))
        dbu = nl.ndarray((ch, seq), nl.float32)
        nisa.tensor_tensor(dst=dbu, data1=du, data2=bs, op=nl.multiply)
        h = nl.ndarray((ch, seq), nl.float32)
        nisa.tensor_tensor_scan(dst=h, data0=da, data1=dbu, initial=0.0, op0=nl.multiply, op1=nl.add)
        nisa.tensor_tensor(dst=h, data1=h, data2=cs, op=nl.multiply)
        nisa.tensor_tensor(dst=y, data1=y, data2=h, op=nl.add)
    return _store(y)


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_mamba_scan(target):
    ch, seq, states = 128, 256, 4
    delta = _rand(ch, seq, seed=5, lo=0.01, hi=0.2)
    u, b, c = _rand(ch, seq, seed=6), _rand(states, seq, seed=7), _rand(states, seq, seed=8)
    a = -_rand(ch, states, seed=9, lo=0.5, hi=1.5)
    out = run(mamba_scan, delta, u, a, b, c, target=target).outputs
    da = np.exp(delta[:, None, :] * a[:, :, None].astype(np.float64))
    dbu = delta[:, None, :] * b[None] * u[:, None, :]
    h, ref = np.zeros((ch, states)), np.zeros((ch, seq))
    for t in range(seq):
        h = da[..., t] * h + dbu[..., t]
        ref[:, t] = (h * c[None, :, t]).sum(1)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)


def transposes(x):
    """[64, 96] transposed three ways: TensorE (SBUF -> PSUM), VectorE in 32 x 32 blocks, and on v3+ a DMA
    transpose from HBM."""
    p, f = x.shape
    t = nl.ndarray((p, f), x.dtype)
    nisa.dma_copy(dst=t, src=x)
    pe = nl.ndarray((f, p), x.dtype, buffer=nl.psum)
    nisa.nc_transpose(dst=pe, data=t)
    pe_sb = nl.ndarray((f, p), x.dtype)
    nisa.tensor_copy(dst=pe_sb, src=pe)
    ve = nl.ndarray((f, p), x.dtype)
    for i in range(p // 32):
        for j in range(f // 32):
            nisa.nc_transpose(dst=ve[j * 32:(j + 1) * 32, i * 32:(i + 1) * 32],
                              data=t[i * 32:(i + 1) * 32, j * 32:(j + 1) * 32], engine=nisa.engine.vector)
    outs = [_store(pe_sb), _store(ve)]
    if nisa.get_nc_version() >= nisa.nc_version.gen3:
        dm = nl.ndarray((f, p), x.dtype)
        nisa.dma_transpose(dst=dm, src=x)
        outs.append(_store(dm))
    return tuple(outs)


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_transposes(target):
    x = _rand(64, 96, seed=10, dtype=ml_dtypes.bfloat16)
    outs = run(transposes, x, target=target).outputs
    assert len(outs) == (3 if TARGETS[target].gen >= 3 else 2)
    for o in outs:
        np.testing.assert_array_equal(o, x.T)
    with pytest.raises(NkiValidationError, match="32"):  # VectorE transposes at most 32 x 32
        run(lambda a: nisa.nc_transpose(dst=nl.ndarray((64, 64), a.dtype), data=nl.load(a),
                                        engine=nisa.engine.vector), x[:, :64], target=target)


def avg_pool(x, pool):
    """C x H x W average pool: a 5-D access-pattern view [C, H/p, W/p, p, p] of the SBUF tile, a tensor_reduce
    over the two window axes, one scale (the average_pool2d tutorial's structure)."""
    c, h, w = x.shape
    t = nl.ndarray((c, h, w), x.dtype)
    nisa.dma_copy(dst=t, src=x)
    view = t.ap([[h * w, c], [pool * w, h // pool], [pool, w // pool], [w, pool], [1, pool]])
    s = nl.ndarray((c, h // pool, w // pool), nl.float32)
    nisa.tensor_reduce(dst=s, op=nl.add, data=view, axis=(3, 4))
    o = nl.ndarray(s.shape, x.dtype)
    nisa.tensor_scalar(dst=o, data=s, op0=nl.multiply, operand0=1.0 / (pool * pool))
    return _store(o)


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_average_pool(target):
    x = _rand(16, 12, 12, seed=11)
    out = run(avg_pool, x, 3, target=target).outputs
    # fp32 sum of 9 values in [-2, 2] (9 roundings of <= 2^-22 each) times an inexact 1/9, against float64
    np.testing.assert_allclose(out, x.reshape(16, 4, 3, 4, 3).mean(axis=(2, 4)), rtol=1e-6, atol=3e-6)


def psum_ring(lhsT, rhs, slots):
    """N output tiles accumulated in a ring of `slots` PSUM banks placed with address=(0, bank * 2048): tile i
    reuses bank i % slots, and every tile object stays referenced until the end (as a list of tiles would)."""
    k, m = lhsT.shape
    n = rhs.shape[1]
    a, b = nl.ndarray((k, m), lhsT.dtype), nl.ndarray((k, n), rhs.dtype)
    nisa.dma_copy(dst=a, src=lhsT)
    nisa.dma_copy(dst=b, src=rhs)
    out = nl.ndarray((16, m, n), nl.float32, buffer=nl.shared_hbm)
    ring = []
    for i in range(16):
        ps = nl.ndarray((m, n), nl.float32, buffer=nl.psum, address=(0, (i % slots) * 2048))
        nisa.nc_matmul(dst=ps, stationary=a, moving=b, accumulate=False)
        sb = nl.ndarray((m, n), nl.float32)
        nisa.tensor_scalar(dst=sb, data=ps, op0=nl.multiply, operand0=float(i))
        nisa.dma_copy(dst=out[i], src=sb)
        ring.append(ps)
    return out


@pytest.mark.parametrize("target", ["trn1", "trn2"])
def test_address_placed_psum_ring(target):
    lhsT, rhs = _rand(64, 32, seed=12), _rand(64, 128, seed=13)
    out = run(psum_ring, lhsT, rhs, 4, target=target).outputs  # 16 tiles in 4 banks: fits the 8 banks
    ref = lhsT.T.astype(np.float64) @ rhs
    # fp32 accumulation of 64 products (|a*b| <= 4) against float64: each add rounds by up to 2^-24 x the partial
    # sum (<= 256), then x i <= 15; measured max 1.5e-4 absolute on cancelling elements, hence atol 2e-4
    np.testing.assert_allclose(out, np.arange(16)[:, None, None] * ref[None], rtol=1e-5, atol=2e-4)


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_tensor_engine_transpose_fp32_psum_from_bf16(target):
    """A v2 TensorE transpose is an identity matmul, whose PSUM output is fp32: bf16 in, fp32 out is legal there
    (and exact); v3+ transposes in transpose mode, which writes the input dtype only."""
    x = _rand(32, 64, seed=14, dtype=ml_dtypes.bfloat16)

    def kernel(a):
        t = nl.load(a)
        ps = nl.ndarray((64, 32), nl.float32, buffer=nl.psum)
        nisa.nc_transpose(dst=ps, data=t)
        return _store(nl.copy(ps))
    if TARGETS[target].gen == 2:
        np.testing.assert_array_equal(run(kernel, x, target=target).outputs, x.T.astype(np.float32))
    else:
        with pytest.raises(NkiValidationError, match="dtype == data dtype"):
            run(kernel, x, target=target)
