"""RMSNorm over the last axis, optionally fused with the residual add of a pre-norm block (Llama).

    h = x + residual                      (when a residual is given; rounded to x's dtype, as it is stored)
    y[n, :] = h[n, :] / sqrt(mean_j h[n, j]^2 + eps) * weight

Algorithm: rows on partitions. The weight is broadcast once to every partition a tile uses (one DMA whose
partition stride is 0). Per tile of up to PMAX rows (the next tile's loads are issued before this tile's work, so
they are not queued behind its stores):
  1. DMA the x rows (and the residual rows, added into h — rounded to x's dtype — on VectorE, or on GpSimd on
     NeuronCore-v2, whose VectorE is no faster per element; h is stored);
  2. ScalarE squares h and sums each row into its reduce register (`activation`, reduce_op add): fp32 sum of squares;
  3. ScalarE: rstd = rsqrt(sum / H + eps) from that (P, 1) column (`activation` with scale 1/H and an eps bias tile,
     a (P, 1) vector as NeuronCore-v2 requires);
  4. VectorE: y = (h * rstd) * weight in one `scalar_tensor_tensor`, fp32 math, one rounding into x's dtype.
Only NeuronCore-v2 instructions and operand forms (the one target branch picks the engine of the residual add), so
the same program runs on inf2, trn1, trn2 and trn3. Rows never mix: a non-finite value reaches only its own row.

Numerics: statistics and the normalisation in fp32 whatever the input dtype (bf16/fp16/fp32); y is rounded once.
Reference: nkilab.reference.norm.rms_norm.
"""

from ._shim import nisa, nki, nl
from ._tiling import PMAX, tiles


def sbuf_tiles(residual: bool) -> int:
    """[P, H] SBUF tiles the kernel holds at once: weight and y, plus x (and the residual) of two row tiles."""
    return 2 + 2 * (2 if residual else 1)


@nki.jit
def rms_norm_kernel(x, weight, residual=None, eps=1e-6, rows_per_tile=PMAX):
    """RMSNorm of the rows of x (fused with the residual add when `residual` is given).

    Dimensions:  N rows; H hidden.
    Args:        x: [N, H] bfloat16|float16|float32, HBM.
                 weight: [H], x's dtype, HBM.
                 residual: [N, H], x's dtype, HBM, or None.
                 eps: > 0 (compile-time float), added to the mean square.
                 rows_per_tile: rows (partitions) per tile, 1..PMAX (compile-time int; a tunable, the launcher
                 passes its tuning table's value).
                 (Plain parameters with defaults, not keyword-only: the NKI compiler frontend rejects `*`.)
    Returns:     y: [N, H] x's dtype, shared HBM; with a residual, (y, h) with h = x + residual, x's dtype.
    Tiling:      rows in rows_per_tile-partition tiles; each row's H elements in one instruction per step. SBUF per
                 partition: sbuf_tiles(residual) [P, H] tiles (weight, y, and two tiles' x and residual in flight).
    Numerics:    fp32 sum of squares, rstd and products; h and y each rounded once into x's dtype.
    """
    n_rows, hidden = x.shape
    y = nl.ndarray((n_rows, hidden), dtype=x.dtype, buffer=nl.shared_hbm)
    h_out = None if residual is None else nl.ndarray((n_rows, hidden), dtype=x.dtype, buffer=nl.shared_hbm)
    parts = min(rows_per_tile, n_rows)
    w_rows = nl.ndarray((parts, hidden), dtype=weight.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=w_rows, src=weight.reshape((1, hidden)).ap([[0, parts], [1, hidden]], offset=0))
    # the residual add: on NeuronCore-v2 VectorE is no faster per element than GpSimd, which is otherwise idle
    add_engine = nisa.engine.gpsimd if nisa.get_nc_version() == nisa.nc_version.gen2 else nisa.engine.vector
    eps_col = nl.ndarray((parts, 1), dtype=nl.float32, buffer=nl.sbuf)
    nisa.memset(dst=eps_col, value=float(eps))
    row_tiles = tiles(n_rows, rows_per_tile)
    loaded = [_load_rows(x, residual, row_tiles[0][0], row_tiles[0][1])]
    for t, (start, rows) in enumerate(row_tiles):
        if t + 1 < len(row_tiles):  # the next tile's loads go first, ahead of this tile's stores in the DMA queues
            loaded.append(_load_rows(x, residual, row_tiles[t + 1][0], row_tiles[t + 1][1]))
        h, res = loaded.pop(0)
        if res is not None:
            nisa.tensor_tensor(dst=h, data1=h, data2=res, op=nl.add, engine=add_engine)
            nisa.dma_copy(dst=h_out[start : start + rows, :], src=h)
        out_rows = nl.ndarray((rows, hidden), dtype=x.dtype, buffer=nl.sbuf)
        sum_sq = nl.ndarray((rows, 1), dtype=nl.float32, buffer=nl.sbuf)
        # squares land in out_rows only as scratch: the sum goes to the reduce registers, read out into sum_sq
        nisa.activation(dst=out_rows, op=nl.square, data=h, reduce_op=nl.add, reduce_res=sum_sq,
                        reduce_cmd=nisa.reduce_cmd.reset_reduce)
        rstd = nl.ndarray((rows, 1), dtype=nl.float32, buffer=nl.sbuf)
        nisa.activation(dst=rstd, op=nl.rsqrt, data=sum_sq, scale=1.0 / hidden, bias=eps_col[0:rows, :])
        nisa.scalar_tensor_tensor(dst=out_rows, data=h, op0=nl.multiply, operand0=rstd, op1=nl.multiply,
                                  operand1=w_rows[0:rows, :])
        nisa.dma_copy(dst=y[start : start + rows, :], src=out_rows)
    if residual is None:
        return y
    return y, h_out


def _load_rows(x, residual, start, rows):
    """(x rows, residual rows or None): SBUF [rows, H] tiles of rows start.. of x and of the residual."""
    hidden = x.shape[1]
    h = nl.ndarray((rows, hidden), dtype=x.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=h, src=x[start : start + rows, :])
    if residual is None:
        return h, None
    res = nl.ndarray((rows, hidden), dtype=x.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=res, src=residual[start : start + rows, :])
    return h, res
