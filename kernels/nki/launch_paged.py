"""Host side of the NKI paged-attention kernel: the backend's `paged_attention`, `unsupported` and `traceable` (the
launcher contract of `nkilab.kernels.ops._op`), and the static-shape work plan.

`paged_attention` first builds a *work plan* from the runtime metadata (query_start_loc, seq_lens), the way
vLLM builds attention metadata on the host: the query tokens are cut into work items of `rows` (BQ)
consecutive tokens of one sequence, so one item = one (sequence, query tile). Every plan array has a shape
fixed by compile-time sizes only (T_total, num_seqs, BQ), never by the metadata values:

    num_items = (T_total + num_seqs * (BQ - 1)) // BQ     an upper bound of sum_i ceil(q_len_i / BQ)
    item_seq  [num_items] int32      sequence of the item (padding items: 0)
    item_q0   [num_items] int32      first q row the item loads; its BQ-row window stays inside [0, T_total)
    row_pos   [num_items, BQ] int32  position of each loaded row's query in its sequence, -1 if not the item's
    row_dst   [num_items, BQ] int32  output row of each loaded row, -1 = not written (oob-skipped store)

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
from .paged_attention import paged_attention_kernel
from .paged_attention.tuning import slot_bytes, table_positions

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


def rows_per_item(t_total: int, num_seqs: int, group: int) -> int:
    """BQ: query tokens per work item, from compile-time sizes only.

    The mean q_len (T_total / num_seqs) capped so the item's rows (BQ tokens x `group` query heads of one kv
    head) fill at most PMAX partitions: decode batches get BQ = 1 (no padded rows), prefill gets full tiles.
    """
    return max(1, min(PMAX // group, t_total // max(num_seqs, 1)))


def work_plan(query_start_loc, seq_lens, *, t_total: int, rows: int):
    """The static-shape work plan (module docstring) for `rows` query tokens per item.

    Returns:
        (item_seq [N], item_q0 [N], row_pos [N, rows], row_dst [N, rows]) int32, N = num_items.
    """
    starts = np.asarray(query_start_loc, dtype=np.int64)
    lens = np.asarray(seq_lens, dtype=np.int64)
    num_seqs = lens.shape[0]
    num_items = (t_total + num_seqs * (rows - 1)) // rows
    item_seq = np.zeros(num_items, np.int32)
    item_q0 = np.zeros(num_items, np.int32)
    row_pos = np.full((num_items, rows), -1, np.int32)
    row_dst = np.full((num_items, rows), -1, np.int32)
    w = 0
    for i in range(num_seqs):
        lo, hi = int(starts[i]), int(starts[i + 1])
        first_pos = int(lens[i]) - (hi - lo)  # queries are the sequence's last q_len positions
        for s in range(lo, hi, rows):
            q0 = min(s, t_total - rows)
            tokens = q0 + np.arange(rows)
            mine = (tokens >= s) & (tokens < min(s + rows, hi))
            item_seq[w], item_q0[w] = i, q0
            row_pos[w, mine] = first_pos + tokens[mine] - lo
            row_dst[w, mine] = tokens[mine]
            w += 1
    return item_seq, item_q0, row_pos, row_dst


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
    rows = rows_per_item(t_total, len(seq_lens), hq // hkv)
    plan = work_plan(query_start_loc, seq_lens, t_total=t_total, rows=rows)
    args = (q, key_cache, value_cache, padded_block_tables(block_tables, block_size, slot_bytes(key_cache)),
            np.asarray(seq_lens, dtype=np.int32), *plan)
    kwargs = dict(scale=float(scale), causal=bool(causal), sliding_window=sliding_window,
                  softcap=None if softcap is None else float(softcap))
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
