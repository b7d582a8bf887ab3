"""Tunable parameters of the qmatmul kernel, in one place: tile widths, schedule switch, prefetch depth, SBUF budget.

Each value names the hardware limit or the trade-off behind it; DESIGN.md beside this file says how they were chosen.
A value the performance model may sweep is also a keyword of `qmatmul_kernel` (decode_max_m, prefill_sbuf_bytes).
"""

from .._tiling import MOVING_FMAX, STATIONARY_FMAX

N_BLOCK = MOVING_FMAX  # prefill N tile (moving free size), decode store width: 512 fp32 = one 2 KiB PSUM bank
N_SUB = STATIONARY_FMAX  # decode: output channels per matmul (stationary free size <= 128)
DECODE_MAX_M = 16  # largest M run with the weight-stationary decode schedule
DECODE_MAX_M_INT4 = 32  # int4: its prefill pays a dequant op per weight, decode none (DESIGN.md, "Schedule switch")
DECODE_DMA_COLS = 4096  # decode: weight columns per DMA (4 KiB int8 runs per partition: fewer, longer runs)
DECODE_MIN_DMA_COLS = 1024  # decode int8/fp8: weight columns per DMA at least (>= 1 KiB runs per partition)
DECODE_PSUM_BANKS = 4  # decode: PSUM banks of partial sums per DMA block (the rest: transposes, stores)
DECODE_LOOKAHEAD = 2  # decode: weight fetches loaded and converted/unpacked ahead of the one being multiplied
PREFILL_SBUF_BYTES = 160 * 1024  # prefill: SBUF bytes per partition for the resident x^T of one M block, two
# x pieces and (small K) two N tiles of weights; the rest of NeuronCore-v2's 192 KiB holds streamed tiles
X_CHUNK = 2048  # prefill: x columns loaded per DMA for the transposes (a multiple of the 256-column K steps)
PREFILL_PSUM_BANKS = 4  # prefill: M tiles per block, each accumulating one [128, 512] fp32 bank over all of K;
# double-buffered (the next N tile accumulates while this one is scaled and stored) they fill the 8 banks
