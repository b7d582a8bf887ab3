"""Quantized matmul on NeuronCores: y[M, N] = x[M, K] @ W[K, N] with W = (q - z) * s.

Schemes: int8 (q int8 [K, N]); int4 (q packed two per byte along K, uint8 [K/2, N], low nibble = even k;
symmetric -8..7 given offset binary, q + 8, or asymmetric 0..15 with zero points z); fp8_e4m3 / fp8_e4m3fn (q fp8 [K, N]); scales s
float32 per output channel [1, N] or per group of G rows along K [K/G, N]; W8A8: x itself fp8 [M, K] with
one float32 scale per token [M, 1] and fp8 per-channel weights.

Two schedules, chosen by M at compile time: decode (`decode.py`, M <= decode_max_m and M·b <= 512 for b groups
per K tile: weights stationary, streamed from HBM once, scales applied to fp32 partial sums) and prefill
(`prefill.py`: x^T stationary and resident per M block, dequantized weights moving, 512-column tiles). Tiling
facts live in `geometry.py`, tunables in `tuning.py`, weight loads and the int4 unpack in `weights.py`; why the
schedules look the way they do is in DESIGN.md beside this file.

Limits: group sizes whose rows per partition tile (G, or G/2 for int4) divide 128 or are a multiple of 128;
K <= MAX_K. The NeuronCore-v2-safe op subset, so the kernel is valid for inf2, trn1, trn2 and trn3; the one
gen3+ op (double-row fp8 matmul, W8A8 e4m3 prefill) sits behind `nisa.get_nc_version()` with the v2 path kept.

Reference: nkilab.reference.matmul.qmatmul.
"""

from .._shim import nisa, nki, nl
from .._tiling import MOVING_FMAX, PMAX
from .decode import decode
from .geometry import Geometry, Operands
from .prefill import prefill
from .tuning import Tuning

MAX_K = 32768  # prefill keeps the bf16 x^T of >= 128 rows of M in SBUF (2K bytes per partition: 64 KiB)
ACCEPTED_OUT = ("float32", "bfloat16", "float16")  # out_dtype values the kernel writes

__all__ = ["qmatmul_kernel", "MAX_K", "ACCEPTED_OUT", "PMAX"]  # PMAX: the K-tile height launch_qmatmul checks


@nki.jit
def qmatmul_kernel(x, w, scales, scales_t, zeros=None, x_scales=None, scheme="int8", group_size=None, symmetric=True,
                   out_dtype="float32", int4_nibbles_as_fp8=True, decode_max_m=None, decode_dma_cols=None,
                   decode_min_dma_cols=None, decode_psum_banks=None, decode_lookahead=None, decode_split_last=None,
                   decode_shift_max_m=None, decode_merge_bytes=None, prefill_sbuf_bytes=None, x_chunk=None,
                   prefill_psum_banks=None):
    """y = x @ ((q - z) * s) for weight-only int8/int4/fp8 and W8A8 fp8.

    Config arguments follow the tensors without a `*` separator: the NKI 0.2-0.6 compiler frontend
    rejects keyword-only parameters; callers pass them by keyword.

    Dimensions:  M rows of x; K contraction (K % G == 0, even for int4, K <= MAX_K); N output channels.
    Args:        x: [M, K] float32|bfloat16|float16, or fp8 for W8A8, HBM.
                 w: int8 [K, N] | uint8 [K/2, N] (int4: nibbles 0..15, symmetric ones offset binary q + 8,
                 the launcher's prepared copy) | float8_e4m3 / float8_e4m3fn [K, N], HBM.
                 scales: float32 [K/G, N] or [1, N] (per channel), HBM.
                 scales_t: the same scales channels first, float32 [N, K/G] (or [N, 1]), HBM: a host-side
                 layout decode loads with the channels on partitions by plain DMAs.
                 zeros: uint8 zero points shaped like scales (int4 asymmetric), else None.
                 x_scales: float32 [M, 1] per-token scales (W8A8), else None.
                 scheme: "int8" | "int4" | "fp8_e4m3" | "fp8_e4m3fn"; group_size: G or None (per channel);
                 symmetric: False for int4 with zero points; out_dtype: one of ACCEPTED_OUT.
                 decode_max_m .. prefill_psum_banks: the tunables (`tuning.TUNABLES`; None = the default
                 for the call's scheme and NeuronCore generation, `tuning.defaults`);
                 int4_nibbles_as_fp8: int4 decode feeds the nibbles to TensorE as fp8 views (True) or
                 converted to bf16 (False: for a TensorE that flushes fp8 subnormals, see Numerics).
    Returns:     y: [M, N] out_dtype, shared HBM.
    Numerics:    x rounded to bf16; quantized values exact in bf16; fp32 PSUM sums; decode applies scales
                 and zero points to fp32 partial sums (int4: nibbles read as fp8 = u · 2^-9 exactly, 2^9
                 folded into the scales, or converted to bf16); prefill group schemes round (q - z) * s to
                 bf16. W8A8 e4m3 prefill on NeuronCore-v3+ multiplies fp8 x fp8 in double-row mode (x^T exact
                 in fp8). The fp8 view of int4 nibbles relies on TensorE taking fp8 subnormals as such (DESIGN.md,
                 "Nibbles as fp8").
    Pseudocode:
        decode:   for n_block (<= 4096 columns, blocks split over LNC programs):
                      for chunk of groups (PSUM slots [128, groups, M] of every 128-channel n_sub fit 4 banks):
                          for k_tile in chunk: w = load(q[k_tile, n_block])  (int4: unpack, view as fp8 or convert)
                              for n_sub: P[n_sub] += w[:, n_sub]^T · xm[k_tile]
                          yT[n_sub] (+)= Σ_g sT[n_sub, g] · P[n_sub, g]  -  (z·s)[:, n_sub]^T · X^T
                      y[:, n_block] = transpose(yT)
        prefill:  for m_block: xT = transpose(bf16(x[m_block]))
                      for n_tile (512): wd[k] = dequant(q[k, n_tile]) for every k tile (large K: inside the k loop)
                          for group of <= 4 m_tiles: acc[m_tile] = Σ_k xT[k, m_tile]^T · wd[k]
                              y[m_tile, n_tile] = acc[m_tile] * s_out
    """
    m, k = x.shape
    n = w.shape[1]
    w8a8 = x_scales is not None
    v2 = nisa.get_nc_version() == nisa.nc_version.gen2
    tun = Tuning(scheme, v2, dict(decode_max_m=decode_max_m, decode_dma_cols=decode_dma_cols,
                                  decode_min_dma_cols=decode_min_dma_cols, decode_psum_banks=decode_psum_banks,
                                  decode_lookahead=decode_lookahead, decode_split_last=decode_split_last,
                                  decode_shift_max_m=decode_shift_max_m, decode_merge_bytes=decode_merge_bytes,
                                  prefill_sbuf_bytes=prefill_sbuf_bytes,
                                  x_chunk=x_chunk, prefill_psum_banks=prefill_psum_banks))
    geo = Geometry(scheme, group_size, symmetric, k, m, w8a8, out_dtype=out_dtype, fp8_nibbles=int4_nibbles_as_fp8,
                   byte_transposes=v2, tuning=tun)
    # decode's block-diagonal moving operand [K tile, groups, M] must fit one matmul's free size
    use_decode = m <= tun.decode_max_m and geo.ngmax * m <= MOVING_FMAX
    if not use_decode and w8a8 and scheme == "fp8_e4m3" and not v2:
        # W8A8 prefill with e4m3 on NeuronCore-v3+: fp8 x fp8 double-row matmuls (2x TensorE rate); v2 keeps bf16
        geo = Geometry(scheme, group_size, symmetric, k, m, w8a8, pairs=True, out_dtype=out_dtype, tuning=tun)
    out = nl.ndarray((m, n), dtype=getattr(nl, out_dtype), buffer=nl.shared_hbm)
    ops = Operands(x, w, scales, scales_t, zeros, x_scales, out, nl.program_id(0), nl.num_programs(0))
    if use_decode:
        decode(ops, geo)
    else:
        prefill(ops, geo)
    return out
