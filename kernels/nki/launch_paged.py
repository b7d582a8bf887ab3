"""Host side of the NKI paged-attention kernel: the backend's `paged_attention`, `unsupported` and `traceable` (the
launcher contract of `nkilab.kernels.ops._op`), and the work plan.

`paged_attention` first builds a *work plan* from the runtime metadata (query_start_loc, seq_lens), the way
vLLM's attention metadata builders do on the host (they split decodes from prefills the same way): the query
tokens are cut into work items of consecutive tokens of one sequence, one item = one (sequence, query tile), in two
classes, each with its own rows per item (BQ):

    decode items   one per sequence with q_len == 1, BQ = 1 (its g query heads; all kv heads stack in one group)
    prefill items  the other sequences' tokens in tiles of BQ = `rows_per_item` (mean q_len, capped to a few
                   row blocks that fit the partitions), the last tile of a sequence padded

    item_seq  [N] int32      sequence of the item; the kernel gets its sequence's (padded) block table row and
                             seq_len instead: item_tables [N, max_blocks'] and item_lens [N], one static DMA each
                             for many items (a runtime sequence index would cost a dependent DMA per item)
    item_q0   [N] int32      first q row the item loads; its BQ-row window stays inside [0, T_total)
    row_pos   [R] int32      per item its BQ rows: position of each loaded row's query in its sequence, -1 if not
                             the item's (R = sum of count * BQ over the classes)
    row_dst   [R] int32      output row of each loaded row, -1 = not written (oob-skipped store)
    tile_live [N, T] int32   1 iff some row of the item sees a key of score tile j (KV_TILE positions): the trip
                             count of the kernel's runtime loop over that tile, so each item runs its own tiles
    unit_dead [N, U] int32   1 for the loop unit holding the item's last key with positions after it
                             (`unit_dead`): the trip count of the loop that zeroes dead cache rows of its gathers
    classes   ((count, BQ), (count, BQ))   compile-time: decode then prefill items, in plan order

The item counts are batch metadata (how many decodes, how many prefill tiles), as in vLLM's builders: a kernel
compiled for one composition serves every batch with the same counts. T = ceil(max_blocks' * block_size /
KV_TILE) and the array shapes otherwise follow compile-time sizes (T_total, num_seqs, max_blocks).

Block tables are padded with -1 columns to a whole number of gathers (`tuning.table_positions`; a static reshape: the
kernel neutralises every entry past a sequence's live blocks anyway).
"""

from __future__ import annotations

import numpy as np

from nkilab.kernels._adapter import numpy_dtype
from nkilab.reference.kv_quant import storage_dtype

from ._launch import EMPTY_REASON, dtype_reason, launch, neuron_target
from .launch_kv_cache import check_target_format
from ._tiling import PMAX
from .paged_attention import paged_attention_kernel, span_runs
from .paged_attention.index import KV_TILE
from .paged_attention.tuning import ITEM_BLOCKS, TILE_SPAN, loop_tiles, slot_bytes, table_positions

MAX_HEAD_DIM = PMAX  # D is the contraction (partition) dim of q @ k^T
MAX_SLOTS = 1 << 24  # slot and block indices go through fp32 index math on device: exact below 2**24


def paged_attention(q, key_cache, value_cache, block_tables, seq_lens, query_start_loc, *, scale, causal=True,
                    sliding_window=None, softcap=None, target: str | None = None, kv_cache_dtype: str = "auto",
                    k_scale=None, v_scale=None, k_scale_cache=None, v_scale_cache=None):
    """Paged attention (`nkilab.kernels.paged_attention`) of q [T_total, Hq, D] over the caches (quantized per
    kv_cache_dtype, scales as the public API's); returns [T_total, Hq, D] q.dtype."""
    check_target_format(kv_cache_dtype, target)
    if q.shape[0] == 0:
        return np.zeros(q.shape, q.dtype)
    if q.shape[1] // key_cache.shape[2] > PMAX:
        raise ValueError(f"q: {q.shape[1] // key_cache.shape[2]} query heads per kv head exceed the NKI paged kernel's "
                         f"{PMAX} (one kv head's rows must fit the partitions); use backend 'reference' or 'triton'")
    num_slots = key_cache.shape[0] * key_cache.shape[1]
    if num_slots > MAX_SLOTS:
        raise ValueError(f"key_cache: {num_slots} slots exceed the NKI paged kernel's {MAX_SLOTS} (fp32 index math); "
                         "use backend 'reference' or 'triton'")
    args, kwargs = _kernel_args(q, key_cache, value_cache, block_tables, seq_lens, query_start_loc, scale=scale,
                                causal=causal, sliding_window=sliding_window, softcap=softcap)
    if kv_cache_dtype == "int8":
        args += (k_scale_cache, v_scale_cache)
    kwargs["quant"] = kernel_quant(kv_cache_dtype, k_scale, v_scale, key_cache.shape[2])
    return launch(paged_attention_kernel, *args, target=target, **kwargs)


def kernel_quant(kv_cache_dtype: str, k_scale, v_scale, hkv: int):
    """The kernel's compile-time `quant` (`paged_attention/quant.py`): None, ("fp8", k_scales, v_scales) with Hkv
    floats each, or ("int8",)."""
    if kv_cache_dtype == "auto":
        return None
    if kv_cache_dtype == "int8":
        return ("int8",)
    return ("fp8", *(tuple(float(x) for x in np.broadcast_to(np.asarray(s, np.float32), (hkv,)))
                     for s in (k_scale, v_scale)))


def rows_per_item(q_lens, group: int) -> int:
    """BQ of the prefill items: the mean q_len of the sequences with more than one query token, capped so a row
    block (its tokens x `group` query heads of one kv head) fills at most PMAX partitions, in up to
    `tuning.ITEM_BLOCKS` whole row blocks (their groups share the item's gathers); 1 without any."""
    prefill = [int(n) for n in q_lens if n > 1]
    if not prefill:
        return 1
    mean = sum(prefill) // len(prefill)
    block = max(1, min(PMAX // group, mean))
    return block * max(1, min(ITEM_BLOCKS, mean // block))


def work_plan(query_start_loc, seq_lens, *, t_total: int, rows: int, positions: int, causal: bool = True,
              sliding_window: int | None = None):
    """The work plan (module docstring): decode items, then prefill items of `rows` tokens; `positions` key
    positions per table row (the padded table's max_blocks' * block_size).

    Returns:
        (item_seq [N], item_q0 [N], row_pos [R], row_dst [R], tile_live [N, T]) int32 and classes
        ((decode items, 1), (prefill items, rows)).
    """
    starts = np.asarray(query_start_loc, dtype=np.int64)
    lens = np.asarray(seq_lens, dtype=np.int64)
    q_lens = np.diff(starts)
    decodes = [i for i in range(lens.shape[0]) if q_lens[i] == 1]
    prefills = [i for i in range(lens.shape[0]) if q_lens[i] > 1]
    items = [(i, int(starts[i]), 1) for i in decodes]  # (sequence, first token, tokens) of each item
    items += [(i, s, min(rows, int(starts[i + 1]) - s)) for i in prefills for s in range(starts[i], starts[i + 1], rows)]
    item_seq = np.array([i for i, _, _ in items], np.int32)
    item_q0 = np.zeros(len(items), np.int32)
    row_pos, row_dst = [], []
    for w, (i, s, n) in enumerate(items):
        bq = 1 if w < len(decodes) else rows
        q0 = min(s, t_total - bq)
        tokens = q0 + np.arange(bq)
        mine = (tokens >= s) & (tokens < s + n)
        item_q0[w] = q0
        row_pos.append(np.where(mine, lens[i] - (starts[i + 1] - tokens), -1))  # queries: the last q_len positions
        row_dst.append(np.where(mine, tokens, -1))
    tile_live = _tile_live(row_pos, lens[item_seq], positions, causal, sliding_window)
    flat = [np.concatenate(x).astype(np.int32) if x else np.zeros(0, np.int32) for x in (row_pos, row_dst)]
    return item_seq, item_q0, *flat, tile_live, ((len(decodes), 1), (len(items) - len(decodes), rows))


def _tile_live(row_pos, item_lens, positions, causal, sliding_window):
    """tile_live [N, T] int32: 1 iff score tile j of item w holds a key one of its rows sees (keys lo .. hi of a row
    at pos: lo = pos - window + 1 or 0, hi = min(pos, seq_len - 1) causal, else seq_len - 1)."""
    starts = np.arange(0, positions, KV_TILE)
    live = np.zeros((len(row_pos), starts.shape[0]), np.int32)
    for w, (pos, seq_len) in enumerate(zip(row_pos, item_lens)):
        pos = pos[pos >= 0]
        if pos.size == 0:
            continue
        hi = np.minimum(pos, seq_len - 1) if causal else np.full(pos.shape, seq_len - 1)
        lo = np.zeros(pos.shape, np.int64) if sliding_window is None else np.maximum(pos - sliding_window + 1, 0)
        seen = hi >= lo
        if seen.any():
            live[w] = (starts <= hi[seen].max()) & (starts + KV_TILE > lo[seen].min())
    return live


def tile_trips(tile_live, span: int, unit: int = 1) -> np.ndarray:
    """The kernel's tile_trips [N, S, V] int32 (U = ceil(T / unit) units of `unit` tiles, `tuning.loop_tiles`;
    S = ceil(U / span), V = len(span_runs(span))): 1 at the run of units (`paged_attention.span_runs`) that is
    exactly item w's live units (those with a live tile) in span m, else 0.

    Raises:
        ValueError: an item's live tiles are not contiguous (work_plan's never are: one key range per item).
    """
    runs = span_runs(span)
    n, t = tile_live.shape
    units = -(-t // unit)
    spans = -(-units // span)
    live_tiles = np.zeros((n, units * unit), np.int32)
    live_tiles[:, :t] = tile_live
    padded = np.zeros((n, spans * span), np.int32)
    padded[:, :units] = live_tiles.reshape(n, units, unit).max(axis=2)
    trips = np.zeros((n, spans, len(runs)), np.int32)
    for w in range(n):
        for m in range(spans):
            live = np.flatnonzero(padded[w, m * span : (m + 1) * span])
            if live.size == 0:
                continue
            if live.size != live[-1] - live[0] + 1:
                raise ValueError(f"tile_live: item {w}'s live tiles {live.tolist()} in span {m} are not contiguous")
            trips[w, m, runs.index((int(live[0]), int(live[-1]) + 1))] = 1
    return trips


def unit_dead(item_lens, positions: int, unit_positions: int) -> np.ndarray:
    """The kernel's unit_dead [N, U] int32 (U = ceil(positions / unit_positions) loop units, `tuning.loop_tiles`):
    1 where unit j of item w holds its sequence's last key with positions after it (0 < seq_len - j *
    unit_positions < unit_positions: the only unit whose gathers can read rows past seq_len), else 0."""
    starts = np.arange(0, positions, unit_positions)
    live = np.asarray(item_lens, np.int64)[:, None] - starts[None, :]
    return ((live > 0) & (live < unit_positions)).astype(np.int32)


def padded_block_tables(block_tables, block_size: int, row_bytes: int) -> np.ndarray:
    """int32 [num_seqs, max_blocks'] with -1 columns appended so max_blocks' * block_size is a whole number of the
    kernel's gathers (`paged_attention.tuning.table_positions`; row_bytes: bytes of one cache slot,
    `tuning.slot_bytes`, which sets the gather's run)."""
    table = np.asarray(block_tables, dtype=np.int32)
    extra = table_positions(table.shape[1] * block_size, block_size, row_bytes) // block_size - table.shape[1]
    if extra == 0:
        return np.ascontiguousarray(table)
    return np.concatenate([table, np.full((table.shape[0], extra), -1, np.int32)], axis=1)


def _kernel_args(q, key_cache, value_cache, block_tables, seq_lens, query_start_loc, *, scale, causal,
                 sliding_window, softcap):
    t_total, hq, _ = q.shape
    block_size, hkv = key_cache.shape[1], key_cache.shape[2]
    row_bytes = slot_bytes(key_cache)
    table = padded_block_tables(block_tables, block_size, row_bytes)
    positions = table.shape[1] * block_size
    rows = rows_per_item(np.diff(np.asarray(query_start_loc)), hq // hkv)
    *plan, tile_live, classes = work_plan(query_start_loc, seq_lens, t_total=t_total, rows=rows, positions=positions,
                                          causal=bool(causal), sliding_window=sliding_window)
    unit = loop_tiles(block_size, row_bytes, positions)
    lens = np.asarray(seq_lens, dtype=np.int32)
    item_seq, *rest = plan
    item_lens = lens[item_seq]
    args = (q, key_cache, value_cache, np.ascontiguousarray(table[item_seq]), item_lens, *rest,
            tile_trips(tile_live, TILE_SPAN, unit), unit_dead(item_lens, positions, unit * KV_TILE))
    kwargs = dict(scale=float(scale), causal=bool(causal), sliding_window=sliding_window,
                  softcap=None if softcap is None else float(softcap), classes=classes)
    return args, kwargs


def unsupported(**problem) -> str | None:
    """Why the NKI paged-attention kernel cannot run `problem` (None when it can); keys: head_dim, block_size, dtype,
    sliding_window, softcap (both supported), kv_cache_dtype, empty."""
    if problem.get("empty"):
        return EMPTY_REASON
    head_dim, block_size, dtype = problem.get("head_dim"), problem.get("block_size"), problem.get("dtype")
    if reason := dtype_reason(dtype):
        return reason
    if str(problem.get("kv_cache_dtype", "auto")).startswith("fp8") and str(dtype) == "float32":
        return "an fp8 cache with float32 q (TensorE pairs float32 only with float32; use bfloat16 / float16 q)"
    if head_dim is not None and head_dim > MAX_HEAD_DIM:
        return f"head_dim {head_dim} > {MAX_HEAD_DIM}"
    if block_size is not None and block_size & (block_size - 1):
        return f"block_size {block_size} is not a power of two (KV chunks of {PMAX} positions split into blocks)"
    return None


def traceable(problem: dict, target: str | None):
    """(kernel, args, kwargs) of paged attention at `problem`'s shapes for trace mode on `target`: zero float data,
    real index metadata (each sequence's blocks laid out one after another).

    problem keys: num_seqs, q_len (or q_lens), context (or seq_lens), hq, hkv, head_dim, block_size, dtype,
    sliding_window, softcap, scale, kv_cache_dtype (fp8: unit per-tensor scales; int8: zero scale caches). `target` must be a Neuron target; the kernel's v2 / v3+ gather branch follows
    the target the trace runs on (`_launch.trace`).
    """
    neuron_target(target)
    dtype = numpy_dtype(str(problem.get("dtype", "bfloat16")))
    hkv, d, bs = problem["hkv"], problem["head_dim"], problem["block_size"]
    num_seqs = problem["num_seqs"]
    q_lens = np.asarray(problem.get("q_lens") or [problem.get("q_len", 1)] * num_seqs, dtype=np.int32)
    seq_lens = np.asarray(problem.get("seq_lens") or [problem["context"]] * num_seqs, dtype=np.int32)
    blocks = -(-seq_lens // bs)
    num_blocks = int(blocks.sum()) + 1
    table = np.full((num_seqs, int(blocks.max())), -1, np.int32)
    start = 0
    for i, n in enumerate(blocks.tolist()):
        table[i, :n] = np.arange(start, start + n)
        start += n
    query_start_loc = np.concatenate([[0], np.cumsum(q_lens)]).astype(np.int32)
    q = np.zeros((int(query_start_loc[-1]), problem["hq"], d), dtype)
    kv_dtype = problem.get("kv_cache_dtype") or "auto"
    cache = np.zeros((num_blocks, bs, hkv, d), storage_dtype(kv_dtype, dtype.name))
    args, kwargs = _kernel_args(q, cache, cache, table, seq_lens, query_start_loc,
                                scale=problem.get("scale") or d**-0.5, causal=problem.get("causal", True),
                                sliding_window=problem.get("sliding_window"), softcap=problem.get("softcap"))
    if kv_dtype == "int8":
        scales = np.zeros((num_blocks, bs, hkv), np.float32)
        args += (scales, scales)
    kwargs["quant"] = kernel_quant(kv_dtype, 1.0, 1.0, hkv)
    return paged_attention_kernel, args, kwargs
