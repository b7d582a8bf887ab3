"""Decode schedule of qmatmul (small M): weights stationary, x^T moving, per-group partial sums in PSUM.

Each 128 x 128 weight block costs one max(M·b, 64)-cycle matmul (b = groups per K tile) and the weights stream
from HBM once. Group scales never touch the weights: the moving operand of a K tile holding b groups is
block-diagonal, so one matmul leaves each group's partial sum in its own PSUM slot P[n, g, m], and the epilogue
applies y^T[n, m] = Σ_g s[g, n] (P[n, g, m] - z[g, n] X[g, m]) with output channels on the partitions. See
DESIGN.md, "Decode".
"""

from .._shim import nisa, nl
from .._tiling import PMAX, PSUM_FMAX, tiles
from .tuning import N_SUB
from .epilogue import ChunkScales, ZeroPointRows, chunk_epilogue, group_sums_rep, group_sums_T, scales_T
from .moving import group_sums_mm, moving_operands
from .transpose import assemble, byte_values, transpose_planes
from .weights import converted, load_nibbles, load_weight_tile, replicated_row


class DecodeFetch(nl.NKIObject):
    """One weight fetch: N block `b` (index into DecodePlan.blocks), group chunk `c`, and the run of K steps
    (indices into Geometry.steps) one DMA loads."""

    def __init__(self, b, c, run):
        self.b, self.c, self.run = b, c, run


class DecodePlan(nl.NKIObject):
    """Decode tiling of one call: group chunks, N blocks, 128-channel sub-tiles per PSUM bank, and this program's
    weight fetches in stream order (`work`, a list of DecodeFetch) of its blocks (`mine`, indices into blocks)."""

    def __init__(self, geo, n, pid, nprog):
        # group chunks small enough that min_cols columns of partial sums fit the PSUM banks: int8/fp8 decode is
        # bound by the weight DMAs (longer runs help); int4 by VectorE, where more chunks mean more epilogue ops
        tun = geo.tuning
        banks = tun.decode_psum_banks
        self.chunks = geo.chunks(max(1, min(PMAX, banks * PSUM_FMAX * N_SUB // (tun.decode_min_dma_cols * geo.m))))
        # sub-tiles whose partial sums share one PSUM bank; the DMA block spans up to decode_psum_banks banks
        self.per_bank = max(1, PSUM_FMAX // (max(chunk.ng for chunk in self.chunks) * geo.m))
        self.blocks = tiles(n, min(tun.decode_dma_cols, banks * self.per_bank * N_SUB))
        # int4 fetches several K steps per DMA and unpack instruction (>= decode_dma_cols columns' worth): the
        # bit ops' fixed cost per instruction is large next to narrow blocks' element work
        per_fetch = max(1, tun.decode_dma_cols // self.blocks[0][1]) if geo.int4 else 1
        self.mine = list(range(pid, len(self.blocks), nprog))  # this program's blocks
        # consecutive blocks whose scales (channels on partitions) one DMA loads, and whose y one DMA stores (M > 1:
        # tokens on partitions), at least decode_merge_bytes per partition: block -> its group's blocks
        self.scale_groups = self._merged(-(-self.blocks[0][1] // N_SUB) * geo.ngroups * 4, tun, nprog)
        self.store_groups = self._merged(self.blocks[0][1] * (2 if geo.narrow_out else 4) if geo.m > 1 else None,
                                         tun, nprog)
        self.work = [DecodeFetch(b, c, run) for b in self.mine
                     for c in range(len(self.chunks)) for run in _step_runs(geo, self.chunks[c].steps, per_fetch)]

    def _merged(self, block_bytes, tun, nprog):
        """{block: its group} for groups of consecutive own blocks (one program: adjacent in N) of at least
        decode_merge_bytes per partition at block_bytes each (None: one block per group)."""
        size = max(1, -(-tun.decode_merge_bytes // block_bytes)) if block_bytes and nprog == 1 else 1
        return {b: self.mine[g0:g0 + size] for g0 in range(0, len(self.mine), size) for b in self.mine[g0:g0 + size]}

    def batches(self, subs):
        """The 128-channel sub-tiles in runs of per_bank (those whose partial sums share a PSUM bank)."""
        return [subs[b0:b0 + nb] for b0, nb in tiles(len(subs), self.per_bank)]


class YBlock(nl.NKIObject):
    """y^T of N block b, columns nb0 .. nb0+nbw: float32 SBUF [128, len(subs), M], subs = its 128-channel sub-tiles;
    corr: the zero-point term's PSUM tile [128, len(subs), M] float32 (one bank for the block, accumulated over
    its group chunks) when it is a matmul, else None."""

    def __init__(self, b, block, m, zero_matmul):
        self.b, (self.nb0, self.nbw) = b, block
        self.subs = tiles(self.nbw, N_SUB)
        self.yT = nl.ndarray((PMAX, len(self.subs), m), dtype=nl.float32, buffer=nl.sbuf)
        self.corr = nl.ndarray((PMAX, len(self.subs), m), dtype=nl.float32, buffer=nl.psum) if zero_matmul else None


class PartialSums(nl.NKIObject):
    """Per-group partial sums of one (N block, group chunk): PSUM banks [128, per_bank, ng, M]; parts[j] is
    sub-tile j's [128, ng, M] slice."""

    def __init__(self, plan, subs, ng, m):
        self.banks = [nl.ndarray((PMAX, len(batch), ng, m), dtype=nl.float32, buffer=nl.psum)
                      for batch in plan.batches(subs)]
        self.parts = [self.banks[j // plan.per_bank][:, j % plan.per_bank, :, :] for j in range(len(subs))]


def decode(ops, geo):
    """y = x @ W for M <= decode_max_m: every weight block streamed once, decode_lookahead fetches ahead.

    ops: Operands; geo: Geometry. Program order is the schedule (in-order engine queues): each fetch is loaded
    and converted ahead of its matmuls, so the next tiles' conversions come before this block's epilogue (which
    waits for TensorE) in every engine's queue; a block's output is stored once the next block's matmuls are
    issued, since a store DMA waiting for its epilogue would hold back the weight transfers queued after it."""
    plan = DecodePlan(geo, ops.w.shape[1], ops.pid, ops.nprog)
    moving, x_sb, xT = moving_operands(ops.x, geo)
    # symmetric int4's zero-point term: subtracted from the partial sums on VectorE (N·G·M element ops) at small
    # M, as a TensorE fp32 matmul over the groups (as asymmetric int4 must, z varying per channel) at larger M
    shifted = geo.int4 and geo.symmetric and geo.m <= geo.tuning.decode_shift_max_m
    zero_matmul = geo.int4 and not shifted
    shifts = group_sums_rep(moving, geo, plan.chunks) if shifted else None
    # per-token scales as a row replicated over the output-channel partitions: partition stride 0 in HBM
    xs_rep = replicated_row(ops.x_scales, 0, 0, geo.m, nl.float32, PMAX) if geo.w8a8 else None
    work = plan.work
    lookahead = geo.tuning.decode_lookahead
    s_T = {}  # block -> its view of the scales tile its scale group loaded (Prefetched)
    ahead = [Prefetched(ops, geo, plan, t, zero_matmul, s_T) for t in range(min(lookahead, len(work)))]
    # the group sums of x after the first fetches: their VectorE reduce is needed by the first epilogue only, and
    # issued first it held up the first unpacks
    gsums = None
    if zero_matmul:
        gsums = [group_sums_T(x_sb, geo, chunk) if xT is None else group_sums_mm(xT, geo, chunk)
                 for chunk in plan.chunks]
    pending = []  # finished y blocks, stored once the next block's matmuls are issued
    staged = {}  # store group's first block -> the SBUF tile its blocks' y rows are assembled in (M > 1)
    for t, item in enumerate(work):
        if t + lookahead < len(work):
            ahead.append(Prefetched(ops, geo, plan, t + lookahead, zero_matmul, s_T))
        fetched = ahead.pop(0)
        chunk = plan.chunks[item.c]
        if item.run[0] == chunk.steps[0]:
            if item.c == 0:
                yblk = YBlock(item.b, plan.blocks[item.b], geo.m, zero_matmul)
                block_sT = s_T.pop(item.b)
            sums = PartialSums(plan, yblk.subs, chunk.ng, geo.m)
            scales = ChunkScales(chunk.g0, block_sT, shifts[item.c] if shifts else None, xs_rep, fetched.zero,
                                 gsums[item.c] if gsums else None)
        _multiply(sums, yblk, item, fetched.tiles, moving, chunk, geo)
        if item.run[-1] == chunk.steps[-1]:
            _finish_chunk(ops, yblk, sums, scales, item.c, pending, staged, plan, geo, tail=t == len(work) - 1)
    for yblk in pending:
        _store_transposed(ops.out, yblk, geo, plan, staged)


def _finish_chunk(ops, yblk, sums, scales, c, pending, staged, plan, geo, tail):
    """After the last matmuls of group chunk c of block yblk: store the previous block (once this block's first
    chunk is multiplied), the chunk's epilogue (`tail`: the stream's last), and the block onto `pending` after its
    last chunk."""
    if c == 0 and pending:
        _store_transposed(ops.out, pending.pop(), geo, plan, staged)
    last = c == len(plan.chunks) - 1
    chunk_epilogue(yblk, sums, tiles(len(yblk.subs), plan.per_bank), scales, plan.chunks[c].ng, geo, c == 0, last,
                   tail)
    if last:
        pending.append(yblk)


class Prefetched(nl.NKIObject):
    """What one weight fetch brings in, issued decode_lookahead fetches ahead of its matmuls: tiles, its TensorE
    operands per K step; zero, the (block, chunk)'s ZeroPointRows when it is the chunk's first fetch and the
    zero-point term is a matmul, else None. The first fetch of a scale group's first block also loads the group's
    scales with the channels on partitions (`epilogue.scales_T`, one DMA) and leaves each block's view in s_T
    {block: [128, subs, G]}.

    The scales load with a block's first fetch, lookahead fetches ahead of their use: a load issued at the
    epilogue queued behind every weight transfer already issued (HBM serves them in turn), and every block's
    scales issued up front held back the weight fetches behind them; a group's blocks share one DMA of at least
    decode_merge_bytes per partition, since a smaller one pays each DMA engine's fixed packet time."""

    def __init__(self, ops, geo, plan, t, zero_matmul, s_T):
        item = plan.work[t]
        self.tiles = _fetch(ops.w, geo, plan, plan.work, t)
        first = item.run[0] == plan.chunks[item.c].steps[0]
        group = plan.scale_groups[item.b]
        if first and item.c == 0 and group[0] == item.b:
            nb0 = plan.blocks[group[0]][0]
            tile = scales_T(ops.scales_t, (nb0, plan.blocks[group[-1]][0] + plan.blocks[group[-1]][1] - nb0), geo)
            for b in group:
                j0 = (plan.blocks[b][0] - nb0) // N_SUB
                s_T[b] = tile[:, j0:j0 + -(-plan.blocks[b][1] // N_SUB), :]
        self.zero = ZeroPointRows(ops, plan.blocks[item.b], plan.chunks[item.c], geo.symmetric) \
            if zero_matmul and first else None


def _multiply(sums, yblk, item, fetched, moving, chunk, geo):
    """P[sub-tile j][:, groups of step i, :] += w[:, sub-tile j]^T · xm[i] for every step i of the fetch."""
    for i, weights in zip(item.run, fetched):
        step = geo.steps[i]
        g0 = step.g0 - chunk.g0
        for wt, xm in zip(weights, moving[i]):
            for j, (j0, nsz) in enumerate(yblk.subs):
                nisa.nc_matmul(dst=sums.parts[j][0:nsz, g0:g0 + step.ng, :], stationary=wt[0:step.rows, j0:j0 + nsz],
                               moving=xm[0:step.rows])


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


def _fetch(w, geo, plan, work, t):
    """The weight tiles of fetch work[t] (a DecodeFetch): per step of its run, its TensorE operand(s). The last
    decode_split_last fetches of the stream convert int8 / fp8e4m3fn on all three engines at once: nothing
    follows them to overlap with, so their conversion time is tail."""
    item = work[t]
    nb0, nbw = plan.blocks[item.b]
    if not geo.int4:
        split = t >= len(work) - geo.tuning.decode_split_last
        return [load_weight_tile(w, geo.steps[i], nb0, nbw, geo, turn=item.b + i, split=split) for i in item.run]
    r0, rows = geo.steps[item.run[0]].r0, geo.steps[item.run[0]].rows
    n = w.shape[1]
    # packed rows r0 + rows * s + p of the run's steps s as one [rows, steps, nbw] tile (runs of full steps)
    lo, hi = load_nibbles(w.ap([[n, rows], [rows * n, len(item.run)], [1, nbw]], offset=r0 * n + nb0))
    if geo.fp8_nibbles:
        lo, hi = lo.view(nl.float8_e4m3), hi.view(nl.float8_e4m3)
    else:  # one ScalarE and one GpSimd copy for the whole run (VectorE has just unpacked it)
        lo, hi = converted(lo[..., 0:nbw], 1), converted(hi[..., 0:nbw], 2)
    return [[lo[:, s, :], hi[:, s, :]] for s in range(len(item.run))]


def _store_transposed(out, yblk, geo, plan, staged):
    """out[:, nb0 : nb0+nbw] = yT^T. A 16-bit y is rounded first (one ScalarE copy: the same single rounding as
    the final cast). M = 1: y^T goes to HBM as it is, channels on partitions (`_store_column`: no transpose, so
    nothing to mix on NeuronCore-v2 either). Else TensorE transposes of each [nsz, M] sub-tile into one PSUM tile
    of the block and one copy out of it into the SBUF tile of the block's store group (plan.store_groups; staged:
    {group's first block: tile}), stored by one DMA after the group's last block: a store queues behind the weight
    transfers issued before it, and its M partitions use only M/8 DMA engines, so fewer, larger ones are better. A
    16-bit y makes the transposes move 2-byte elements (fp32 ones take 4 passes). NeuronCore-v2, M > 1:
    `_stage_bytes`, so that a non-finite output (a NaN weight or scale) stays in its column."""
    m, yT, subs = geo.m, yblk.yT, yblk.subs
    if geo.narrow_out:
        rounded = nl.ndarray((subs[0][1], len(subs), m), dtype=out.dtype, buffer=nl.sbuf)
        nisa.activation(dst=rounded, op=nl.copy, data=yT[0:subs[0][1]])
        yT = rounded
    if m == 1:
        _store_column(out, yblk, yT)
        return
    group = plan.store_groups[yblk.b]
    g0, g1 = plan.blocks[group[0]][0], plan.blocks[group[-1]][0] + plan.blocks[group[-1]][1]
    width = (4 if yT.dtype == nl.float32 else 2) if geo.byte_transposes else 1
    if group[0] == yblk.b:
        staged[yblk.b] = nl.ndarray((m, (g1 - g0) * width), dtype=nl.uint8 if geo.byte_transposes else out.dtype,
                                    buffer=nl.sbuf)
    o_sb = staged[group[0]][:, (yblk.nb0 - g0) * width:(yblk.nb0 + yblk.nbw - g0) * width]
    if geo.byte_transposes:
        _stage_bytes(o_sb, yblk, yT, geo, width)
    else:
        o_ps = nl.ndarray((m, yblk.nbw), dtype=yT.dtype, buffer=nl.psum)
        for j, (j0, nsz) in enumerate(subs):
            nisa.nc_transpose(dst=o_ps[:, j0:j0 + nsz], data=yT[0:nsz, j, :])
        if geo.int4:  # ScalarE: VectorE unpacks the int4 weights
            nisa.activation(dst=o_sb, op=nl.copy, data=o_ps)
        else:
            nisa.tensor_copy(dst=o_sb, src=o_ps)
    if group[-1] == yblk.b:
        tile = staged.pop(group[0])
        nisa.dma_copy(dst=out[:, g0:g1], src=tile.view(out.dtype) if geo.byte_transposes else tile)


def _store_column(out, yblk, yT):
    """M = 1: out[0, nb0 + 128 j + p] = yT[p, j, 0] by strided DMAs (one for the full sub-tiles, one for a ragged
    last one), each over the 16 DMA engines of its partitions."""
    nb0, nbw = yblk.nb0, yblk.nbw
    full, rest = nbw // N_SUB, nbw % N_SUB
    if full:
        nisa.dma_copy(dst=out.ap([[1, N_SUB], [N_SUB, full]], offset=nb0), src=yT[0:N_SUB, 0:full, 0])
    if rest:
        nisa.dma_copy(dst=out.ap([[1, rest], [1, 1]], offset=nb0 + full * N_SUB), src=yT[0:rest, full:full + 1, 0])


def _stage_bytes(o_bytes, yblk, yT, geo, width):
    """o_bytes (uint8 SBUF [M, nbw * width]) = the bytes of yT^T by bit-exact byte transposes
    (`transpose.transpose_planes`): one conversion of y^T [rows, subs, M] to byte values, `width` one-pass
    transposes per sub-tile into one PSUM bank per 2 · PSUM_FMAX / width columns (one bank's 2 KiB of bf16 byte
    values), one copy back to bytes per bank."""
    m, subs = geo.m, yblk.subs
    planes = byte_values(yT[0:subs[0][1]], width)  # [rows, subs, M * width]
    for o0, ow in tiles(yblk.nbw, 2 * PSUM_FMAX // width):
        o_ps = nl.ndarray((m, ow, width), dtype=nl.bfloat16, buffer=nl.psum)
        for j, (j0, nsz) in enumerate(subs):
            if o0 <= j0 < o0 + ow:
                transpose_planes(o_ps[:, j0 - o0:j0 - o0 + nsz, :], planes[:, j, :], nsz, (0, m, 1), width)
        # ScalarE for int4: VectorE unpacks the int4 weights
        assemble(o_bytes[:, o0 * width:(o0 + ow) * width], o_ps, on_scalar=geo.int4)
