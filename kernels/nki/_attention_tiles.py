"""Tile movement shared by the attention kernels: HBM loads of q / k / v rows, TensorE transposes, PSUM copies.

Kernel-side helper (imports only the shim and `_tiling`), used by `attention.py` (loads, transposes) and
`paged_attention/` (`transpose_side_by_side`, `psum_copy`).
"""

from ._shim import nisa, nl
from ._tiling import MOVING_FMAX, PMAX, tiles

Q_TILE = PMAX  # query rows per tile: the output partitions of both matmuls
KV_TILE = MOVING_FMAX  # keys per score matmul: moving free size <= 512, one 2 KiB PSUM bank of fp32 scores
D_CHUNK = PMAX  # head-dim rows per QKᵀ matmul: the contraction runs over <= 128 partitions


def psum_copy(dst, src, on_scalar):
    """PSUM -> SBUF copy on ScalarE (activation copy: valid on NeuronCore-v2, unlike a ScalarE tensor_copy) or
    VectorE."""
    if on_scalar:
        nisa.activation(dst=dst, op=nl.copy, data=src)
    else:
        nisa.tensor_copy(dst=dst, src=src)


def transpose_side_by_side(dst, srcs):
    """dst[:cols_i, r_0 + … + r_{i-1} + (0 .. r_i)] = srcs[i]ᵀ: TensorE transposes of [r_i, cols_i] SBUF tiles into
    consecutive column ranges of one PSUM tile (e.g. 128-key chunks of k into kᵀ)."""
    offset = 0
    for src in srcs:
        rows, cols = src.shape[0], src.shape[-1]
        nisa.nc_transpose(dst=dst[:cols, offset:offset + rows], data=src)
        offset += rows


def load_q_rows(q, b, q0, nq, h0, nh):
    """q rows [q0, q0 + nq) of heads [h0, h0 + nh): [128, nh, D] SBUF in one DMA (nh·D contiguous per row)."""
    q_sb = nl.ndarray((Q_TILE, nh, q.shape[3]), dtype=q.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=q_sb[:nq], src=q[b, q0:q0 + nq, h0:h0 + nh, :])
    return q_sb


def transpose_q(q_sb, nq):
    """qᵀ [128 (D slice), nh, D/128, 128 (queries)] SBUF from q rows [128, nh, D]: TensorE transposes per head,
    copied out by ScalarE."""
    nh, d = q_sb.shape[1], q_sb.shape[2]
    d_tiles = tiles(d, D_CHUNK)
    qT = nl.ndarray((D_CHUNK, nh, len(d_tiles), Q_TILE), dtype=q_sb.dtype, buffer=nl.sbuf)
    for h in range(nh):
        qT_ps = nl.ndarray((D_CHUNK, len(d_tiles), Q_TILE), dtype=q_sb.dtype, buffer=nl.psum)
        for j, (d0, dc) in enumerate(d_tiles):
            nisa.nc_transpose(dst=qT_ps[:dc, j, :nq], data=q_sb[:nq, h, d0:d0 + dc])
            psum_copy(qT[:dc, h, j, :nq], qT_ps[:dc, j, :nq], on_scalar=True)
    return qT


def kv_tiles(k, v, b, hk, k0, n):
    """Keys [k0, k0 + n) of kv head hk: kᵀ [128 (D slice), D/128, n] and v [128 keys, n/128 chunks, D] in SBUF."""
    k_sb, v_sb = load_kv_rows(k, v, b, hk, k0, n)
    return transpose_k(k_sb, n, k.shape[3]), v_sb


def load_kv_rows(k, v, b, hk, k0, n):
    """k and v rows [k0, k0 + n) of kv head hk as [128 keys, n/128 chunks, D] SBUF tiles (contiguous D-element
    runs; a strided DMA of kᵀ would move 2-byte runs)."""
    chunks = -(-n // PMAX)
    k_sb = nl.ndarray((PMAX, chunks, k.shape[3]), dtype=k.dtype, buffer=nl.sbuf)
    v_sb = nl.ndarray((PMAX, chunks, v.shape[3]), dtype=v.dtype, buffer=nl.sbuf)
    _load_rows(k_sb, k, b, hk, k0, n)
    _load_rows(v_sb, v, b, hk, k0, n)
    return k_sb, v_sb


def transpose_k(k_sb, n, d):
    """kᵀ [128 (D slice), D/128, n] SBUF from k rows [128 keys, n/128, D]: TensorE transposes of 128 keys, four per
    PSUM tile, copied out by ScalarE."""
    d_tiles = tiles(d, D_CHUNK)
    kT = nl.ndarray((D_CHUNK, len(d_tiles), n), dtype=k_sb.dtype, buffer=nl.sbuf)
    for g0, width in tiles(n, KV_TILE):
        for j, (d0, dc) in enumerate(d_tiles):
            kT_ps = nl.ndarray((D_CHUNK, KV_TILE), dtype=k_sb.dtype, buffer=nl.psum)
            transpose_side_by_side(kT_ps, [k_sb[:kc, (g0 + f0) // PMAX, d0:d0 + dc] for f0, kc in tiles(width, PMAX)])
            psum_copy(kT[:dc, j, g0:g0 + width], kT_ps[:dc, :width], on_scalar=True)
    return kT


def _load_rows(dst, src, b, hk, k0, n):
    """dst[p, c, :] = src[b, k0 + 128·c + p, hk, :] for the n rows: one DMA for the whole 128-row chunks, one for
    the ragged rest."""
    skv, hkv, d = src.shape[1], src.shape[2], src.shape[3]
    full, rest = n // PMAX, n % PMAX
    if full:
        row = hkv * d  # elements between consecutive keys of one head
        nisa.dma_copy(dst=dst[:, :full, :],
                      src=src.ap(pattern=[[row, PMAX], [PMAX * row, full], [1, d]],
                                 offset=((b * skv + k0) * hkv + hk) * d))
    if rest:
        nisa.dma_copy(dst=dst[:rest, full, :], src=src[b, k0 + full * PMAX:k0 + n, hk, :])
