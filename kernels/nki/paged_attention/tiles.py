"""Tile work of paged attention: KV gathers, q^T of a group, scores, the online-softmax step with P·V, stores.

The online-softmax words (scale, exp_scale, neg_max, rescale, tile_sum, run_sum, acc, MAX_FLOOR, FP32_MIN) are
those of `kernels/nki/_softmax.py`.
"""

from .._attention_tiles import psum_copy
from .._dtypes import itemsize
from .._shim import nisa, nl
from .._softmax import MAX_FLOOR, exp_rows, rescale_factor, update_acc, update_sum
from .._tiling import FP32_MIN, PSUM_FMAX
from .finite import clean_keys, poison_scores
from .index import CHUNK, KV_TILE, dma_rows
from .quant import dequantize_int8
from .tuning import KT_LOOKAHEAD

PE_TILES = (32, 64)  # v3+ TensorE column tiles below the full 128 (nc_matmul tile_size)
PE_ROW_TILES = (32, 64, 128)  # v3+ TensorE row (contraction) tiles
RUN_SUM_MIN = 1e-30  # run_sum floor before the reciprocal: only never-stored padding rows can have run_sum = 0
PSUM_BANK_BYTES = PSUM_FMAX * 4  # a TensorE output lies in one bank


def bank_pieces(chunks, rows, dtype):
    """[(c0, c1), ...]: runs of consecutive chunks whose [CHUNK, (c1 - c0) · rows] PSUM tile of `dtype` fits one
    PSUM bank (chunk c at columns (c - c0) · rows ..), so no TensorE output crosses a bank."""
    per = max(1, PSUM_BANK_BYTES // (rows * itemsize(dtype)))
    return [(c0, min(c0 + per, chunks)) for c0 in range(0, chunks, per)]


def _banks(n):
    """Column slices of a [rows, n] fp32 score tile, one PSUM bank (KV_TILE columns) each: one matmul apiece."""
    return [slice(c0, min(c0 + KV_TILE, n)) for c0 in range(0, n, KV_TILE)]


def chunk_cols(x, c, run):
    """The columns of chunk c of a score-ordered [P, n] tile x (keys in increasing order): chunk t of gather g holds
    keys g · span + run · f + t (`gather_kv`, span = CHUNK · run), so its view is every run-th column of the
    gather's span from t (run 1: columns c · CHUNK onwards, the last chunk possibly short). run is the tile's
    `PagedCall.tile_run`: a gather of longer runs spans several tiles, whose columns take the order of run 4
    (`index.add_comb`)."""
    if run == 1:
        return x[:, c * CHUNK : min((c + 1) * CHUNK, x.shape[1])]
    g, t = divmod(c, run)
    span = CHUNK * run
    return x[:, g * span : (g + 1) * span].reshape((x.shape[0], CHUNK, run))[:, :, t]


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
    """K and V of key positions t0 .. t0+n as lists of [<= CHUNK positions, Hkv * D] SBUF tiles (all kv heads); v2:
    the score masks of the tile (per row block, uint8 [rows, n], shared by its groups) and per K chunk its bad keys ([<= CHUNK,
    Hkv] bfloat16, `finite.clean_keys`); None on v3+."""

    def __init__(self, t0, k_chunks, v_chunks, mask, k_bad):
        self.t0, self.k_chunks, self.v_chunks, self.mask, self.k_bad = t0, k_chunks, v_chunks, mask, k_bad


def gather_kv(call, index, t0, n):
    """(k_chunks, v_chunks, k_bad) of key positions [t0, t0 + n): lists of [<= CHUNK keys, Hkv * D] tiles (all kv
    heads) and, on v2, each K chunk's bad keys (None on v3+).

    index: the sequence's GatherIndex. v3+: one vector_offset DMA per gather of CHUNK partition runs of call.run
    slots (`tuning.gather_run`); chunk t of a gather starting at position gs holds keys gs + run · f + t (f: its
    partition). A run can reach past seq_len into dead cache (NaN in tests): V rows there are replaced by 0 on
    GpSimd with a select (a multiply would give 0 * NaN = NaN in P @ V); dead K rows are hidden keys, masked by
    selection. The transposes of k and p put chunk columns in increasing key order (`chunk_cols`). v2: block DMAs;
    K chunks are cleaned of non-finite elements (`finite.clean_keys`: dead rows past seq_len with the rest, masked as
    hidden keys), dead V rows zeroed as on v3+. int8 caches: each gather's scales are gathered the same way and
    converted with it to q's dtype (`quant.dequantize_int8`) first, so dead scale slots are zeroed with it."""
    if not call.vector_dma:
        return _gather_kv_v2(call, index, t0, n)
    hkv, d = call.key_cache.shape[2], call.key_cache.shape[3]
    row, run = hkv * d, call.run
    k_chunks, v_chunks = [], []
    scale_rows = call.scale_rows or (None, None)
    for gs in range(t0, t0 + n, CHUNK * run):
        u = gs // (CHUNK * run)
        for cache, scales, chunks in ((call.key_cache, scale_rows[0], k_chunks),
                                      (call.value_cache, scale_rows[1], v_chunks)):
            tile = _gather_run(index, cache.reshape((-1, row)), u, run)
            if scales is not None:
                tile = dequantize_int8(tile, _gather_run(index, scales, u, run), run * hkv, d, call.q.dtype)
            if chunks is v_chunks and run > 1:
                unit = gs // (call.unit_tiles * KV_TILE)  # the loop unit holding this gather
                _zero_dead_rows(tile.reshape((CHUNK, run, row)), index.live[0:1, u : u + 1], run,
                                index.dead[0:1, unit : unit + 1])
            chunks.extend(tile[:, t * row : (t + 1) * row] for t in range(run))
    return k_chunks, v_chunks, None


def _gather_kv_v2(call, index, t0, n):
    """v2 `gather_kv`: CHUNK-position tiles by block DMAs, K cleaned (`finite.clean_keys`), dead V rows zeroed."""
    key_cache, value_cache = call.key_cache, call.value_cache
    hkv, d = key_cache.shape[2], key_cache.shape[3]
    row = hkv * d
    k_chunks, v_chunks, k_bad = [], [], []
    scale_rows = call.scale_rows or (None, None)
    for cs in range(t0, t0 + n, CHUNK):
        nc = min(CHUNK, t0 + n - cs)
        c = cs // CHUNK
        for cache, scales, chunks in ((key_cache, scale_rows[0], k_chunks), (value_cache, scale_rows[1], v_chunks)):
            tile = _gather_blocks(call, index, cache.reshape((-1, row)), cs, nc)
            if scales is not None:
                tile = dequantize_int8(tile, _gather_blocks(call, index, scales, cs, nc), hkv, d, call.q.dtype)
            if chunks is k_chunks:
                tile, bad = clean_keys(tile, hkv, d, call.zero_bias)
                k_bad.append(bad)
            else:
                _zero_dead_rows(tile.reshape((nc, 1, row)), index.live[0:1, c : c + 1], 1)
            chunks.append(tile)
    return k_chunks, v_chunks, k_bad


def _zero_dead_rows(tile, live_sb, run, trips_sb=None):
    """tile [CHUNK, run, row] SBUF (key run · p + t of its gather or chunk at [p, t]) with the keys at or past
    live_sb (1x1 int32: seq_len - first position) replaced by 0, in place: one GpSimd affine_select whose offset
    is a register; v3+ in a runtime loop of trips_sb (1x1 int32 0 / 1, the gather's unit_dead) trips, so only the
    loop unit holding seq_len - 1 pays it."""
    live = nisa.register_alloc()
    nisa.register_load(live, live_sb)

    def select(_trip=None):
        nisa.affine_select(dst=tile, pattern=[[-1, run], [0, tile.shape[2]]], channel_multiplier=-run,
                           on_true_tile=tile, on_false_value=0.0, cmp_op=nl.greater, offset=live)

    if trips_sb is None:
        select()
        return
    trips = nisa.register_alloc()
    nisa.register_load(trips, trips_sb)
    nl.fori_loop(0, trips, select)


def _gather_run(index, rows_hbm, u, run):
    """v3+: [CHUNK, run · row] SBUF tile of gather u of rows_hbm [slots, row] (a data or scale cache viewed by slot):
    partition p reads the run of slots from index.slots[p, u], one vector_offset DMA."""
    row = rows_hbm.shape[1]
    tile = nl.ndarray((CHUNK, run * row), rows_hbm.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=tile, src=rows_hbm.ap([[row, CHUNK], [1, run * row]], offset=0,
                                            vector_offset=index.slots[:, u : u + 1], indirect_dim=0))
    return tile


def _gather_blocks(call, index, rows_hbm, cs, nc):
    """v2: [nc, row] SBUF tile of key positions [cs, cs + nc) of rows_hbm [slots, row] by block DMAs."""
    num_slots, row = rows_hbm.shape
    tile = nl.ndarray((nc, row), rows_hbm.dtype, buffer=nl.sbuf)
    block_size = call.block_size
    _load_blocks(tile, rows_hbm.reshape((num_slots // block_size, block_size * row)), index.blocks, cs, nc,
                 block_size, row)
    return tile


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


def load_q_group(q, q0, grp, g, bq, vector_dma, k, t_off=0):
    """q^T of a group (rows = len(grp) * BQ * g, ordered head, token, q head; tokens q0 + t_off .. + BQ, q0 a
    runtime 1x1 SBUF value, t_off a compile-time row block offset) as a list of [D, rows] tiles; k: the work item's
    place in its program's stream (`index.dma_rows`).

    v3+: one tile, the q rows of all the group's heads by one DMA (`index.dma_rows`: the group's kv heads are
    consecutive) then one
    bit-exact PE transpose (`scores` slices each head's columns). v2: one tile
    per kv head, the other heads' columns zeroed when the group stacks several heads, so the heads' score matmuls
    accumulate into one PSUM tile without mixing (v2 K is finite: cleaned, `finite.py`); q^T straight from HBM by an
    element-strided DMA (a v2 PE transpose is a matmul with the identity: a NaN in one query would reach every row
    of the item)."""
    t_total, hq, d = q.shape
    head_rows = bq * g
    rows = len(grp) * head_rows
    q_rows = q.reshape((t_total, hq * d))
    if not vector_dma:
        return [_load_q_transposed(q_rows, q0, grp, i, (d, g, bq, t_off), rows) for i in range(len(grp))]
    q_sb = dma_rows(rows, d, q.dtype, k)
    nisa.dma_copy(dst=q_sb, src=q_rows.ap([[g * d, len(grp)], [hq * d, bq], [d, g], [1, d]],
                                          offset=t_off * hq * d + grp[0] * g * d, scalar_offset=q0, indirect_dim=0))
    qt_ps = nl.ndarray((d, rows), q.dtype, buffer=nl.psum)
    nisa.nc_transpose(dst=qt_ps, data=q_sb)
    qt = nl.ndarray((d, rows), q.dtype, buffer=nl.sbuf)
    nisa.tensor_copy(dst=qt, src=qt_ps)
    return [qt]


def _load_q_transposed(q_rows, q0, grp, i, dims, rows):
    """v2: q^T [D, rows] of head grp[i] of a group (its BQ * g columns; the other heads' columns zero when the
    group stacks several heads), DMAed from q_rows [T_total, Hq * D] with D on the partitions; dims: (D, g, BQ,
    t_off) as `load_q_group`'s."""
    d, g, bq, t_off = dims
    head_rows = bq * g
    qt = nl.ndarray((d, rows), q_rows.dtype, buffer=nl.sbuf)
    if len(grp) > 1:
        nisa.memset(dst=qt, value=0.0)
    nisa.dma_copy(dst=qt[:, i * head_rows : (i + 1) * head_rows],
                  src=q_rows.ap([[1, d], [q_rows.shape[1], bq], [d, g]],
                                offset=t_off * q_rows.shape[1] + grp[i] * g * d, scalar_offset=q0, indirect_dim=0))
    return qt


def scores(qs, grp, k_chunks, n, run, kts):
    """s [rows, n] fp32 PSUM of a group against keys of one tile (n / KV_TILE PSUM banks, one matmul per bank):
    per head k^T by PE transposes (PSUM -> SBUF evacuation alternating ScalarE / VectorE), then the score matmuls.

    qs: `load_q_group`'s tiles. One per head (v2, masked columns): one accumulating matmul per head. One tile for
    several stacked heads (v3+), so that no zero-masked q column meets another head's key (0 * NaN would mix a
    non-finite key into every head's rows): with 32 or 64 rows per head (PE_TILES; prefill items) each head's
    matmul runs on its own PE column tile into its own partitions of s; else (decode: g rows per head) per CHUNK
    keys s^T [keys, rows] with each head's k^T chunk stationary and only its own q columns moving (`bank_pieces`
    of chunks a PSUM tile), then one bit-exact fp32 transpose back to rows on partitions. The transposes run
    `tuning.KT_LOOKAHEAD` heads ahead of the matmuls, so in-order TensorE transposes the next heads' k while this
    head's k^T is evacuated. kts: {kv head: k^T} of this tile, filled here: the groups of an item's other row blocks
    reuse them."""
    d, rows = qs[0].shape
    head_rows = rows // len(grp)
    s_ps = nl.ndarray((rows, n), nl.float32, buffer=nl.psum)
    per_head = len(qs) == 1 and len(grp) > 1
    tiled = per_head and head_rows in PE_TILES and d in PE_ROW_TILES  # each head's matmul on its own PE columns
    pieces = bank_pieces(len(k_chunks), rows, nl.float32) if per_head and not tiled else []
    st_ps = [nl.ndarray((CHUNK, (c1 - c0) * rows), nl.float32, buffer=nl.psum) for c0, c1 in pieces]
    for h in grp[:KT_LOOKAHEAD]:
        _k_transposed(kts, k_chunks, h, d, n, run)
    for i in range(len(grp)):
        if i + KT_LOOKAHEAD < len(grp):
            _k_transposed(kts, k_chunks, grp[i + KT_LOOKAHEAD], d, n, run)
        kt = kts[grp[i]]
        cols = slice(i * head_rows, (i + 1) * head_rows)
        if not per_head:
            for bank in _banks(n):
                nisa.nc_matmul(dst=s_ps[:, bank], stationary=qs[i], moving=kt[:, bank])
            continue
        if tiled:
            for bank in _banks(n):
                nisa.nc_matmul(dst=s_ps[cols, bank], stationary=qs[0][:, cols], moving=kt[:, bank],
                               tile_position=(0, cols.start), tile_size=(d, head_rows))
            continue
        for st, (c0, c1) in zip(st_ps, pieces):
            for c in range(c0, c1):
                nc = k_chunks[c].shape[0]
                at = (c - c0) * rows + i * head_rows
                nisa.nc_matmul(dst=st[0:nc, at : at + head_rows], stationary=chunk_cols(kt, c, run),
                               moving=qs[0][:, cols])
    for st_p, (c0, c1) in zip(st_ps, pieces):
        st = nl.ndarray(st_p.shape, nl.float32, buffer=nl.sbuf)
        nisa.tensor_copy(dst=st, src=st_p)
        for c in range(c0, c1):
            nc = k_chunks[c].shape[0]
            nisa.nc_transpose(dst=chunk_cols(s_ps, c, run), data=st[0:nc, (c - c0) * rows : (c - c0 + 1) * rows])
    return s_ps


def _k_transposed(kts, k_chunks, h, d, n, run):
    """kts[h] = k^T [D, n] SBUF of kv head h over one tile's chunks, keys in position order (`chunk_cols`), unless
    already there: PE transposes into PSUM, evacuated by ScalarE (even h) or VectorE (odd h)."""
    if h in kts:
        return
    kt_ps = nl.ndarray((d, n), k_chunks[0].dtype, buffer=nl.psum)
    for c, k in enumerate(k_chunks):
        nisa.nc_transpose(dst=chunk_cols(kt_ps, c, run), data=k[:, h * d : (h + 1) * d])
    kt = nl.ndarray((d, n), k_chunks[0].dtype, buffer=nl.sbuf)
    psum_copy(kt, kt_ps, on_scalar=h % 2 == 0)
    kts[h] = kt


def _masked_scores(s_ps, call, bounds, mask, kv, grp, k_rows):
    """x [rows, n] fp32: the score tile in units of exp_scale (softcap c: tanh(s · scale / c), else s), FP32_MIN
    where a key is not visible, and tile_max [rows, 1] — one range_select (v3+) or select_reduce (v2; then NaN where a row sees a bad key of its own kv head of grp, `finite.poison_scores`).
    mask: v2, the tile's visibility of the group's row block (None on v3+); k_rows: None, or the fp8 per-head k
    scales [rows, 1], multiplied into s as it leaves PSUM."""
    rows, n = s_ps.shape
    s = s_ps
    if k_rows is not None:
        s = nl.ndarray((rows, n), nl.float32, buffer=nl.sbuf)
        nisa.tensor_scalar(dst=s, data=s_ps, op0=nl.multiply, operand0=k_rows)
    if call.softcap is not None:
        capped = nl.ndarray((rows, n), nl.float32, buffer=nl.sbuf)
        nisa.activation(dst=capped, op=nl.tanh, data=s, scale=call.scale / call.softcap)
        s = capped
    x = nl.ndarray((rows, n), nl.float32, buffer=nl.sbuf)
    tile_max = nl.ndarray((rows, 1), nl.float32, buffer=nl.sbuf)
    if mask is None:
        lo, hi, start = bounds.tile_range(kv.t0)
        nisa.range_select(dst=x, on_true_tile=s, comp_op0=nl.greater_equal, comp_op1=nl.less_equal,
                          bound0=lo[0:rows, :], bound1=hi[0:rows, :], reduce_cmd=nisa.reduce_cmd.reset_reduce,
                          reduce_res=tile_max, reduce_op=nl.maximum, range_start=start, on_false_value=FP32_MIN)
    else:
        nisa.select_reduce(dst=x, predicate=mask[0:rows, :], on_true=s, on_false=FP32_MIN,
                           reduce_res=tile_max, reduce_cmd=nisa.reduce_cmd.reset_reduce, reduce_op=nl.maximum)
        poison_scores(x, mask, kv.k_bad, grp, rows // len(grp))
    return x, tile_max


def advance_max(state, exp_scale, tile_max):
    """(neg_max', rescale) [rows, 1] fp32 SBUF of a state's rows after a tile of row maxima tile_max [rows, 1]:
    neg_max' = min(neg_max, -exp_scale · max(tile_max, MAX_FLOOR)) (the floor keeps a fully masked tile's FP32_MIN
    from overflowing to inf when exp_scale > 1), rescale = exp(neg_max' - neg_max); state.neg_max becomes neg_max'."""
    rows = tile_max.shape[0]
    neg_max = nl.ndarray((rows, 1), nl.float32, buffer=nl.sbuf)
    if exp_scale > 0:  # -exp_scale · max(t, MAX_FLOOR) = min(-exp_scale · t, its start): one instruction
        nisa.tensor_scalar(dst=neg_max, data=tile_max, op0=nl.multiply, operand0=-exp_scale, op1=nl.minimum,
                           operand1=state.neg_max)
    else:
        nisa.tensor_scalar(dst=neg_max, data=tile_max, op0=nl.maximum, operand0=MAX_FLOOR, op1=nl.multiply,
                           operand1=-exp_scale)
        nisa.tensor_tensor(dst=neg_max, data1=neg_max, data2=state.neg_max, op=nl.minimum)
    rescale = nl.ndarray((rows, 1), nl.float32, buffer=nl.sbuf)
    rescale_factor(rescale, state.neg_max, neg_max)
    # in place (the state outlives a runtime loop's body), on ScalarE (VectorE is the busier engine), right after
    # its last read: the next tile's neg_max then waits on this copy, not on this tile's exp
    nisa.activation(dst=state.neg_max, op=nl.copy, data=neg_max)
    return neg_max, rescale


def softmax_pv(s_ps, state, call, gi, bounds, kv, p_copy_on_scalar):
    """Mask one score tile of group gi, update its SoftmaxState (neg_max, run_sum, acc += p @ v) in place:
    `advance_max`, then p = exp(exp_scale · x + neg_max') with tile_sum fused in."""
    rows, n = s_ps.shape
    grp, d = call.groups[gi], state.acc.shape[1]
    dtype = call.q.dtype  # p's dtype: the cache's ("auto", int8 after conversion), q's beside fp8 V (p in [0, 1])
    mask = None if kv.mask is None else kv.mask[call.group_block[gi]]
    x, tile_max = _masked_scores(s_ps, call, bounds, mask, kv, grp, call.k_rows[gi])
    neg_max, rescale = advance_max(state, call.exp_scale, tile_max)
    p = nl.ndarray((rows, n), dtype, buffer=nl.sbuf)
    tile_sum = nl.ndarray((rows, 1), nl.float32, buffer=nl.sbuf)
    exp_rows(p, x, neg_max, call.exp_scale, tile_sum)
    update_sum(state.run_sum, rescale, tile_sum)
    if not call.vector_dma:
        _zero_non_finite(p)
    pt = nl.ndarray((min(n, CHUNK), len(kv.v_chunks) * rows), dtype, buffer=nl.sbuf)
    for c0, c1 in bank_pieces(len(kv.v_chunks), rows, dtype):
        pt_ps = nl.ndarray((pt.shape[0], (c1 - c0) * rows), dtype, buffer=nl.psum)
        for c in range(c0, c1):
            nisa.nc_transpose(dst=pt_ps[0 : kv.v_chunks[c].shape[0], (c - c0) * rows : (c - c0 + 1) * rows],
                              data=chunk_cols(p, c, call.tile_run))
        # PSUM evacuation alternates ScalarE / VectorE by group
        psum_copy(pt[:, c0 * rows : c1 * rows], pt_ps, p_copy_on_scalar)
    pv = nl.ndarray((rows, d), nl.float32, buffer=nl.psum)
    p_at_v(pv, pt, kv.v_chunks, grp)
    update_acc(state.acc, rescale, pv)


def p_at_v(pv, pt, v_chunks, grp, ot_ps=None):
    """pv [rows, D] fp32 PSUM = p @ v of a group of kv heads grp: pt holds p^T, chunk c's keys on partitions and its
    rows at columns c · rows + (head i's) i · head_rows ..; v_chunks [<= CHUNK keys, Hkv · D] SBUF. One head: p^T
    stationary, v moving. Stacked heads: o^T [D, rows] (in ot_ps, or a new PSUM tile) with each head's v stationary
    and only its own p^T columns moving (no mixing), then one bit-exact transpose back to rows on partitions."""
    rows, d = pv.shape
    head_rows = rows // len(grp)
    if len(grp) == 1:
        h = grp[0]
        for c, v in enumerate(v_chunks):
            nisa.nc_matmul(dst=pv, stationary=pt[0 : v.shape[0], c * rows : (c + 1) * rows],
                           moving=v[:, h * d : (h + 1) * d])
        return
    if ot_ps is None:
        ot_ps = nl.ndarray((d, rows), nl.float32, buffer=nl.psum)
    for i, h in enumerate(grp):
        for c, v in enumerate(v_chunks):
            cols = slice(c * rows + i * head_rows, c * rows + (i + 1) * head_rows)
            nisa.nc_matmul(dst=ot_ps[:, i * head_rows : (i + 1) * head_rows],
                           stationary=v[:, h * d : (h + 1) * d], moving=pt[0 : v.shape[0], cols])
    ot = nl.ndarray((d, rows), nl.float32, buffer=nl.sbuf)
    nisa.tensor_copy(dst=ot, src=ot_ps)
    nisa.nc_transpose(dst=pv, data=ot)


def _zero_non_finite(p):
    """v2: p [rows, n] with its NaN (and inf) entries replaced by 0, in place, before the PE transpose (a matmul
    with the identity: p[r, k] = NaN would reach column k of every row). Such a row's output stays NaN: its
    tile_sum, fused into the exp before this, already carried the NaN into run_sum. p is in [0, 1] otherwise."""
    finite = nl.ndarray(p.shape, nl.uint8, buffer=nl.sbuf)
    nisa.tensor_scalar(dst=finite, data=p, op0=nl.less_equal, operand0=1.0)  # NaN / inf compare false
    nisa.select_reduce(dst=p, predicate=finite, on_true=p, on_false=0.0)


def output_rows(state, dtype, v_rows=None):
    """acc / run_sum of a group, [rows, D] SBUF in the output dtype, on acc's partitions. v_rows: None, or the fp8 v
    scales [rows, 1] (multiplied into 1 / run_sum)."""
    rows, d = state.acc.shape
    inv = nl.ndarray((rows, 1), nl.float32, buffer=nl.sbuf)
    nisa.tensor_scalar(dst=inv, data=state.run_sum, op0=nl.maximum, operand0=RUN_SUM_MIN)
    nisa.reciprocal(dst=inv, data=inv)
    if v_rows is not None:
        nisa.tensor_tensor(dst=inv, data1=inv, data2=v_rows, op=nl.multiply)
    res = nl.ndarray((rows, d), dtype, buffer=nl.sbuf)
    nisa.tensor_scalar(dst=res, data=state.acc, op0=nl.multiply, operand0=inv)
    return res


def store_rows(out, res, dst_i, grp, g, vector_dma):
    """A group's `output_rows` res to out[row_dst[b], h * g + j] (row (h, b, j)); rows with row_dst = -1 are skipped.
    v3+: one vector_offset DMA per kv head, or one for the whole group when BQ = 1 (decode: rows (h, j) are the
    output row's own order); v2: one scalar-offset DMA per (head, token)."""
    t_total, hq, d = out.shape
    bq = dst_i.shape[0]
    head_rows = bq * g
    out_rows = out.reshape((t_total, hq * d))
    if vector_dma and bq == 1:  # decode: rows (head, q head) are the output row's order, one store for the group
        nisa.dma_copy(dst=out_rows.ap([[hq * d, 1], [g * d, len(grp)], [1, g * d]], offset=grp[0] * g * d,
                                      vector_offset=dst_i, indirect_dim=0),
                      src=res, oob_mode=nisa.oob_mode.skip)
        return
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
