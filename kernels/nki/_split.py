"""Filling the partitions when there are few rows: each row is cut into equal pieces, one per partition.

Element-wise kernels put rows (tokens) on partitions; a decode step has 1-32 tokens, which would leave most of the
128 lanes of VectorE/ScalarE idle while each lane walks a long row. Cutting every row into k equal pieces gives
rows x k partition rows of width / k elements each: the same HBM bytes (each piece is a contiguous run), k times
fewer elements per lane. k divides the row's count of units (heads for rope, elements for silu_mul), so every
piece has the same width and a tile of whole rows is one access pattern.

Kernel-side helper: plain Python evaluated while the kernel is specialized (shapes are compile-time).
"""

from ._tiling import PMAX


def pieces_per_row(rows, units, max_piece, min_piece, min_tiles=1):
    """k: how many equal pieces each of `rows` rows of `units` units is cut into.

    Args:
        rows: rows of the problem (tokens), >= 1.
        units: units per row (heads, or elements), >= 1; k divides it.
        max_piece: most units a piece may hold (an SBUF budget); met whenever a divisor allows it.
        min_piece: fewest units a piece should hold (DMA runs shorter than a descriptor's worth of bytes cost as
            much as a full one); a row with fewer units than that is not cut.

    Returns:
        the smallest divisor k <= PMAX of `units` with units / k <= max_piece that fills the partitions
        (rows x k >= PMAX), else the largest such divisor (most partitions); only divisors leaving pieces of at
        least min_piece units count, except k = 1. Example: pieces_per_row(8, 32, 32, 1) -> 16 (8 x 16 = 128).
    """
    divisors = [k for k in range(1, min(units, PMAX) + 1) if units % k == 0 and (k == 1 or units // k >= min_piece)]
    fitting = [k for k in divisors if units // k <= max_piece] or divisors[-1:]
    for k in fitting:
        if rows * k >= PMAX * min_tiles:
            return k
    return fitting[-1]
