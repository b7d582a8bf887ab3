"""Paged attention: one kernel for decode, prefill over a cached prefix, chunked prefill and mixed batches.

    out[t, h] = softmax_j(score(q[t, h], k_i[j]) masked) @ v_i[j]    for query token t of sequence i,
    score = c * tanh(scale * q.k / c) with softcap c, else scale * q.k; key j visible iff j < seq_len_i,
    j <= pos(t) when causal, j >= pos(t) - window + 1 with a sliding window; k_i / v_i gathered from the
    paged caches through block_tables[i].

Algorithm (flash-decoding style online softmax, words as in `_softmax.py`; loop bounds are compile-time sizes but
for one runtime loop per score tile):
    for each work item w (one sequence i = item_seq[w], BQ query tokens; see launch_paged.work_plan; decode items
    BQ = 1, prefill / chunk items their own BQ):
        the table row block_tables[i] (the plan's item_tables[w], one static DMA for a batch of items) and
        seq_len_i (item_lens[w], every item's on all 128 partitions by one static DMA up front); the row's entry 0,
        block_tables[i, 0], broadcast by a matmul (v3+; v2 reads it)
        per row: visible key range lo = pos - window + 1 (or 0), hi = min(pos, seq_len - 1) (or seq_len - 1)
        gather indices for the whole table row, unused entries NEUTRALISED before any DMA uses them
        rows = (kv head, token, q head); kv heads stacked on partitions in groups of PMAX // (BQ * g) (decode:
        all 8 Llama kv heads in 32 rows), so one mask / exp / rescale instruction serves the whole group; an item
        of more rows (BQ * g > PMAX: chunk items) in row blocks of whole tokens, a group per (kv head, block), all
        sharing the item's gathers and k^T
        for each KV tile of KV_TILE keys (static bound max_blocks * block_size; a score tile is one such tile, or
        several, up to tuning.SCORE_BANKS PSUM banks of scores, in a gather of longer runs), in spans of
        TILE_SPAN units (the tiles of one gather), each span a few runtime loops nl.fori_loop(0, trips, body) of
        0 / 1 trips (a register loaded from the plan's tile_trips), one per contiguous run of the span's units:
        only the run of the item's live tiles runs, so tiles no row of w sees never do:
            gather K, V x (Hkv * D): all kv heads in one DMA (GQA shares the load, read once), then per group:
            s = q_h . k_h^T per head h (PE transposes of k; v3+ stacked heads: their own PE column tiles, or s^T
            per head and chunk transposed back; v2: accumulating matmuls of q^T masked to head h's columns over
            a cleaned K); v3+ decode items whose kv heads stack in one group keep s^T, keys on partitions, a whole
            gather a tile,
            through the mask and the exps (`keymajor.py`, `tuning.key_major`)
            (softcap: x = tanh(s * scale / c)); x = visible ? x : FP32_MIN, with the tile_max (one instruction)
            online softmax: neg_max, rescale, run_sum; acc = acc * rescale + p @ v (stacked heads: o^T per head
            block, one transpose)
        out rows = acc / run_sum, stored through row_dst (rows of other sequences are oob-skipped)
    Issue order is software-pipelined: scores of group g + 1 before the softmax of group g, every item's metadata
    DMAs up front and item w + 1's setup when item w's tiles start, the small per-item DMAs on alternate DMA engines
    (`index.dma_rows`), and the tiles of the decode and prefill items interleaved evenly, so the in-order
    engine queues overlap TensorE, Vector/ScalarE and DMA work. What a tile's loop body declares stays inside it;
    the state it updates (neg_max, run_sum, acc) is declared outside and written in place.
    LNC=2 (`kernel[2]`, trn2): the two cores take alternate work items of each class.

Target branch (one flag, `vector_dma`, set once from nisa.get_nc_version()):
- NeuronCore-v3+ (trn2): KV gathered with `vector_offset` DMAs, each partition reading a run of consecutive slots of
  one block, GATHER_BYTES of them (`tuning.py`: one software-DGE descriptor per run; 4 slots of 2 KiB rows, up to a
  whole block of smaller rows, so one gather of 128 runs serves one or several KV tiles); the table row is loaded
  once ([per-gather block, gather], on the last partitions such a tile may start at, so its DMA does not queue on
  the DMA engines of partitions 0-31 with the other small per-item DMAs: `index._high_rows`) and expanded to the
  first slot of every partition's run by a selection matmul. A run at or past seq_len gets the run of the sequence's
  position 0 instead, so garbage table entries never reach a DMA; the run holding seq_len - 1 reaches into dead
  cache (NaN in tests), whose V rows a GpSimd `affine_select` zeroes (dead K rows are hidden keys, masked by
  selection). The transposes of k and p put each score tile's keys in increasing order (`tiles.chunk_cols`), so
  masking is one `range_select` per score tile: bounds per row over positions from range_start, or over comb indices
  when a gather spans several tiles (`index.add_comb`); outputs are scattered with `vector_offset`. The k^T
  transposes run KT_LOOKAHEAD heads ahead of the score matmuls.
- NeuronCore-v2 (inf2, trn1): only scalar dynamic offsets, so KV is loaded per block (one DMA per block with the
  block id as `scalar_offset`; unused table entries replaced by the first block before use). The tail of the
  last live block is dead cache (NaN in tests): V rows past seq_len are replaced with 0 by a GpSimd
  `affine_select` whose offset is a register holding seq_len - chunk start (a select, never a multiply:
  0 * NaN = NaN); K chunks are cleaned of every non-finite element before their transposes (`finite.py`: a v2 PE
  transpose is a matmul with identity that would spread a NaN over the whole tile), dead rows included.
  The score mask is built once per KV tile (shared by all groups) and applied with `select_reduce`; outputs
  are stored per token with `scalar_offset`.

Numerics: scores, neg_max, run_sum and acc in fp32 (PSUM/SBUF); p cast to q's dtype before P @ V. Masked
scores are FP32_MIN; the running max starts at (and is floored at) MAX_FLOOR = -1e30, so neg_max stays finite for
any exp_scale (scale or softcap) below 3e8 and exp(exp_scale * x + neg_max) is exactly 0 for masked x, even before
a row has seen a visible key. Rows that see no key (padding rows only) are never stored.

Non-finite inputs: a NaN / inf in q[t, h] reaches out[t, h] only, on every target (v2: q^T comes straight from
HBM by DMA and p's non-finite entries are zeroed before its PE transpose, both because a v2 transpose is a matmul
with the identity; the row itself stays NaN through run_sum). A NaN / inf in key j of kv head h reaches exactly the
rows of head h that see j: v3+ transposes bit-exactly and masks by selection, and its stacked heads never share a
score matmul (`tiles.scores`); v2 cleans K before its transposes and flags the bad keys back into the visible scores
as NaN (`finite.py`). A NaN in a value row reaches every row of its kv head whose P @ V contracts over it, weight
0 included (0 * NaN, as in the reference's matrix product): the rows of a work item with a row that sees a key of
that score tile (tiles no row sees never run); dead cache rows past seq_len never do (v3+ gathers live slots only,
v2 zeroes them).

Quantized caches (`quant`): fp8 K / V enter TensorE as they are, their scales multiply the fp32 scores and
1 / run_sum; int8 chunks are converted to q's dtype on chip with their per-(token, head) scales — `quant.py`.

Modules: `index.py` (index tiles, sequence metadata, visible ranges, gather indices), `items.py` (the plan in SBUF,
work item setup, held-back stores), `tiles.py` (gathers, scores, the softmax step, output rows), `keymajor.py` (v3+
key-major decode tiles), `finite.py` (v2: non-finite keys), `quant.py` (scale tiles, int8 dequantization),
`tuning.py` (the tunables); this file holds the entry and the pipeline.

Limits: D <= 128; block_size a power of two; num_blocks * block_size < 2**24 (index math in fp32).
Reference: nkilab.reference.paged.paged_attention.
"""

from .._shim import nisa, nki, nl
from .._tiling import PMAX
from .index import CHUNK, KV_TILE, IndexConsts, comb_ramp, item_len_rows, load_row_pos, load_tables, tile_mask
from . import keymajor
from .items import PlanRows, Stores, finish, prepare, setup_item, table_batches
from .quant import per_head_k, row_scales
from .tuning import TILE_SPAN, gather_run, key_major, loop_tiles, score_run, slot_bytes
from .tiles import KvTile, gather_kv, scores, softmax_pv


@nki.jit
def paged_attention_kernel(q, key_cache, value_cache, item_tables, item_lens, item_q0, row_pos, row_dst,
                           tile_trips, unit_dead, k_scale_cache=None, v_scale_cache=None, scale=1.0, causal=True,
                           sliding_window=None, softcap=None, quant=None, classes=()):
    """Paged attention over a work plan.

    Dimensions:  T_total query tokens; Hq = g * Hkv heads; D <= 128; num_seqs x max_blocks table with
                 max_blocks * block_size a multiple of PMAX (the launcher pads it); N work items in classes of
                 (count, BQ) (BQ * g <= PMAX, or whole row blocks of them: `row_blocks`), R = sum of count * BQ
                 plan rows; T = ceil(max_blocks * block_size / KV_TILE) plan tiles.
    Args:        q: [T_total, Hq, D] float32|float16|bfloat16, HBM.
                 key_cache, value_cache: [num_blocks, block_size, Hkv, D], HBM: q.dtype, or fp8 (q bf16 / fp16) or
                 int8 per `quant` (`quant.py`); k_scale_cache, v_scale_cache: int8 only, [num_blocks, block_size,
                 Hkv] float32, HBM.
                 item_tables: [N, max_blocks] int32, HBM: the block table row of each work item's sequence; entries
                 past a sequence's live blocks: any value.
                 item_lens (seq_len of the item's sequence), item_q0: [N] int32; row_pos, row_dst: [R] int32; tile_trips: [N, S, V] int32 0 / 1, HBM
                 (launch_paged.work_plan, launch_paged.tile_trips: S = ceil(T / TILE_SPAN) spans, V =
                 len(span_runs(TILE_SPAN))); one trip at most per (item, span): its live run of tiles.
                 unit_dead: [N, U] int32 0 / 1, HBM (launch_paged.unit_dead; U loop units of `tuning.loop_tiles`
                 tiles): 1 for the unit holding the item's last key with positions after it.
                 scale: score multiplier; causal; sliding_window: None or w >= 1; softcap: None or c > 0;
                 quant: None | ("fp8", k_scales, v_scales) | ("int8",) (`quant.py`);
                 classes: compile-time ((count, BQ), ...): the items in plan order, count consecutive items of BQ
                 rows each per class (launch_paged: decode items of one row, then prefill / chunk items).
    Returns:     out: [T_total, Hq, D], q.dtype, shared HBM.
    Tiling:      rows of one kv head = BQ tokens x g heads; kv heads stacked on partitions in groups of
                 PMAX // rows (decode: all of them); keys in score tiles of KV_TILE positions (gathers of longer
                 runs: up to SCORE_BANKS x KV_TILE, `tuning.score_run`) of CHUNK-key gathers, each span of TILE_SPAN
                 units a few runtime loops of 0 or 1 trips (tile_trips); inside a loop body the scores of the next
                 (tile, group) step are issued before the softmax of this one (in-order engines overlap).
    """
    _check_classes(classes, item_lens.shape[0], row_pos.shape[0])
    out = nl.ndarray(q.shape, q.dtype, buffer=nl.shared_hbm)
    calls, first, row0 = [], 0, 0
    for count, bq in classes:
        if count:
            call = PagedCall(q, key_cache, value_cache, item_tables, out,
                             (scale, causal, sliding_window, softcap), ItemClass(first, count, bq, row0), quant)
            call.quantize(quant, k_scale_cache, v_scale_cache)
            if call.key_major is not None:
                call.key_major = keymajor.Consts(len(call.groups[0]) * call.rows, call.exp_scale)
            calls.append(call)
        first, row0 = first + count, row0 + count * bq
    if not calls:
        return out
    c0 = calls[0]
    consts = IndexConsts(c0.positions, c0.vector_dma, c0.block_size, c0.run)
    _pipeline(calls, consts, (item_tables, item_lens, item_q0, tile_trips, unit_dead), (row_pos, row_dst))
    return out


def _check_classes(classes, num_items, num_rows):
    """ValueError unless `classes` ((count, BQ), ...) covers the plan's N items and R rows exactly."""
    if sum(c for c, _ in classes) != num_items or sum(c * b for c, b in classes) != num_rows:
        raise ValueError(f"classes: {classes!r} must cover the plan's {num_items} items and {num_rows} rows "
                         "(sum of count, sum of count * BQ)")


class ItemClass(nl.NKIObject):
    """Work items first .. first + count - 1, BQ rows each, their plan rows from row0 (compile-time)."""

    def __init__(self, first, count, bq, row0):
        self.first, self.count, self.bq, self.row0 = first, count, bq, row0


class PagedCall(nl.NKIObject):
    """Compile-time facts of one class of work items: the HBM tensors, the options and the tiling they imply.

    items: the ItemClass; bq: its rows per item; g: query heads per kv head; blocks, block_bq: an item's tokens in
    row blocks of block_bq tokens (`row_blocks`: one unless BQ · g > PMAX); rows: rows of one kv head in a row block
    (block_bq · g); groups: tuples of kv heads stacked on the partitions (PMAX // rows heads each), once per row
    block (group_block: the block of each, blocks of one head group consecutive; all share the item's gathers);
    pos_cols, dst_cols: the class's plan rows in SBUF, loaded once up front (`load_rows`, not per item), one column
    per row block of each item (`block_cols`): float32 [rows of a group, count · blocks] query positions
    (`index.load_row_pos`) and int32 [block_bq, count · blocks] output rows (`_load_dst_cols`); positions: key
    positions of a table row (max_blocks · block_size); vector_dma: indirect vector_offset DMAs exist
    (NeuronCore-v3+); exp_scale: scale, or softcap c; quantized caches (`quantize`): k_rows / v_rows, per group the
    fp8 [rows, 1] scale tiles (None: none to apply), scale_rows, the int8 scale caches as [slots, Hkv] rows (None
    otherwise)."""

    def __init__(self, q, key_cache, value_cache, item_tables, out, options, items, quant=None):
        self.q, self.key_cache, self.value_cache, self.out = q, key_cache, value_cache, out
        self.item_tables = item_tables
        self.scale, self.causal, self.window, self.softcap = options
        self.exp_scale = self.scale if self.softcap is None else self.softcap
        self.d, self.hkv, self.block_size = q.shape[2], key_cache.shape[2], key_cache.shape[1]
        self.items, self.bq = items, items.bq
        self.g = q.shape[1] // self.hkv
        self.blocks, self.block_bq = row_blocks(self.bq, self.g)
        self.rows = self.block_bq * self.g
        per_group = max(1, PMAX // self.rows)
        heads = [tuple(range(h0, min(h0 + per_group, self.hkv))) for h0 in range(0, self.hkv, per_group)]
        self.groups = [grp for grp in heads for _ in range(self.blocks)]
        self.group_block = [b for _ in heads for b in range(self.blocks)]
        self.pos_cols = self.dst_cols = None  # `load_rows`
        self.positions = item_tables.shape[1] * self.block_size
        self.vector_dma = nisa.get_nc_version() != nisa.nc_version.gen2  # indirect vector_offset DMA is v3+
        self.run = gather_run(self.block_size, slot_bytes(key_cache), self.positions, self.vector_dma)
        self.key_major = None  # keymajor.Consts where the score tiles are key-major (a whole gather each)
        if key_major(len(self.groups), self.bq, self.hkv * self.g, self.run, self.positions, self.vector_dma,
                     self.softcap is not None or per_head_k(quant)):
            self.key_major = self.rows  # keymajor.Consts once `quantize` has set exp_scale
            self.tile_run = self.run
        else:
            self.tile_run = score_run(self.run, len(self.groups[0]))  # column order of a score tile (`chunk_cols`)
        self.comb_ramp = comb_ramp(self.run, self.tile_run) if self.vector_dma and self.run > self.tile_run else None
        self.tile_keys = max(KV_TILE, CHUNK * self.tile_run)  # key positions of one score tile
        self.gather_step = max(KV_TILE, CHUNK * self.run)  # key positions of one gather_kv (whole score tiles)
        self.unit_tiles = loop_tiles(self.block_size, slot_bytes(key_cache), self.positions)  # tiles a loop unit
        self.zero_bias = None  # v2: [PMAX, 1] float32 zeros, the activation bias of `finite.clean_keys`
        if not self.vector_dma:
            self.zero_bias = nl.ndarray((PMAX, 1), nl.float32, buffer=nl.sbuf)
            nisa.memset(dst=self.zero_bias, value=0.0)
        self.k_rows = self.v_rows = [None] * len(self.groups)
        self.scale_rows = None

    def load_rows(self, row_pos, row_dst):
        """Set pos_cols and dst_cols from the plan's row_pos, row_dst [R] int32 (HBM): two DMAs for the class."""
        cols = self.items.count * self.blocks
        if self.key_major is not None:  # the decode row's position on every key partition
            self.pos_cols = load_row_pos(row_pos, self.items.row0, cols, 1, PMAX, 1)
        else:
            self.pos_cols = load_row_pos(row_pos, self.items.row0, cols, self.block_bq, self.g, len(self.groups[0]))
        self.dst_cols = _load_dst_cols(row_dst, self.items.row0, cols, self.block_bq)

    def block_cols(self, w):
        """The pos_cols / dst_cols columns of item w's row blocks."""
        j0 = (w - self.items.first) * self.blocks
        return range(j0, j0 + self.blocks)

    def quantize(self, quant, k_scale_cache, v_scale_cache):
        """Set the scales of a quantized cache (`quant.py`): fp8 per-tensor k scales fold into scale, per-head ones
        and every v scale become per-group [rows, 1] tiles; int8 scale caches are viewed as [slots, Hkv] rows."""
        if quant is None:
            return
        if quant[0] == "int8":
            num_slots = self.key_cache.shape[0] * self.block_size
            self.scale_rows = [c.reshape((num_slots, self.hkv)) for c in (k_scale_cache, v_scale_cache)]
            return
        k_scales, v_scales = quant[1], quant[2]
        if per_head_k(quant):
            self.k_rows = [row_scales(k_scales, grp, self.rows) for grp in self.groups]
        else:
            self.scale = self.scale * k_scales[0]
            self.exp_scale = self.scale if self.softcap is None else self.softcap
        self.v_rows = [row_scales(v_scales, grp, self.rows) for grp in self.groups]


def row_blocks(bq, g):
    """(blocks, block_bq): an item's BQ tokens in the fewest row blocks of block_bq tokens whose block_bq · g rows
    per kv head fit the partitions.

    Raises:
        ValueError: BQ is not a whole number of such blocks (`launch_paged.rows_per_item`'s always is)."""
    blocks = max(1, -(-bq * g // PMAX))
    if bq % blocks or (bq // blocks) * g > PMAX:
        raise ValueError(f"classes: BQ {bq} with {g} query heads per kv head is not a whole number of row blocks of "
                         f"at most {PMAX} rows")
    return blocks, bq // blocks


def _load_dst_cols(row_dst, row0, cols, block_bq):
    """A class's output rows as int32 [block_bq, cols], loaded once up front: column j holds row block j's
    row_dst[row0 + j · block_bq ..] (j = item index in the class · blocks + block)."""
    dst = nl.ndarray((block_bq, cols), nl.int32, buffer=nl.sbuf)
    nisa.dma_copy(dst=dst, src=row_dst.ap([[1, block_bq], [block_bq, cols]], offset=row0))
    return dst


def span_runs(span):
    """The runtime loops of a span of `span` score tiles: each contiguous run (s, e) of its tiles s .. e - 1
    (0 <= s < e <= span), in plan order: tile_trips[w, m, v] = 1 for the run v that is exactly item w's live tiles in
    span m (an item's live tiles are contiguous), else 0."""
    return [(s, e) for s in range(span) for e in range(s + 1, span + 1)]


def _tiles(call, consts, item, tiles):
    """Score tiles [(t0, n), ...] of a WorkItem, whole gathers of them (a loop unit), every group (the body of a
    runtime loop: what it declares stays inside): per (tile, group) step the KV gather holding the tile (its first
    step, `_gather_step`), the group's scores (PSUM) and the softmax step, step k + 1's scores issued before step
    k's softmax so in-order TensorE overlaps Vector/ScalarE."""
    if call.key_major is not None:
        _key_major_tiles(call, consts, item, [t0 for t0, _ in tiles])
        return
    kvs, kts = {}, {}

    def issue(t0, n, gi):
        if t0 not in kvs:
            kvs.update((kv.t0, kv) for kv in _gather_step(call, consts, item, t0))
        return scores(item.qs[gi], call.groups[gi], kvs[t0].k_chunks, n, call.tile_run, kts.setdefault(t0, {}))

    steps = [(t0, n, gi) for t0, n in tiles for gi in range(len(call.groups))]
    pending = issue(*steps[0])
    for k, (t0, _, gi) in enumerate(steps):
        nxt = issue(*steps[k + 1]) if k + 1 < len(steps) else None
        softmax_pv(pending, item.states[gi], call, gi, item.bounds[call.group_block[gi]], kvs[t0], gi % 2 == 1)
        pending = nxt


def _key_major_tiles(call, consts, item, starts):
    """`_tiles` of a key-major class (`keymajor.py`: one group, a score tile per gather, from each of `starts`):
    the gathers, then per tile its scores and the softmax step, tile j + 1's scores issued before tile j's softmax.
    (Gathering every K of the loop body before its V modeled slower: Llama-3.1-70B TP8 decode b8 ctx 4K, trn2 LNC=1,
    75.6 against 74.6 us.)"""
    kvs = [kv for t0 in starts for kv in _gather_step(call, consts, item, t0)]
    qt, heads = item.qs[0][0], call.groups[0]

    def scores(kv):
        return keymajor.scores(qt, keymajor.transposes(kv.k_chunks, heads, call.d), len(kv.k_chunks), len(heads))

    pending = scores(kvs[0])
    for j, kv in enumerate(kvs):
        nxt = scores(kvs[j + 1]) if j + 1 < len(kvs) else None
        unit = kv.t0 // (call.unit_tiles * KV_TILE)  # the loop unit holding this gather
        keymajor.softmax_pv(pending, item.states[0], call, item.bounds[0], kv, item.index.dead[0:1, unit : unit + 1])
        pending = nxt


def _gather_step(call, consts, item, t0):
    """The KvTiles of the gather step holding position t0 (call.gather_step positions: one score tile of
    call.tile_keys positions, or every score tile of one gather of longer runs), with their v2 masks."""
    g0 = t0 - t0 % call.gather_step
    g_n = min(call.gather_step, call.positions - g0)
    k_chunks, v_chunks, k_bad = gather_kv(call, item.index, g0, g_n)
    kvs, per_tile = [], call.tile_keys // CHUNK
    for j, s0 in enumerate(range(g0, g0 + g_n, call.tile_keys)):
        n = min(call.tile_keys, g0 + g_n - s0)
        cs = slice(j * per_tile, (j + 1) * per_tile)
        mask = None if call.vector_dma else [tile_mask(consts.kpos, bd, s0, n) for bd in item.bounds]
        kvs.append(KvTile(s0, k_chunks[cs], v_chunks[cs], mask, None if k_bad is None else k_bad[cs]))
    return kvs


def _streams(calls):
    """Per class, the (call, w) of this program's work items. LNC=2 (`kernel[2]`): program p of the logical core
    takes each class's items p, p + 2, ... (items write disjoint output rows)."""
    streams = []
    for call in calls:
        items = call.items
        mine = list(range(items.first + nl.program_id(0), items.first + items.count, nl.num_programs(0)))
        if mine:
            streams.append([(call, w) for w in mine])
    return streams


def _pipeline(calls, consts, plan_hbm, rows_hbm):
    """Every span of score tiles of this program's work items, one stream of items per class, the streams' spans
    interleaved evenly (span k of a stream of c spans at fraction (k + 1/2) / c of the issue order), so DMA-bound
    decode tiles run beside TensorE / VectorE-bound prefill tiles in the in-order engine queues. Per stream, item
    k + 1 is set up when item k's spans start (q^T, state; the gather indices and row bounds of a whole batch of items
    at once, `items.prepare`, when its first item is) and k's output rows are computed after its last span, their stores
    held back (`items.Stores`). Up front, the plan (plan_hbm: item_tables, item_lens, item_q0, tile_trips, unit_dead;
    rows_hbm: row_pos, row_dst) in the order the start's critical path needs it, as the DMA queues serve their
    transfers in issue order: item_lens, each stream's first batch of table rows (`index.load_tables`: its gather
    indices wait on them), the rest of the plan (`PlanRows`, `PagedCall.load_rows`), then the other batches' table
    rows. A span is one runtime loop `nl.fori_loop(0, trips, body)` per run of its tiles (`span_runs`), the trips
    (0 / 1) loaded into a register: only the run of the item's live tiles runs, so a sequence runs its own tile
    count, not the longest context's."""
    item_tables, item_lens = plan_hbm[:2]
    lens = item_len_rows(item_lens)
    streams = _streams(calls)
    batches = [table_batches(items, item_tables.shape[1], consts) for items in streams]
    tables = [[load_tables(item_tables, first, consts, call.block_size)] for ((call, _), *_), (first, *_) in
              zip(streams, batches)]
    plan = PlanRows(lens, *plan_hbm[2:])
    for call in calls:
        call.load_rows(*rows_hbm)
    for tabs, ((call, _), *_), (_, *rest) in zip(tables, streams, batches):
        tabs.extend(load_tables(item_tables, items, consts, call.block_size) for items in rest)
    prepared = [{} for _ in streams]

    def setup(si, pos):
        """WorkItem of stream si's item pos, its `table_batches` batch `prepare`d on first use."""
        call, w = streams[si][pos]
        if w not in prepared[si]:
            k = next(k for k, items in enumerate(batches[si]) if w in items)
            prepared[si].update(prepare(call, consts, plan, batches[si][k], tables[si][k]))
        return setup_item(call, consts, plan, w, prepared[si].pop(w))

    spans = plan.spans
    order = sorted(((k + 0.5) / (len(items) * spans), si, k) for si, items in enumerate(streams)
                   for k in range(len(items) * spans))
    ahead = [setup(si, 0) for si in range(len(streams))]
    current, stores = [None] * len(streams), Stores()
    for _, si, k in order:
        pos, m = divmod(k, spans)
        call, w = streams[si][pos]
        if m == 0:
            current[si] = ahead[si]
            if pos + 1 < len(streams[si]):
                ahead[si] = setup(si, pos + 1)
        item, unit = current[si], call.unit_tiles
        starts = range(0, call.positions, KV_TILE)[m * TILE_SPAN * unit : (m + 1) * TILE_SPAN * unit]
        for v, (s, e) in enumerate(span_runs(TILE_SPAN)):
            if e <= -(-len(starts) // unit):
                tiles = [(t0, min(call.tile_keys, call.positions - t0))
                         for t0 in starts[s * unit : e * unit : call.tile_keys // KV_TILE]]
                nl.fori_loop(0, plan.trip(w, m, v),
                             lambda _trip, call=call, item=item, tiles=tiles: _tiles(call, consts, item, tiles))
        if m == spans - 1:
            stores.add(call, finish(call, item))
    stores.flush()
