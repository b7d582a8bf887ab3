"""Online softmax shared by the attention kernels: its vocabulary, its constants and the instructions both issue.

Kernel-side helper (imports only the shim), used by `attention.py` and `paged_attention/`. The words
below mean the same in both kernels, in their code and docstrings (FlashAttention's m, l, o):

    scale       the score multiplier: scores are scale · q·k (the public `scale`, default D ** -0.5)
    softcap     c: scores become c · tanh(scale · q·k / c)
    exp_scale   what a kernel's score tile is multiplied by inside the exp: `scale` (the tile holds q·k), or c with a
                softcap (the tile holds tanh(scale · q·k / c))
    tile_max    the row max of one (masked) score tile
    neg_max     [rows, 1] fp32: -exp_scale · m, m the running row max — negated and in exp units, it is the bias of
                the exps (a (P, 1) tile, as NeuronCore-v2 requires)
    rescale     [rows, 1] fp32: exp(neg_max_new - neg_max_old) = exp(exp_scale · (m_old - m_new)), the factor that
                carries run_sum and acc over to the new running max
    p           exp(exp_scale · scores + neg_max), cast to the K/V dtype for P·V
    tile_sum    the fp32 row sum of p of one tile (fused into the exp instruction)
    run_sum     [rows, 1] fp32: the running row sum, run_sum · rescale + tile_sum (FlashAttention's l)
    acc         [rows, D] fp32: the running output, acc · rescale + p·v (FlashAttention's o); out = acc / run_sum
    MAX_FLOOR   the running max's floor (and initial value), so a row that has seen only masked scores keeps a
                finite neg_max and its masked p are exactly 0: attention floors exp_scale · m at it, paged
                attention floors m (the tile_max) at it
    FP32_MIN    the mask fill (`_tiling.FP32_MIN`): a masked score is replaced by it (range_select requires
                this value, select_reduce takes it) — a selection, never an addition, so a non-finite score of a
                hidden key reaches nothing

Every kernel computes rescale, run_sum and acc with the helpers here, so both issue the same instructions for them.
"""

from ._shim import nisa, nl

MAX_FLOOR = -1.0e30  # floor / initial value of the running max (see above): finite, far above FP32_MIN

__all__ = ["MAX_FLOOR", "exp_rows", "rescale_factor", "rescale_factors", "update_sum", "update_acc"]


def exp_rows(p, scores, neg_max, exp_scale, tile_sum):
    """p = exp(exp_scale · scores + neg_max) in p's dtype and tile_sum = its fp32 row sums, one ScalarE instruction.

    p, scores: [rows, n]; neg_max, tile_sum: [rows, 1] fp32 SBUF."""
    nisa.activation(dst=p, op=nl.exp, data=scores, bias=neg_max, scale=exp_scale, reduce_op=nl.add,
                    reduce_res=tile_sum, reduce_cmd=nisa.reduce_cmd.reset_reduce)


def rescale_factor(rescale, neg_max_old, neg_max):
    """rescale = exp(neg_max - neg_max_old) [rows, 1] fp32 (ScalarE)."""
    nisa.activation(dst=rescale, op=nl.exp, data=neg_max_old, bias=neg_max, scale=-1.0)


def rescale_factors(rescale, neg_max_old, neg_max):
    """rescale = exp(neg_max - neg_max_old) for several heads at once, [rows, heads] fp32 SBUF: the difference on
    GpSimd, then one ScalarE exp (an activation's bias is one value per row, so `rescale_factor`'s fused form takes
    one head)."""
    diff = nl.ndarray(rescale.shape, dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_tensor(dst=diff, data1=neg_max, data2=neg_max_old, op=nl.subtract, engine=nisa.engine.gpsimd)
    nisa.activation(dst=rescale, op=nl.exp, data=diff)


def update_sum(run_sum, rescale, tile_sum, on_gpsimd=False):
    """run_sum = run_sum · rescale + tile_sum, [rows, 1] fp32 SBUF: one VectorE tensor_scalar, or (on_gpsimd) two
    GpSimd tensor_tensor ops, for a kernel whose VectorE is the busier engine (GpSimd has no tensor_scalar with two
    arithmetic operators)."""
    if not on_gpsimd:
        nisa.tensor_scalar(dst=run_sum, data=run_sum, op0=nl.multiply, operand0=rescale, op1=nl.add,
                           operand1=tile_sum)
        return
    nisa.tensor_tensor(dst=run_sum, data1=run_sum, data2=rescale, op=nl.multiply, engine=nisa.engine.gpsimd)
    nisa.tensor_tensor(dst=run_sum, data1=run_sum, data2=tile_sum, op=nl.add, engine=nisa.engine.gpsimd)


def update_acc(acc, rescale, pv):
    """acc = acc · rescale + pv: acc [rows, D] fp32 SBUF, pv [rows, D] fp32 PSUM (VectorE)."""
    nisa.scalar_tensor_tensor(dst=acc, data=acc, op0=nl.multiply, operand0=rescale, op1=nl.add, operand1=pv)

