"""Tile work of paged attention: KV gathers, q^T of a group, scores, the online-softmax step with P·V, stores.

The online-softmax words (scale, exp_scale, neg_max, rescale, tile_sum, run_sum, acc, MAX_FLOOR, FP32_MIN) are
those of `kernels/nki/_softmax.py`.
"""

from .._attention_tiles import psum_copy, transpose_side_by_side
from .._shim import nisa, nl
from .._softmax import MAX_FLOOR, exp_rows, rescale_factor, update_acc, update_sum
from .._tiling import FP32_MIN
from .index import CHUNK

RUN_SUM_MIN = 1e-30  # run_sum floor before the reciprocal: only never-stored padding rows can have run_sum = 0


class SoftmaxState(nl.NKIObject):
    """Online-softmax state of one group's rows: neg_max, run_sum [rows, 1] and acc [rows, D], fp32 SBUF.

    neg_max starts at -exp_scale · MAX_FLOOR (a running max of MAX_FLOOR), run_sum and acc at 0."""

    def __init__(self, rows, d, exp_scale):
        self.neg_max = nl.ndarray((rows, 1), nl.float32, buffer=nl.sbuf)
        nisa.memset(dst=self.neg_max, value=-exp_scale * MAX_FLOOR)
        self.run_sum = nl.ndarray((rows, 1), nl.float32, buffer=nl.sbuf)
        nisa.memset(dst=self.run_sum, value=0.0)
        self.acc = nl.ndarray((rows, d), nl.float32, buffer=nl.sbuf)
        nisa.memset(dst=self.acc, value=0.0)


class KvTile(nl.NKIObject):
    """K and V of key positions t0 .. t0+n as lists of [<= CHUNK positions, Hkv * D] SBUF tiles (all kv heads), and
    the v2 score mask of the tile (uint8 [rows, n], shared by all groups; None on v3+)."""

    def __init__(self, t0, k_chunks, v_chunks, mask):
        self.t0, self.k_chunks, self.v_chunks, self.mask = t0, k_chunks, v_chunks, mask


def gather_kv(call, index, t0, n):
    """K and V of key positions [t0, t0 + n) as lists of [<= CHUNK positions, Hkv * D] tiles (all kv heads).

    index: the sequence's GatherIndex. v3+: one vector_offset DMA of CHUNK slot rows per chunk; v2: block DMAs, then
    the rows past seq_len (dead cache, NaN in tests) replaced by 0 on GpSimd (idle on this path) with a select — a
    multiply would give 0 * NaN = NaN, and a v2 PE transpose (a matmul with the identity) would spread it."""
    key_cache, value_cache = call.key_cache, call.value_cache
    num_blocks, block_size, hkv, d = key_cache.shape
    row = hkv * d
    k_chunks, v_chunks = [], []
    for cs in range(t0, t0 + n, CHUNK):
        nc = min(CHUNK, t0 + n - cs)
        c = cs // CHUNK
        for cache, chunks in ((key_cache, k_chunks), (value_cache, v_chunks)):
            tile = nl.ndarray((nc, row), cache.dtype, buffer=nl.sbuf)
            if call.vector_dma:
                rows_hbm = cache.reshape((num_blocks * block_size, row))
                nisa.dma_copy(dst=tile, src=rows_hbm.ap([[row, nc], [1, row]], offset=0,
                                                        vector_offset=index.slots[0:nc, c : c + 1],
                                                        indirect_dim=0))
            else:
                _load_blocks(tile, cache.reshape((num_blocks, block_size * row)), index.blocks, cs, nc,
                             block_size, row)
                live = nisa.register_alloc()
                nisa.register_load(live, index.live[0:1, c : c + 1])
                nisa.affine_select(dst=tile, pattern=[[0, row]], channel_multiplier=-1, on_true_tile=tile,
                                   on_false_value=0.0, cmp_op=nl.greater, offset=live)
            chunks.append(tile)
    return k_chunks, v_chunks


def _load_blocks(tile, blocks_hbm, block_ids, cs, nc, block_size, row):
    """v2: fill tile [nc, row] with key positions [cs, cs + nc), one scalar-offset DMA per (piece of a) block."""
    p = cs
    while p < cs + nc:
        j, off = p // block_size, p % block_size
        length = min(block_size - off, cs + nc - p)
        nisa.dma_copy(dst=tile[p - cs : p - cs + length, :],
                      src=blocks_hbm.ap([[row, length], [1, row]], offset=off * row,
                                        scalar_offset=block_ids[0:1, j : j + 1], indirect_dim=0))
        p += length


def load_q_group(q, q0, grp, g, bq):
    """Stationary q^T tiles [D, rows] of a group (rows = len(grp) * BQ * g, ordered head, token, q head): one
    per kv head, with the other heads' columns zeroed when the group stacks several heads, so the heads' score
    matmuls accumulate into one PSUM tile without mixing (K is finite: live data or zeros)."""
    t_total, hq, d = q.shape
    head_rows = bq * g
    rows = len(grp) * head_rows
    q_rows = q.reshape((t_total, hq * d))
    q_sb = nl.ndarray((rows, d), q.dtype, buffer=nl.sbuf)
    for i, h in enumerate(grp):
        nisa.dma_copy(dst=q_sb[i * head_rows : (i + 1) * head_rows, :],
                      src=q_rows.ap([[hq * d, bq], [d, g], [1, d]], offset=h * g * d, scalar_offset=q0,
                                    indirect_dim=0))
    qt_ps = nl.ndarray((d, rows), q.dtype, buffer=nl.psum)
    nisa.nc_transpose(dst=qt_ps, data=q_sb)
    if len(grp) == 1:
        qt = nl.ndarray((d, rows), q.dtype, buffer=nl.sbuf)
        nisa.tensor_copy(dst=qt, src=qt_ps)
        return [qt]
    masked = []
    for i in range(len(grp)):
        qt = nl.ndarray((d, rows), q.dtype, buffer=nl.sbuf)
        nisa.memset(dst=qt, value=0.0)
        cols = slice(i * head_rows, (i + 1) * head_rows)
        nisa.tensor_copy(dst=qt[:, cols], src=qt_ps[:, cols])
        masked.append(qt)
    return masked


def scores(qs, grp, k_chunks, n):
    """s [rows, n] fp32 PSUM of a group against keys of one tile: per head k^T by PE transposes (PSUM ->
    SBUF evacuation alternating ScalarE / VectorE), then one accumulating matmul per head."""
    d = qs[0].shape[0]
    dtype = k_chunks[0].dtype
    s_ps = nl.ndarray((qs[0].shape[1], n), nl.float32, buffer=nl.psum)
    for i, h in enumerate(grp):
        kt_ps = nl.ndarray((d, n), dtype, buffer=nl.psum)
        transpose_side_by_side(kt_ps, [k[:, h * d : (h + 1) * d] for k in k_chunks])
        kt = nl.ndarray((d, n), dtype, buffer=nl.sbuf)
        psum_copy(kt, kt_ps, on_scalar=h % 2 == 0)
        nisa.nc_matmul(dst=s_ps, stationary=qs[i], moving=kt)
    return s_ps


def _masked_scores(s_ps, call, bounds, kv, t0):
    """x [rows, n] fp32: the score tile in units of exp_scale (softcap c: tanh(s · scale / c), else s), FP32_MIN
    where a key is not visible, and tile_max [rows, 1] — one range_select (v3+) or select_reduce (v2)."""
    rows, n = s_ps.shape
    s = s_ps
    if call.softcap is not None:
        s = nl.ndarray((rows, n), nl.float32, buffer=nl.sbuf)
        nisa.activation(dst=s, op=nl.tanh, data=s_ps, scale=call.scale / call.softcap)
    x = nl.ndarray((rows, n), nl.float32, buffer=nl.sbuf)
    tile_max = nl.ndarray((rows, 1), nl.float32, buffer=nl.sbuf)
    if kv.mask is None:
        nisa.range_select(dst=x, on_true_tile=s, comp_op0=nl.greater_equal, comp_op1=nl.less_equal,
                          bound0=bounds.lo[0:rows, :], bound1=bounds.hi[0:rows, :],
                          reduce_cmd=nisa.reduce_cmd.reset_reduce, reduce_res=tile_max, reduce_op=nl.maximum,
                          range_start=t0, on_false_value=FP32_MIN)
    else:
        nisa.select_reduce(dst=x, predicate=kv.mask[0:rows, :], on_true=s, on_false=FP32_MIN,
                           reduce_res=tile_max, reduce_cmd=nisa.reduce_cmd.reset_reduce, reduce_op=nl.maximum)
    return x, tile_max


def softmax_pv(s_ps, state, call, gi, bounds, kv, p_copy_on_scalar):
    """Mask one score tile of group gi, update its SoftmaxState (neg_max, run_sum, acc += p @ v) in place.

    neg_max' = min(neg_max, -exp_scale · max(tile_max, MAX_FLOOR)) (the floor keeps a fully masked tile's FP32_MIN
    from overflowing to inf when exp_scale > 1); p = exp(exp_scale · x + neg_max') with tile_sum fused in."""
    rows, n = s_ps.shape
    grp, head_rows, d = call.groups[gi], call.rows, state.acc.shape[1]
    dtype = kv.v_chunks[0].dtype
    x, tile_max = _masked_scores(s_ps, call, bounds, kv, kv.t0)
    neg_max = nl.ndarray((rows, 1), nl.float32, buffer=nl.sbuf)
    nisa.tensor_scalar(dst=neg_max, data=tile_max, op0=nl.maximum, operand0=MAX_FLOOR, op1=nl.multiply,
                       operand1=-call.exp_scale)
    nisa.tensor_tensor(dst=neg_max, data1=neg_max, data2=state.neg_max, op=nl.minimum)
    rescale = nl.ndarray((rows, 1), nl.float32, buffer=nl.sbuf)
    rescale_factor(rescale, state.neg_max, neg_max)
    p = nl.ndarray((rows, n), dtype, buffer=nl.sbuf)
    tile_sum = nl.ndarray((rows, 1), nl.float32, buffer=nl.sbuf)
    exp_rows(p, x, neg_max, call.exp_scale, tile_sum)
    update_sum(state.run_sum, rescale, tile_sum)
    pt_ps = nl.ndarray((min(n, CHUNK), len(kv.v_chunks) * rows), dtype, buffer=nl.psum)
    for c, v in enumerate(kv.v_chunks):
        nisa.nc_transpose(dst=pt_ps[0 : v.shape[0], c * rows : (c + 1) * rows],
                          data=p[:, c * CHUNK : c * CHUNK + v.shape[0]])
    pt = nl.ndarray(pt_ps.shape, dtype, buffer=nl.sbuf)
    psum_copy(pt, pt_ps, p_copy_on_scalar)  # PSUM evacuation alternates ScalarE / VectorE by group
    pv = nl.ndarray((rows, d), nl.float32, buffer=nl.psum)
    if len(grp) == 1:
        h = grp[0]
        for c, v in enumerate(kv.v_chunks):
            nisa.nc_matmul(dst=pv, stationary=pt[0 : v.shape[0], c * rows : (c + 1) * rows],
                           moving=v[:, h * d : (h + 1) * d])
    else:
        # stacked heads: o^T [D, rows] with v as stationary and each head's own p^T columns as moving (no mixing),
        # then one transpose back to rows on partitions
        ot_ps = nl.ndarray((d, rows), nl.float32, buffer=nl.psum)
        for i, h in enumerate(grp):
            for c, v in enumerate(kv.v_chunks):
                cols = slice(c * rows + i * head_rows, c * rows + (i + 1) * head_rows)
                nisa.nc_matmul(dst=ot_ps[:, i * head_rows : (i + 1) * head_rows],
                               stationary=v[:, h * d : (h + 1) * d], moving=pt[0 : v.shape[0], cols])
        ot = nl.ndarray((d, rows), nl.float32, buffer=nl.sbuf)
        nisa.tensor_copy(dst=ot, src=ot_ps)
        nisa.nc_transpose(dst=pv, data=ot)
    update_acc(state.acc, rescale, pv)
    state.neg_max = neg_max


def store_rows(out, state, dst_i, grp, g, vector_dma):
    """acc / run_sum of a group to out[row_dst[b], h * g + j] (row (h, b, j)); rows with row_dst = -1 are skipped."""
    t_total, hq, d = out.shape
    rows = state.acc.shape[0]
    bq = dst_i.shape[0]
    head_rows = bq * g
    inv = nl.ndarray((rows, 1), nl.float32, buffer=nl.sbuf)
    nisa.tensor_scalar(dst=inv, data=state.run_sum, op0=nl.maximum, operand0=RUN_SUM_MIN)
    nisa.reciprocal(dst=inv, data=inv)
    res = nl.ndarray((rows, d), out.dtype, buffer=nl.sbuf)
    nisa.tensor_scalar(dst=res, data=state.acc, op0=nl.multiply, operand0=inv)
    out_rows = out.reshape((t_total, hq * d))
    for i, h in enumerate(grp):
        head = res[i * head_rows : (i + 1) * head_rows, :]
        if vector_dma:
            nisa.dma_copy(dst=out_rows.ap([[hq * d, bq], [d, g], [1, d]], offset=h * g * d, vector_offset=dst_i,
                                          indirect_dim=0),
                          src=head, oob_mode=nisa.oob_mode.skip)
        else:
            for b in range(bq):
                nisa.dma_copy(dst=out_rows.ap([[d, g], [1, d]], offset=h * g * d,
                                              scalar_offset=dst_i[b : b + 1, :], indirect_dim=0),
                              src=head[b * g : (b + 1) * g, :], oob_mode=nisa.oob_mode.skip)
