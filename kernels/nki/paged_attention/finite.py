"""NeuronCore-v2 isolation of non-finite keys in paged attention: clean K before its transposes, flag what was cleaned.

Why: a v2 TensorE transpose is a matmul with the identity, so one NaN / inf at k[j, h, a] would make row a of kᵀ
NaN (inf · 0) and with it every score of its CHUNK-key chunk, hidden keys and other kv heads' rows included.
NeuronCore-v3+ transposes bit-exactly and needs none of this (its stacked-head scores are computed per head:
`tiles.scores`).

How (v2 only), per gathered K chunk [nc keys, Hkv · D]:
    clean [nc, Hkv · D]  non-finite elements replaced by 0 by a selection (`clean_keys`), so every transpose and
                         score matmul sees finite data (dead cache rows past seq_len included: their finite
                         garbage is masked like any hidden key)
    bad   [nc, Hkv]      bfloat16, 1 where key row (j, h) held a non-finite element, else 0
and per score tile of a group (`poison_scores`): flag [rows, n] = bad of each row's own kv head along the keys (one
bit-exact transpose of finite 0 / 1 values per chunk), and x[r, j] = NaN where flag and the visibility mask are both
1. A row that sees a bad key of its own kv head gets a NaN score, exp gives a NaN p and tile_sum, and its output is
NaN through run_sum (p's NaN entries are zeroed before p's transpose, so no other row sees it); a bad key that is
hidden, or belongs to another kv head, changes nothing.
"""

from .._attention_finite import bad_keys
from .._shim import nisa, nl
from .index import CHUNK


def clean_keys(tile, hkv, d, zero_bias):
    """(clean [nc, Hkv · D] tile's dtype, bad [nc, Hkv] bfloat16) of a gathered K chunk tile [nc, Hkv · D] SBUF.

    ScalarE, one activation per kv head: z = x · 0 + 0 in bfloat16 (0 where x is finite, NaN where it is NaN or
    ±inf; the + 0 turns -0 into +0), summed per (key, head) on the fly (NaN iff the key row is bad). VectorE: one
    select keeps x where z's bits are 0. zero_bias: [PMAX, 1] float32 zeros (v2 takes no scalar bias)."""
    nc = tile.shape[0]
    z = nl.ndarray((nc, hkv * d), nl.bfloat16, buffer=nl.sbuf)
    sums = nl.ndarray((nc, hkv), nl.float32, buffer=nl.sbuf)
    for h in range(hkv):
        cols = slice(h * d, (h + 1) * d)
        nisa.activation(dst=z[:, cols], op=nl.copy, data=tile[:, cols], bias=zero_bias[0:nc, :], scale=0.0,
                        reduce_op=nl.add, reduce_res=sums[:, h : h + 1], reduce_cmd=nisa.reduce_cmd.reset_reduce)
    clean = nl.ndarray(tile.shape, tile.dtype, buffer=nl.sbuf)
    nisa.select_reduce(dst=clean, predicate=z.view(nl.uint16), on_true=tile, on_false=0.0, reverse_pred=True)
    ok = nl.ndarray((nc, hkv), nl.float32, buffer=nl.sbuf)
    nisa.tensor_scalar(dst=ok, data=sums, op0=nl.equal, operand0=0.0)  # NaN == 0 is false
    return clean, bad_keys(ok, nc)


def poison_scores(x, mask, k_bad, grp, head_rows):
    """x [rows, n] fp32 SBUF (masked scores) set to NaN in place where a row sees a bad key of its own kv head.

    mask: uint8 [rows, n] visibility; k_bad: the tile's bad [nc, Hkv] bfloat16 per CHUNK keys (`clean_keys`);
    rows ordered (head of grp, head_rows rows each)."""
    rows, n = x.shape
    heads = len(grp)
    flag_ps = nl.ndarray((rows, n), nl.bfloat16, buffer=nl.psum)
    for c, bad in enumerate(k_bad):
        nc = bad.shape[0]
        own = nl.ndarray((nc, rows), nl.bfloat16, buffer=nl.sbuf)  # own[j, r] = bad[j, head of row r]
        nisa.tensor_copy(dst=own.reshape((nc, heads, head_rows)),
                         src=bad[:, grp[0] : grp[0] + heads].expand_dim(2).broadcast(2, head_rows))
        nisa.nc_transpose(dst=flag_ps[:, c * CHUNK : c * CHUNK + nc], data=own)
    seen = nl.ndarray((rows, n), nl.uint8, buffer=nl.sbuf)
    nisa.tensor_tensor(dst=seen, data1=flag_ps, data2=mask[0:rows, :], op=nl.multiply)
    nisa.tensor_copy_predicated(dst=x, src=float("nan"), predicate=seen)
