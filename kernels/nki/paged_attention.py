"""Paged attention: one kernel for decode, prefill over a cached prefix, chunked prefill and mixed batches.

    out[t, h] = softmax_j(score(q[t, h], k_i[j]) masked) @ v_i[j]    for query token t of sequence i,
    score = c * tanh(scale * q.k / c) with softcap c, else scale * q.k; key j visible iff j < seq_len_i,
    j <= pos(t) when causal, j >= pos(t) - window + 1 with a sliding window; k_i / v_i gathered from the
    paged caches through block_tables[i].

Algorithm (flash-decoding style online softmax; every loop bound is a compile-time size):
    for each work item w (one sequence i = item_seq[w], BQ query tokens; see launch_paged.work_plan):
        seq_len_i, block_tables[i, 0]: 4-byte scalar-offset loads, broadcast to 128 partitions by a ones-matmul
        per row: visible key range lo = pos - window + 1 (or 0), hi = min(pos, seq_len - 1) (or seq_len - 1)
        gather indices for the whole table row, unused entries NEUTRALISED before any DMA uses them
        rows = (kv head, token, q head); kv heads stacked on partitions in groups of PMAX // (BQ * g) (decode:
        all 8 Llama kv heads in 32 rows), so one mask / exp / rescale instruction serves the whole group
        for each KV tile of KV_TILE keys (static bound max_blocks * block_size), for each group:
            gather K, V in CHUNK-key tiles x (Hkv * D): all kv heads in one DMA (GQA shares the load, read once)
            s = sum_h q_h^T(masked to head h's columns).T @ k_h^T   (PE transposes of k, accumulating matmuls)
            (softcap: x = tanh(s * scale / c)); x = visible ? x : FP32_MIN, with the row max (one instruction)
            online softmax: m, l, o rescaled; o += p @ v (stacked heads: o^T per head block, one transpose)
        out rows = o / l, stored through row_dst (rows of other sequences are oob-skipped)
    Issue order is software-pipelined: scores of step k + 1 before the softmax of step k, item w + 1's setup
    halfway through item w, so the in-order engine queues overlap TensorE, Vector/ScalarE and DMA work.

Target branch (one flag, `vector_dma`, set once from nisa.get_nc_version()):
- NeuronCore-v3+ (trn2): KV gathered per slot with `vector_offset` DMAs (CHUNK slot rows per DMA); the table row
  is loaded once ([per-chunk block, chunk]) and expanded to one entry per key position by a selection matmul. A
  position past seq_len gets the slot of the sequence's position 0 instead: every gathered row is live data, so
  no NaN of a dead slot enters a tile; its score is masked (exp -> exactly 0) and 0 * finite = 0 in P @ V.
  Masking is one `range_select` per score tile (bounds per row, positions from range_start); outputs are
  scattered with `vector_offset`.
- NeuronCore-v2 (inf2, trn1): only scalar dynamic offsets, so KV is loaded per block (one DMA per block with the
  block id as `scalar_offset`; unused table entries replaced by the first block before use). The tail of the
  last live block is dead cache (NaN in tests): K and V rows past seq_len are replaced with 0 by a GpSimd
  `affine_select` whose offset is a register holding seq_len - chunk start (a select, never a multiply:
  0 * NaN = NaN, and a v2 PE transpose is a matmul with identity that would spread a NaN over the whole tile).
  The score mask is built once per KV tile (shared by all groups) and applied with `select_reduce`; outputs
  are stored per token with `scalar_offset`.

Numerics: scores, running max/sum and o in fp32 (PSUM/SBUF); softmax weights cast to the cache dtype before P @ V.
Masked scores are FP32_MIN; the running max m (kept as nm = -alpha * m) starts at M_INIT = -1e30, so nm stays
finite for any alpha = scale or softcap below 3e8 and exp(alpha * x + nm) is exactly 0 for masked x, even before a
row has seen a visible key. Rows that see no key (padding rows only) are never stored. Stacked heads rely on finite
K and V (zero-masked q columns and per-head o^T blocks keep heads apart only when 0 * k = 0).

Limits: D <= 128; block_size a power of two; num_blocks * block_size < 2**24 (index math in fp32).
Reference: nkilab.reference.paged.paged_attention.
"""

from ._shim import nisa, nki, nl
from ._tiling import FP32_MIN, PMAX, PSUM_FMAX

KV_TILE = PSUM_FMAX  # key positions per score tile: one 2 KiB PSUM bank of fp32 scores per (row, tile)
CHUNK = PMAX  # key positions per gather: one per partition
M_INIT = -1e30  # initial running max (see module docstring, Numerics)
L_MIN = 1e-30  # row-sum floor before the reciprocal: only never-stored padding rows can have l = 0


@nki.jit
def paged_attention_kernel(q, key_cache, value_cache, block_tables, seq_lens, item_seq, item_q0, row_pos, row_dst,
                           scale=1.0, causal=True, sliding_window=None, softcap=None):
    """Paged attention over a work plan.

    Dimensions:  T_total query tokens; Hq = g * Hkv heads, BQ * g <= PMAX; D <= 128; num_seqs x max_blocks table
                 with max_blocks * block_size a multiple of PMAX (the launcher pads it); N work items of BQ rows.
    Args:        q: [T_total, Hq, D] float32|float16|bfloat16, HBM.
                 key_cache, value_cache: [num_blocks, block_size, Hkv, D], q.dtype, HBM.
                 block_tables: [num_seqs, max_blocks] int32, HBM; entries past a sequence's live blocks: any value.
                 seq_lens: [num_seqs] int32, HBM.
                 item_seq, item_q0: [N] int32; row_pos, row_dst: [N, BQ] int32, HBM (launch_paged.work_plan).
                 scale: score scale; causal; sliding_window: None or w >= 1; softcap: None or c > 0.
    Returns:     out: [T_total, Hq, D], q.dtype, shared HBM.
    Tiling:      rows of one kv head = BQ tokens x g heads; kv heads stacked on partitions in groups of
                 PMAX // rows (decode: all of them); keys in KV_TILE-position score tiles of CHUNK-key gathers;
                 score tile k + 1 is issued before the softmax of tile k (in-order engines overlap).
    """
    t_total, hq, d = q.shape
    hkv = key_cache.shape[2]
    num_items, bq = row_pos.shape
    g = hq // hkv
    rows = bq * g
    per_group = max(1, PMAX // rows)
    groups = [tuple(range(h0, min(h0 + per_group, hkv))) for h0 in range(0, hkv, per_group)]
    positions = block_tables.shape[1] * key_cache.shape[1]
    vector_dma = nisa.get_nc_version() != nisa.nc_version.gen2  # indirect vector_offset DMA is v3+
    out = nl.ndarray((t_total, hq, d), q.dtype, buffer=nl.shared_hbm)

    consts = _constants(positions, vector_dma, key_cache.shape[1])
    seq_sb = nl.ndarray((1, num_items), nl.int32, buffer=nl.sbuf)
    nisa.dma_copy(dst=seq_sb, src=item_seq.reshape((1, num_items)))
    q0_sb = nl.ndarray((1, num_items), nl.int32, buffer=nl.sbuf)
    nisa.dma_copy(dst=q0_sb, src=item_q0.reshape((1, num_items)))
    softmax = dict(scale=scale, softcap=softcap, alpha=scale if softcap is None else softcap)
    steps = [(t0, min(KV_TILE, positions - t0), gi) for t0 in range(0, positions, KV_TILE)
             for gi in range(len(groups))]

    def setup(w):
        """Per item: sequence metadata, visible key range per row, neutralised gather indices, q^T, state."""
        seq = seq_sb[0:1, w : w + 1]
        kv_len, first_blk = _load_seq_meta(seq_lens, block_tables, seq, consts["ones"])
        bounds = _row_bounds(row_pos, w, g, len(groups[0]), kv_len, causal, sliding_window)
        if vector_dma:
            index = {"slots": _slot_index(block_tables, seq, kv_len, first_blk, consts, key_cache.shape[1])}
        else:
            index = _block_index(block_tables, seq, kv_len, first_blk, consts)
            bounds = bounds + _band(*bounds)
        qs = [_load_q_group(q, q0_sb[0:1, w : w + 1], grp, g, bq) for grp in groups]
        state = [_init_state(len(grp) * rows, d, softmax["alpha"]) for grp in groups]
        return dict(bounds=bounds, index=index, qs=qs, state=state, tiles={})

    def issue(step):
        """Gather the step's KV tile (first group only) and its v2 mask, then the group's scores (PSUM)."""
        w, t0, n, gi = step
        item = items[w]
        if t0 not in item["tiles"]:
            k_chunks, v_chunks = _gather_kv(key_cache, value_cache, item["index"], t0, n, vector_dma)
            mask = None if vector_dma else _tile_mask(consts["kpos"], item["bounds"][2:], t0, n)
            item["tiles"][t0] = (k_chunks, v_chunks, mask)
        return _scores(item["qs"][gi], groups[gi], item["tiles"][t0][0], n)

    # Software pipeline: the scores of step k + 1 are issued before the softmax of step k, and item w + 1 is set up
    # halfway through item w, so the in-order engine queues overlap TensorE, Vector/ScalarE and DMA work.
    flat = [(w, t0, n, gi) for w in range(num_items) for (t0, n, gi) in steps]
    items = {0: setup(0)}
    pending = issue(flat[0])
    for k, (w, t0, n, gi) in enumerate(flat):
        j = k - w * len(steps)
        if j == len(steps) // 2 and w + 1 < num_items:
            items[w + 1] = setup(w + 1)
        nxt = issue(flat[k + 1]) if k + 1 < len(flat) else None
        item = items[w]
        item["state"][gi] = _softmax_pv(pending, item["state"][gi], groups[gi], item["tiles"][t0][1], rows, t0,
                                        item["bounds"], item["tiles"][t0][2], softmax, gi % 2 == 1)
        if gi == len(groups) - 1:
            del item["tiles"][t0]
        if j == len(steps) - 1:
            dst_i = nl.ndarray((bq, 1), nl.int32, buffer=nl.sbuf)
            nisa.dma_copy(dst=dst_i, src=row_dst.ap([[1, bq], [1, 1]], offset=w * bq))
            for state, grp in zip(item["state"], groups):
                _store_rows(out, state, dst_i, grp, g, vector_dma)
            del items[w]
        pending = nxt
    return out


def _constants(positions, vector_dma, block_size):
    """Per-kernel index tiles: key positions per partition and chunk, in-block offsets, per-tile key ramp."""
    nchunks = positions // CHUNK
    ones = nl.ndarray((1, PMAX), nl.float32, buffer=nl.sbuf)
    nisa.memset(dst=ones, value=1.0)
    consts = {"ones": ones}
    if vector_dma:
        pos_i = nl.ndarray((CHUNK, nchunks), nl.int32, buffer=nl.sbuf)
        nisa.iota(dst=pos_i, pattern=[[CHUNK, nchunks]], offset=0, channel_multiplier=1)
        pos_f = nl.ndarray((CHUNK, nchunks), nl.float32, buffer=nl.sbuf)
        nisa.tensor_copy(dst=pos_f, src=pos_i)
        consts["pos"] = pos_f
        consts["select"] = _block_selector(block_size, ones)
        off_i = nl.ndarray((CHUNK, nchunks), nl.int32, buffer=nl.sbuf)
        nisa.tensor_scalar(dst=off_i, data=pos_i, op0=nl.bitwise_and, operand0=block_size - 1)
        off_f = nl.ndarray((CHUNK, nchunks), nl.float32, buffer=nl.sbuf)
        nisa.tensor_copy(dst=off_f, src=off_i)
        consts["off"] = off_f
    else:
        num_blocks = positions // block_size
        bstart = nl.ndarray((1, num_blocks), nl.float32, buffer=nl.sbuf)
        nisa.iota(dst=bstart, pattern=[[block_size, num_blocks]], offset=0, channel_multiplier=0)
        consts["block_start"] = bstart
        chunk_start = nl.ndarray((1, nchunks), nl.float32, buffer=nl.sbuf)
        nisa.iota(dst=chunk_start, pattern=[[-CHUNK, nchunks]], offset=0, channel_multiplier=0)  # -c * CHUNK
        consts["neg_chunk_start"] = chunk_start
        kpos = nl.ndarray((PMAX, KV_TILE), nl.float32, buffer=nl.sbuf)
        nisa.iota(dst=kpos, pattern=[[1, KV_TILE]], offset=0, channel_multiplier=0)
        consts["kpos"] = kpos
    return consts


def _block_selector(block_size, ones):
    """v3+: sel [per_chunk, CHUNK] float32, sel[k, p] = 1 iff position p of a chunk lies in its block k; the
    matmul sel^T @ table expands per-block table entries to per-position rows on TensorE (a DMA would need one
    4-byte descriptor per position)."""
    if block_size >= CHUNK:
        return ones
    per_chunk = CHUNK // block_size
    ramp = nl.ndarray((per_chunk, CHUNK), nl.float32, buffer=nl.sbuf)
    nisa.iota(dst=ramp, pattern=[[1, CHUNK]], offset=0, channel_multiplier=-block_size)  # p - k * block_size
    half = (block_size - 1) / 2
    nisa.tensor_scalar(dst=ramp, data=ramp, op0=nl.subtract, operand0=half, op1=nl.abs_max, operand1=0.0)
    sel = nl.ndarray((per_chunk, CHUNK), nl.float32, buffer=nl.sbuf)
    nisa.tensor_scalar(dst=sel, data=ramp, op0=nl.less_equal, operand0=half)
    return sel


def _load_seq_meta(seq_lens, block_tables, seq, ones):
    """(seq_lens[seq], block_tables[seq, 0]) broadcast to PMAX partitions, float32 [PMAX, 1] each: two 4-byte
    scalar-offset loads (seq: 1x1 SBUF int32, a runtime value), broadcast by a rank-1 matmul with ones."""
    num_seqs = seq_lens.shape[0]
    meta_i = nl.ndarray((1, 2), nl.int32, buffer=nl.sbuf)
    nisa.dma_copy(dst=meta_i[:, 0:1], src=seq_lens.reshape((num_seqs, 1)).ap([[1, 1], [1, 1]], offset=0,
                                                                            scalar_offset=seq, indirect_dim=0))
    nisa.dma_copy(dst=meta_i[:, 1:2], src=block_tables.ap([[1, 1], [1, 1]], offset=0, scalar_offset=seq,
                                                         indirect_dim=0))
    meta = nl.ndarray((1, 2), nl.float32, buffer=nl.sbuf)
    nisa.tensor_copy(dst=meta, src=meta_i)
    meta_ps = nl.ndarray((PMAX, 2), nl.float32, buffer=nl.psum)
    nisa.nc_matmul(dst=meta_ps, stationary=ones, moving=meta)
    meta_b = nl.ndarray((PMAX, 2), nl.float32, buffer=nl.sbuf)
    nisa.tensor_copy(dst=meta_b, src=meta_ps)
    return meta_b[:, 0:1], meta_b[:, 1:2]


def _row_bounds(row_pos, w, g, heads, kv_len, causal, sliding_window):
    """Visible key range [lo, hi] of each row of a group of `heads` kv heads, rows ordered (head, token, q head),
    float32 [heads * BQ * g, 1] each."""
    bq = row_pos.shape[1]
    rows = heads * bq * g
    pos_i = nl.ndarray((rows, 1), nl.int32, buffer=nl.sbuf)
    nisa.dma_copy(dst=pos_i, src=row_pos.ap([[0, heads], [1, bq], [0, g]], offset=w * bq))
    pos = nl.ndarray((rows, 1), nl.float32, buffer=nl.sbuf)
    nisa.tensor_copy(dst=pos, src=pos_i)
    hi = nl.ndarray((rows, 1), nl.float32, buffer=nl.sbuf)
    if causal:
        nisa.tensor_scalar(dst=hi, data=kv_len[0:rows, :], op0=nl.add, operand0=-1.0, op1=nl.minimum, operand1=pos)
    else:
        nisa.tensor_scalar(dst=hi, data=kv_len[0:rows, :], op0=nl.add, operand0=-1.0)
    lo = nl.ndarray((rows, 1), nl.float32, buffer=nl.sbuf)
    if sliding_window is None:
        nisa.memset(dst=lo, value=0.0)
    else:
        nisa.tensor_scalar(dst=lo, data=pos, op0=nl.add, operand0=float(1 - sliding_window))
    return lo, hi


def _slot_index(block_tables, seq, kv_len, first_blk, consts, block_size):
    """v3+: cache slot of every key position, int32 [CHUNK, nchunks]; positions >= seq_len -> slot of position 0
    (slot 0 for an empty sequence), so garbage table entries never reach a DMA."""
    pos, off, sel = consts["pos"], consts["off"], consts["select"]
    nchunks = pos.shape[1]
    per_chunk = sel.shape[0]
    src_i = nl.ndarray((per_chunk, nchunks), nl.int32, buffer=nl.sbuf)
    nisa.dma_copy(dst=src_i, src=block_tables.ap(_chunk_table_pattern(block_size, nchunks), offset=0,
                                                 scalar_offset=seq, indirect_dim=0))
    src = nl.ndarray((per_chunk, nchunks), nl.float32, buffer=nl.sbuf)
    nisa.tensor_copy(dst=src, src=src_i)
    # first slot = table[seq, 0] * block_size, or 0 when seq_len == 0 (then even entry 0 may be garbage)
    first = nl.ndarray((CHUNK, 1), nl.float32, buffer=nl.sbuf)
    nisa.tensor_scalar(dst=first, data=kv_len, op0=nl.greater, operand0=0.0, op1=nl.multiply,
                       operand1=float(block_size))
    nisa.tensor_tensor(dst=first, data1=first, data2=first_blk, op=nl.multiply)
    valid = nl.ndarray((CHUNK, nchunks), nl.float32, buffer=nl.sbuf)
    nisa.tensor_scalar(dst=valid, data=pos, op0=nl.less, operand0=kv_len)
    blk = nl.ndarray((CHUNK, nchunks), nl.float32, buffer=nl.sbuf)
    for c0 in range(0, nchunks, PSUM_FMAX):
        cols = slice(c0, min(c0 + PSUM_FMAX, nchunks))
        blk_ps = nl.ndarray((CHUNK, cols.stop - c0), nl.float32, buffer=nl.psum)
        nisa.nc_matmul(dst=blk_ps, stationary=sel, moving=src[:, cols])  # table entry of each position
        nisa.tensor_tensor(dst=blk[:, cols], data1=blk_ps, data2=valid[:, cols], op=nl.multiply)  # garbage * 0 = 0
    nisa.scalar_tensor_tensor(dst=blk, data=blk, op0=nl.multiply, operand0=float(block_size), op1=nl.add,
                              operand1=off)
    nisa.scalar_tensor_tensor(dst=blk, data=blk, op0=nl.subtract, operand0=first, op1=nl.multiply, operand1=valid)
    slot = nl.ndarray((CHUNK, nchunks), nl.int32, buffer=nl.sbuf)
    nisa.tensor_scalar(dst=slot, data=blk, op0=nl.add, operand0=first)
    return slot


def _chunk_table_pattern(block_size, nchunks):
    """HBM access pattern of the table row as [per_chunk, nchunks]: entry [k, c] = block k of chunk c (block_size
    <= CHUNK), or [1, nchunks]: the block holding chunk c (block_size > CHUNK)."""
    if block_size <= CHUNK:
        per_chunk = CHUNK // block_size
        return [[1, per_chunk], [per_chunk, nchunks]]
    return [[1, nchunks * CHUNK // block_size], [0, block_size // CHUNK]]


def _block_index(block_tables, seq, kv_len, first_blk, consts):
    """v2: block id of every logical block, int32 [1, max_blocks]; blocks at or past seq_len -> the first block
    (block 0 for an empty sequence). Also the live rows of each chunk, seq_len - chunk start (int32 [1, nchunks]),
    for the select that zeroes dead rows of the last live block."""
    max_blocks = block_tables.shape[1]
    blk_i = nl.ndarray((1, max_blocks), nl.int32, buffer=nl.sbuf)
    nisa.dma_copy(dst=blk_i, src=block_tables.ap([[0, 1], [1, max_blocks]], offset=0, scalar_offset=seq,
                                                 indirect_dim=0))
    blk = nl.ndarray((1, max_blocks), nl.float32, buffer=nl.sbuf)
    nisa.tensor_copy(dst=blk, src=blk_i)
    first = nl.ndarray((1, 1), nl.float32, buffer=nl.sbuf)
    nisa.tensor_scalar(dst=first, data=kv_len[0:1, :], op0=nl.greater, operand0=0.0, op1=nl.multiply,
                       operand1=first_blk[0:1, :])
    valid = nl.ndarray((1, max_blocks), nl.float32, buffer=nl.sbuf)
    nisa.tensor_scalar(dst=valid, data=consts["block_start"], op0=nl.less, operand0=kv_len[0:1, :])
    nisa.tensor_tensor(dst=blk, data1=blk, data2=valid, op=nl.multiply)  # garbage * 0 = 0: finite int32 values
    nisa.scalar_tensor_tensor(dst=blk, data=blk, op0=nl.subtract, operand0=first, op1=nl.multiply, operand1=valid)
    safe = nl.ndarray((1, max_blocks), nl.int32, buffer=nl.sbuf)
    nisa.tensor_scalar(dst=safe, data=blk, op0=nl.add, operand0=first)
    live = nl.ndarray(consts["neg_chunk_start"].shape, nl.int32, buffer=nl.sbuf)
    nisa.tensor_scalar(dst=live, data=consts["neg_chunk_start"], op0=nl.add, operand0=kv_len[0:1, :])
    return {"blocks": safe, "live": live}


def _band(lo, hi):
    """v2 mask form of [lo, hi]: centre (lo + hi) / 2 and radius (hi - lo) / 2, float32 [rows, 1] each (exact:
    halves of integers below 2**23)."""
    center = nl.ndarray(lo.shape, nl.float32, buffer=nl.sbuf)
    nisa.tensor_scalar(dst=center, data=hi, op0=nl.add, operand0=lo, op1=nl.multiply, operand1=0.5)
    radius = nl.ndarray(lo.shape, nl.float32, buffer=nl.sbuf)
    nisa.tensor_scalar(dst=radius, data=hi, op0=nl.subtract, operand0=lo, op1=nl.multiply, operand1=0.5)
    return center, radius


def _init_state(rows, d, alpha):
    """Online-softmax state of a group: nm = -alpha * running max, running sum l [rows, 1], o [rows, D], fp32."""
    nm = nl.ndarray((rows, 1), nl.float32, buffer=nl.sbuf)
    nisa.memset(dst=nm, value=-alpha * M_INIT)
    l_sum = nl.ndarray((rows, 1), nl.float32, buffer=nl.sbuf)
    nisa.memset(dst=l_sum, value=0.0)
    o = nl.ndarray((rows, d), nl.float32, buffer=nl.sbuf)
    nisa.memset(dst=o, value=0.0)
    return nm, l_sum, o


def _gather_kv(key_cache, value_cache, index, t0, n, vector_dma):
    """K and V of key positions [t0, t0 + n) as lists of [<= CHUNK positions, Hkv * D] tiles (all kv heads)."""
    num_blocks, block_size, hkv, d = key_cache.shape
    row = hkv * d
    k_chunks, v_chunks = [], []
    for cs in range(t0, t0 + n, CHUNK):
        nc = min(CHUNK, t0 + n - cs)
        c = cs // CHUNK
        for cache, chunks in ((key_cache, k_chunks), (value_cache, v_chunks)):
            tile = nl.ndarray((nc, row), cache.dtype, buffer=nl.sbuf)
            if vector_dma:
                rows_hbm = cache.reshape((num_blocks * block_size, row))
                nisa.dma_copy(dst=tile, src=rows_hbm.ap([[row, nc], [1, row]], offset=0,
                                                        vector_offset=index["slots"][0:nc, c : c + 1],
                                                        indirect_dim=0))
            else:
                _load_blocks(tile, cache.reshape((num_blocks, block_size * row)), index["blocks"], cs, nc,
                             block_size, row)
                # rows p >= live are dead slots: select 0 on GpSimd (idle on this path; NaN-safe, unlike a multiply)
                live = nisa.register_alloc()
                nisa.register_load(live, index["live"][0:1, c : c + 1])
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


def _tile_mask(kpos, band, t0, n):
    """v2: uint8 [rows, n] visibility of key positions [t0, t0 + n): |t0 + f - centre| <= radius."""
    center, radius = band
    rows = center.shape[0]
    shifted = nl.ndarray((rows, 1), nl.float32, buffer=nl.sbuf)
    nisa.tensor_scalar(dst=shifted, data=center, op0=nl.add, operand0=float(-t0))
    dist = nl.ndarray((rows, n), nl.float32, buffer=nl.sbuf)
    nisa.tensor_scalar(dst=dist, data=kpos[0:rows, 0:n], op0=nl.subtract, operand0=shifted, op1=nl.abs_max,
                       operand1=0.0)
    mask = nl.ndarray((rows, n), nl.uint8, buffer=nl.sbuf)
    nisa.tensor_scalar(dst=mask, data=dist, op0=nl.less_equal, operand0=radius)
    return mask


def _load_q_group(q, q0, grp, g, bq):
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


def _scores(qs, grp, k_chunks, n):
    """s [rows, n] fp32 PSUM of a group against keys of one tile: per head k^T by PE transposes (PSUM ->
    SBUF evacuation alternating ScalarE / VectorE), then one accumulating matmul per head."""
    d = qs[0].shape[0]
    dtype = k_chunks[0].dtype
    s_ps = nl.ndarray((qs[0].shape[1], n), nl.float32, buffer=nl.psum)
    for i, h in enumerate(grp):
        kt_ps = nl.ndarray((d, n), dtype, buffer=nl.psum)
        for c, k in enumerate(k_chunks):
            nisa.nc_transpose(dst=kt_ps[:, c * CHUNK : c * CHUNK + k.shape[0]], data=k[:, h * d : (h + 1) * d])
        kt = nl.ndarray((d, n), dtype, buffer=nl.sbuf)
        if h % 2 == 0:
            nisa.activation(dst=kt, op=nl.copy, data=kt_ps)
        else:
            nisa.tensor_copy(dst=kt, src=kt_ps)
        nisa.nc_matmul(dst=s_ps, stationary=qs[i], moving=kt)
    return s_ps


def _softmax_pv(s_ps, state, grp, v_chunks, head_rows, t0, bounds, mask, softmax, p_copy_on_scalar):
    """Mask one score tile, update the online softmax (nm, l) and o += p @ v for a group; returns the new state.

    x holds the masked scores in units of alpha (softcap c: x = tanh(s * scale / c), alpha = c; else x = s,
    alpha = scale), so exp(alpha * x - alpha * m) is one ScalarE instruction with the row sum fused in.
    """
    nm_old, l_sum, o = state
    rows, n = s_ps.shape
    d = o.shape[1]
    dtype = v_chunks[0].dtype
    alpha = softmax["alpha"]
    scores = s_ps
    if softmax["softcap"] is not None:
        scores = nl.ndarray((rows, n), nl.float32, buffer=nl.sbuf)
        nisa.activation(dst=scores, op=nl.tanh, data=s_ps, scale=softmax["scale"] / softmax["softcap"])
    x = nl.ndarray((rows, n), nl.float32, buffer=nl.sbuf)
    tile_max = nl.ndarray((rows, 1), nl.float32, buffer=nl.sbuf)
    if mask is None:
        nisa.range_select(dst=x, on_true_tile=scores, comp_op0=nl.greater_equal, comp_op1=nl.less_equal,
                          bound0=bounds[0][0:rows, :], bound1=bounds[1][0:rows, :],
                          reduce_cmd=nisa.reduce_cmd.reset_reduce, reduce_res=tile_max, reduce_op=nl.maximum,
                          range_start=t0, on_false_value=FP32_MIN)
    else:
        nisa.select_reduce(dst=x, predicate=mask[0:rows, :], on_true=scores, on_false=FP32_MIN,
                           reduce_res=tile_max, reduce_cmd=nisa.reduce_cmd.reset_reduce, reduce_op=nl.maximum)
    # online softmax with the state nm = -alpha * m (running max, negated and scaled):
    # nm' = min(nm, -alpha * max(tile max, M_INIT)); corr = exp(nm' - nm); p = exp(alpha x + nm'); l = l corr + sum p
    # (the clamp keeps a fully masked tile's FP32_MIN from overflowing to inf when alpha > 1)
    nm_new = nl.ndarray((rows, 1), nl.float32, buffer=nl.sbuf)
    nisa.tensor_scalar(dst=nm_new, data=tile_max, op0=nl.maximum, operand0=M_INIT, op1=nl.multiply, operand1=-alpha)
    nisa.tensor_tensor(dst=nm_new, data1=nm_new, data2=nm_old, op=nl.minimum)
    corr = nl.ndarray((rows, 1), nl.float32, buffer=nl.sbuf)
    nisa.activation(dst=corr, op=nl.exp, data=nm_old, bias=nm_new, scale=-1.0)
    p = nl.ndarray((rows, n), dtype, buffer=nl.sbuf)
    row_sum = nl.ndarray((rows, 1), nl.float32, buffer=nl.sbuf)
    nisa.activation(dst=p, op=nl.exp, data=x, bias=nm_new, scale=alpha, reduce_op=nl.add, reduce_res=row_sum,
                    reduce_cmd=nisa.reduce_cmd.reset_reduce)
    nisa.tensor_scalar(dst=l_sum, data=l_sum, op0=nl.multiply, operand0=corr, op1=nl.add, operand1=row_sum)
    pt_ps = nl.ndarray((min(n, CHUNK), len(v_chunks) * rows), dtype, buffer=nl.psum)
    for c, v in enumerate(v_chunks):
        nisa.nc_transpose(dst=pt_ps[0 : v.shape[0], c * rows : (c + 1) * rows],
                          data=p[:, c * CHUNK : c * CHUNK + v.shape[0]])
    pt = nl.ndarray(pt_ps.shape, dtype, buffer=nl.sbuf)
    if p_copy_on_scalar:  # PSUM evacuation alternates ScalarE / VectorE by group to balance the two engines
        nisa.activation(dst=pt, op=nl.copy, data=pt_ps)
    else:
        nisa.tensor_copy(dst=pt, src=pt_ps)
    pv = nl.ndarray((rows, d), nl.float32, buffer=nl.psum)
    if len(grp) == 1:
        h = grp[0]
        for c, v in enumerate(v_chunks):
            nisa.nc_matmul(dst=pv, stationary=pt[0 : v.shape[0], c * rows : (c + 1) * rows],
                           moving=v[:, h * d : (h + 1) * d])
    else:
        # stacked heads: o^T [D, rows] with v as stationary and each head's own p^T columns as moving (no mixing),
        # then one transpose back to rows on partitions
        ot_ps = nl.ndarray((d, rows), nl.float32, buffer=nl.psum)
        for i, h in enumerate(grp):
            for c, v in enumerate(v_chunks):
                cols = slice(c * rows + i * head_rows, c * rows + (i + 1) * head_rows)
                nisa.nc_matmul(dst=ot_ps[:, i * head_rows : (i + 1) * head_rows],
                               stationary=v[:, h * d : (h + 1) * d], moving=pt[0 : v.shape[0], cols])
        ot = nl.ndarray((d, rows), nl.float32, buffer=nl.sbuf)
        nisa.tensor_copy(dst=ot, src=ot_ps)
        nisa.nc_transpose(dst=pv, data=ot)
    nisa.scalar_tensor_tensor(dst=o, data=o, op0=nl.multiply, operand0=corr, op1=nl.add, operand1=pv)
    return nm_new, l_sum, o


def _store_rows(out, state, dst_i, grp, g, vector_dma):
    """o / l of a group to out[row_dst[b], h * g + j] (row (h, b, j)); rows with row_dst = -1 are skipped."""
    t_total, hq, d = out.shape
    _, l_sum, o = state
    rows = o.shape[0]
    bq = dst_i.shape[0]
    head_rows = bq * g
    inv = nl.ndarray((rows, 1), nl.float32, buffer=nl.sbuf)
    nisa.tensor_scalar(dst=inv, data=l_sum, op0=nl.maximum, operand0=L_MIN)
    nisa.reciprocal(dst=inv, data=inv)
    res = nl.ndarray((rows, d), out.dtype, buffer=nl.sbuf)
    nisa.tensor_scalar(dst=res, data=o, op0=nl.multiply, operand0=inv)
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
