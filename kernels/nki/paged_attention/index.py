"""Index math of paged attention: per-kernel index tiles, per-sequence metadata, visible key ranges, gather indices.

All index arithmetic runs in fp32 on VectorE (exact below 2**24: the launcher caps the cache's slots there) and
is converted to int32 only for the DMAs that use it. No table entry past a sequence's live blocks ever reaches a
DMA: such entries are NEUTRALISED (replaced by the sequence's first block / slot) first.
"""

from .._shim import nisa, nl
from .._tiling import PMAX, PSUM_FMAX

KV_TILE = PSUM_FMAX  # key positions per score matmul and plan tile: one 2 KiB PSUM bank of fp32 scores per row
CHUNK = PMAX  # key positions per gather: one per partition


class IndexConsts(nl.NKIObject):
    """Per-kernel index tiles (built once): ones [1, 128] (broadcast matmuls); neg_chunk_start [1, nchunks]: minus
    the first position of each gather (v3+: -c · span) or chunk (v2: -c · CHUNK); v3+ (gathers of `run` slots per
    partition, span = CHUNK · run positions each): pos, off [CHUNK, ngathers] (first key position of each
    partition's run and its in-block offset), select (`_block_selector`) and first [per_gather, CHUNK] (row 0 ones:
    first^T @ table row broadcasts the row's entry [0, 0]), both on the table row's partitions (`_high_rows`); v2:
    block_start [1, num_blocks], kpos [128, KV_TILE] (the key ramp of a tile). Attributes a target does not use are
    None."""

    def __init__(self, positions, vector_dma, block_size, run):
        self.ones = nl.ndarray((1, PMAX), nl.float32, buffer=nl.sbuf)
        nisa.memset(dst=self.ones, value=1.0)
        self.pos = self.select = self.off = self.block_start = self.neg_chunk_start = self.kpos = None
        if vector_dma:
            span = CHUNK * run
            ngathers = positions // span
            pos_i = nl.ndarray((CHUNK, ngathers), nl.int32, buffer=nl.sbuf)
            nisa.iota(dst=pos_i, pattern=[[span, ngathers]], offset=0, channel_multiplier=run)
            self.pos = nl.ndarray((CHUNK, ngathers), nl.float32, buffer=nl.sbuf)
            nisa.tensor_copy(dst=self.pos, src=pos_i)
            self.select = _block_selector(block_size, run)
            self.first = _high_rows(self.select.shape[0], CHUNK, nl.float32)  # row 0 ones: entry [0, 0]
            nisa.memset(dst=self.first, value=0.0)
            nisa.memset(dst=self.first[0:1, :], value=1.0)
            off_i = nl.ndarray((CHUNK, ngathers), nl.int32, buffer=nl.sbuf)
            nisa.tensor_scalar(dst=off_i, data=pos_i, op0=nl.bitwise_and, operand0=block_size - 1)
            self.off = nl.ndarray((CHUNK, ngathers), nl.float32, buffer=nl.sbuf)
            nisa.tensor_copy(dst=self.off, src=off_i)
        else:
            num_blocks = positions // block_size
            self.block_start = nl.ndarray((1, num_blocks), nl.float32, buffer=nl.sbuf)
            nisa.iota(dst=self.block_start, pattern=[[block_size, num_blocks]], offset=0, channel_multiplier=0)
        span = CHUNK * run
        self.neg_chunk_start = nl.ndarray((1, positions // span), nl.float32, buffer=nl.sbuf)
        nisa.iota(dst=self.neg_chunk_start, pattern=[[-span, positions // span]], offset=0, channel_multiplier=0)
        if not vector_dma:
            self.kpos = nl.ndarray((PMAX, KV_TILE), nl.float32, buffer=nl.sbuf)
            nisa.iota(dst=self.kpos, pattern=[[1, KV_TILE]], offset=0, channel_multiplier=0)


def comb_ramp(run, tile_run):
    """v3+ runs longer than a score tile's tile_run chunks (`tuning.score_run`): [PMAX, run // tile_run] float32,
    -tile_run · j in column j, score tile j of a gather (`add_comb`)."""
    ramp = nl.ndarray((PMAX, run // tile_run), nl.float32, buffer=nl.sbuf)
    nisa.iota(dst=ramp, pattern=[[-tile_run, run // tile_run]], offset=0, channel_multiplier=0)
    return ramp


class RowBounds(nl.NKIObject):
    """Visible key range [lo, hi] of each row of a group, float32 [rows, 1] each; v2 also its mask form centre
    (lo + hi) / 2 and radius (hi - lo) / 2 (None on v3+). v3+ gathers of runs longer than a score tile's tile_run
    chunks (`add_comb`): span, the positions of one gather, tile_keys, those of one score tile (CHUNK · tile_run),
    comb_hi and comb_lo [rows, span // tile_keys] (comb_lo None when lo is 0; all None for shorter runs).
    `row_bounds` computes them for C row blocks at once ([rows, C] tiles, comb [rows, C, phases]); `column` is one
    row block's."""

    def __init__(self, lo, hi):
        self.lo, self.hi = lo, hi
        self.center = self.radius = None
        self.span, self.tile_keys, self.comb_lo, self.comb_hi = None, None, None, None

    def column(self, c):
        """Row block c's RowBounds: views of column c of these [rows, C] ones."""
        one = RowBounds(self.lo[:, c : c + 1], self.hi[:, c : c + 1])
        if self.center is not None:
            one.center, one.radius = self.center[:, c : c + 1], self.radius[:, c : c + 1]
        one.span, one.tile_keys = self.span, self.tile_keys
        one.comb_hi = None if self.comb_hi is None else self.comb_hi[:, c, :]
        one.comb_lo = None if self.comb_lo is None else self.comb_lo[:, c, :]
        return one

    def tile_range(self, t0):
        """(bound0, bound1, range_start) of the v3+ range_select of the score tile from key position t0: its
        columns are in position order (range_start t0, bounds lo / hi), or, in a gather of longer runs, at
        comb indices (`add_comb`)."""
        if self.span is None:
            return self.lo, self.hi, t0
        u, j = divmod(t0, self.span)
        j //= self.tile_keys
        lo = self.lo if self.comb_lo is None else self.comb_lo[:, j : j + 1]
        return lo, self.comb_hi[:, j : j + 1], u * self.tile_keys


class GatherIndex(nl.NKIObject):
    """Where one sequence's keys live: live int32 [1, nchunks], the live rows of each gather / chunk (seq_len - its
    first position; `IndexConsts.neg_chunk_start`). v3+: slots int32 [CHUNK, ngathers], the cache slot where each
    partition's run of each gather starts; dead int32 [1, U], the item's plan row unit_dead (loop units of
    `tuning.loop_tiles` tiles: one or several whole gathers).
    v2: blocks int32 [1, max_blocks], the block id of every logical block; live int32 [1, nchunks], the live rows
    of each chunk (seq_len - chunk start). Attributes a target does not use are None."""

    def __init__(self, slots=None, blocks=None, live=None, dead=None):
        self.slots, self.blocks, self.live, self.dead = slots, blocks, live, dead


def _starts(rows):
    """The partition starts an engine operand of `rows` rows may take (0/32/64/96 up to 32 rows, 0/64 up to 64, else
    0)."""
    return (0, 32, 64, 96) if rows <= 32 else (0, 64) if rows <= 64 else (0,)


def _rows_at(p0, rows, cols, dtype):
    return nl.ndarray((p0 + rows, cols), dtype, buffer=nl.sbuf)[p0:, :]


def _high_rows(rows, cols, dtype):
    """A [rows, cols] SBUF tile from the last partition start an engine operand of `rows` rows may take (96, 64 or
    0), so tiles of as many rows share their partitions. v3+ table rows live there: their per-item DMA then runs on
    DMA engines other than those of partitions 0-31 (partition p: engine (p // 8) % 16, modeled)."""
    return _rows_at(_starts(rows)[-1], rows, cols, dtype)


def dma_rows(rows, cols, dtype, k):
    """A [rows, cols] SBUF tile for a small DMA of the k-th work item of a program's stream (its q rows), from the k-th of
    the partition starts it may take in turn: a DMA runs on the engines of its partitions (partition p: engine
    (p // 8) % 16, modeled), and every gather's packets queue on all 16, so the small DMAs of consecutive items go
    to engines 0 and 4 in turn (8 - 15 serve the table rows, `_high_rows`) instead of all to engine 0
    (Llama-3.1-70B TP8 decode b8 ctx 4K, modeled (trn2 LNC=1): engine 0 held 63.6 us of packets against 46.2 us on
    the others)."""
    starts = [p0 for p0 in _starts(rows) if p0 + rows <= PMAX // 2] or [0]
    return _rows_at(starts[k % len(starts)], rows, cols, dtype)


def _block_selector(block_size, run):
    """v3+: sel [per_gather, CHUNK] float32 (`_high_rows`), sel[k, p] = 1 iff partition p's run (positions run · p ..)
    of a gather lies in its block k; the matmul sel^T @ table expands per-block table entries to per-partition rows on
    TensorE (a DMA would need one 4-byte descriptor per partition)."""
    span = CHUNK * run
    per_gather = max(1, span // block_size)
    sel = _high_rows(per_gather, CHUNK, nl.float32)
    if block_size >= span:
        nisa.memset(dst=sel, value=1.0)
        return sel
    ramp = _high_rows(per_gather, CHUNK, nl.float32)
    nisa.iota(dst=ramp, pattern=[[run, CHUNK]], offset=0, channel_multiplier=-block_size)  # run * p - k * block_size
    half = (block_size - 1) / 2
    nisa.tensor_scalar(dst=ramp, data=ramp, op0=nl.subtract, operand0=half, op1=nl.abs_max, operand1=0.0)
    nisa.tensor_scalar(dst=sel, data=ramp, op0=nl.less_equal, operand0=half)
    return sel


def load_tables(item_tables, items, consts, block_size):
    """The int32 table rows of work items `items` (a range; item_tables [N, max_blocks], HBM: each item's sequence's
    row, `launch_paged`) by one static DMA into one tile, item j's columns j · cols .. (j + 1) · cols: v3+
    (consts.pos set) [per_gather, count · ngathers], entry [k, j · ngathers + c] = block k of item j's gather c
    (`_chunk_table_pattern`); v2 [1, count · max_blocks]. Column j · cols is item j's block 0 on both."""
    max_blocks, count = item_tables.shape[1], len(items)
    stride = max_blocks * items.step
    if consts.pos is None:
        rows_i = nl.ndarray((1, count * max_blocks), nl.int32, buffer=nl.sbuf)
        pattern = [[0, 1], [stride, count], [1, max_blocks]]
    else:
        ngathers = consts.pos.shape[1]
        rows_i = _high_rows(consts.select.shape[0], count * ngathers, nl.int32)
        pattern = _chunk_table_pattern(block_size, ngathers, max_blocks * block_size // ngathers, stride, count)
    nisa.dma_copy(dst=rows_i, src=item_tables.ap(pattern, offset=items.start * max_blocks))
    return rows_i


def item_len_rows(item_lens):
    """Every work item's seq_len on every partition, float32 [PMAX, N] (column w: item w's), from the plan's
    item_lens [N] int32 (HBM): one static DMA that reads the row once per partition, and one conversion."""
    n = item_lens.shape[0]
    lens_i = nl.ndarray((PMAX, n), nl.int32, buffer=nl.sbuf)
    nisa.dma_copy(dst=lens_i, src=item_lens.ap([[0, PMAX], [1, n]], offset=0))
    kv_lens = nl.ndarray((PMAX, n), nl.float32, buffer=nl.sbuf)
    nisa.tensor_copy(dst=kv_lens, src=lens_i)
    return kv_lens


def load_row_pos(row_pos, row0, cols, block_bq, g, heads):
    """The positions of a class's rows as float32 [heads · block_bq · g, cols], loaded once up front: column j holds
    row block j's row_pos[row0 + j · block_bq ..] (j = item index in the class · blocks + block), one per row
    (head, token, q head) of a group of `heads` kv heads; one element-strided DMA (static addresses)."""
    rows = heads * block_bq * g
    pos_i = nl.ndarray((rows, cols), nl.int32, buffer=nl.sbuf)
    nisa.dma_copy(dst=pos_i, src=row_pos.ap([[0, heads], [1, block_bq], [0, g], [block_bq, cols]], offset=row0))
    pos = nl.ndarray((rows, cols), nl.float32, buffer=nl.sbuf)
    nisa.tensor_copy(dst=pos, src=pos_i)
    return pos


def row_bounds(pos, kv_len, causal, sliding_window):
    """RowBounds of the rows of C row blocks at once ([rows, C] tiles, `RowBounds.column`) from the rows' query
    positions pos float32 [rows, B, blocks] (`load_row_pos` columns of B items) and the seq_len of each column's
    item kv_len [rows, B, blocks] (views; C = B · blocks)."""
    rows, items, blocks = pos.shape
    hi = nl.ndarray((rows, items, blocks), nl.float32, buffer=nl.sbuf)
    if causal:
        nisa.scalar_tensor_tensor(dst=hi, data=kv_len, op0=nl.add, operand0=-1.0, op1=nl.minimum, operand1=pos)
    else:
        nisa.tensor_scalar(dst=hi, data=kv_len, op0=nl.add, operand0=-1.0)
    lo = nl.ndarray((rows, items, blocks), nl.float32, buffer=nl.sbuf)
    if sliding_window is None:
        nisa.memset(dst=lo, value=0.0)
    else:
        nisa.tensor_scalar(dst=lo, data=pos, op0=nl.add, operand0=float(1 - sliding_window))
    return RowBounds(lo.reshape((rows, items * blocks)), hi.reshape((rows, items * blocks)))


def slot_indices(src_i, kv_lens, consts, block_size, deads):
    """v3+: the GatherIndex of each of B work items (the cache slot where each partition run starts) from their table
    rows src_i [per_gather, B · ngathers] (a `load_tables` tile) and seq_lens kv_lens [PMAX, B] (float32, every
    partition), one instruction per step for all B; a run at or past seq_len -> the run of position 0 (slot 0 for an
    empty sequence), so garbage table entries never reach a DMA; deads: each item's unit_dead row [1, U] (SBUF)."""
    pos, off, sel = consts.pos, consts.off, consts.select
    per_chunk, cols = src_i.shape
    items = len(deads)
    nchunks = cols // items
    src = _high_rows(per_chunk, cols, nl.float32)
    nisa.tensor_copy(dst=src, src=src_i)
    # first slot = table[seq, 0] * block_size, or 0 when seq_len == 0 (then even entry 0 may be garbage)
    first_ps = nl.ndarray((CHUNK, items), nl.float32, buffer=nl.psum)
    nisa.nc_matmul(dst=first_ps, stationary=consts.first,  # table[seq, 0] of every item on every partition
                   moving=src.reshape((per_chunk, items, nchunks))[:, :, 0])
    first = nl.ndarray((CHUNK, items), nl.float32, buffer=nl.sbuf)
    nisa.tensor_scalar(dst=first, data=kv_lens, op0=nl.greater, operand0=0.0, op1=nl.multiply,
                       operand1=float(block_size))
    nisa.tensor_tensor(dst=first, data1=first, data2=first_ps, op=nl.multiply)
    valid = nl.ndarray((CHUNK, items, nchunks), nl.float32, buffer=nl.sbuf)
    nisa.tensor_tensor(dst=valid, data1=pos.expand_dim(1).broadcast(1, items),
                       data2=kv_lens.expand_dim(2).broadcast(2, nchunks), op=nl.less)
    # slot = valid ? table entry · block_size + in-block offset : first, as a · valid + first · (1 - valid): exact
    # (integers below 2**24 where valid; a garbage entry is a finite int32 times 0)
    fallback = nl.ndarray((CHUNK, items, nchunks), nl.float32, buffer=nl.sbuf)
    nisa.scalar_tensor_tensor(dst=fallback, data=valid, op0=nl.subtract, operand0=1.0, op1=nl.multiply,
                              operand1=first.expand_dim(2).broadcast(2, nchunks))
    nisa.tensor_scalar(dst=fallback, data=fallback, op0=nl.multiply, operand0=-1.0)
    slot = nl.ndarray((CHUNK, items, nchunks), nl.int32, buffer=nl.sbuf)
    per = max(1, PSUM_FMAX // nchunks)  # items a PSUM bank of table entries holds
    for i0 in range(0, items, per):
        part = slice(i0, min(i0 + per, items))
        n = part.stop - i0
        blk_ps = nl.ndarray((CHUNK, n, nchunks), nl.float32, buffer=nl.psum)
        nisa.nc_matmul(dst=blk_ps, stationary=sel, moving=src[:, i0 * nchunks : part.stop * nchunks])  # table entries
        a = nl.ndarray((CHUNK, n, nchunks), nl.float32, buffer=nl.sbuf)
        nisa.scalar_tensor_tensor(dst=a, data=blk_ps, op0=nl.multiply, operand0=float(block_size), op1=nl.add,
                                  operand1=off.expand_dim(1).broadcast(1, n))
        nisa.tensor_tensor(dst=a, data1=a, data2=valid[:, part, :], op=nl.multiply)
        nisa.tensor_tensor(dst=slot[:, part, :], data1=a, data2=fallback[:, part, :], op=nl.add)
    live = _live_rows(consts, kv_lens)
    return [GatherIndex(slots=slot[:, j, :], live=live[:, j, :], dead=dead) for j, dead in enumerate(deads)]


def _live_rows(consts, kv_lens):
    """live int32 [1, B, nchunks] = seq_len - first position of each gather / chunk of B items (kv_lens [PMAX, B])."""
    items, nchunks = kv_lens.shape[1], consts.neg_chunk_start.shape[1]
    live = nl.ndarray((1, items, nchunks), nl.int32, buffer=nl.sbuf)
    nisa.tensor_tensor(dst=live, data1=consts.neg_chunk_start.expand_dim(1).broadcast(1, items),
                       data2=kv_lens[0:1, :].expand_dim(2).broadcast(2, nchunks), op=nl.add)
    return live


def _chunk_table_pattern(block_size, ngathers, span, stride, count):
    """HBM access pattern of `count` table rows `stride` entries apart as [per_gather, count · ngathers]: entry
    [k, j · ngathers + c] = block k of row j's gather c (block_size <= span positions per gather), or [1, count ·
    ngathers]: the block holding gather c (block_size > span)."""
    if block_size <= span:
        per_gather = span // block_size
        return [[1, per_gather], [stride, count], [per_gather, ngathers]]
    return [[0, 1], [stride, count], [1, ngathers * span // block_size], [0, block_size // span]]


def block_indices(blk_i, kv_lens, consts):
    """v2: the GatherIndex of each of B work items (the block id of every logical block) from their table rows blk_i
    [1, B · max_blocks] (a `load_tables` tile; blocks at or past seq_len -> the first block, block 0 for an empty
    sequence) and seq_lens kv_lens [PMAX, B], with the live rows of each chunk, for the select that zeroes dead rows
    of the last live block; one instruction per step for all B."""
    items = kv_lens.shape[1]
    max_blocks = blk_i.shape[1] // items
    blk = nl.ndarray((1, items, max_blocks), nl.float32, buffer=nl.sbuf)
    nisa.tensor_copy(dst=blk, src=blk_i.reshape((1, items, max_blocks)))
    first = nl.ndarray((1, items), nl.float32, buffer=nl.sbuf)
    nisa.tensor_scalar(dst=first, data=kv_lens[0:1, :], op0=nl.greater, operand0=0.0)
    nisa.tensor_tensor(dst=first, data1=first, data2=blk[:, :, 0], op=nl.multiply)
    first_b = first.expand_dim(2).broadcast(2, max_blocks)
    valid = nl.ndarray((1, items, max_blocks), nl.float32, buffer=nl.sbuf)
    nisa.tensor_tensor(dst=valid, data1=consts.block_start.expand_dim(1).broadcast(1, items),
                       data2=kv_lens[0:1, :].expand_dim(2).broadcast(2, max_blocks), op=nl.less)
    nisa.tensor_tensor(dst=blk, data1=blk, data2=valid, op=nl.multiply)  # garbage * 0 = 0: finite int32 values
    nisa.tensor_tensor(dst=blk, data1=blk, data2=first_b, op=nl.subtract)
    nisa.tensor_tensor(dst=blk, data1=blk, data2=valid, op=nl.multiply)
    safe = nl.ndarray((1, items, max_blocks), nl.int32, buffer=nl.sbuf)
    nisa.tensor_tensor(dst=safe, data1=blk, data2=first_b, op=nl.add)
    live = _live_rows(consts, kv_lens)
    return [GatherIndex(blocks=safe[:, j, :], live=live[:, j, :]) for j in range(items)]


def add_band(bounds):
    """v2: set the mask form of bounds [lo, hi] ([rows, C]): centre (lo + hi) / 2 and radius (hi - lo) / 2, float32
    (exact: halves of integers below 2**23)."""
    lo, hi = bounds.lo, bounds.hi
    half_lo = nl.ndarray(lo.shape, nl.float32, buffer=nl.sbuf)
    nisa.tensor_scalar(dst=half_lo, data=lo, op0=nl.multiply, operand0=0.5)
    bounds.center = nl.ndarray(lo.shape, nl.float32, buffer=nl.sbuf)
    nisa.scalar_tensor_tensor(dst=bounds.center, data=hi, op0=nl.multiply, operand0=0.5, op1=nl.add,
                              operand1=half_lo)
    bounds.radius = nl.ndarray(lo.shape, nl.float32, buffer=nl.sbuf)
    nisa.scalar_tensor_tensor(dst=bounds.radius, data=hi, op0=nl.multiply, operand0=0.5, op1=nl.subtract,
                              operand1=half_lo)


def add_comb(bounds, ramp, run, tile_run, window):
    """v3+, runs of run > tile_run slots (C = tile_run chunks a score tile): set bounds' comb form. Score tile j of
    gather u holds chunks C · j + c (c < C) of it; in position order by `tiles.chunk_cols` with C, its column
    i = C · f + c is key u · span + run · f + C · j + c, increasing in i but not by one. Comb index
    u · CHUNK · C + i is compared instead: key >= lo iff it is >= comb_lo[:, j] and key <= hi iff it is
    <= comb_hi[:, j] (`_comb_index`); comb_lo stays None when there is no window (lo = 0: comb index 0)."""
    bounds.span, bounds.tile_keys = CHUNK * run, CHUNK * tile_run
    bounds.comb_hi = _comb_index(bounds.hi, ramp, run, tile_run, tile_run - 1)
    if window is not None:
        bounds.comb_lo = _comb_index(bounds.lo, ramp, run, tile_run, tile_run)


def _comb_index(x, ramp, run, tile_run, cap):
    """[rows, C, phases] float32: for key bounds x [rows, C] (integers, float32) and tile phase j (ramp column j =
    -C' · j, C' = tile_run), C' · f + min(r, cap) with x - C' · j = run · f + r, 0 <= r < run: the first comb index
    at or past x (cap C') or the last at or before it (cap C' - 1). f is the round-to-nearest int32 conversion of
    (x - C' · j - (run - 1) / 2) / run, exact: run is a power of two and the fraction never one half."""
    rows, cols, phases = x.shape[0], x.shape[1], ramp.shape[1]
    shape = (rows, cols, phases)
    half = (run - 1) / 2
    t = nl.ndarray(shape, nl.float32, buffer=nl.sbuf)
    nisa.scalar_tensor_tensor(dst=t, data=ramp[0:rows, :].expand_dim(1).broadcast(1, cols), op0=nl.add,
                              operand0=-half, op1=nl.add, operand1=x.expand_dim(2).broadcast(2, phases))
    f = nl.ndarray(shape, nl.int32, buffer=nl.sbuf)
    nisa.tensor_scalar(dst=f, data=t, op0=nl.multiply, operand0=1.0 / run)
    r = nl.ndarray(shape, nl.float32, buffer=nl.sbuf)  # r - half
    nisa.scalar_tensor_tensor(dst=r, data=f, op0=nl.multiply, operand0=float(-run), op1=nl.add, operand1=t)
    nisa.tensor_scalar(dst=r, data=r, op0=nl.add, operand0=half, op1=nl.minimum, operand1=float(cap))
    out = nl.ndarray(shape, nl.float32, buffer=nl.sbuf)
    nisa.scalar_tensor_tensor(dst=out, data=f, op0=nl.multiply, operand0=float(tile_run), op1=nl.add, operand1=r)
    return out


def tile_mask(kpos, bounds, t0, n):
    """v2: uint8 [rows, n] visibility of key positions [t0, t0 + n): |t0 + f - centre| <= radius."""
    center, radius = bounds.center, bounds.radius
    rows = center.shape[0]
    shifted = nl.ndarray((rows, 1), nl.float32, buffer=nl.sbuf)
    nisa.tensor_scalar(dst=shifted, data=center, op0=nl.add, operand0=float(-t0))
    dist = nl.ndarray((rows, n), nl.float32, buffer=nl.sbuf)
    nisa.tensor_scalar(dst=dist, data=kpos[0:rows, 0:n], op0=nl.subtract, operand0=shifted, op1=nl.abs_max,
                       operand1=0.0)
    mask = nl.ndarray((rows, n), nl.uint8, buffer=nl.sbuf)
    nisa.tensor_scalar(dst=mask, data=dist, op0=nl.less_equal, operand0=radius)
    return mask
