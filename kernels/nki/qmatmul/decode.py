"""Decode schedule of qmatmul (small M): weights stationary, x^T moving, per-group partial sums in PSUM.

Each 128 x 128 weight block costs one max(M·b, 64)-cycle matmul (b = groups per K tile) and the weights stream
from HBM once. Group scales never touch the weights: the moving operand of a K tile holding b groups is
block-diagonal, so one matmul leaves each group's partial sum in its own PSUM slot P[n, g, m], and the epilogue
applies y^T[n, m] = Σ_g s[g, n] (P[n, g, m] - z[g, n] X[g, m]) with output channels on the partitions. See
DESIGN.md, "Decode".
"""

from .._shim import nisa, nl
from .._tiling import PMAX, PSUM_FMAX, tiles
from .tuning import DECODE_DMA_COLS, DECODE_LOOKAHEAD, DECODE_MIN_DMA_COLS, DECODE_PSUM_BANKS, N_BLOCK, N_SUB
from .weights import FP8_NIBBLE, INT4_SYM_OFFSET, converted, load_nibbles, load_weight_tile, replicated_row


class DecodeFetch(nl.NKIObject):
    """One weight fetch: N block `b` (index into DecodePlan.blocks), group chunk `c`, and the run of K steps
    (indices into Geometry.steps) one DMA loads."""

    def __init__(self, b, c, run):
        self.b, self.c, self.run = b, c, run


class DecodePlan(nl.NKIObject):
    """Decode tiling of one call: group chunks, N blocks, 128-channel sub-tiles per PSUM bank, and this program's
    weight fetches in stream order (`work`, a list of DecodeFetch)."""

    def __init__(self, geo, n, pid, nprog):
        # group chunks small enough that min_cols columns of partial sums fit the PSUM banks: int8/fp8 decode is
        # bound by the weight DMAs (longer runs help); int4 by VectorE, where more chunks mean more epilogue ops
        min_cols = N_BLOCK if geo.int4 else DECODE_MIN_DMA_COLS
        self.chunks = geo.chunks(max(1, min(PMAX, DECODE_PSUM_BANKS * PSUM_FMAX * N_SUB // (min_cols * geo.m))))
        # sub-tiles whose partial sums share one PSUM bank; the DMA block spans up to DECODE_PSUM_BANKS banks
        self.per_bank = max(1, PSUM_FMAX // (max(chunk.ng for chunk in self.chunks) * geo.m))
        self.blocks = tiles(n, min(DECODE_DMA_COLS, DECODE_PSUM_BANKS * self.per_bank * N_SUB))
        # int4 fetches several K steps per DMA and unpack instruction (>= DECODE_DMA_COLS columns' worth): the
        # bit ops' fixed cost per instruction is large next to narrow blocks' element work
        per_fetch = max(1, DECODE_DMA_COLS // self.blocks[0][1]) if geo.int4 else 1
        self.work = [DecodeFetch(b, c, run) for b in range(pid, len(self.blocks), nprog)
                     for c in range(len(self.chunks)) for run in _step_runs(geo, self.chunks[c].steps, per_fetch)]

    def batches(self, subs):
        """The 128-channel sub-tiles in runs of per_bank (those whose partial sums share a PSUM bank)."""
        return [subs[b0:b0 + nb] for b0, nb in tiles(len(subs), self.per_bank)]


class YBlock(nl.NKIObject):
    """y^T of N block columns nb0 .. nb0+nbw: float32 SBUF [128, len(subs), M], subs = its 128-channel sub-tiles."""

    def __init__(self, block, m):
        self.nb0, self.nbw = block
        self.subs = tiles(self.nbw, N_SUB)
        self.yT = nl.ndarray((PMAX, len(self.subs), m), dtype=nl.float32, buffer=nl.sbuf)


class PartialSums(nl.NKIObject):
    """Per-group partial sums of one (N block, group chunk): PSUM banks [128, per_bank, ng, M]; parts[j] is
    sub-tile j's [128, ng, M] slice."""

    def __init__(self, plan, subs, ng, m):
        self.banks = [nl.ndarray((PMAX, len(batch), ng, m), dtype=nl.float32, buffer=nl.psum)
                      for batch in plan.batches(subs)]
        self.parts = [self.banks[j // plan.per_bank][:, j % plan.per_bank, :, :] for j in range(len(subs))]


class ChunkScales(nl.NKIObject):
    """What the epilogue of one group chunk applies: s: [ng, nbw] float32 scale rows; zs: zero points times scales
    (int4 asymmetric, else None; symmetric: z = 8); gsum_T: [ng, M] group sums of x (int4, else None); xs_rep:
    [128, M] per-token scales (W8A8, else None)."""

    def __init__(self, s, zs, gsum_T, xs_rep):
        self.s, self.zs, self.gsum_T, self.xs_rep = s, zs, gsum_T, xs_rep


def decode(ops, geo):
    """y = x @ W for M <= decode_max_m: every weight block streamed once, DECODE_LOOKAHEAD fetches ahead.

    ops: Operands; geo: Geometry. Program order is the schedule (in-order engine queues): each fetch is loaded
    and converted ahead of its matmuls, so the next tiles' conversions come before this block's epilogue (which
    waits for TensorE) in every engine's queue; a block's output is stored once the next block's matmuls are
    issued, since a store DMA waiting for its epilogue would hold back the weight transfers queued after it."""
    plan = DecodePlan(geo, ops.w.shape[1], ops.pid, ops.nprog)
    x_sb = nl.ndarray((geo.m, ops.x.shape[1]), dtype=nl.bfloat16, buffer=nl.sbuf)
    nisa.dma_copy(dst=x_sb, src=ops.x)
    moving = _decode_moving(x_sb, geo)
    gsums = [_group_sums_T(x_sb, geo, chunk) for chunk in plan.chunks] if geo.int4 else None
    # per-token scales as a row replicated over the output-channel partitions: partition stride 0 in HBM
    xs_rep = replicated_row(ops.x_scales, 0, 0, geo.m, nl.float32, PMAX) if geo.w8a8 else None
    work = plan.work
    ahead = [_fetch(ops.w, geo, plan, work[t]) for t in range(min(DECODE_LOOKAHEAD, len(work)))]
    pending = []  # finished y blocks, stored once the next block's matmuls are issued
    for t, item in enumerate(work):
        if t + DECODE_LOOKAHEAD < len(work):
            ahead.append(_fetch(ops.w, geo, plan, work[t + DECODE_LOOKAHEAD]))
        fetched = ahead.pop(0)
        chunk = plan.chunks[item.c]
        if item.run[0] == chunk.steps[0]:
            if item.c == 0:
                yblk = YBlock(plan.blocks[item.b], geo.m)
            sums = PartialSums(plan, yblk.subs, chunk.ng, geo.m)
        _multiply(sums, yblk, item, fetched, moving, chunk, geo)
        if item.run[-1] != chunk.steps[-1]:
            continue
        if item.c == 0 and pending:
            _store_transposed(ops.out, pending.pop(), geo)
        scales = _chunk_scales(ops, yblk, chunk, gsums[item.c] if gsums else None, xs_rep, geo)
        for bank, batch, (b0, nb) in zip(sums.banks, plan.batches(yblk.subs), tiles(len(yblk.subs), plan.per_bank)):
            rows = batch[0][1]
            _decode_epilogue(yblk.yT[0:rows, b0:b0 + nb, :], bank[0:rows], batch, scales, chunk.ng, geo,
                             accumulate=item.c > 0)
        if item.c == len(plan.chunks) - 1:
            pending.append(yblk)
    for yblk in pending:
        _store_transposed(ops.out, yblk, geo)


def _multiply(sums, yblk, item, fetched, moving, chunk, geo):
    """P[sub-tile j][:, groups of step i, :] += w[:, sub-tile j]^T · xm[i] for every step i of the fetch."""
    for i, weights in zip(item.run, fetched):
        step = geo.steps[i]
        g0 = step.g0 - chunk.g0
        for wt, xm in zip(weights, moving[i]):
            for j, (j0, nsz) in enumerate(yblk.subs):
                nisa.nc_matmul(dst=sums.parts[j][0:nsz, g0:g0 + step.ng, :], stationary=wt[0:step.rows, j0:j0 + nsz],
                               moving=xm[0:step.rows])


def _chunk_scales(ops, yblk, chunk, gsum_T, xs_rep, geo):
    """ChunkScales of one group chunk for the block's columns: scale rows, and for int4 asymmetric z·s rows."""
    s_sb = _load_rows(ops.scales, chunk.g0, chunk.ng, yblk.nb0, yblk.nbw)
    zs_sb = None
    if geo.int4 and not geo.symmetric:
        zs_sb = _load_rows(ops.zeros, chunk.g0, chunk.ng, yblk.nb0, yblk.nbw)
        nisa.tensor_tensor(dst=zs_sb, data1=zs_sb, data2=s_sb, op=nl.multiply)
    return ChunkScales(s_sb, zs_sb, gsum_T, xs_rep)


def _step_runs(geo, step_ids, per_fetch):
    """step_ids (consecutive K steps) cut into runs of at most per_fetch steps with equal rows (a ragged last
    step runs alone), each loaded by one DMA."""
    runs = []
    for i in step_ids:
        if runs and len(runs[-1]) < per_fetch and geo.steps[runs[-1][0]].rows == geo.steps[i].rows:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def _fetch(w, geo, plan, item):
    """The weight tiles of one DecodeFetch: per step of its run, its TensorE operand(s)."""
    nb0, nbw = plan.blocks[item.b]
    if not geo.int4:
        return [load_weight_tile(w, geo.steps[i], nb0, nbw, geo, turn=item.b + i) for i in item.run]
    r0, rows = geo.steps[item.run[0]].r0, geo.steps[item.run[0]].rows
    n = w.shape[1]
    # packed rows r0 + rows * s + p of the run's steps s as one [rows, steps, nbw] tile (runs of full steps)
    lo, hi = load_nibbles(w.ap([[n, rows], [rows * n, len(item.run)], [1, nbw]], offset=r0 * n + nb0), geo.symmetric)
    if geo.fp8_nibbles:
        lo, hi = lo.view(nl.float8_e4m3), hi.view(nl.float8_e4m3)
    else:  # one ScalarE and one GpSimd copy for the whole run (VectorE has just unpacked it)
        lo, hi = converted(lo[..., 0:nbw], 1), converted(hi[..., 0:nbw], 2)
    return [[lo[:, s, :], hi[:, s, :]] for s in range(len(item.run))]


def _decode_moving(x_sb, geo):
    """Per K step, the moving operand(s) [rows, ng, M] bf16: x^T, block-diagonal over the step's groups
    (int4: one for the even-k half, one for the odd-k half). x_sb: [M, K] bf16 SBUF."""
    m = geo.m
    mask = _group_mask(geo) if geo.ngmax > 1 else None
    moving = []
    for i, step in enumerate(geo.steps):
        rows, ng = step.rows, step.ng
        halves = []
        for (c0, c1, cs), _ in geo.halves(i):
            cols = x_sb[0:m, c0:c1:cs]
            xT_ps = nl.ndarray((rows, 1, m), dtype=nl.bfloat16, buffer=nl.psum)
            nisa.nc_transpose(dst=xT_ps, data=cols)
            xm = nl.ndarray((rows, ng, m), dtype=nl.bfloat16, buffer=nl.sbuf)
            if ng > 1:
                nisa.tensor_tensor(dst=xm, data1=xT_ps.broadcast(1, ng),
                                   data2=mask[0:rows, 0:ng, :].broadcast(2, m), op=nl.multiply)
            else:
                nisa.tensor_copy(dst=xm, src=xT_ps)
            halves.append(xm)
        moving.append(halves)
    return moving


def _group_mask(geo):
    """mask[p, j, 0] = 1.0 where partition row p of a K step belongs to its j-th group (p // gr == j), else 0."""
    ones = nl.ndarray((PMAX, geo.ngmax, 1), dtype=nl.bfloat16, buffer=nl.sbuf)
    nisa.memset(dst=ones, value=1.0)
    lower = nl.ndarray((PMAX, geo.ngmax, 1), dtype=nl.bfloat16, buffer=nl.sbuf)
    nisa.affine_select(dst=lower, pattern=[[-geo.gr, geo.ngmax], [1, 1]], channel_multiplier=1, on_true_tile=ones,
                       on_false_value=0.0, cmp_op=nl.greater_equal, offset=0)
    mask = nl.ndarray((PMAX, geo.ngmax, 1), dtype=nl.bfloat16, buffer=nl.sbuf)
    nisa.affine_select(dst=mask, pattern=[[geo.gr, geo.ngmax], [1, 1]], channel_multiplier=-1, on_true_tile=lower,
                       on_false_value=0.0, cmp_op=nl.greater_equal, offset=geo.gr - 1)
    return mask


def _group_sums_T(x_sb, geo, chunk):
    """int4 zero-point folding: X^T[g, m] = Σ_{k in group chunk.g0 + g} x[m, k] for the chunk's groups, float32 SBUF
    [ng, M] (a VectorE reduce of the x rows, then a TensorE transpose to put the groups on the partitions)."""
    m, k = geo.m, geo.rows * geo.parity
    kg = k // geo.ngroups
    sums = nl.ndarray((m, chunk.ng), dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_reduce(dst=sums, op=nl.add, data=x_sb.reshape((m, geo.ngroups, kg))[:, chunk.g0:chunk.g0 + chunk.ng, :],
                       axis=2)
    ps = nl.ndarray((chunk.ng, m), dtype=nl.float32, buffer=nl.psum)
    nisa.nc_transpose(dst=ps, data=sums)
    sums_T = nl.ndarray((chunk.ng, m), dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_copy(dst=sums_T, src=ps)
    return sums_T


def _load_rows(t, g0, gc, nb0, nbw):
    """Rows g0 .. g0+gc of a [groups, N] HBM tensor, columns nb0 .. nb0+nbw, as float32 SBUF [gc, nbw]."""
    sb = nl.ndarray((gc, nbw), dtype=nl.float32, buffer=nl.sbuf)
    nisa.dma_copy(dst=sb, src=t[g0:g0 + gc, nb0:nb0 + nbw])
    return sb


def _transposed(src, batch, gc, scale):
    """float32 SBUF [rows, nb, gc, 1] (rows = the first sub-tile's channels): for each sub-tile (j0, nsz) of
    `batch`, columns j0 .. j0+nsz of src [gc, nbw] times `scale` (a power of two: exact) with the channels
    moved onto partitions (TensorE transposes into one PSUM bank, one ScalarE copy out)."""
    rows = batch[0][1]
    ps = nl.ndarray((rows, len(batch), gc), dtype=nl.float32, buffer=nl.psum)
    for jj, (j0, nsz) in enumerate(batch):
        nisa.nc_transpose(dst=ps[0:nsz, jj, :], data=src[0:gc, j0:j0 + nsz])
    sb = nl.ndarray((rows, len(batch), gc, 1), dtype=nl.float32, buffer=nl.sbuf)
    nisa.activation(dst=sb, op=nl.copy, data=ps, scale=scale)
    return sb


def _decode_epilogue(acc, part, batch, scales, gc, geo, accumulate):
    """acc[:, j, :] (+)= Σ_g sT_j[:, g] · part[:, j, g, :] - Σ_g (z·s)[g, sub-tile j]^T · X[g] for the
    128-channel sub-tiles j of `batch` (those sharing one PSUM bank), each VectorE op covering all of them.

    acc: SBUF [rows, nb, M]; part: PSUM [rows, nb, gc, M] per-group partial sums; batch: nb (j0, nsz)
    sub-tiles (only the last may be ragged: its rows past nsz are never stored); scales: the chunk's
    ChunkScales. The zero-point term is a contraction over the groups, so it runs on TensorE in fp32
    (stationary = the [gc, nsz] rows as loaded, moving = X^T) instead of on VectorE."""
    m = geo.m
    rows, nb = batch[0][1], len(batch)
    # int4 partial sums come from the fp8 view of the nibbles, u / FP8_NIBBLE: the factor rides on the scales
    sT = _transposed(scales.s, batch, gc, FP8_NIBBLE if geo.fp8_nibbles else 1.0)
    res = nl.ndarray((rows, nb, m), dtype=nl.float32, buffer=nl.sbuf) if (accumulate or geo.int4) else acc
    if geo.per_channel:
        nisa.tensor_tensor(dst=res, data1=part[:, :, 0, :], data2=sT[:, :, 0, :].broadcast(2, m), op=nl.multiply)
        if geo.w8a8:
            nisa.tensor_tensor(dst=res, data1=res, data2=scales.xs_rep[0:rows, :].expand_dim(1).broadcast(1, nb),
                               op=nl.multiply)
    else:
        scaled = nl.ndarray((rows, nb, gc, m), dtype=nl.float32, buffer=nl.sbuf)
        nisa.tensor_tensor(dst=scaled, data1=part, data2=sT.broadcast(3, m), op=nl.multiply)
        nisa.tensor_reduce(dst=res, op=nl.add, data=scaled.permute((0, 1, 3, 2)), axis=3)
    if geo.int4:
        corr = nl.ndarray((rows, nb, m), dtype=nl.float32, buffer=nl.psum)
        sz, z = (scales.s, -float(INT4_SYM_OFFSET)) if geo.symmetric else (scales.zs, -1.0)
        for jj, (j0, nsz) in enumerate(batch):
            nisa.nc_matmul(dst=corr[0:nsz, jj, :], stationary=sz[0:gc, j0:j0 + nsz], moving=scales.gsum_T)
        nisa.scalar_tensor_tensor(dst=res if accumulate else acc, data=corr, op0=nl.multiply, operand0=z,
                                  op1=nl.add, operand1=res)
    if accumulate:
        nisa.tensor_tensor(dst=acc, data1=acc, data2=res, op=nl.add)


def _store_transposed(out, yblk, geo):
    """out[:, nb0 : nb0+nbw] = yT^T, 512 columns at a time: TensorE transposes of each [nsz, M] sub-tile into
    one PSUM bank, one copy out of PSUM, one DMA. A 16-bit y is rounded first (one ScalarE copy: the same
    single rounding as the final cast), so the transposes move 2-byte elements (fp32 ones take 4 passes)."""
    m, yT, subs = geo.m, yblk.yT, yblk.subs
    if geo.narrow_out:
        rounded = nl.ndarray((subs[0][1], len(subs), m), dtype=out.dtype, buffer=nl.sbuf)
        nisa.activation(dst=rounded, op=nl.copy, data=yT[0:subs[0][1]])
        yT = rounded
    for o0, ow in tiles(yblk.nbw, N_BLOCK):
        o_ps = nl.ndarray((m, ow), dtype=yT.dtype, buffer=nl.psum)
        for j, (j0, nsz) in enumerate(subs):
            if o0 <= j0 < o0 + ow:
                nisa.nc_transpose(dst=o_ps[:, j0 - o0:j0 - o0 + nsz], data=yT[0:nsz, j, :])
        o_sb = nl.ndarray((m, ow), dtype=out.dtype, buffer=nl.sbuf)
        if geo.int4:  # ScalarE: VectorE unpacks the int4 weights
            nisa.activation(dst=o_sb, op=nl.copy, data=o_ps)
        else:
            nisa.tensor_copy(dst=o_sb, src=o_ps)
        nisa.dma_copy(dst=out[:, yblk.nb0 + o0:yblk.nb0 + o0 + ow], src=o_sb)
