"""Device helpers shared by the dense and the paged attention kernels: the key range a query block can see, the
masked scores of one key tile (softcap, causal, sliding window), one online-softmax step and the epilogue.

The online softmax (Milakov & Gimelshein 2018; FlashAttention, Dao et al. 2022) keeps, per query row, a running max
`m` (in log2 units), a running sum `l` and an unnormalised output `acc`, all fp32. Masked scores are -inf; a row whose
keys are all masked so far keeps m = -inf, and the step below substitutes 0 for that max so that exp2(-inf - -inf)
(NaN) never happens: such a row gets p = 0, l = 0, and the epilogue turns it into zeros.
"""

import triton
import triton.language as tl

# log2(e): scores are kept in log2 units so the kernels can use exp2. A constexpr, because compiled Triton kernels
# may read only constexpr globals.
LOG2E = tl.constexpr(1.4426950408889634)


@triton.jit
def softcap_scores(s, softcap):
    """c·tanh(s/c) elementwise, accurate to a few fp32 ulp (tl.math has no tanh the interpreter can run).

    tanh|x| = (1 − e^{−2|x|}) / (1 + e^{−2|x|}) for |x| >= 0.4, where the subtraction loses little; below
    that, the odd Taylor series through x^11 (truncation < 3e-8). Exact at ±inf.
    """
    x = s / softcap
    ax = tl.abs(x)
    t = tl.exp(-2.0 * ax)
    large = (1.0 - t) / (1.0 + t)
    x2 = ax * ax
    small = ax * (1.0 + x2 * (-1.0 / 3.0 + x2 * (2.0 / 15.0 + x2 * (-17.0 / 315.0 + x2 * (
        62.0 / 2835.0 + x2 * (-1382.0 / 155925.0))))))
    th = tl.where(ax < 0.4, small, large)
    return softcap * tl.where(x < 0.0, -th, th)


@triton.jit
def visible_key_range(first_pos, rows, n_keys, window, TILE: tl.constexpr, IS_CAUSAL: tl.constexpr,
                      HAS_WINDOW: tl.constexpr):
    """[lo, hi): the keys a block of `rows` consecutive queries can see, out of n_keys.

    first_pos is the block's first query position, i.e. its last visible key under bottom-right causality (query
    positions count keys, so Skv − Sq is already added); lo is rounded down to a multiple of TILE so that every tile
    of the loop starts on the TILE grid. Causal stops after the last query's position, a sliding window of `window`
    keys starts at first_pos − window + 1.
    """
    lo = 0
    hi = n_keys
    if IS_CAUSAL:
        hi = tl.maximum(tl.minimum(n_keys, first_pos + rows), 0)
    if HAS_WINDOW:
        lo = tl.maximum(first_pos - window + 1, 0) // TILE * TILE
    return lo, hi


@triton.jit
def empty_rows(BLOCK_M: tl.constexpr, D_PAD: tl.constexpr):
    """The running (m, l, acc) of BLOCK_M rows before any key: -inf, 0 and a [BLOCK_M, D_PAD] zero tile, fp32."""
    return (tl.full([BLOCK_M], float("-inf"), tl.float32), tl.zeros([BLOCK_M], tl.float32),
            tl.zeros([BLOCK_M, D_PAD], tl.float32))


@triton.jit
def masked_scores(q, kt, scale, softcap, row_ok, pos, keys, key_ok, window, IS_CAUSAL: tl.constexpr,
                  HAS_WINDOW: tl.constexpr, HAS_SOFTCAP: tl.constexpr, DOT_PRECISION: tl.constexpr):
    """Scores of one key tile and which of them each query row may see.

    Args:
        q: [BLOCK_M, D_PAD] queries; kt: [D_PAD, BLOCK_N] keys, transposed (pad lanes 0).
        scale, softcap: softmax scale (a scalar, or a [1, BLOCK_N] per-key factor: int8 KV scales) and c of
            c·tanh(s/c) (used only when HAS_SOFTCAP).
        row_ok: [BLOCK_M] bool, live query rows; pos: [BLOCK_M] int, each row's position among the keys.
        keys: [BLOCK_N] int, key positions of the tile; key_ok: [BLOCK_N] bool, live keys.
        window: sliding window in keys (used only when HAS_WINDOW).
    Returns:
        (s, visible): [BLOCK_M, BLOCK_N] fp32 scores (scaled, softcapped) and the bool mask of visible keys.
    """
    s = tl.dot(q, kt, input_precision=DOT_PRECISION) * scale
    if HAS_SOFTCAP:
        s = softcap_scores(s, softcap)
    visible = row_ok[:, None] & key_ok[None, :]
    if IS_CAUSAL:
        visible = visible & (keys[None, :] <= pos[:, None])
    if HAS_WINDOW:
        visible = visible & (keys[None, :] >= pos[:, None] - window + 1)
    return s, visible


@triton.jit
def online_softmax_step(s, visible, m_i, l_i, acc, v, DOT_PRECISION: tl.constexpr):
    """Fold one tile of scores into the running (m, l, acc).

    Args:
        s: [BLOCK_M, BLOCK_N] fp32 scores, already scaled (and softcapped), natural-log units.
        visible: [BLOCK_M, BLOCK_N] bool, False where the key is masked for that row.
        m_i, l_i: [BLOCK_M] fp32 running max (log2 units) and running sum.
        acc: [BLOCK_M, D_PAD] fp32 unnormalised output.
        v: [BLOCK_N, D_PAD] values of this tile; masked rows must already be 0 (never NaN: 0·NaN = NaN).
    Returns:
        (m_i, l_i, acc) after the tile.
    """
    s = tl.where(visible, s * LOG2E, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, 1))
    m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
    alpha = tl.exp2(m_i - m_safe)
    p = tl.exp2(s - m_safe[:, None])
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=DOT_PRECISION)
    return m_new, l_i, acc


@triton.jit
def finish_rows(acc, l_i):
    """acc / l per row; rows that saw no visible key (l = 0) become zeros, never NaN."""
    l_safe = tl.where(l_i == 0.0, 1.0, l_i)
    return acc / l_safe[:, None]
