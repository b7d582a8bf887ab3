"""Causal / sliding-window masking of the flash-attention kernel's score tiles (`attention.py`), by selection.

A hidden key's score is replaced by FP32_MIN whatever it was — never added to — so an Inf/NaN score of a hidden key
(a non-finite k row) reaches no output, and the row max the online softmax needs comes out of the same
instruction. v3+: one range_select over the whole score tile against per-row key bounds (RowBounds, built once per
query tile; it costs what the plain row-max reduce it replaces costs); NeuronCore-v2 (no range_select): a uint8
predicate tile of the step's masked columns (MaskKeep, shared by the heads) and select_reduce over those columns
only, the rest max-reduced as they are. Which columns and rows are hidden is decided from the shapes.

Kernel-side helper (imports the shim and the other kernel-side helpers only).
"""

from ._attention_tiles import Q_TILE
from ._shim import nisa, nl
from ._softmax import MAX_FLOOR
from ._tiling import FP32_MIN


class MaskKeep(nl.NKIObject):
    """Visibility of score columns c0 .. c1 of a key step: v2 tile [128, c1 - c0] uint8 SBUF (1 visible, 0 hidden),
    v3+ None (the RowBounds decide)."""

    def __init__(self, tile, c0, c1):
        self.tile, self.c0, self.c1 = tile, c0, c1


class RowBounds(nl.NKIObject):
    """Keys [lo, hi] each row of a query tile sees, float32 [128, 1] each (absolute key indices, iota on GpSimd):
    hi = diag + p under the causal mask (else Skv - 1), lo = diag + p - w + 1 under a window w (else 0)."""

    def __init__(self, diag, call):
        self.hi = nl.ndarray((Q_TILE, 1), dtype=nl.float32, buffer=nl.sbuf)
        self.lo = nl.ndarray((Q_TILE, 1), dtype=nl.float32, buffer=nl.sbuf)
        offset, cm = (diag, 1) if call.causal else (call.skv - 1, 0)
        nisa.iota(dst=self.hi, pattern=[[0, 1]], offset=offset, channel_multiplier=cm)
        offset, cm = (diag - call.window + 1, 1) if call.window is not None else (0, 0)
        nisa.iota(dst=self.lo, pattern=[[0, 1]], offset=offset, channel_multiplier=cm)


def mask_keep(tile, k0, n, call):
    """Which keys of the [nq, n] score tile at (q0, k0) each row sees, as a MaskKeep, or None when it sees all.

    Score columns [c0, c1) are the only ones with hidden keys (under causal masking the last nq - 1 keys, under a
    sliding window the first ones). v2: the predicate tile [128, c1 - c0] uint8 SBUF holds 1 (visible) or 0 (hidden)
    there, so the per-head selection stays narrow; built on GpSimd (affine_select), shared by the heads. v3+: no
    tile (range_select compares key indices with the RowBounds)."""
    nq, window = tile.nq, call.window
    diag = tile.q0 + call.skv - call.sq
    rules = []  # (column range, step, channel_multiplier, offset): keep where offset + p·cm + f·step >= 0
    if call.causal and k0 + n - 1 > diag:
        rules.append((max(0, diag - k0 + 1), n, -1, 1, diag - k0))  # key k0 + f <= diag + p
    if window is not None and k0 < diag + nq - window:
        rules.append((0, min(n, diag + nq - window - k0), 1, -1, k0 - diag + window - 1))  # k0 + f >= diag + p - w + 1
    if not rules:
        return None
    c0 = min(rule[0] for rule in rules)
    c1 = max(rule[1] for rule in rules)
    if not call.v2:
        return MaskKeep(None, c0, c1)  # range_select against the tile's RowBounds
    keep = nl.ndarray((Q_TILE, c1 - c0), dtype=nl.uint8, buffer=nl.sbuf)
    nisa.memset(dst=keep[:nq], value=1, engine=nisa.engine.gpsimd)
    for _, _, step, channel_multiplier, offset in rules:
        nisa.affine_select(dst=keep[:nq], pattern=[[step, c1 - c0]], channel_multiplier=channel_multiplier,
                           on_true_tile=keep[:nq], on_false_value=0.0, cmp_op=nl.greater_equal,
                           offset=offset + c0 * step)
    return MaskKeep(keep, c0, c1)


def mask_row_max(s, keys, nq, neg_max_old, exp_scale, bounds, v2, neg_max):
    """Mask the score tile s [128, ≥n] in place, write neg_max [128, 1] fp32 = min(-exp_scale·rowmax(s),
    neg_max_old) (VectorE; the first step, neg_max_old None, floors exp_scale·m at MAX_FLOOR instead) and return
    the multiplier the exp must apply to s as it is left (exp_scale, or -1.0 where s was replaced by -exp_scale·s).

    Masking is a selection, never arithmetic: a hidden key's score becomes FP32_MIN whatever it was, so an Inf/NaN
    score of a hidden key reaches nothing. v3+: one range_select over the whole tile against the row bounds
    (RowBounds; it also gives the row max, at a plain reduce's cost), and a step without hidden keys one
    tensor_scalar_reduce that scales s by -exp_scale in place and min-reduces it into neg_max' with the old neg_max
    loaded as the accumulator's start (so no separate [128, 1] instruction follows); v2: select_reduce of the columns
    [c0, c1) of keys.keep with its predicate tile, the other columns max-reduced as they are."""
    n, keep = keys.n, keys.keep
    if keep is None and not v2:
        start = -MAX_FLOOR if neg_max_old is None else neg_max_old[:nq]
        nisa.tensor_scalar_reduce(dst=s[:nq, :n], data=s[:nq, :n], op0=nl.multiply, operand0=-exp_scale,
                                  reduce_op=nl.minimum, reduce_res=neg_max[:nq], reduce_cmd=nisa.reduce_cmd.load_reduce,
                                  reduce_init=start)
        return -1.0
    m = nl.ndarray((Q_TILE, 1), dtype=nl.float32, buffer=nl.sbuf)  # sign · rowmax
    sign = -1.0
    if keep is None:
        nisa.tensor_reduce(dst=m[:nq], op=nl.maximum, data=s[:nq, :n], axis=1, negate=True)
    elif keep.tile is None:
        nisa.range_select(dst=s[:nq, :n], on_true_tile=s[:nq, :n], comp_op0=nl.greater_equal, comp_op1=nl.less_equal,
                          bound0=bounds.lo[:nq], bound1=bounds.hi[:nq], reduce_cmd=nisa.reduce_cmd.reset_reduce,
                          reduce_res=m[:nq], reduce_op=nl.maximum, range_start=keys.k0, on_false_value=FP32_MIN)
        sign = 1.0
    else:
        spans = [(a, b) for a, b in ((0, keep.c0), (keep.c1, n)) if b > a]  # unmasked columns
        parts = nl.ndarray((Q_TILE, 1 + len(spans)), dtype=nl.float32, buffer=nl.sbuf)
        nisa.select_reduce(dst=s[:nq, keep.c0:keep.c1], predicate=keep.tile[:nq], on_true=s[:nq, keep.c0:keep.c1],
                           on_false=FP32_MIN, reduce_res=parts[:nq, 0:1], reduce_cmd=nisa.reduce_cmd.reset_reduce,
                           reduce_op=nl.maximum)
        for i, (a, b) in enumerate(spans):
            nisa.tensor_reduce(dst=parts[:nq, i + 1:i + 2], op=nl.maximum, data=s[:nq, a:b], axis=1)
        nisa.tensor_reduce(dst=m[:nq], op=nl.maximum, data=parts[:nq], axis=1, negate=True)
    if neg_max_old is None:
        nisa.tensor_scalar(dst=neg_max[:nq], data=m[:nq], op0=nl.multiply, operand0=-sign * exp_scale,
                           op1=nl.minimum, operand1=-MAX_FLOOR)
    else:
        nisa.scalar_tensor_tensor(dst=neg_max[:nq], data=m[:nq], op0=nl.multiply, operand0=-sign * exp_scale,
                                  op1=nl.minimum, operand1=neg_max_old[:nq])
    return exp_scale
