"""Conformance: the matmul family written the way the NKI matrix-multiplication tutorial teaches it (basic,
tiled, blocked with hoisted loads, configured by an NKIObject), checked against NumPy on every target, and
against the capacity rules (the blocked kernel fits SBUF/PSUM; one that keeps too much live is rejected)."""

from dataclasses import dataclass

import ml_dtypes
import numpy as np
import pytest

from nkilab.harness.emulator import TARGETS, NkiValidationError, nisa, nl, run

ALL_TARGETS = tuple(TARGETS)
TILE_K, TILE_M, TILE_N = 128, 128, 512


def matmul_basic(lhsT, rhs):
    """One tile: [K<=128, M<=128].T @ [K, N<=512]."""
    k, m = lhsT.shape
    _, n = rhs.shape
    a, b = nl.ndarray((k, m), lhsT.dtype), nl.ndarray((k, n), rhs.dtype)
    nisa.dma_copy(dst=a, src=lhsT)
    nisa.dma_copy(dst=b, src=rhs)
    ps = nl.ndarray((m, n), nl.float32, buffer=nl.psum)
    nisa.nc_matmul(dst=ps, stationary=a, moving=b)
    sb = nl.ndarray((m, n), lhsT.dtype)
    nisa.tensor_copy(dst=sb, src=ps)
    out = nl.ndarray((m, n), lhsT.dtype, buffer=nl.shared_hbm)
    nisa.dma_copy(dst=out, src=sb)
    return out


def matmul_tiled(lhsT, rhs):
    """Tiles over M, N and K, accumulating K in one PSUM tile (accumulate=None: first write overwrites)."""
    k, m = lhsT.shape
    _, n = rhs.shape
    out = nl.ndarray((m, n), lhsT.dtype, buffer=nl.shared_hbm)
    for mi in range(m // TILE_M):
        for ni in range(n // TILE_N):
            ps = nl.ndarray((TILE_M, TILE_N), nl.float32, buffer=nl.psum)
            for ki in range(k // TILE_K):
                a, b = nl.ndarray((TILE_K, TILE_M), lhsT.dtype), nl.ndarray((TILE_K, TILE_N), rhs.dtype)
                nisa.dma_copy(dst=a, src=lhsT[ki * TILE_K:(ki + 1) * TILE_K, mi * TILE_M:(mi + 1) * TILE_M])
                nisa.dma_copy(dst=b, src=rhs[ki * TILE_K:(ki + 1) * TILE_K, ni * TILE_N:(ni + 1) * TILE_N])
                nisa.nc_matmul(dst=ps, stationary=a, moving=b)
            sb = nl.ndarray((TILE_M, TILE_N), lhsT.dtype)
            nisa.tensor_copy(dst=sb, src=ps)
            nisa.dma_copy(dst=out[mi * TILE_M:(mi + 1) * TILE_M, ni * TILE_N:(ni + 1) * TILE_N], src=sb)
    return out


@dataclass
class BlockConfig(nl.NKIObject):
    """Blocking of the blocked matmul: tiles per block along M and N (K is loaded whole per block)."""

    tiles_m: int = 2
    tiles_n: int = 1

    def __post_init__(self):
        if self.tiles_m < 1 or self.tiles_n < 1:
            raise ValueError(f"tiles_m, tiles_n: must be >= 1, got {self.tiles_m}, {self.tiles_n}")


def matmul_blocked(lhsT, rhs, cfg: BlockConfig):
    """Blocks of cfg.tiles_m x cfg.tiles_n output tiles; each block loads its lhsT / rhs strips once (hoisted
    loads) into [128, K/128, width] SBUF tiles, then runs all its matmuls."""
    k, m = lhsT.shape
    _, n = rhs.shape
    kt = k // TILE_K
    bm, bn = TILE_M * cfg.tiles_m, TILE_N * cfg.tiles_n
    out = nl.ndarray((m, n), nl.float32, buffer=nl.shared_hbm)
    for mb in range(m // bm):
        a = nl.ndarray((TILE_K, kt, bm), lhsT.dtype)
        for ki in range(kt):
            nisa.dma_copy(dst=a[:, ki, :], src=lhsT[ki * TILE_K:(ki + 1) * TILE_K, mb * bm:(mb + 1) * bm])
        for nb in range(n // bn):
            b = nl.ndarray((TILE_K, kt, bn), rhs.dtype)
            for ki in range(kt):
                nisa.dma_copy(dst=b[:, ki, :], src=rhs[ki * TILE_K:(ki + 1) * TILE_K, nb * bn:(nb + 1) * bn])
            for mi in range(cfg.tiles_m):
                for ni in range(cfg.tiles_n):
                    ps = nl.ndarray((TILE_M, TILE_N), nl.float32, buffer=nl.psum)
                    for ki in range(kt):
                        nisa.nc_matmul(dst=ps, stationary=a[:, ki, mi * TILE_M:(mi + 1) * TILE_M],
                                       moving=b[:, ki, ni * TILE_N:(ni + 1) * TILE_N])
                    sb = nl.ndarray((TILE_M, TILE_N), nl.float32)
                    nisa.tensor_copy(dst=sb, src=ps)
                    r0, c0 = mb * bm + mi * TILE_M, nb * bn + ni * TILE_N
                    nisa.dma_copy(dst=out[r0:r0 + TILE_M, c0:c0 + TILE_N], src=sb)
    return out


def _inputs(k, m, n, dtype, seed=0):
    rng = np.random.default_rng(seed)
    lhsT = rng.uniform(-1, 1, (k, m)).astype(dtype)
    rhs = rng.uniform(-1, 1, (k, n)).astype(dtype)
    return lhsT, rhs, lhsT.astype(np.float64).T @ rhs.astype(np.float64)


@pytest.mark.parametrize("target", ALL_TARGETS)
@pytest.mark.parametrize("dtype", [np.float32, ml_dtypes.bfloat16])
def test_basic_and_tiled(target, dtype):
    lhsT, rhs, ref = _inputs(128, 64, 512, dtype)
    out = run(matmul_basic, lhsT, rhs, target=target).outputs
    tol = 2e-2 if dtype is ml_dtypes.bfloat16 else 1e-5  # bf16 output: one rounding of |values| <~ 10
    np.testing.assert_allclose(out.astype(np.float32), ref, rtol=tol, atol=tol)
    lhsT, rhs, ref = _inputs(256, 256, 1024, dtype, seed=1)
    out = run(matmul_tiled, lhsT, rhs, target=target).outputs
    np.testing.assert_allclose(out.astype(np.float32), ref, rtol=tol, atol=2 * tol)


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_blocked_with_nkiobject_config(target):
    lhsT, rhs, ref = _inputs(256, 512, 1024, ml_dtypes.bfloat16, seed=2)
    for cfg in (BlockConfig(), BlockConfig(tiles_m=4, tiles_n=2)):
        out = run(matmul_blocked, lhsT, rhs, cfg, target=target).outputs
        np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-4)  # fp32 output of exact bf16 products
    with pytest.raises(ValueError, match="tiles_m"):
        BlockConfig(tiles_m=0)


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_blocked_capacity_rule(target):
    """A block whose hoisted strips fit one partition's SBUF runs (trace mode, full K); twice the K does not:
    a strip of [128, K/128, block] bf16 takes K/128 * block * 2 bytes on every partition, and both strips are live
    while the block's matmuls run."""
    sbuf = TARGETS[target].sbuf_bytes
    cfg = BlockConfig(tiles_m=4, tiles_n=2)  # strips of 512 + 1024 columns: 3 KiB per 128 of K, per partition
    k_fit, k_over = sbuf // 2 // 3072 * 128, (sbuf // 3072 + 1) * 128  # strips in half of SBUF / beyond all of it
    fit = [np.zeros((k_fit, 512), ml_dtypes.bfloat16), np.zeros((k_fit, 1024), ml_dtypes.bfloat16)]
    run(matmul_blocked, *fit, cfg, target=target, mode="trace")
    over = [np.zeros((k_over, 512), ml_dtypes.bfloat16), np.zeros((k_over, 1024), ml_dtypes.bfloat16)]
    with pytest.raises(NkiValidationError, match="SBUF"):
        run(matmul_blocked, *over, cfg, target=target, mode="trace")


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_psum_live_banks_rule(target):
    """Eight 2 KiB PSUM accumulators live at once fit; a ninth is rejected."""
    def kernel(n_tiles):
        tiles = [nl.ndarray((128, 512), nl.float32, buffer=nl.psum) for _ in range(n_tiles)]
        for _ in range(2):  # written, then used again: all n live together (capacity counts live ranges)
            for t in tiles:
                nisa.memset(dst=t, value=0.0)
        return None
    run(kernel, 8, target=target)
    with pytest.raises(NkiValidationError, match="PSUM"):
        run(kernel, 9, target=target)
