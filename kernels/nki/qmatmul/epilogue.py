"""Decode epilogue of qmatmul: the scales and zero-point terms applied to the per-group fp32 partial sums.

    y^T[n, m] = Σ_g s[g, n] (P[n, g, m] - z[g, n] X[g, m]),   X[g, m] = Σ_{k in g} x[m, k]  (int4 only)

with output channels n on the partitions. Per (N block, group chunk): the element work (N·g·M, g the chunk's
groups) runs one PSUM bank at a time, each op covering every 128-channel sub-tile of the bank; what is left per
block — adding a later chunk's sums, the zero-point term as a matmul over the groups — runs once per block, on
[128, sub-tiles, M] tiles. See DESIGN.md, "Decode".
"""

from .._shim import nisa, nl
from .._tiling import PMAX, tiles
from .tuning import N_SUB
from .transpose import byte_values, transpose_bytes
from .weights import FP8_NIBBLE, INT4_SYM_OFFSET


class ChunkScales(nl.NKIObject):
    """What the epilogue of one group chunk (groups g0 .. g0+ng-1) applies: s_T: [128, subs, G] float32 scales of
    the block with the channels on partitions (`scales_T`: channel j0 + p of sub-tile j, group g at [p, j, g]);
    shift: [128, ng, M] float32, the symmetric int4 zero-point term -8·X[g, m] in partial-sum units, the same on
    every partition (`group_sums_rep`; else None); zero: the zero-point term as a matmul (`ZeroPointRows`, else
    None); gsum_T: [ng, M] group sums of x (with zero, else None); xs_rep: [128, M] per-token scales (W8A8, else
    None)."""

    def __init__(self, g0, s_T, shift, xs_rep, zero=None, gsum_T=None):
        self.g0, self.s_T, self.shift, self.xs_rep = g0, s_T, shift, xs_rep
        self.zero, self.gsum_T = zero, gsum_T


class ZeroPointRows(nl.NKIObject):
    """The zero-point matmul's stationary rows of one (N block, group chunk): acc += z · rows^T X, rows float32
    SBUF [ng, nbw] of s with z = -8 (symmetric int4 at M above decode_shift_max_m) or of z·s with z = -1
    (asymmetric int4). One DMA (two and a VectorE multiply for z·s), issued with the block's weight fetches:
    issued at the epilogue, the load queued behind every weight transfer already issued and held it up."""

    def __init__(self, ops, block, chunk, symmetric):
        nb0, nbw = block
        self.rows = _load_rows(ops.scales, chunk.g0, chunk.ng, nb0, nbw)
        self.z = -float(INT4_SYM_OFFSET)
        if not symmetric:
            zeros = _load_rows(ops.zeros, chunk.g0, chunk.ng, nb0, nbw)
            nisa.tensor_tensor(dst=self.rows, data1=self.rows, data2=zeros, op=nl.multiply)
            self.z = -1.0


def chunk_epilogue(yblk, sums, batches, scales, ng, geo, first, last, tail=False):
    """yblk.yT (+)= the terms of one group chunk of the block: `first` chunk writes, later ones add; the `last`
    adds the zero-point term (accumulated over the chunks in yblk.corr, a PSUM [128, subs, M] tile). `tail`: the
    stream's last chunk, which nothing follows: int4's ScalarE -> GpSimd scaling (`_scaled_sums`) takes every
    other bank only, VectorE (done unpacking) the rest.

    yblk: decode.YBlock; sums: decode.PartialSums of the chunk; batches: [(b0, nb)] sub-tile runs of its banks;
    scales: ChunkScales; ng: the chunk's groups. Only the last sub-tile may be ragged: its rows past nsz (in
    block-wide ops) are never stored."""
    m, subs = geo.m, yblk.subs
    rows = subs[0][1]
    if scales.zero is not None:
        for j, (j0, nsz) in enumerate(subs):  # accumulates over the chunks (first write of the block overwrites)
            nisa.nc_matmul(dst=yblk.corr[0:nsz, j, :], stationary=scales.zero.rows[0:ng, j0:j0 + nsz],
                           moving=scales.gsum_T)
    res = yblk.yT if first else nl.ndarray((PMAX, len(subs), m), dtype=nl.float32, buffer=nl.sbuf)
    for k, (bank, (b0, nb)) in enumerate(zip(sums.banks, batches)):
        brows = subs[b0][1]
        _scaled_sums(res[0:brows, b0:b0 + nb, :], bank[0:brows], b0, scales, ng, geo, on_vector=tail and k % 2 == 1)
    acc = yblk.yT[0:rows]
    if not first:
        nisa.tensor_tensor(dst=acc, data1=acc, data2=res[0:rows], op=nl.add)
    if last and scales.zero is not None:
        nisa.scalar_tensor_tensor(dst=acc, data=yblk.corr[0:rows], op0=nl.multiply, operand0=scales.zero.z,
                                  op1=nl.add, operand1=acc)


def _scaled_sums(res, part, b0, scales, gc, geo, on_vector=False):
    """res[:, j, :] = Σ_g sT_j[:, g] · (part[:, j, g, :] + shift[g]) for the sub-tiles j = b0.. of one PSUM bank,
    each op covering all of them (per channel: part · s, times the token scales for W8A8); on_vector: int4's
    group scaling on VectorE even with the zero-point matmul.

    res: SBUF [rows, nb, M]; part: PSUM [rows, nb, gc, M] per-group partial sums."""
    m, nb = geo.m, res.shape[1]
    g0 = scales.g0
    s_T = scales.s_T[0:res.shape[0], b0:b0 + nb, g0:g0 + gc]
    if scales.shift is not None:
        shifted = nl.ndarray(part.shape, dtype=nl.float32, buffer=nl.sbuf)
        nisa.tensor_tensor(dst=shifted, data1=part, data2=scales.shift[0:res.shape[0]].expand_dim(1).broadcast(1, nb),
                           op=nl.add)
        part = shifted
    if geo.per_channel:
        nisa.tensor_tensor(dst=res, data1=part[:, :, 0, :], data2=s_T[:, :, 0:1].broadcast(2, m), op=nl.multiply)
        if geo.w8a8:
            xs = scales.xs_rep[0:res.shape[0], :].expand_dim(1).broadcast(1, nb)
            nisa.tensor_tensor(dst=res, data1=res, data2=xs, op=nl.multiply)
        return
    scaled = nl.ndarray(part.shape, dtype=nl.float32, buffer=nl.sbuf)
    if scales.zero is not None and geo.int4 and not on_vector:
        # int4 with the zero-point matmul (larger M): VectorE is the busiest engine (unpack, reduce), so ScalarE
        # copies the partial sums out of PSUM and GpSimd (which cannot read PSUM) scales them
        nisa.activation(dst=scaled, op=nl.copy, data=part)
        nisa.tensor_tensor(dst=scaled, data1=scaled, data2=s_T.expand_dim(3).broadcast(3, m), op=nl.multiply,
                           engine=nisa.engine.gpsimd)
    else:
        nisa.tensor_tensor(dst=scaled, data1=part, data2=s_T.expand_dim(3).broadcast(3, m), op=nl.multiply)
    nisa.tensor_reduce(dst=res, op=nl.add, data=scaled.permute((0, 1, 3, 2)), axis=3)


def scales_T(scales_t, block, geo):
    """The scales of N block (nb0, nbw) with the channels on partitions, from their channels-first HBM layout
    scales_t [N, G]: float32 SBUF [128, subs, G], s_T[p, j, g] = s[g, nb0 + 128 j + p] (a ragged last sub-tile
    fills rows 0..nsz; the rest is never read into a stored output), times FP8_NIBBLE for int4 nibbles read as
    fp8 (one ScalarE copy; exact). One DMA for the full sub-tiles (runs of G scales, over all 16 DMA engines),
    one more for a ragged last one."""
    nb0, nbw = block
    g = scales_t.shape[1]
    full, rest = nbw // N_SUB, nbw % N_SUB
    s_T = nl.ndarray((PMAX, full + (1 if rest else 0), g), dtype=nl.float32, buffer=nl.sbuf)
    if full:
        nisa.dma_copy(dst=s_T[:, 0:full, :], src=scales_t.ap([[g, N_SUB], [N_SUB * g, full], [1, g]], offset=nb0 * g))
    if rest:
        nisa.dma_copy(dst=s_T[0:rest, full, :], src=scales_t[nb0 + full * N_SUB:nb0 + nbw, :])
    if geo.fp8_nibbles:  # int4 partial sums come from the fp8 view of the nibbles, u / FP8_NIBBLE
        nisa.activation(dst=s_T, op=nl.copy, data=s_T, scale=FP8_NIBBLE)
    return s_T


def group_sums_T(x_sb, geo, chunk):
    """int4 zero-point folding: X^T[g, m] = Σ_{k in group chunk.g0 + g} x[m, k] for the chunk's groups, float32 SBUF
    [ng, M] (a VectorE reduce of the x rows, then a TensorE transpose to put the groups on the partitions; on
    NeuronCore-v2 a byte transpose, so that a non-finite sum stays in its row)."""
    m, k = geo.m, geo.rows * geo.parity
    kg = k // geo.ngroups
    sums = nl.ndarray((m, chunk.ng), dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_reduce(dst=sums, op=nl.add, data=x_sb.reshape((m, geo.ngroups, kg))[:, chunk.g0:chunk.g0 + chunk.ng, :],
                       axis=2)
    if geo.byte_transposes and m > 1:
        return transpose_bytes(byte_values(sums, 4), m, (0, chunk.ng, 1), 4, nl.float32)
    ps = nl.ndarray((chunk.ng, m), dtype=nl.float32, buffer=nl.psum)
    nisa.nc_transpose(dst=ps, data=sums)
    sums_T = nl.ndarray((chunk.ng, m), dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_copy(dst=sums_T, src=ps)
    return sums_T


def group_sums_rep(moving, geo, chunks):
    """Symmetric int4: per group chunk, shift[p, g, m] = -8 · X[g, m] / f on every partition p, X[g, m] =
    Σ_{k in group g} bf16(x[m, k]), f = FP8_NIBBLE for nibbles read as fp8 (else 1): the zero-point term in the
    units of the partial sums, float32 SBUF [128, ng, M]. TensorE sums the moving operands (the block-diagonal
    x^T of each K step) against a stationary of ones, one matmul per K step and nibble half, into one PSUM tile
    per chunk: X lands on all 128 output-channel partitions, so the epilogue subtracts it with one VectorE op
    (no transposes, nothing mixed across tokens)."""
    ones = nl.ndarray((PMAX, N_SUB), dtype=nl.bfloat16, buffer=nl.sbuf)
    nisa.memset(dst=ones, value=1.0)
    f = FP8_NIBBLE if geo.fp8_nibbles else 1.0
    shifts = []
    for chunk in chunks:
        ps = nl.ndarray((N_SUB, chunk.ng, geo.m), dtype=nl.float32, buffer=nl.psum)
        for i in chunk.steps:
            step = geo.steps[i]
            g0 = step.g0 - chunk.g0
            for xm in moving[i]:
                nisa.nc_matmul(dst=ps[:, g0:g0 + step.ng, :], stationary=ones[0:step.rows, :],
                               moving=xm[0:step.rows])
        shift = nl.ndarray((N_SUB, chunk.ng, geo.m), dtype=nl.float32, buffer=nl.sbuf)
        nisa.activation(dst=shift, op=nl.copy, data=ps, scale=-float(INT4_SYM_OFFSET) / f)
        shifts.append(shift)
    return shifts


def _load_rows(t, g0, gc, nb0, nbw):
    """Rows g0 .. g0+gc of a [groups, N] HBM tensor, columns nb0 .. nb0+nbw, as float32 SBUF [gc, nbw]."""
    sb = nl.ndarray((gc, nbw), dtype=nl.float32, buffer=nl.sbuf)
    nisa.dma_copy(dst=sb, src=t[g0:g0 + gc, nb0:nb0 + nbw])
    return sb
