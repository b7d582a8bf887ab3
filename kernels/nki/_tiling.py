"""Tile sizes fixed by the NeuronCore hardware, and ragged tiling of a dimension.

Kernel-side helper: plain Python evaluated while the kernel is specialized (shapes are compile-time),
so it is valid under the real NKI compiler and the emulator alike. Sources (tags defined in
`nkilab.harness.emulator`): S-ISA nc_matmul, S-TILE and S-NL `nl.tile_size`.
"""

PMAX = 128  # partitions per SBUF/PSUM tile (nl.tile_size.pmax)
STATIONARY_FMAX = 128  # nc_matmul stationary free size M (nl.tile_size.gemm_stationary_fmax)
MOVING_FMAX = 512  # nc_matmul moving free size N on gen2/gen3 (nl.tile_size.gemm_moving_fmax)
PSUM_FMAX = 512  # fp32 elements per partition in one 2 KiB PSUM bank (nl.tile_size.psum_bank_fmax)
FP32_MIN = -3.4028234663852886e38  # mask fill: the most negative finite fp32 (nki-library FP32_MIN)


def tiles(total, size):
    """Split `range(total)` into consecutive tiles of at most `size` elements.

    Args:
        total: extent of the dimension (compile-time int).
        size: tile size (compile-time int > 0).

    Returns:
        list of (start, length) pairs; every length is `size` except a ragged last one.
        Example: tiles(300, 128) -> [(0, 128), (128, 128), (256, 44)].
    """
    return [(start, min(size, total - start)) for start in range(0, total, size)]
