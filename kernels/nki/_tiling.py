"""Tile sizes fixed by the NeuronCore hardware, fp32 limits, and ragged tiling of a dimension.

Kernel-side helper: plain Python evaluated while the kernel is specialized (shapes are compile-time), so it is
valid under the real NKI compiler and the emulator alike. Sources: the NKI ISA reference (`nisa.nc_matmul`
operand limits) and `nl.tile_size` (pmax, gemm_stationary_fmax, gemm_moving_fmax, psum_fmax).
"""

PMAX = 128  # partitions per SBUF/PSUM tile (nl.tile_size.pmax)
STATIONARY_FMAX = 128  # nc_matmul stationary free size M (nl.tile_size.gemm_stationary_fmax)
MOVING_FMAX = 512  # nc_matmul moving free size N on gen2/gen3 (nl.tile_size.gemm_moving_fmax)
PSUM_FMAX = 512  # fp32 elements per partition in one 2 KiB PSUM bank (nl.tile_size.psum_bank_fmax)
FP32_MIN = -3.4028234663852886e38  # the most negative finite fp32 (nki-library FP32_MIN): the mask fill of the
# attention kernels (`_softmax.py` states their online-softmax vocabulary)


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
