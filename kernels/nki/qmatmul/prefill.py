"""Prefill schedule of qmatmul (larger M): x^T stationary, dequantized weights moving, y row-major.

TensorE streams full 512-column weight tiles against x^T [K tile, <= 128 rows of M], kept resident in SBUF per M
block; each block accumulates in PSUM in groups of prefill_psum_banks M tiles over all of K. Group scales and
zero points are applied to the weight tiles, per-channel (and W8A8 token) scales to the fp32 PSUM result. See
DESIGN.md, "Prefill".
"""

from .._shim import nisa, nl
from .._tiling import PMAX, tiles
from .tuning import N_BLOCK
from .transpose import byte_values, transpose_bytes
from .weights import INT4_SYM_OFFSET, load_nibbles, load_weight_tile, replicated_row


class PrefillPlan(nl.NKIObject):
    """M blocking of one call and this program's N tiles.

    resident: two N tiles of dequantized weights fit next to x^T (about K <= 4.8K), so each N tile is dequantized
    once per M block and reused by all its M tiles (the next one prepared meanwhile); else the M block is one
    group of M tiles and each weight tile is dequantized inside the K loop. m_block: rows of M per block;
    n_tiles: this program's (nb0, nbw) N tiles."""

    def __init__(self, geo, n, pid, nprog):
        # bytes per partition of one resident x^T row (bf16, or fp8 with pairs) = of one dequantized weight column
        row_bytes = len(geo.steps) * geo.nhalves * (1 if geo.pairs else 2)
        # less two bf16 x pieces [128, x_chunk] (one loading, one transposing)
        budget = geo.tuning.prefill_sbuf_bytes - 2 * geo.tuning.x_chunk * 2
        # weights resident per N tile (reused by the whole M block) when two N tiles take at most half the budget
        self.resident = 2 * N_BLOCK * row_bytes <= budget // 2
        if self.resident:
            self.m_block = max(PMAX, (budget - 2 * N_BLOCK * row_bytes) // row_bytes // PMAX * PMAX)
        else:
            self.m_block = min(geo.tuning.prefill_psum_banks * PMAX, max(PMAX, budget // row_bytes // PMAX * PMAX))
        self.n_tiles = tiles(n, N_BLOCK)[pid::nprog]


class MovingTile(nl.NKIObject):
    """One moving operand of a K step: `tile` [rows, nbw] (or [128, 2, nbw] for a double-row matmul), the x^T slot
    it multiplies, its partition rows, and whether it is a double-row fp8 pair."""

    def __init__(self, tile, slot, rows, double):
        self.tile, self.slot, self.rows, self.double = tile, slot, rows, double


class GroupAcc(nl.NKIObject):
    """PSUM accumulators [msz, nbw] fp32 of one group of M tiles (`group`: (mt0, msz) pairs) for N tile
    nb0 .. nb0+nbw, and the per-channel scale rows s_out (None for group scales)."""

    def __init__(self, group, nb0, nbw, s_out):
        self.accs = [nl.ndarray((msz, nbw), dtype=nl.float32, buffer=nl.psum) for _, msz in group]
        self.group, self.nb0, self.nbw, self.s_out = group, nb0, nbw, s_out


def prefill(ops, geo):
    """y = x @ W for M > decode_max_m. ops: Operands; geo: Geometry."""
    plan = PrefillPlan(geo, ops.w.shape[1], ops.pid, ops.nprog)
    if not plan.n_tiles:
        return
    for mb0, mbw in tiles(ops.x.shape[0], plan.m_block):
        _prefill_block(ops, geo, plan, mb0, mbw)


def _prefill_block(ops, geo, plan, mb0, mbw):
    """Rows mb0 .. mb0+mbw of y for this program's N tiles, in groups of prefill_psum_banks M tiles that
    accumulate over all of K in PSUM (see PrefillPlan for `resident`)."""
    xT = _prefill_xT(ops.x, geo, mb0, mbw)
    m_tiles = tiles(mbw, PMAX)
    per_group = geo.tuning.prefill_psum_banks
    groups = [m_tiles[g:g + per_group] for g in range(0, len(m_tiles), per_group)]
    n_tiles = plan.n_tiles
    wd = _dequant_n_tile(ops, n_tiles[0], geo) if plan.resident else None
    pending = []
    for t, (nb0, nbw) in enumerate(n_tiles):
        wd_next = None
        if plan.resident and t + 1 < len(n_tiles):
            wd_next = _dequant_n_tile(ops, n_tiles[t + 1], geo)
        s_out = replicated_row(ops.scales, 0, nb0, nbw, nl.float32, PMAX) if geo.per_channel else None
        for group in groups:
            acc = GroupAcc(group, nb0, nbw, s_out)
            for i in range(len(geo.steps)):
                for mov in wd[i] if plan.resident else _moving_tiles(ops, i, nb0, nbw, geo):
                    _multiply_group(acc, xT, mov)
            # store the previous group now, after this one's matmuls are issued: its epilogue overlaps them, and
            # its store DMAs (waiting for that epilogue) no longer hold back the weight loads issued before them
            if pending:
                _prefill_store_group(ops, pending.pop(), mb0, geo)
            pending.append(acc)
        wd = wd_next
    for acc in pending:
        _prefill_store_group(ops, acc, mb0, geo)


def _multiply_group(acc, xT, mov):
    """acc[m tile] += xT[slot(s), m tile]^T · mov for every M tile of the group."""
    for psum, (mt0, msz) in zip(acc.accs, acc.group):
        if mov.double:
            nisa.nc_matmul(dst=psum, stationary=xT[:, mov.slot:mov.slot + 2, mt0:mt0 + msz], moving=mov.tile,
                           perf_mode=nisa.matmul_perf_mode.double_row)
        else:
            nisa.nc_matmul(dst=psum, stationary=xT[0:mov.rows, mov.slot, mt0:mt0 + msz],
                           moving=mov.tile[0:mov.rows, :])


def _prefill_store_group(ops, acc, mb0, geo):
    for psum, (mt0, msz) in zip(acc.accs, acc.group):
        _prefill_store(ops, psum, acc, mb0 + mt0, msz, geo)


def _prefill_store(ops, psum, acc, m0, msz, geo):
    """out[m0 : m0+msz, N tile] = psum [msz, nbw] x per-channel scales (x token scales, W8A8)."""
    nb0, nbw, out = acc.nb0, acc.nbw, ops.out
    y_sb = nl.ndarray((msz, nbw), dtype=out.dtype, buffer=nl.sbuf)
    if geo.w8a8:
        xs_col = nl.ndarray((msz, 1), dtype=nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=xs_col, src=ops.x_scales[m0:m0 + msz, :])
        nisa.scalar_tensor_tensor(dst=y_sb, data=psum, op0=nl.multiply, operand0=xs_col, op1=nl.multiply,
                                  operand1=acc.s_out[0:msz, :])
    elif geo.per_channel:
        nisa.tensor_tensor(dst=y_sb, data1=psum, data2=acc.s_out[0:msz, :], op=nl.multiply)
    else:
        nisa.activation(dst=y_sb, op=nl.copy, data=psum)
    nisa.dma_copy(dst=out[m0:m0 + msz, nb0:nb0 + nbw], src=y_sb)


def _dequant_n_tile(ops, n_tile, geo):
    """`_moving_tiles` of every K step for the columns of n_tile = (nb0, nbw)."""
    nb0, nbw = n_tile
    return [_moving_tiles(ops, i, nb0, nbw, geo) for i in range(len(geo.steps))]


def _moving_tiles(ops, i, nb0, nbw, geo):
    """Moving operands of K step i for columns nb0 .. nb0+nbw: a list of MovingTile.

    With pairs, a full 256-row step is one fp8 tile [128, 2, nbw] (partition p, pair j = weight row
    r0 + 128 j + p, the layout of its x^T slots 2i, 2i+1) for one double-row matmul; a ragged last step
    falls back to plain fp8 matmuls, one per 128-row half."""
    w, step = ops.w, geo.steps[i]
    if geo.pairs and step.rows == 2 * PMAX:
        n = w.shape[1]
        pair = nl.ndarray((PMAX, 2, nbw), dtype=w.dtype, buffer=nl.sbuf)
        nisa.dma_copy(dst=pair, src=w.ap([[n, PMAX], [PMAX * n, 2], [1, nbw]], offset=step.r0 * n + nb0))
        return [MovingTile(pair, geo.nhalves * i, PMAX, True)]
    if geo.pairs:
        out = []
        for h, ((c0, c1, _), rows_h) in enumerate(geo.halves(i)):
            half = nl.ndarray((rows_h, nbw), dtype=w.dtype, buffer=nl.sbuf)
            nisa.dma_copy(dst=half, src=w[c0:c1, nb0:nb0 + nbw])
            out.append(MovingTile(half, geo.nhalves * i + h, rows_h, False))
        return out
    tiles_i = _dequant_tile(ops, step, nb0, nbw, geo)
    return [MovingTile(t, geo.nhalves * i + h, step.rows, False) for h, t in enumerate(tiles_i)]


def _prefill_xT(x, geo, mb0, mbw):
    """Resident x^T of rows mb0 .. mb0+mbw: SBUF [128, steps * nhalves, mbw] (slot i * nhalves + h = half h
    of K step i), bf16 (fp8 e4m3 with pairs: the values came from fp8, so the cast back is exact), from
    [128, x_chunk] pieces of x cast to bf16 by the DMA and transposed on TensorE (bytewise on NeuronCore-v2:
    `transpose.transpose_bytes`)."""
    k = x.shape[1]
    xT = nl.ndarray((PMAX, len(geo.steps) * geo.nhalves, mbw), dtype=nl.float8_e4m3 if geo.pairs else nl.bfloat16,
                    buffer=nl.sbuf)
    xT_bytes = xT.view(nl.uint8) if geo.byte_transposes else None  # [128, slots, 2 * mbw]
    for mt0, msz in tiles(mbw, PMAX):
        for c0, cw in tiles(k, geo.tuning.x_chunk):
            x_sb = nl.ndarray((msz, cw), dtype=nl.bfloat16, buffer=nl.sbuf)
            nisa.dma_copy(dst=x_sb, src=x[mb0 + mt0:mb0 + mt0 + msz, c0:c0 + cw])
            planes = byte_values(x_sb, 2, dma=True) if xT_bytes is not None and msz > 1 else None
            for i in range(len(geo.steps)):
                for h, ((a, b, cs), rows) in enumerate(geo.halves(i)):
                    if not c0 <= a < c0 + cw:  # a step's columns never straddle two chunks (x_chunk % 256 == 0)
                        continue
                    slot = i * geo.nhalves + h
                    if planes is not None:  # NeuronCore-v2: a bit-exact transpose keeps a NaN in its row
                        transpose_bytes(planes, msz, (a - c0, b - c0, cs), 2, nl.bfloat16,
                                        dst=xT_bytes[0:rows, slot, 2 * mt0:2 * (mt0 + msz)])
                        continue
                    ps = nl.ndarray((rows, msz), dtype=nl.bfloat16, buffer=nl.psum)
                    nisa.nc_transpose(dst=ps, data=x_sb[:, a - c0:b - c0:cs])
                    nisa.tensor_copy(dst=xT[0:rows, slot, mt0:mt0 + msz], src=ps)
    return xT


def _replicated_groups(t, step, nb0, nbw, dtype):
    """[rows, nbw] tile whose partition row r holds row (r0 + r) // gr of a [groups, N] HBM tensor: each
    group's row repeated over its gr partitions by a stride-0 HBM access pattern. step: a KStep."""
    sb = nl.ndarray((step.rows, nbw), dtype=dtype, buffer=nl.sbuf)
    per = step.rows // step.ng  # partitions per group within this step
    nisa.dma_copy(dst=sb, src=t.ap([[t.shape[1], step.ng], [0, per], [1, nbw]], offset=step.g0 * t.shape[1] + nb0))
    return sb


def _dequant_tile(ops, step, nb0, nbw, geo):
    """Moving weight tile(s) [rows, nbw] of K step `step` for prefill: per channel the exact q - z (scales come
    later); per group (q - z) * s rounded to bf16. int4: [low (even k), high (odd k)]."""
    w, rows = ops.w, step.rows
    if not geo.int4 and geo.per_channel:
        return load_weight_tile(w, step, nb0, nbw, geo)
    src = w[step.r0:step.r0 + rows, nb0:nb0 + nbw]
    s_rep = None if geo.per_channel else _replicated_groups(ops.scales, step, nb0, nbw, nl.float32)
    if not geo.int4:
        q = nl.ndarray((rows, nbw), dtype=w.dtype, buffer=nl.sbuf)
        nisa.dma_copy(dst=q, src=src)
        wd = nl.ndarray((rows, nbw), dtype=nl.bfloat16, buffer=nl.sbuf)
        nisa.tensor_tensor(dst=wd, data1=q, data2=s_rep, op=nl.multiply)
        return [wd]
    z_rep = None
    if not geo.symmetric:
        z_rep = (replicated_row(ops.zeros, 0, nb0, nbw, nl.float32, rows) if geo.per_channel
                 else _replicated_groups(ops.zeros, step, nb0, nbw, nl.float32))
    halves = []
    for nib in load_nibbles(src):
        u = nib[:, 0:nbw]
        wd = nl.ndarray((rows, nbw), dtype=nl.bfloat16, buffer=nl.sbuf)
        if geo.symmetric and geo.per_channel:
            nisa.tensor_scalar(dst=wd, data=u, op0=nl.subtract, operand0=float(INT4_SYM_OFFSET))
        elif geo.symmetric:
            nisa.scalar_tensor_tensor(dst=wd, data=u, op0=nl.subtract, operand0=float(INT4_SYM_OFFSET),
                                      op1=nl.multiply, operand1=s_rep)
        elif geo.per_channel:
            nisa.tensor_tensor(dst=wd, data1=u, data2=z_rep, op=nl.subtract, engine=nisa.engine.gpsimd)
        else:
            diff = nl.ndarray((rows, nbw), dtype=nl.float32, buffer=nl.sbuf)
            nisa.tensor_tensor(dst=diff, data1=u, data2=z_rep, op=nl.subtract, engine=nisa.engine.gpsimd)
            nisa.tensor_tensor(dst=wd, data1=diff, data2=s_rep, op=nl.multiply)
        halves.append(wd)
    return halves
