"""Device helpers shared by the dense and the paged attention kernels: softcap and one online-softmax step.

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
