"""Tunable parameters of the paged-attention kernel, in one place (the kernel and its launcher read them here).

    GATHER_BYTES  v3+: bytes of one cache (K or V) one gather reads per partition: partition p reads a run of
                  consecutive slots of one block (contiguous in HBM), one software-DGE descriptor per run, and
                  descriptors are generated on GpSimd. With one slot per descriptor GpSimd bounds the decode rows
                  (Llama-3.1-8B b8 ctx 4K, modeled: 432 us of GpSimd against 372 us of DMA). 8 KiB is the 4-slot
                  run of Llama-3.1-8B's 2 KiB rows, the largest that keeps K and V of two gathers in flight within
                  SBUF with the rest of the kernel (32 KiB per partition); smaller rows get longer runs, up to one
                  score tile's chunks (`score_run`: 8 slots, Qwen2.5-7B's 1 KiB rows) and GATHER_TILES of them
                  (Llama-3.1-70B TP8's 256-byte rows and its fp8 cache's 128-byte ones: 16 slots), longer while
                  under PACKET_BYTES a partition, so one gather spans one score tile or several (`gather_run`).
    GATHER_TILES  v3+: score tiles (`score_run` chunks each) one gather's runs may span whatever they read per
                  partition; PACKET_BYTES: bytes per partition below which they may span more. A gather of one or
                  two score tiles lets them start soon after it lands, and two halve GpSimd's descriptors against
                  one; under ~2 KiB per partition the 16 DMA engines idle between packets (the model's 600 ns packet
                  setup). Llama-3.1-70B TP8 decode b8 ctx 4K, modeled (trn2 LNC=1): 53.3 % MBU with 32-slot runs
                  (one 4096-key gather per sequence), 56.7 % with 16 (two score tiles a gather), 55.5 % with 8 (one);
                  its fp8 cache (128-byte rows): 29.0 % with 16, 28.2 % with 32. Tried and not kept (2026-12-04,
                  bf16 row): 32-slot runs whose four 1024-key tiles run side by side on PE column tiles (8 rows
                  copied into 32-row tiles, one online-softmax state per tile, merged at the store) cut ScalarE to
                  23 us and GpSimd to 15 us, but modeled 48.3 % (96 us): one gather per sequence serialises the
                  sequences (each item's small metadata DMAs queue behind the previous item's 1 MiB gathers on
                  every DMA engine) and leaves a ~20 us tail after the last gather; 16-slot runs, two tiles side by
                  side: 53.9 %.
    KEY_MAJOR     v3+ decode items whose kv heads stack in one group (`key_major`): score tiles key-major, s^T [keys,
                  T · rows] over a whole gather (`keymajor.py`), when the rows times the gather's T chunks fit one
                  PSUM bank of fp32 scores. Row-major tiles [rows, n] leave 128 - rows partitions idle in every mask
                  and exp (and stacked heads transpose s^T back and p forth): Llama-3.1-70B
                  TP8 decode b8 ctx 4K (g = 8), modeled (trn2 LNC=1): ScalarE's 32 exps [8, 1024] 27 us and
                  VectorE's range_selects 17 us of an 81.7 us step (56.7 % MBU); key-major 77.8 us (59.6 %), 65.7
                  us (70.6 %) with the batched item setup, held-back stores and small-DMA placement of `_pipeline`,
                  `items.py` and `index.dma_rows`. Stacked heads (one group): Llama-3.1-8B decode b8 ctx 4K 86.1 ->
                  87.0 %, its mixed step of one 512-token chunk and 31 decodes at 4K 1.685 -> 1.446x the useful
                  roofline (the decodes' s^T back-transposes and p^T transposes go).
    KT_BANKS      key-major tiles (`keymajor.transposes`): PSUM banks of a gather's k^T transposed ahead of the previous
                  tile's softmax step; the rest are transposed when evacuated. Four hold Llama-3.1-8B's 8 heads x 4
                  chunks (bf16); its int8 cache (8 chunks a gather, dequantized to bf16) needs eight, more than PSUM
                  holds with the rest of the step.
    TABLE_BYTES   bytes per partition of one DMA of several work items' table rows (`items.table_batches`; their
                  gather indices are computed together, `items.prepare`): one DMA and one instruction per index step
                  for the batch, instead of a scalar-offset DMA and a chain of ~10 instructions per item.
    STORE_BYTES   bytes per partition of finished items' output rows held back for their stores (`items.Stores`):
                  a store's packets between two gathers hold up every later gather on all 16 DMA engines (the model's
                  per-engine queues), so stores go out after the gathers. Llama-3.1-70B TP8 decode b8 ctx 4K,
                  modeled (trn2 LNC=1): 72.7 -> 69.7 us.
    MAX_PAD_SHARE the launcher pads a table row to a whole gather (`table_positions`); a longer run is taken only
                  while the padding stays within this share of the row (padded keys cost gathers and score tiles
                  that earn nothing).
    KT_LOOKAHEAD  kv heads whose k^T transposes are issued ahead of the current head's score matmuls: in-order
                  TensorE otherwise idles on every head's PSUM -> SBUF evacuation of k^T (Llama-3.1-8B decode,
                  modeled: 8 heads x ~0.95 us per 512-key tile, longer than the tile's DMA). Each costs one more
                  [D, 512] PSUM tile in flight.
    SCORE_BANKS   PSUM banks of fp32 scores (KV_TILE keys each) one score tile spans where a gather holds more keys
                  than one bank (runs longer than PSUM_FMAX // PMAX slots: Llama-3.1-70B TP8, Qwen2.5-7B): the
                  online-softmax step (mask, running max and sum, p^T evacuation, acc rescale; ~6 fixed-cost
                  VectorE / ScalarE instructions whatever the row count) then serves that many banks' keys.
                  Llama-3.1-70B TP8 decode b8 ctx 4K, modeled (trn2 LNC=1, 8-slot runs): 8 rows a tile, 48.5 % MBU
                  with 1 bank, 55.5 % with 2. More banks would not fit PSUM with the next tile's scores in flight (8
                  banks).
    ITEM_BLOCKS   row blocks (PMAX rows of one kv head each: Llama-3.1-8B, 32 tokens x 4 query heads) of one prefill
                  or chunk work item (`launch_paged.rows_per_item`): the blocks' groups share each gather of the
                  item's keys and k^T, so a chunk's context is gathered once per ITEM_BLOCKS blocks. Llama-3.1-8B
                  mixed step, one 512-token chunk + 31 decodes at 4K, modeled (trn2 LNC=1): 1.91x the useful
                  roofline with 1, 1.68x with 2, 1.88x with 4, 2.22x with 8 (fewer, longer chunk loop bodies
                  overlap worse with the decode items' DMA-bound ones); each block keeps its q^T and online-softmax
                  state in SBUF (~768 B per partition and kv head group).
    TILE_SPAN     units (`loop_tiles`: the score tiles of one gather) per span of the runtime tile loops
                  (`paged_attention._pipeline`): a span has one loop of 0 / 1 trips per contiguous run of its
                  units, TILE_SPAN (TILE_SPAN + 1) / 2 of them, and a loop body runs its tiles software-pipelined (tile j + 1's scores before tile j's softmax). One
                  tile per loop loses that overlap where a tile's chain is long: inf2 Llama-3.1-8B decode b8 ctx 4K,
                  modeled, 1360 us (24 % MBU) with 1, against 1140 us with every tile pipelined.
"""

from .._dtypes import itemsize
from .._tiling import PMAX, PSUM_FMAX

GATHER_BYTES = 8 * 1024
GATHER_TILES = 2
PACKET_BYTES = 2 * 1024
MAX_PAD_SHARE = 1 / 8
KT_LOOKAHEAD = 2
SCORE_BANKS = 2
BANK_CHUNKS = PSUM_FMAX // PMAX  # gather chunks (PMAX keys each) per PSUM bank of fp32 scores
ITEM_BLOCKS = 2
TILE_SPAN = 2
KEY_MAJOR = True
KT_BANKS = 4
TABLE_BYTES = 4096
STORE_BYTES = 16 * 1024


def slot_bytes(cache):
    """Bytes of one slot (Hkv * D elements) of a [num_blocks, block_size, Hkv, D] cache: 4-, 2- or 1-byte (fp8,
    int8) elements."""
    return cache.shape[2] * cache.shape[3] * itemsize(cache.dtype)


def score_run(run: int, heads: int = 1) -> int:
    """Chunks (PMAX keys each) of a gather of `run`-slot runs whose columns interleave in one score tile
    (`tiles.chunk_cols`): the run, up to SCORE_BANKS PSUM banks of scores (BANK_CHUNKS chunks a bank), one
    bank for groups of several stacked kv heads (`heads`: their s^T and o^T PSUM tiles and the k^T lookahead leave
    no room; Qwen2.5-7B decode b8 ctx 4K, modeled (trn2 LNC=1), 79.4 % MBU with one bank, 75.9 % with two); a
    score tile holds max(PSUM_FMAX, PMAX · score_run) keys."""
    return min(run, (SCORE_BANKS if heads == 1 else 1) * BANK_CHUNKS)


def key_major(groups: int, bq: int, rows: int, run: int, positions: int, vector_dma: bool, row_scaled: bool) -> bool:
    """True where a class's score tiles are key-major (KEY_MAJOR): v3+ (vector_dma) decode items (BQ = 1) whose kv
    heads stack in one group of `rows` rows whose scores take no per-row transform (row_scaled: a softcap's tanh, or
    fp8 k scales per head, precede the mask on row-major tiles), with gathers of runs of at least PSUM_FMAX // PMAX
    slots (a tile is one gather, its chunk t holding keys gs + run · p + t: `keymajor.Bounds`; shorter runs make a
    gather step of several gathers), `run` chunks of a gather fitting one PSUM bank of fp32 scores (rows x run <=
    PSUM_FMAX) and the range_select comb index rows · position exact in fp32 (below 2**24) for every one of the row's
    `positions`."""
    return (KEY_MAJOR and vector_dma and groups == 1 and bq == 1 and not row_scaled and run * PMAX >= PSUM_FMAX
            and rows * run <= PSUM_FMAX and rows * positions < 2 ** 24)


def max_run(block_size: int, row_bytes: int) -> int:
    """Longest v3+ run of slots per partition: the largest power of two <= block_size and GATHER_BYTES // row_bytes
    (row_bytes: Hkv * D * itemsize of one cache slot), at least 1, and no longer than GATHER_TILES score tiles'
    chunks (`score_run`) while that run reads at least PACKET_BYTES per partition. block_size is a power of two."""
    cap = GATHER_TILES * SCORE_BANKS * BANK_CHUNKS  # GATHER_TILES score tiles of one stacked kv head
    run = 1
    while run * 2 <= min(block_size, GATHER_BYTES // row_bytes) and (run < cap or run * row_bytes < PACKET_BYTES):
        run *= 2
    return run


def gather_run(block_size: int, row_bytes: int, positions: int, vector_dma: bool) -> int:
    """Slots per partition run of one gather: on v3+ (vector_dma) the largest power of two <= max_run whose gather
    (PMAX runs) divides the table row's `positions` (a multiple of PMAX); 1 on v2 (scalar-offset block DMAs)."""
    if not vector_dma:
        return 1
    run = max_run(block_size, row_bytes)
    while positions % (PMAX * run):
        run //= 2
    return run


def loop_tiles(block_size: int, row_bytes: int, positions: int) -> int:
    """Score tiles (PSUM_FMAX key positions) per unit of the runtime tile loops (TILE_SPAN units a span): one v3+
    gather of PMAX runs (`gather_run`), at least one tile. The same on every target, so the launcher's plan
    (tile_trips) does not depend on it; on v2 a unit's tiles are gathered one by one."""
    return max(1, PMAX * gather_run(block_size, row_bytes, positions, True) // PSUM_FMAX)


def table_positions(needed: int, block_size: int, row_bytes: int) -> int:
    """Key positions the launcher pads a table row of `needed` positions to: a whole number of gathers of the
    longest run (`max_run`) whose padding stays within MAX_PAD_SHARE of the row (runs of up to 4 slots always: a
    gather of them spans at most one 512-key score tile)."""
    run = max_run(block_size, row_bytes)
    while True:
        span = PMAX * run
        padded = -(-needed // span) * span
        if run <= 4 or padded - needed <= needed * MAX_PAD_SHARE:
            return padded
        run //= 2
