"""Tunable parameters of the paged-attention kernel, in one place (the kernel and its launcher read them here).

    GATHER_RUN    v3+: consecutive cache slots one gather descriptor reads per partition (a run of them lies in
                  one block, so it is contiguous in HBM). Software-DGE descriptors are generated on GpSimd, one
                  per partition run: with one slot per descriptor GpSimd bounds the decode rows (Llama-3.1-8B b8
                  ctx 4K, modeled: 432 us of GpSimd against 372 us of DMA); 4 slots per run cut the descriptors 4x
                  and make a gather of 128 partitions cover one whole KV_TILE (512 positions), the largest run
                  that keeps K and V of two tiles in flight within SBUF (4 x 2 KiB rows per partition each).
                  Clipped to block_size (a run never crosses a block). NeuronCore-v2 loads whole blocks by
                  scalar-offset DMAs and always uses 1.
    KT_LOOKAHEAD  kv heads whose k^T transposes are issued ahead of the current head's score matmuls: in-order
                  TensorE otherwise idles on every head's PSUM -> SBUF evacuation of k^T (Llama-3.1-8B decode,
                  modeled: 8 heads x ~0.95 us per 512-key tile, longer than the tile's DMA). Each costs one more
                  [D, 512] PSUM tile in flight.
    TILE_SPAN     score tiles per span of the runtime tile loops (`paged_attention._pipeline`): a span has one
                  loop of 0 / 1 trips per contiguous run of its tiles, TILE_SPAN (TILE_SPAN + 1) / 2 of them, and
                  a loop body runs its tiles software-pipelined (tile j + 1's scores before tile j's softmax). One
                  tile per loop loses that overlap where a tile's chain is long: inf2 Llama-3.1-8B decode b8 ctx 4K,
                  modeled, 1360 us (24 % MBU) with 1, against 1140 us with every tile pipelined.
"""

from .._tiling import PMAX

GATHER_RUN = 4
KT_LOOKAHEAD = 2
TILE_SPAN = 2


def gather_run(block_size: int, vector_dma: bool) -> int:
    """Slots per partition run of one gather: GATHER_RUN clipped to block_size on v3+ (vector_dma), 1 on v2."""
    return min(GATHER_RUN, block_size) if vector_dma else 1


def position_quantum(block_size: int) -> int:
    """Key positions a table row is padded to a multiple of: one v3+ gather (PMAX partitions x its run), which is
    also a whole number of PMAX-position chunks for v2."""
    return PMAX * gather_run(block_size, True)
