"""Flash attention forward (prefill) as an NKI kernel: out = softmax(mask(softcap(scale · q kᵀ))) v.

The S×S score matrix never exists in HBM: scores live one [128 queries, ≤2048 keys] tile at a time in PSUM and an
online softmax (`_softmax.py`: neg_max, run_sum, rescale, acc) folds every key step into fp32 accumulators.

Algorithm (all loops are Python loops over compile-time shapes):

    for b, kv head hk:    kᵀ [D, Skv] and v [128 keys, Skv/128, D] loaded once into SBUF when they fit
                          (k rows DMA'd contiguously, transposed on TensorE), else per key step below
      for each block of query heads reading hk (GQA: h // (Hq/Hkv) == hk), each 128-row query tile:
        keys [lo, hi) some row of the tile may see, from the shapes (none: the tile is stored as zeros)
        q rows [128, heads, D] in one DMA; qᵀ [D, 128] per head by TensorE transposes
        for each 2048-key step of [lo, hi) (128-aligned), for each head:
            s = qᵀ·kᵀ (4 PSUM banks, 512 keys per matmul) [+ I·mask: causal/window mask added by TensorE]
              [softcap: t = tanh(scale·s/c) in SBUF, masked by a VectorE add]
            neg_max' = min(-exp_scale·rowmax(s), neg_max)                        (VectorE, reads PSUM)
            p = exp(exp_scale·s + neg_max') in q's dtype, tile_sum in the same instruction (ScalarE, reads PSUM)
            pᵀ by TensorE transposes of 128-key chunks -> SBUF (VectorE);  pv = Σ_chunks pᵀ·v (one PSUM bank)
            rescale = exp(neg_max' - neg_max);  acc = acc·rescale + pv;  run_sum = run_sum·rescale + tile_sum
        out = acc / run_sum  (rows that see no key: 0)
    (exp_scale = c with a softcap, else scale.)

Schedule: engines run their instruction queues in order, so program order is the schedule. A (step, head) item's
P·V is issued PIPELINE_LAG items after its exp, interleaved with later items' QKᵀ and row max (`_item`); q rows
and resident k/v rows are DMA'd ahead, their transposes issued just before use (`_run_tiles`).

Features: causal with bottom-right alignment (query i sees keys j <= i + Skv - Sq), sliding window (also hides
j < i + Skv - Sq - w + 1), softcap (c·tanh(s/c), the c folded into the exp), GQA/MQA (the heads of a group share
each K/V tile), head_dim up to 512 (QKᵀ accumulates 128-row slices of D in PSUM; the [128, D] fp32 P·V tile still
fits one 2 KiB bank), float32 / bfloat16 / float16 inputs. Key steps no row of a tile can see are skipped and only
the columns that hold masked elements get a mask (decided from shapes). Only NeuronCore-v2-safe ops are used (no
range_select, no dma_transpose, activation bias always a (P, 1) tile); the one target branch only moves copies
between VectorE and ScalarE. Loads and transposes of q, k, v live in `_attention_tiles.py`.

Reference: nkilab.reference.attention.attention
"""

from ._attention_tiles import (D_CHUNK, KV_TILE, Q_TILE, kv_tiles, load_kv_rows, load_q_rows, psum_copy,
                               transpose_k, transpose_q)
from ._shim import nisa, nki, nl
from ._softmax import ADDITIVE_MASK, MAX_FLOOR, exp_rows, rescale_factor, update_acc, update_sum
from ._tiling import PMAX, tiles

KV_STEP = 4 * KV_TILE  # keys per online-softmax step (2-byte inputs): 4 PSUM banks of scores, one max/exp/rescale
Q_PREFETCH = 2  # query tiles whose q rows are DMA'd ahead of the one being computed
PIPELINE_LAG = 2  # (key step, head) items between an item's exp and its P·V in program order
MAX_HEAD_DIM = 4 * D_CHUNK  # the P·V tile [128, D] fp32 must fit one 2 KiB PSUM bank (512 fp32)
RESIDENT_KV_BYTES = 48 * 1024  # SBUF bytes per partition for one (b, kv head)'s kᵀ and v; longer Skv streams tiles
HEAD_BLOCK_ELEMS = 4096  # query heads per block: heads · D fp32 accumulators <= 16 KiB per partition


@nki.jit
def flash_attention(q, k, v, scale=1.0, causal=False, sliding_window=None, softcap=None,
                    resident_kv_bytes=RESIDENT_KV_BYTES):
    """Dense attention over one batch of prefill queries, GQA/MQA, causal / sliding window / softcap.

    Dimensions:  B batch; Sq, Skv query/key lengths; Hq = g·Hkv heads; D <= 512 head dim.
    Args:        q: [B, Sq, Hq, D] bfloat16|float16|float32, HBM.
                 k, v: [B, Skv, Hkv, D], q's dtype, HBM.
                 scale: score multiplier > 0 (compile-time float).
                 causal: bottom-right causal mask (query i sees keys j <= i + Skv - Sq).
                 sliding_window: w >= 1 also hides keys j < i + Skv - Sq - w + 1; None = off.
                 softcap: c > 0 maps scaled scores s -> c·tanh(s / c) before masking; None = off.
                 resident_kv_bytes: SBUF bytes per partition a (b, kv head)'s kᵀ and v may take to be loaded once;
                 above it key tiles are loaded per query tile (0 forces streaming).
                 (Plain parameters with defaults, not keyword-only: the NKI compiler frontend rejects `*`.)
    Returns:     out: [B, Sq, Hq, D], q's dtype, shared HBM; a query that sees no key gets zeros.
    Tiling:      Sq in 128-row tiles; keys in 2048-key softmax steps (1024 for fp32) of 512-key matmuls, 128-aligned;
                 P·V in 128-key chunks; D in 128-row slices for QKᵀ.
    Numerics:    scores, max, sums, accumulators in fp32; P cast to q's dtype before P·V (fp32 stays fp32).
                 Masked scores get ADDITIVE_MASK / max(exp_scale, 1) added and exp_scale·m is floored at MAX_FLOOR,
                 so masked keys contribute exactly 0 even in a key tile where a row sees nothing.
    Pseudocode:  see the module docstring.
    """
    _check_inputs(q, k, v, scale, sliding_window, softcap)
    batch, sq, hq, d = q.shape
    hkv = k.shape[2]
    out = nl.ndarray((batch, sq, hq, d), dtype=q.dtype, buffer=nl.shared_hbm)
    group = hq // hkv
    heads = max(1, min(group, HEAD_BLOCK_ELEMS // d))
    resident = _kv_bytes(k.shape[1], d, q.dtype) <= resident_kv_bytes
    # masks are added to the PSUM scores by a matmul with the identity (TensorE has slack, VectorE has not)
    ident = _identity() if causal or sliding_window is not None else None
    call = AttentionCall(q, k, v, out, scale, causal, sliding_window, softcap, ident)
    visible = _visible_tiles(call, batch, hkv, group, heads)
    pending = []  # issued-late work in order: PendingPv items and TileStore entries
    _run_tiles(visible, call, resident, pending)
    _drain(pending, call.split_copies)
    return out


class AttentionCall(nl.NKIObject):
    """Compile-time facts of one call: the HBM tensors, the options and what follows from them.

    exp_scale: multiplier inside the exp (softcap c, else scale); mask_bias: the additive mask value (so that
    exp_scale · mask_bias stays finite); step: keys per online-softmax step (fp32 inputs: half, so a step's scores
    and pᵀ fit PSUM together); ident: `_identity()` or None without masks; split_copies: pᵀ PSUM->SBUF copies
    alternate VectorE / ScalarE (v2: VectorE is as slow per element as ScalarE; v3+: VectorE takes them all, as
    moving some to ScalarE, busy with the exps, models slower)."""

    def __init__(self, q, k, v, out, scale, causal, window, softcap, ident):
        self.q, self.k, self.v, self.out = q, k, v, out
        self.sq, self.skv, self.d = q.shape[1], k.shape[1], q.shape[3]
        self.scale, self.causal, self.window, self.softcap, self.ident = scale, causal, window, softcap, ident
        self.exp_scale = softcap if softcap is not None else scale
        self.mask_bias = ADDITIVE_MASK / max(self.exp_scale, 1.0)
        self.step = KV_STEP * 2 // _itemsize(k.dtype)
        self.split_copies = nisa.get_nc_version() == nisa.nc_version.gen2


class QueryTile(nl.NKIObject):
    """Query rows q0 .. q0+nq of heads h0 .. h0+nh (all reading kv head hk) of batch b, and the keys [lo, hi) some
    of its rows may see."""

    def __init__(self, b, hk, h0, nh, q0, nq, lo, hi):
        self.b, self.hk, self.h0, self.nh, self.q0, self.nq, self.lo, self.hi = b, hk, h0, nh, q0, nq, lo, hi


class KeyStep(nl.NKIObject):
    """Keys k0 .. k0+n of one online-softmax step (or all of a resident kv head's): kT [128 (D slice), D/128, n],
    v [128 keys, n/128, D] SBUF views, and the step's MaskBias (None when nothing in it is masked)."""

    def __init__(self, k0, n, kT, v, bias):
        self.k0, self.n, self.kT, self.v, self.bias = k0, n, kT, v, bias


class MaskBias(nl.NKIObject):
    """Additive mask of score columns c0 .. c1 of a key step: tile [128, c1 - c0] bfloat16 SBUF (0 or mask_bias)."""

    def __init__(self, tile, c0, c1):
        self.tile, self.c0, self.c1 = tile, c0, c1


class TileState(nl.NKIObject):
    """Online-softmax state of one query tile: acc [128, nh, D] and run_sum [128, nh] fp32 SBUF; neg_max: per head
    a [128, 1] fp32 tile, None before its first key step."""

    def __init__(self, nh, d):
        self.acc = nl.ndarray((Q_TILE, nh, d), dtype=nl.float32, buffer=nl.sbuf)
        self.run_sum = nl.ndarray((Q_TILE, nh), dtype=nl.float32, buffer=nl.sbuf)
        self.neg_max = [None] * nh


class PendingPv(nl.NKIObject):
    """A (key step, head) item whose P·V is still to issue: p [128, n] (q's dtype), its tile_sum and rescale
    ([128, 1] fp32; rescale None on the tile's first step), v [128 keys, n/128, D], head h of `state`, nq rows."""

    def __init__(self, p, tile_sum, rescale, v, h, n, state, nq):
        self.p, self.tile_sum, self.rescale, self.v = p, tile_sum, rescale, v
        self.h, self.n, self.state, self.nq = h, n, state, nq


class TileStore(nl.NKIObject):
    """A finished query tile waiting to be stored into `out` (HBM): its state, and diag = q0 + Skv - Sq under the
    causal mask (rows p with diag + p < 0 see no key), else 0."""

    def __init__(self, out, tile, state, diag):
        self.out, self.tile, self.state, self.diag = out, tile, state, diag


def _visible_tiles(call, batch, hkv, group, heads):
    """Query tiles that see at least one key, as QueryTile in (batch, kv head, head block, tile) order. Tiles that
    see none are stored as zeros here."""
    out = []
    for b in range(batch):
        for hk in range(hkv):
            for h0 in range(hk * group, (hk + 1) * group, heads):
                nh = min(heads, (hk + 1) * group - h0)
                for q0, nq in tiles(call.sq, Q_TILE):
                    lo, hi = _key_range(q0, nq, call)
                    if hi > lo:
                        out.append(QueryTile(b, hk, h0, nh, q0, nq, lo, hi))
                    else:
                        _store_zeros(call.out, b, q0, nq, h0, nh)
    return out


def _run_tiles(tasks, call, resident, pending):
    """Attention of every visible query tile, with its inputs loaded ahead of use.

    q rows are loaded Q_PREFETCH tiles ahead and resident k/v rows one kv head ahead, as DMAs only; qᵀ is made one
    tile ahead and kᵀ when its kv head starts. So no in-order compute queue waits behind a DMA that is itself
    queued behind earlier output stores, and the next tile's qᵀ copies are not queued behind this tile's exps."""
    q, k, v, skv, d = call.q, call.k, call.v, call.skv, call.d
    q_rows = [load_q_rows(q, t.b, t.q0, t.nq, t.h0, t.nh) for t in tasks[:Q_PREFETCH]]
    qT = [transpose_q(q_rows.pop(0), tasks[0].nq)] if tasks else []
    kv_head, kv_all = None, None
    kv_rows = load_kv_rows(k, v, tasks[0].b, tasks[0].hk, 0, skv) if resident and tasks else None
    for i, tile in enumerate(tasks):
        if i + Q_PREFETCH < len(tasks):
            ahead = tasks[i + Q_PREFETCH]
            q_rows.append(load_q_rows(q, ahead.b, ahead.q0, ahead.nq, ahead.h0, ahead.nh))
        if i + 1 < len(tasks):
            qT.append(transpose_q(q_rows.pop(0), tasks[i + 1].nq))
        if resident and (tile.b, tile.hk) != kv_head:
            kv_head, (k_rows, v_rows) = (tile.b, tile.hk), kv_rows
            following = [t for t in tasks[i:] if (t.b, t.hk) != kv_head]
            if following:
                kv_rows = load_kv_rows(k, v, following[0].b, following[0].hk, 0, skv)
            kv_all = KeyStep(0, skv, transpose_k(k_rows, skv, d), v_rows, None)
        _query_tile(qT.pop(0), kv_all, tile, call, pending)


def _check_inputs(q, k, v, scale, sliding_window, softcap):
    """Shapes, dtypes and options the kernel is written for; raises ValueError naming the rule and the values."""
    if len(q.shape) != 4 or len(k.shape) != 4 or tuple(k.shape) != tuple(v.shape):
        raise ValueError(f"q, k, v: expected q [B, Sq, Hq, D] and k, v [B, Skv, Hkv, D], got {q.shape}, {k.shape}, "
                         f"{v.shape}")
    if k.shape[0] != q.shape[0] or k.shape[3] != q.shape[3] or q.shape[2] % k.shape[2] != 0:
        raise ValueError(f"k: batch and head_dim must match q and Hq % Hkv == 0, got q {q.shape}, k {k.shape}")
    if q.shape[3] > MAX_HEAD_DIM:
        raise ValueError(f"q: head_dim D={q.shape[3]} exceeds {MAX_HEAD_DIM} (P·V tile must fit one PSUM bank)")
    if k.dtype != q.dtype or v.dtype != q.dtype:
        raise ValueError(f"k, v: dtype must be q's {q.dtype}, got {k.dtype}, {v.dtype}")
    if not scale > 0:
        raise ValueError(f"scale: must be > 0, got {scale}")
    if sliding_window is not None and sliding_window < 1:
        raise ValueError(f"sliding_window: must be >= 1 or None, got {sliding_window}")
    if softcap is not None and not softcap > 0:
        raise ValueError(f"softcap: must be > 0 or None, got {softcap}")


def _itemsize(dtype):
    return 4 if dtype == nl.float32 else 2


def _kv_bytes(skv, d, dtype):
    """SBUF bytes per partition of a resident (b, kv head): kᵀ [128, D/128, Skv], k rows and v [128, Skv/128, D]."""
    chunks = -(-skv // PMAX)
    return (-(-d // D_CHUNK) * skv + 2 * chunks * d) * _itemsize(dtype)


def _key_range(q0, nq, call):
    """[lo, hi): the keys some query row of [q0, q0 + nq) may see (hi <= lo: none, the rows are fully masked)."""
    diag = q0 + call.skv - call.sq  # the last key row q0 may see under the causal mask; row p sees up to diag + p
    lo = max(0, diag - call.window + 1) if call.window is not None else 0
    hi = min(call.skv, diag + nq) if call.causal else call.skv
    return lo, hi


def _store_zeros(out, b, q0, nq, h0, nh):
    """Rows that see no key (causal with Sq > Skv) are zeros: written directly, no exp arithmetic involved."""
    o_sb = nl.ndarray((Q_TILE, nh, out.shape[3]), dtype=out.dtype, buffer=nl.sbuf)
    nisa.memset(dst=o_sb[:nq], value=0.0)
    nisa.dma_copy(dst=out[b, q0:q0 + nq, h0:h0 + nh, :], src=o_sb[:nq])


def _identity():
    """I [128, 128] bfloat16 SBUF (GpSimd): the stationary operand that adds a mask tile to PSUM scores."""
    ident = nl.ndarray((PMAX, PMAX), dtype=nl.bfloat16, buffer=nl.sbuf)
    nisa.memset(dst=ident, value=1.0, engine=nisa.engine.gpsimd)
    nisa.affine_select(dst=ident, pattern=[[-1, PMAX]], channel_multiplier=1, on_true_tile=ident, on_false_value=0.0,
                       cmp_op=nl.equal)  # keep 1 where p - f == 0
    return ident


def _query_tile(qT, kv_all, tile, call, pending):
    """Attention of one QueryTile over its keys [lo, hi).

    qT: `transpose_q` of the rows; kv_all: the resident keys of the kv head (a KeyStep over all of Skv) or None
    (stream them per step). Each (key step, head) item leaves its P·V in `pending` (also across query tiles,
    followed by the tile's TileStore); see `_item` for the order the work is issued in."""
    state = TileState(tile.nh, call.d)
    start = tile.lo // PMAX * PMAX  # 128-aligned so 128-key chunks of P line up with the partitions of v
    for offset, n in tiles(tile.hi - start, call.step):
        k0 = start + offset
        if kv_all is None:
            kT, v_t = kv_tiles(call.k, call.v, tile.b, tile.hk, k0, n)
        else:
            kT = kv_all.kT[:, :, k0:k0 + n]
            v_t = kv_all.v[:, k0 // PMAX:(k0 + n + PMAX - 1) // PMAX, :]
        keys = KeyStep(k0, n, kT, v_t, _mask_bias(tile, k0, n, call))
        for h in range(tile.nh):
            pending.append(_item(qT[:, h], keys, tile, state, h, call, pending))
    pending.append(TileStore(call.out, tile, state, tile.q0 + call.skv - call.sq if call.causal else 0))


def _item(qT_h, keys, tile, state, h, call, pending):
    """Scores, row max and exp of one (key step, head) item, interleaved with the P·V of the item PIPELINE_LAG
    back; returns the item as a PendingPv.

    Program order, chosen for engines that each run their queue in order: pᵀ transposes of the old item (TensorE),
    this item's QKᵀ (TensorE), the old item's pᵀ copies (VectorE) and P·V (TensorE), this item's row max
    (VectorE) and exp (ScalarE), then the old item's acc/run_sum update (VectorE). So TensorE multiplies new scores
    while VectorE copies old pᵀ, and neither waits for the other's long instruction."""
    due = _due(pending, PIPELINE_LAG)
    pT_ps = _transpose_p(due) if due else None
    s = _scores(qT_h, keys, tile.nq, call)
    pv_ps = _pv(due, pT_ps, call.split_copies) if due else None
    neg_max_old = state.neg_max[h]
    state.neg_max[h] = _row_max(s, tile.nq, keys.n, neg_max_old, call.exp_scale)
    item = _exp(s, keys, tile.nq, neg_max_old, state, h, call.exp_scale)
    if due:
        _update(due, pv_ps)
    return item


def _due(pending, keep):
    """Pop and return the oldest PendingPv once more than `keep` wait (None before); TileStores found in front of it
    are issued on the way."""
    while len(pending) > keep:
        entry = pending.pop(0)
        if isinstance(entry, PendingPv):
            return entry
        _store(entry)
    return None


def _drain(pending, split_copies):
    """Issue everything still pending, in order."""
    due = _due(pending, 0)
    while due:
        _update(due, _pv(due, _transpose_p(due), split_copies))
        due = _due(pending, 0)


def _store(entry):
    """out rows [q0, q0 + nq), heads [h0, h0 + nh) of a TileStore = acc / run_sum in out's dtype; rows p with
    diag + p < 0 (causal, Sq > Skv: they see no key) get 1/run_sum := 0, i.e. zeros."""
    tile, state, out = entry.tile, entry.state, entry.out
    nq, nh, d = tile.nq, tile.nh, state.acc.shape[2]
    inv = nl.ndarray((Q_TILE, nh), dtype=nl.float32, buffer=nl.sbuf)
    nisa.reciprocal(dst=inv[:nq], data=state.run_sum[:nq])
    if entry.diag < 0:
        nisa.affine_select(dst=inv[:nq], pattern=[[0, nh]], channel_multiplier=1, on_true_tile=inv[:nq],
                           on_false_value=0.0, cmp_op=nl.greater_equal, offset=entry.diag)
    o_sb = nl.ndarray((Q_TILE, nh, d), dtype=out.dtype, buffer=nl.sbuf)
    for h in range(nh):  # on ScalarE: VectorE carries the row maxima
        nisa.activation(dst=o_sb[:nq, h, :], op=nl.copy, data=state.acc[:nq, h, :], scale=inv[:nq, h:h + 1])
    nisa.dma_copy(dst=out[tile.b, tile.q0:tile.q0 + nq, tile.h0:tile.h0 + nh, :], src=o_sb[:nq])


def _mask_bias(tile, k0, n, call):
    """Additive mask of the [nq, n] score tile at (q0, k0) as a MaskBias, or None when no element is masked.

    The bias tile [128, c1 - c0] bfloat16 SBUF holds 0 (kept) or call.mask_bias for score columns [c0, c1) — the
    only columns with masked elements (under causal masking the last nq - 1 keys, under a sliding window the first
    ones), so the per-head add stays narrow. Built on GpSimd (affine_select), shared by the heads."""
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
    bias = nl.ndarray((Q_TILE, c1 - c0), dtype=nl.bfloat16, buffer=nl.sbuf)  # a TensorE operand; bf16 holds -3e38
    nisa.memset(dst=bias[:nq], value=0.0, engine=nisa.engine.gpsimd)
    for _, _, step, channel_multiplier, offset in rules:
        nisa.affine_select(dst=bias[:nq], pattern=[[step, c1 - c0]], channel_multiplier=channel_multiplier,
                           on_true_tile=bias[:nq], on_false_value=call.mask_bias, cmp_op=nl.greater_equal,
                           offset=offset + c0 * step)
    return MaskBias(bias, c0, c1)


def _scores(qT_h, keys, nq, call):
    """s = q·kᵀ of one head over one KeyStep, softcapped and masked: [128, ≥n] fp32 (valid [:nq, :n]).

    qT_h: [128, D/128, 128] SBUF; keys.kT: [128, D/128, n] SBUF (D in `tiles(d, D_CHUNK)` row slices). One 512-key
    PSUM bank per matmul, D slices accumulated in the bank. The result stays in PSUM (max and exp read it there),
    the mask added by one more accumulating matmul I·bias per bank; a softcap makes an SBUF tile
    t = tanh(scale·s/c) instead, masked by a VectorE add (the mask must follow the tanh)."""
    n, kT, bias, softcap = keys.n, keys.kT, keys.bias, call.softcap
    s_ps = nl.ndarray((Q_TILE, -(-n // KV_TILE) * KV_TILE), dtype=nl.float32, buffer=nl.psum)  # whole banks
    for c0, width in tiles(n, KV_TILE):
        for j, (d0, dc) in enumerate(tiles(call.d, D_CHUNK)):
            nisa.nc_matmul(dst=s_ps[:nq, c0:c0 + width], stationary=qT_h[:dc, j, :nq],
                           moving=kT[:dc, j, c0:c0 + width])
        if bias is not None and softcap is None:
            lo, hi = max(bias.c0, c0), min(bias.c1, c0 + width)  # the mask columns inside this bank
            if lo < hi:
                nisa.nc_matmul(dst=s_ps[:nq, lo:hi], stationary=call.ident[:nq, :nq],
                               moving=bias.tile[:nq, lo - bias.c0:hi - bias.c0])
    if softcap is None:
        return s_ps
    s = nl.ndarray((Q_TILE, n), dtype=nl.float32, buffer=nl.sbuf)
    nisa.activation(dst=s[:nq, :n], op=nl.tanh, data=s_ps[:nq, :n], scale=call.scale / softcap)
    if bias is not None:
        nisa.tensor_tensor(dst=s[:nq, bias.c0:bias.c1], data1=s[:nq, bias.c0:bias.c1], data2=bias.tile[:nq],
                           op=nl.add)
    return s


def _row_max(s, nq, n, neg_max_old, exp_scale):
    """neg_max' = min(-exp_scale·rowmax(s), neg_max) [128, 1] fp32 (VectorE); the first step (neg_max_old None)
    floors exp_scale·m at MAX_FLOOR instead."""
    tile_neg_max = nl.ndarray((Q_TILE, 1), dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_reduce(dst=tile_neg_max[:nq], op=nl.maximum, data=s[:nq, :n], axis=1, negate=True)
    neg_max = nl.ndarray((Q_TILE, 1), dtype=nl.float32, buffer=nl.sbuf)
    if neg_max_old is None:
        nisa.tensor_scalar(dst=neg_max[:nq], data=tile_neg_max[:nq], op0=nl.multiply, operand0=exp_scale,
                           op1=nl.minimum, operand1=-MAX_FLOOR)
    else:
        nisa.scalar_tensor_tensor(dst=neg_max[:nq], data=tile_neg_max[:nq], op0=nl.multiply, operand0=exp_scale,
                                  op1=nl.minimum, operand1=neg_max_old[:nq])
    return neg_max


def _exp(s, keys, nq, neg_max_old, state, h, exp_scale):
    """p = exp(exp_scale·s + neg_max) [128, n] in the K/V dtype with its tile_sum [128, 1] in one ScalarE
    instruction, and rescale [128, 1] fp32; returns them as a PendingPv. On the first step (neg_max_old None)
    tile_sum goes straight into the head's run_sum and rescale is None."""
    n, neg_max, run_sum_h = keys.n, state.neg_max[h], state.run_sum[:, h:h + 1]
    p = nl.ndarray((Q_TILE, n), dtype=keys.kT.dtype, buffer=nl.sbuf)
    tile_sum = run_sum_h
    if neg_max_old is not None:
        tile_sum = nl.ndarray((Q_TILE, 1), dtype=nl.float32, buffer=nl.sbuf)
    exp_rows(p[:nq, :n], s[:nq, :n], neg_max[:nq], exp_scale, tile_sum[:nq])
    rescale = None
    if neg_max_old is not None:
        rescale = nl.ndarray((Q_TILE, 1), dtype=nl.float32, buffer=nl.sbuf)
        rescale_factor(rescale[:nq], neg_max_old[:nq], neg_max[:nq])
    return PendingPv(p, tile_sum, rescale, keys.v, h, n, state, nq)


def _transpose_p(item):
    """pᵀ [128 keys, n/128 chunks, 128 queries] in PSUM: TensorE transposes of p [nq, n], 128 keys at a time."""
    n, nq, p = item.n, item.nq, item.p
    pT_ps = nl.ndarray((PMAX, -(-n // PMAX), Q_TILE), dtype=p.dtype, buffer=nl.psum)
    for c, (f0, kc) in enumerate(tiles(n, PMAX)):
        nisa.nc_transpose(dst=pT_ps[:kc, c, :nq], data=p[:nq, f0:f0 + kc])
    return pT_ps


def _pv(item, pT_ps, split_copies):
    """pv = Σ_chunks pᵀ[chunk]ᵀ·v[chunk] [128, D] fp32 in one PSUM bank, after copying pᵀ to SBUF (TensorE reads
    SBUF) in 512-key groups by VectorE (every other group by ScalarE when `split_copies`), each group's matmuls
    issued as soon as its copy is. item.v: [128 keys, n/128 chunks, D] SBUF."""
    n, nq, v_t = item.n, item.nq, item.v
    pv_ps = nl.ndarray((Q_TILE, item.state.acc.shape[2]), dtype=nl.float32, buffer=nl.psum)
    pT = nl.ndarray((PMAX, -(-n // PMAX), Q_TILE), dtype=item.p.dtype, buffer=nl.sbuf)
    group = KV_TILE // PMAX  # chunks per copy
    for g, (c0, nc) in enumerate(tiles(n // PMAX, group)):
        psum_copy(pT[:, c0:c0 + nc, :nq], pT_ps[:, c0:c0 + nc, :nq], split_copies and g % 2 == 1)
        for c in range(c0, c0 + nc):
            nisa.nc_matmul(dst=pv_ps[:nq, :], stationary=pT[:, c, :nq], moving=v_t[:, c, :])
    if n % PMAX:  # the ragged last chunk
        c, kc = n // PMAX, n % PMAX
        psum_copy(pT[:kc, c, :nq], pT_ps[:kc, c, :nq], False)
        nisa.nc_matmul(dst=pv_ps[:nq, :], stationary=pT[:kc, c, :nq], moving=v_t[:kc, c, :])
    return pv_ps


def _update(item, pv_ps):
    """acc_h = acc_h·rescale + pv and run_sum_h = run_sum_h·rescale + tile_sum for the item's head h; the first
    step (rescale None) writes acc_h = pv (ScalarE copy), its tile_sum being in run_sum_h already (see `_exp`)."""
    nq, h = item.nq, item.h
    acc_h, run_sum_h = item.state.acc[:nq, h, :], item.state.run_sum[:nq, h:h + 1]
    if item.rescale is None:
        psum_copy(acc_h, pv_ps[:nq], on_scalar=True)
    else:
        update_acc(acc_h, item.rescale[:nq], pv_ps[:nq])
        update_sum(run_sum_h, item.rescale[:nq], item.tile_sum[:nq])
