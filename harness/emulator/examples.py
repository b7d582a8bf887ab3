"""The NKI documentation's tutorial kernels, in the current API, written against this emulator's namespace.

Used by the emulator's acceptance tests and by `benchmark.py`; they double as a minimal example of the
kernel style `nkilab.kernels.nki` follows (explicit `dst=` on every nisa op, `nl.ndarray` tiles, Python loops).
"""

from __future__ import annotations

from . import nisa, nki, nl


@nki.jit
def tensor_add(a, b):
    """out = a + b, 128 rows at a time.

    Args:        a, b: [R, F] any NKI dtype, HBM; R a multiple of 128.
    Returns:     out: [R, F] a.dtype, shared HBM.
    Pseudocode:  for each 128-row tile: x, y = dma(a), dma(b); z = x + y (VectorE); dma(out) = z
    """
    out = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.shared_hbm)
    n = a.shape[1]
    for i in range(a.shape[0] // 128):
        rows = slice(i * 128, (i + 1) * 128)
        x = nl.ndarray((128, n), a.dtype, buffer=nl.sbuf)
        y = nl.ndarray((128, n), a.dtype, buffer=nl.sbuf)
        z = nl.ndarray((128, n), a.dtype, buffer=nl.sbuf)
        nisa.dma_copy(dst=x, src=a[rows, :])
        nisa.dma_copy(dst=y, src=b[rows, :])
        nisa.tensor_tensor(dst=z, data1=x, data2=y, op=nl.add)
        nisa.dma_copy(dst=out[rows, :], src=z)
    return out


@nki.jit
def tiled_matmul(lhs_t, rhs):
    """out[M, N] = lhs_t[K, M].T @ rhs[K, N] with fp32 PSUM accumulation over K tiles, cast on the way out.

    Args:        lhs_t: [K, M] bf16|fp8|fp32, HBM; rhs: [K, N], HBM; K % 128 == 0, M % 128 == 0, N % 512 == 0.
    Returns:     out: [M, N] lhs_t.dtype, shared HBM.
    Tiling:      stationary [128, 128], moving [128, 512] (one 2 KiB PSUM bank of fp32).
    Pseudocode:  for m, n tiles: acc = 0 (first matmul overwrites); for k: acc += at.T @ bt; out = cast(acc)
    """
    k, m = lhs_t.shape
    _, n = rhs.shape
    tm, tk, tn = nl.tile_size.gemm_stationary_fmax, nl.tile_size.pmax, nl.tile_size.gemm_moving_fmax
    out = nl.ndarray((m, n), dtype=lhs_t.dtype, buffer=nl.shared_hbm)
    for mi in range(m // tm):
        for ni in range(n // tn):
            acc = nl.ndarray((tm, tn), nl.float32, buffer=nl.psum)
            for ki in range(k // tk):
                at = nl.ndarray((tk, tm), lhs_t.dtype, buffer=nl.sbuf)
                bt = nl.ndarray((tk, tn), rhs.dtype, buffer=nl.sbuf)
                nisa.dma_copy(dst=at, src=lhs_t[ki * tk:(ki + 1) * tk, mi * tm:(mi + 1) * tm])
                nisa.dma_copy(dst=bt, src=rhs[ki * tk:(ki + 1) * tk, ni * tn:(ni + 1) * tn])
                nisa.nc_matmul(dst=acc, stationary=at, moving=bt)
            res = nl.ndarray((tm, tn), out.dtype, buffer=nl.sbuf)
            nisa.tensor_copy(dst=res, src=acc)
            nisa.dma_copy(dst=out[mi * tm:(mi + 1) * tm, ni * tn:(ni + 1) * tn], src=res)
    return out
