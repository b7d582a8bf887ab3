"""NeuronCore-v2 isolation of non-finite q / k elements in the flash-attention kernel (`attention.py`).

Why: a NeuronCore-v2 TensorE transpose is a matmul with the identity, so one Inf/NaN at x[r, c] makes the whole
transposed row c NaN (inf · 0): a bad query element would poison every query of its tile and head through qᵀ, a bad
key every key of its 128-key chunk through kᵀ, and any NaN in p every row of the tile through pᵀ. NeuronCore-v3+
transposes bit-exactly and needs none of this.

How (v2 only): q rows and k rows are cleaned before their transposes — non-finite elements become 0 by a selection
(`clean_rows`) — so scores, p and pᵀ are finite and no transpose spreads anything. What was cleaned is put back
where it mathematically belongs, in the output:
    q_ok [128, heads]   1 where the query row of that head is finite, else 0
    bad  [128 keys, chunks] bfloat16, 1 where a key row is not finite, else 0 (a TensorE operand)
    seen [128, 1] fp32  per query row, the number of bad keys it sees: Σ over the tile's key chunks of
                        visibleᵀ · bad, one matmul per chunk (`count_bad_keys`, visibility built like the mask)
    flag [128, heads]   0, or NaN where q_ok · (seen == 0) is 0 (`output_flags`), added to the output rows by
                        the store's activation (out = acc / run_sum + flag).
So a row is NaN exactly when its query or a key it sees is not finite (whether the reference's IEEE arithmetic
would have given ±inf or NaN there, v2 gives NaN); a row that sees no key stays zero. Values are not cleaned: a
non-finite v row reaches, as 0 · NaN, every row whose P·V contracts over it, including rows that do not see it
(hidden keys of the diagonal chunk) — on every target, as in the reference's matrix product.

Kernel-side helper (imports only the shim and `_tiling`).
"""

from ._shim import nisa, nl
from ._tiling import PMAX, tiles

INF = float("inf")


def clean_rows(x, rows):
    """Non-finite elements of x [128, g, D] SBUF replaced by 0 (a selection, exact for the rest), and ok [128, g]
    fp32: 1 where all D elements of (row, g) are finite, else 0. Returns (clean [128, g, D] x's dtype, ok)."""
    finite = nl.ndarray(x.shape, dtype=nl.uint8, buffer=nl.sbuf)
    nisa.tensor_scalar(dst=finite[:rows], data=x[:rows], op0=nl.abs_max, operand0=0.0, op1=nl.less, operand1=INF)
    clean = nl.ndarray(x.shape, dtype=x.dtype, buffer=nl.sbuf)
    nisa.select_reduce(dst=clean[:rows], predicate=finite[:rows], on_true=x[:rows], on_false=0.0)
    ok = nl.ndarray((x.shape[0], x.shape[1]), dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_reduce(dst=ok[:rows], op=nl.minimum, data=finite[:rows], axis=2)
    return clean, ok


def bad_keys(ok, rows):
    """bad = 1 - ok as [128 keys, chunks] bfloat16 (the moving operand of `count_bad_keys`)."""
    bad = nl.ndarray(ok.shape, dtype=nl.bfloat16, buffer=nl.sbuf)
    nisa.tensor_scalar(dst=bad[:rows], data=ok[:rows], op0=nl.multiply, operand0=-1.0, op1=nl.add, operand1=1.0)
    return bad


def ones_tile():
    """[128, 128] bfloat16 ones (GpSimd): the visibility of a key chunk every row of a tile sees."""
    ones = nl.ndarray((PMAX, PMAX), dtype=nl.bfloat16, buffer=nl.sbuf)
    nisa.memset(dst=ones, value=1.0, engine=nisa.engine.gpsimd)
    return ones


def count_bad_keys(seen, bad, k0, n, nq, diag, causal, window, ones, first):
    """seen[:nq] (+)= the bad keys among [k0, k0 + n) each query row sees: [128, 1] fp32 SBUF; first: write, else add.

    bad: [128 keys, n/128 chunks] bfloat16 of these keys; diag: the last key row 0 may see (row p sees keys up to
    diag + p under `causal`, from diag + p - window + 1 with a window). Per 128-key chunk one matmul visibleᵀ ·
    bad[:, chunk] accumulating in one PSUM tile; visibleᵀ [keys, rows] is `ones` where every row sees every key of
    the chunk, else built on GpSimd like the score mask (transposed: keys on partitions)."""
    seen_ps = nl.ndarray((PMAX, 1), dtype=nl.float32, buffer=nl.psum)
    for c, (f0, kc) in enumerate(tiles(n, PMAX)):
        a = k0 + f0
        vis = _visible_t(a, kc, nq, diag, causal, window, ones)
        nisa.nc_matmul(dst=seen_ps[:nq], stationary=vis[:kc, :nq], moving=bad[:kc, c:c + 1])
    if first:
        nisa.tensor_copy(dst=seen[:nq], src=seen_ps[:nq])
    else:
        nisa.tensor_tensor(dst=seen[:nq], data1=seen[:nq], data2=seen_ps[:nq], op=nl.add)


def _visible_t(a, kc, nq, diag, causal, window, ones):
    """visibleᵀ [128 keys, 128 rows] bfloat16: 1 where query row f sees key a + p, else 0 (`ones` when all do)."""
    rules = []  # keep where offset + p·channel_multiplier + f·step >= 0
    if causal and a + kc - 1 > diag:
        rules.append((1, -1, diag - a))  # a + p <= diag + f
    if window is not None and a < diag + nq - window:
        rules.append((-1, 1, a - diag + window - 1))  # a + p >= diag + f - window + 1
    if not rules:
        return ones
    vis = nl.ndarray((PMAX, PMAX), dtype=nl.bfloat16, buffer=nl.sbuf)
    nisa.memset(dst=vis[:kc, :nq], value=1.0, engine=nisa.engine.gpsimd)
    for step, channel_multiplier, offset in rules:
        nisa.affine_select(dst=vis[:kc, :nq], pattern=[[step, nq]], channel_multiplier=channel_multiplier,
                           on_true_tile=vis[:kc, :nq], on_false_value=0.0, cmp_op=nl.greater_equal, offset=offset)
    return vis


def output_flags(q_ok, seen, nq, diag):
    """flag [128, heads] fp32: 0 where the row's query (q_ok) and every key it sees (seen == 0) are finite, else
    NaN — (1 / good - 1) · 0 with good ∈ {0, 1}. Rows p with diag + p < 0 see no key: flag 0 (their output is
    zeros)."""
    heads = q_ok.shape[1]
    no_bad = nl.ndarray((PMAX, 1), dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_scalar(dst=no_bad[:nq], data=seen[:nq], op0=nl.equal, operand0=0.0)
    good = nl.ndarray((PMAX, heads), dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_scalar(dst=good[:nq], data=q_ok[:nq], op0=nl.multiply, operand0=no_bad[:nq])
    if diag < 0:
        nisa.affine_select(dst=good[:nq], pattern=[[0, heads]], channel_multiplier=1, on_true_tile=good[:nq],
                           on_false_value=1.0, cmp_op=nl.greater_equal, offset=diag)
    flag = nl.ndarray((PMAX, heads), dtype=nl.float32, buffer=nl.sbuf)
    nisa.reciprocal(dst=flag[:nq], data=good[:nq])
    nisa.tensor_scalar(dst=flag[:nq], data=flag[:nq], op0=nl.subtract, operand0=1.0, op1=nl.multiply, operand1=0.0)
    return flag
