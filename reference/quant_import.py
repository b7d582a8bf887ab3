"""Weights from elsewhere as nkilab QuantizedWeights [K, N]: torch nn.Linear layouts and GPTQ / AWQ int4 checkpoints.

nn.Linear stores W as [N, K] (out_features x in_features, y = x W^T); nkilab weights are [K, N] (y = x W).
`quantize_linear` transposes, then quantizes (`nkilab.reference.quant.quantize_weight`).

GPTQ and AWQ checkpoints hold 4-bit values q in 0..15, packed eight per int32 (value i in bits 4i..4i+3, read as an
unsigned 32-bit word), float16 scales s [G, N] per group of K / G rows, and packed zero points z [G, N / 8]; a
weight is w = s · (q − z). Their layouts, as AutoGPTQ's `QuantLinear.pack` and AutoAWQ's `WQLinear_GEMM.from_linear`
write them:

  GPTQ ("gptq", AutoGPTQ / the common checkpoint format)
    qweight  int32 [K / 8, N]   packed along K: q[k, n] = nibble k % 8 of qweight[k // 8, n]
    qzeros   int32 [G, N / 8]   packed along N: nibble n % 8 of qzeros[g, n // 8] holds z[g, n] − 1
                                (the "+1 convention": AutoGPTQ stores z − 1 and adds the 1 back when it dequantizes;
                                checkpoint_format "gptq_v2" stores z itself)
    scales   float16 [G, N]
    g_idx    int32 [K]          the group of row k; without act-order (desc_act=False) g_idx[k] = k // (K / G)
  AWQ (AutoAWQ's GEMM format, what vLLM's "awq" loads)
    qweight  int32 [K, N / 8]   packed along N in interleaved order: nibble i of qweight[k, c] holds column
                                8c + AWQ_ORDER[i], AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]
    qzeros   int32 [G, N / 8]   z[g, n], packed like qweight (no offset)
    scales   float16 [G, N]

nkilab's int4 (`quant.py`) packs two values per byte along K and keeps zero points 0..15 as uint8. An imported
weight whose zero points are all 8 is symmetric — w = s · (q − 8) with q − 8 in −8..7 — and comes in as
symmetric int4 (no zero points); otherwise as asymmetric int4 with its zero points. Both are exact: the same
(q, z, s) values, scales widened from float16 to float32 without rounding.
"""

from __future__ import annotations

import numpy as np

from nkilab.reference.dtypes import to_numpy
from nkilab.reference.quant import INT4_ASYM_LEVELS, QuantizedWeight, pack_int4, quantize_weight

AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)  # nibble i of an AWQ word holds column AWQ_ORDER[i] of its eight
NIBBLE_OF_AWQ_COLUMN = tuple(AWQ_ORDER.index(c) for c in range(8))  # (0, 4, 1, 5, 2, 6, 3, 7)
GPTQ_ZERO_OFFSET = {"gptq": 1, "gptq_v2": 0}  # what a GPTQ checkpoint format adds to a stored zero point
SYMMETRIC_ZERO = 8  # an int4 zero point that makes q - z two's-complement -8..7


def quantize_linear(linear, scheme: str, group_size: int | None = None, symmetric: bool = True) -> QuantizedWeight:
    """Quantize a torch nn.Linear's weight (or any [N, K] = out_features x in_features array) for `qmatmul`.

    Args:
        linear: an object with a 2-D `.weight` (torch nn.Linear), or the [N, K] weight itself (NumPy or torch).
        scheme, group_size, symmetric: as in `nkilab.reference.quant.quantize_weight` (groups run along K, the
            input features).

    Returns:
        QuantizedWeight of shape (K, N): qmatmul(x [M, K], qw) = x @ weight.T (a bias is not part of it).

    Example:
        >>> w = np.array([[1.0, 2.0, 4.0]])  # nn.Linear(3, 1).weight: [N=1, K=3]
        >>> quantize_linear(w, "int8").shape
        (3, 1)
    """
    weight = getattr(linear, "weight", linear)
    w = to_numpy(weight)
    if w.ndim != 2:
        raise ValueError(f"linear: the weight must be 2-D [N, K] (out_features x in_features), got shape {w.shape}")
    return quantize_weight(w.T, scheme, group_size, symmetric)


def _words(name: str, a, rows: int | None = None) -> np.ndarray:
    """A packed int32 tensor as uint32 words [R, C] (the bit pattern, two's complement read unsigned)."""
    words = to_numpy(a)
    if words.ndim != 2 or words.dtype not in (np.int32, np.uint32):
        raise TypeError(f"{name}: must be a 2-D int32 tensor of packed 4-bit values, got {words.dtype} {words.shape}")
    if rows is not None and words.shape[0] != rows:
        raise ValueError(f"{name}: must have {rows} rows, got shape {words.shape}")
    return words.view(np.uint32)


def _nibbles(words: np.ndarray, positions) -> np.ndarray:
    """[R, C] words -> [R, C, len(positions)] the 4-bit values at nibble `positions` of each word (int16)."""
    shifts = 4 * np.asarray(positions, dtype=np.uint32)
    return ((words[:, :, None] >> shifts) & 0xF).astype(np.int16)


def _scales(scales, groups: int, n: int) -> np.ndarray:
    s = to_numpy(scales)
    if s.shape != (groups, n) or s.dtype.kind != "f":
        raise ValueError(f"scales: must be float [G, N] = {(groups, n)}, got {s.dtype} {s.shape}")
    out = s.astype(np.float32)
    if not np.array_equal(out.astype(np.float64), s.astype(np.float64)):
        raise ValueError("scales: must be exact in float32 (float16 / bfloat16 / float32 checkpoints are)")
    return out


def _int4_weight(q: np.ndarray, z: np.ndarray, s: np.ndarray, source: str) -> QuantizedWeight:
    """QuantizedWeight for w = s · (q − z): q [K, N] in 0..15, z [G, N], s [G, N] float32."""
    k, n = q.shape
    groups = z.shape[0]
    group_size = None if groups == 1 else k // groups
    if np.all(z == SYMMETRIC_ZERO):
        return QuantizedWeight(pack_int4(q - SYMMETRIC_ZERO), s, None, "int4", group_size, (k, n), True)
    if z.min() < 0 or z.max() > INT4_ASYM_LEVELS:
        g, c = np.argwhere((z < 0) | (z > INT4_ASYM_LEVELS))[0]
        raise ValueError(f"qzeros: {source} zero point z[{g}, {c}] = {z[g, c]} is outside nkilab's int4 zero points "
                         f"0..{INT4_ASYM_LEVELS} (q - z would leave the int4 range)")
    return QuantizedWeight(pack_int4(q), s, z.astype(np.uint8), "int4", group_size, (k, n), False)


def from_gptq(qweight, qzeros, scales, g_idx=None, *, bits: int = 4,
              checkpoint_format: str = "gptq") -> QuantizedWeight:
    """Import a GPTQ int4 layer (module docstring) without act-order.

    Args:
        qweight: int32 [K / 8, N]; qzeros: int32 [G, N / 8]; scales: float16 [G, N] (NumPy or torch, CPU).
        g_idx: int [K] or None; must be k // (K / G) for every row k (act-order checkpoints are refused).
        bits: 4 (the only width nkilab's int4 holds).
        checkpoint_format: "gptq" (stored zero = z − 1, AutoGPTQ) | "gptq_v2" (stored zero = z).

    Returns:
        QuantizedWeight (K, N) int4: symmetric when every zero point is 8, else asymmetric.

    Raises:
        ValueError: other bit widths, act-order g_idx, shapes that disagree, zero points outside 0..15 (e.g. a "gptq"
            stored zero of 15, i.e. z = 16).
    """
    if bits != 4:
        raise ValueError(f"bits: nkilab imports 4-bit GPTQ weights only, got bits={bits}")
    if checkpoint_format not in GPTQ_ZERO_OFFSET:
        raise ValueError(f"checkpoint_format: must be one of {tuple(GPTQ_ZERO_OFFSET)}, got {checkpoint_format!r}")
    words = _words("qweight", qweight)
    k, n = 8 * words.shape[0], words.shape[1]
    zwords = _words("qzeros", qzeros)
    groups = zwords.shape[0]
    if zwords.shape[1] * 8 != n or groups < 1 or k % groups:
        raise ValueError(f"qzeros: must be [G, N / 8] with K = {k} a multiple of G, for N = {n}; got {zwords.shape}")
    if g_idx is not None:
        g = to_numpy(g_idx).astype(np.int64)
        expected = np.arange(k) // (k // groups)
        if g.shape != (k,) or not np.array_equal(g, expected):
            raise ValueError(f"g_idx: must be k // {k // groups} for every row k (act-order / desc_act checkpoints "
                             "reorder K and are not supported)")
    q = _nibbles(words, range(8)).transpose(0, 2, 1).reshape(k, n)  # row 8r + i = nibble i of word row r
    z = _nibbles(zwords, range(8)).reshape(groups, n) + GPTQ_ZERO_OFFSET[checkpoint_format]  # column 8c + i
    return _int4_weight(q, z, _scales(scales, groups, n), f"GPTQ ({checkpoint_format})")


def from_awq(qweight, qzeros, scales, *, bits: int = 4) -> QuantizedWeight:
    """Import an AWQ int4 layer in AutoAWQ's GEMM layout (module docstring).

    Args:
        qweight: int32 [K, N / 8]; qzeros: int32 [G, N / 8]; scales: float16 [G, N] (NumPy or torch, CPU).
        bits: 4.

    Returns:
        QuantizedWeight (K, N) int4: symmetric when every zero point is 8, else asymmetric.
    """
    if bits != 4:
        raise ValueError(f"bits: nkilab imports 4-bit AWQ weights only, got bits={bits}")
    words = _words("qweight", qweight)
    k, n = words.shape[0], 8 * words.shape[1]
    zwords = _words("qzeros", qzeros)
    groups = zwords.shape[0]
    if zwords.shape[1] != words.shape[1] or groups < 1 or k % groups:
        raise ValueError(f"qzeros: must be [G, N / 8] with K = {k} a multiple of G, for N = {n}; got {zwords.shape}")
    q = _nibbles(words, NIBBLE_OF_AWQ_COLUMN).reshape(k, n)  # column 8c + j = nibble NIBBLE_OF_AWQ_COLUMN[j]
    z = _nibbles(zwords, NIBBLE_OF_AWQ_COLUMN).reshape(groups, n)
    return _int4_weight(q, z, _scales(scales, groups, n), "AWQ")
