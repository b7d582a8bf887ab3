"""Flash attention forward (prefill) as an NKI kernel: out = softmax(mask(softcap(scale · q kᵀ))) v.

The S×S score matrix never exists in HBM: scores live one [128 queries, ≤2048 keys] tile at a time in PSUM and an
online softmax (`_softmax.py`: neg_max, run_sum, rescale, acc) folds every key step into fp32 accumulators.

Algorithm (all loops are Python loops over compile-time shapes):

    for b, kv head hk:    kᵀ [D, Skv] and v [128 keys, Skv/128, D] loaded once into SBUF when they fit
                          (k rows DMA'd contiguously, transposed on TensorE), else per key step below
      for each block of query heads reading hk (GQA: h // (Hq/Hkv) == hk), each 128-row query tile:
        keys [lo, hi) some row of the tile may see, from the shapes (none: the tile is stored as zeros)
        q rows [128, heads, D] in one DMA; qᵀ [D, 128] per head by TensorE transposes
        for each kv_step-key step of [lo, hi) (128-aligned; 1024 keys for 2-byte inputs), for each head:
            s = qᵀ·kᵀ into the next of score_buffers PSUM tiles (512 keys per matmul)  [softcap: t = tanh(scale·s/c)]
            [mask: hidden scores := FP32_MIN by selection, in place (v3+ range_select, v2 select_reduce)]
            neg_max' = min(-exp_scale·rowmax(s), neg_max)   (VectorE, reads PSUM; the selection's reduce, or on v3+
                                                            without a mask one tensor_scalar_reduce: s := -exp_scale·s)
            p = exp(exp_scale·s + neg_max') in q's dtype, tile_sum in the same instruction (ScalarE, reads PSUM)
            pᵀ: its first p_dma_chunks 128-key chunks by an SBUF->SBUF dma_transpose (v3+), the rest by TensorE
                transposes -> SBUF (VectorE);  pv = Σ_chunks pᵀ·v (one PSUM bank)
          rescale = exp(neg_max' - neg_max) for all heads of the step at once (GpSimd difference, one ScalarE exp)
          per head: acc = acc·rescale + pv (VectorE);  run_sum = run_sum·rescale + tile_sum (GpSimd)
        out = acc / run_sum  (rows that see no key: 0)
    (exp_scale = c with a softcap, else scale.)

Schedule: engines run their instruction queues in order, so program order is the schedule. A (step, head) item's
P·V is issued pipeline_lag items after its exp, interleaved with later items' QKᵀ and row max (`_item`); q rows
and resident k/v rows are DMA'd ahead, their transposes issued just before use (`_run_tiles`). The score tiles are
score_buffers PSUM tiles allocated once and used in turn: a score tile is held from its QKᵀ (TensorE) through the
row max (VectorE) and exp (ScalarE), about twice as long as the ScalarE exp that sets the pace at D=128 (its
rate equals TensorE's QKᵀ + P·V rate), so with one buffer the three engines would take turns rather than overlap.
ScalarE does the exps and little else (the rescale once per step for all heads, the store's scaling; v3+ copies
of P·V into acc on VectorE, run_sum on GpSimd).

Features: causal with bottom-right alignment (query i sees keys j <= i + Skv - Sq), sliding window (also hides
j < i + Skv - Sq - w + 1), softcap (c·tanh(s/c), the c folded into the exp), GQA/MQA (the heads of a group share
each K/V tile), head_dim up to 512 (QKᵀ accumulates 128-row slices of D in PSUM; the [128, D] fp32 P·V tile still
fits one 2 KiB bank), float32 / bfloat16 / float16 inputs. Key steps no row of a tile can see are skipped and only
steps that hold hidden elements are masked (decided from shapes).

Non-finite inputs: a NaN/Inf in q or k reaches exactly the outputs that see it. Masking is a selection, so a hidden
key's score never meets arithmetic; on NeuronCore-v2, whose TensorE transposes are identity matmuls that would
spread one NaN over a whole row of the transpose, q and k are cleaned before their transposes and the affected rows
flagged NaN at the store (`_attention_finite.py`, which says why and how). Target branches (`AttentionCall.v2`):
the mask instruction, that isolation, and where pᵀ copies run (activation bias is always a (P, 1) tile). Loads and
transposes of q, k, v live in `_attention_tiles.py`, the tunables and their defaults in `_attention_tunables.py`.

LNC=2 (`flash_attention[2]`): the two programs take alternate query-row tiles (zigzag, so causal work splits
evenly), each loading every kv head. Splitting by kv head instead models 1.2x rather than 2x on trn2 (S=4096, 32/8
heads): both cores then store into the same rows of `out` (other heads), and the performance model bounds a strided
HBM footprint by its flat extent, so it orders those disjoint stores as if they overlapped — a model limitation
(written down, not worked around in `harness/perf/`); splitting by rows is as good a split on the hardware.

Reference: nkilab.reference.attention.attention
"""

from ._attention_finite import bad_keys, clean_rows, count_bad_keys, ones_tile, output_flags
from ._attention_mask import RowBounds, mask_keep, mask_row_max
from ._attention_state import KeyStep, PendingPv, QueryTile, StepRescale, TileState, TileStore
from ._attention_tiles import (D_CHUNK, KV_TILE, Q_TILE, load_kT, load_q_rows, load_qT, load_rows, psum_copy,
                               transpose_k, transpose_q)
from ._attention_tunables import resolve
from ._dtypes import itemsize
from ._shim import nisa, nki, nl
from ._softmax import exp_rows, update_acc, update_sum
from ._tiling import PMAX, tiles

MAX_HEAD_DIM = 4 * D_CHUNK  # the P·V tile [128, D] fp32 must fit one 2 KiB PSUM bank (512 fp32)
# the fewest pᵀ chunks worth one SBUF->SBUF dma_transpose: a shorter one still holds the DMA engines for their
# per-packet floor (600 ns on trn2, modeled: 4 chunks of 32 KiB take ~0.7 us), so TensorE transposes those
P_DMA_MIN_CHUNKS = 4


@nki.jit
def flash_attention(q, k, v, scale=1.0, causal=False, sliding_window=None, softcap=None, kv_step=None,
                    q_prefetch=None, pipeline_lag=None, resident_kv_bytes=None, head_block_elems=None,
                    p_dma_chunks=None, qk_dma_transpose=None, scalar_copies=None, score_buffers=None):
    """Dense attention over one batch of prefill queries, GQA/MQA, causal / sliding window / softcap.

    Dimensions:  B batch; Sq, Skv query/key lengths; Hq = g·Hkv heads; D <= 512 head dim.
    Args:        q: [B, Sq, Hq, D] bfloat16|float16|float32, HBM.
                 k, v: [B, Skv, Hkv, D], q's dtype, HBM.
                 scale: score multiplier > 0 (compile-time float).
                 causal: bottom-right causal mask (query i sees keys j <= i + Skv - Sq).
                 sliding_window: w >= 1 also hides keys j < i + Skv - Sq - w + 1; None = off.
                 softcap: c > 0 maps scaled scores s -> c·tanh(s / c) before masking; None = off.
                 kv_step, q_prefetch, pipeline_lag, resident_kv_bytes, head_block_elems, p_dma_chunks,
                 qk_dma_transpose, scalar_copies, score_buffers: the tunables (ints;
                 None = the default for the target and dtype), described and defaulted in `_attention_tunables`.
                 (Plain parameters with defaults, not keyword-only: the NKI compiler frontend rejects `*`.)
    Returns:     out: [B, Sq, Hq, D], q's dtype, shared HBM; a query that sees no key gets zeros.
    Tiling:      Sq in 128-row tiles; keys in 1024-key softmax steps (512 for fp32) of 512-key matmuls, 128-aligned;
                 P·V in 128-key chunks; D in 128-row slices for QKᵀ.
    Numerics:    scores, max, sums, accumulators in fp32; P cast to q's dtype before P·V (fp32 stays fp32).
                 Hidden scores are replaced by FP32_MIN (a selection: an Inf/NaN there reaches nothing) and
                 exp_scale·m is floored at MAX_FLOOR, so hidden keys contribute exactly 0 even in a key tile where a
                 row sees nothing. Non-finite q / k elements reach exactly the rows that see them (on NeuronCore-v2
                 through `_attention_finite`); a non-finite v row also reaches the rows of its P·V chunk that give
                 it weight 0 (0 · NaN), as in the reference's matrix product.
    Pseudocode:  see the module docstring.
    """
    _check_inputs(q, k, v, scale, sliding_window, softcap)
    batch, sq, hq, d = q.shape
    hkv = k.shape[2]
    out = nl.ndarray((batch, sq, hq, d), dtype=q.dtype, buffer=nl.shared_hbm)
    group = hq // hkv
    tun = resolve(nisa.get_nc_version() == nisa.nc_version.gen2, itemsize(q.dtype),
                  dict(kv_step=kv_step, q_prefetch=q_prefetch, pipeline_lag=pipeline_lag,
                       resident_kv_bytes=resident_kv_bytes, head_block_elems=head_block_elems,
                       p_dma_chunks=p_dma_chunks, qk_dma_transpose=qk_dma_transpose,
                       scalar_copies=scalar_copies, score_buffers=score_buffers))
    heads = max(1, min(group, tun["head_block_elems"] // d))
    resident = _kv_bytes(k.shape[1], d, q.dtype) <= tun["resident_kv_bytes"]
    call = AttentionCall(q, k, v, out, scale, causal, sliding_window, softcap, tun, heads)
    visible = _visible_tiles(call, batch, hkv, group, heads)
    pending = []  # issued-late work in order: PendingPv items and TileStore entries
    _run_tiles(visible, call, resident, pending)
    _drain(pending, call)
    return out


class AttentionCall(nl.NKIObject):
    """Compile-time facts of one call: the HBM tensors, the options and what follows from them.

    exp_scale: multiplier inside the exp (softcap c, else scale); step, prefetch, lag, p_dma, qk_dma, scalar_copies:
    the tunables kv_step, q_prefetch, pipeline_lag, p_dma_chunks, qk_dma_transpose, scalar_copies
    (`_attention_tunables`; the two DMA-transpose ones only for 2-byte inputs); s_bufs: the score_buffers PSUM score
    tiles [128, kv_step] fp32, s_next the count of score tiles handed out (`_scores` takes them in turn); v2
    (NeuronCore-v2): non-finite q / k elements are isolated before their transposes (`_attention_finite`; `ones` is
    its all-visible chunk, None on v3+)."""

    def __init__(self, q, k, v, out, scale, causal, window, softcap, tun, heads):
        self.q, self.k, self.v, self.out = q, k, v, out
        self.sq, self.skv, self.d = q.shape[1], k.shape[1], q.shape[3]
        self.scale, self.causal, self.window, self.softcap = scale, causal, window, softcap
        self.exp_scale = softcap if softcap is not None else scale
        self.step, self.prefetch = tun["kv_step"], tun["q_prefetch"]
        # at least the heads of a block less one, so no P·V of a key step is due before its StepRescale is issued
        self.lag = max(tun["pipeline_lag"], heads - 1)
        two_byte = itemsize(k.dtype) == 2  # dma_transpose moves 2-byte elements
        self.p_dma = tun["p_dma_chunks"] if two_byte else 0
        self.qk_dma = bool(tun["qk_dma_transpose"]) and two_byte
        self.scalar_copies = tun["scalar_copies"]
        self.v2 = nisa.get_nc_version() == nisa.nc_version.gen2
        self.ones = ones_tile() if self.v2 else None
        width = -(-self.step // KV_TILE) * KV_TILE
        self.s_bufs = [nl.ndarray((Q_TILE, width), dtype=nl.float32, buffer=nl.psum)
                       for _ in range(tun["score_buffers"])]
        self.s_next = 0


def _visible_tiles(call, batch, hkv, group, heads):
    """This program's query tiles that see at least one key, as QueryTile in (batch, kv head, head block, tile)
    order; its tiles that see none are stored as zeros here.

    LNC=2 (`flash_attention[2]`, two NeuronCores): the query tiles are dealt to the programs by row, in the zigzag
    0, 1, 1, 0, 0, 1, … so causal work (tile t sees (t + 1)·128 keys) splits evenly, and each core writes whole
    rows of `out` of its own — with (b, kv head) groups dealt instead, both cores store into the same rows
    (other heads) and the performance model, which bounds a strided HBM footprint by its flat extent, serializes
    the two cores' stores (see the module docstring). Each core loads every kv head's kᵀ/v. A single query tile
    is dealt by group instead. LNC=1 owns everything."""
    programs, me = nl.num_programs(0), nl.program_id(0)
    by_rows = call.sq > Q_TILE
    out = []
    for b in range(batch):
        for hk in range(hkv):
            for h0 in range(hk * group, (hk + 1) * group, heads):
                nh = min(heads, (hk + 1) * group - h0)
                for t, (q0, nq) in enumerate(tiles(call.sq, Q_TILE)):
                    zigzag = t % programs if (t // programs) % 2 == 0 else programs - 1 - t % programs
                    if (zigzag if by_rows else b * hkv + hk) % programs != me:
                        continue
                    lo, hi = _key_range(q0, nq, call)
                    if hi > lo:
                        out.append(QueryTile(b, hk, h0, nh, q0, nq, lo, hi))
                    else:
                        _store_zeros(call.out, b, q0, nq, h0, nh)
    return out


def _run_tiles(tasks, call, resident, pending):
    """Attention of every visible query tile, with its inputs loaded ahead of use.

    q rows (v3+ 2-byte: qᵀ by DMA) are loaded call.prefetch tiles ahead and resident k/v rows (kᵀ) one kv head
    ahead, as DMAs only; a TensorE qᵀ is made one tile ahead and kᵀ when its kv head starts. So no in-order compute
    queue waits behind a DMA that is itself queued behind earlier output stores, and the next tile's qᵀ copies are
    not queued behind this tile's exps."""
    skv = call.skv
    q_rows = [_load_q(t, call) for t in tasks[:call.prefetch]]
    qT = [_prepare_q(q_rows.pop(0), tasks[0].nq, call)] if tasks else []
    kv_head, kv_all = None, None
    kv_rows = _load_kv(tasks[0].b, tasks[0].hk, 0, skv, call) if resident and tasks else None
    for i, tile in enumerate(tasks):
        if i + call.prefetch < len(tasks):
            q_rows.append(_load_q(tasks[i + call.prefetch], call))
        if i + 1 < len(tasks):
            qT.append(_prepare_q(q_rows.pop(0), tasks[i + 1].nq, call))
        if resident and (tile.b, tile.hk) != kv_head:
            kv_head, (k_rows, v_rows) = (tile.b, tile.hk), kv_rows
            following = [t for t in tasks[i:] if (t.b, t.hk) != kv_head]
            if following:
                kv_rows = _load_kv(following[0].b, following[0].hk, 0, skv, call)
            kv_all = _key_step(0, skv, k_rows, v_rows, call)
        _query_tile(qT.pop(0), kv_all, tile, call, pending)


def _load_q(tile, call):
    """The DMA half of a query tile's qᵀ: qᵀ itself by dma_transpose (call.qk_dma), else the q rows [128, nh, D]."""
    load = load_qT if call.qk_dma else load_q_rows
    return load(call.q, tile.b, tile.q0, tile.nq, tile.h0, tile.nh)


def _load_kv(b, hk, k0, n, call):
    """(kᵀ by dma_transpose (call.qk_dma) or k rows, v rows) of keys [k0, k0 + n) of kv head hk."""
    load = load_kT if call.qk_dma else load_rows
    return load(call.k, b, hk, k0, n), load_rows(call.v, b, hk, k0, n)


def _prepare_q(q_rows, nq, call):
    """(qᵀ, q_ok) of a `_load_q`: qᵀ as loaded (call.qk_dma), else `transpose_q` of the rows; on v2 of the rows
    cleaned first (`clean_rows`), q_ok [128, nh] saying which were finite, else None."""
    if call.qk_dma:
        return q_rows, None
    if not call.v2:
        return transpose_q(q_rows, nq), None
    clean, q_ok = clean_rows(q_rows, nq)
    return transpose_q(clean, nq), q_ok


def _key_step(k0, n, k_rows, v_rows, call):
    """KeyStep (no mask) of a `_load_kv`: kᵀ as loaded (call.qk_dma), else by `transpose_k` of the k rows
    [128 keys, n/128, D], on v2 of the rows cleaned first with their `bad_keys`."""
    if call.qk_dma:
        return KeyStep(k0, n, k_rows, v_rows, None, None)
    bad = None
    if call.v2:
        rows = min(n, PMAX)
        k_rows, ok = clean_rows(k_rows, rows)
        bad = bad_keys(ok, rows)
    return KeyStep(k0, n, transpose_k(k_rows, n, call.d), v_rows, bad, None)


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


def _kv_bytes(skv, d, dtype):
    """SBUF bytes per partition of a resident (b, kv head): kᵀ [128, D/128, Skv], k rows and v [128, Skv/128, D]."""
    chunks = -(-skv // PMAX)
    return (-(-d // D_CHUNK) * skv + 2 * chunks * d) * itemsize(dtype)


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


def _query_tile(qT, kv_all, tile, call, pending):
    """Attention of one QueryTile over its keys [lo, hi).

    qT: `transpose_q` of the rows; kv_all: the resident keys of the kv head (a KeyStep over all of Skv) or None
    (stream them per step). Each (key step, head) item leaves its P·V in `pending` (also across query tiles,
    followed by the tile's TileStore); see `_item` for the order the work is issued in. qT: (qᵀ, q_ok) of
    `_prepare_q`."""
    qT, q_ok = qT
    diag = tile.q0 + call.skv - call.sq
    masked = call.causal or call.window is not None
    state = TileState(tile.nh, call.d, q_ok, RowBounds(diag, call) if masked and not call.v2 else None)
    start = tile.lo // PMAX * PMAX  # 128-aligned so 128-key chunks of P line up with the partitions of v
    for i, (offset, n) in enumerate(tiles(tile.hi - start, call.step)):
        k0 = start + offset
        if kv_all is None:
            step = _key_step(k0, n, *_load_kv(tile.b, tile.hk, k0, n, call), call)
            kT, v_t, bad = step.kT, step.v, step.bad
        else:
            c0, c1 = k0 // PMAX, (k0 + n + PMAX - 1) // PMAX
            kT, v_t = kv_all.kT[:, :, k0:k0 + n], kv_all.v[:, c0:c1, :]
            bad = None if kv_all.bad is None else kv_all.bad[:, c0:c1]
        keys = KeyStep(k0, n, kT, v_t, bad, mask_keep(tile, k0, n, call))
        if bad is not None:
            count_bad_keys(state.seen, bad, k0, n, tile.nq, diag, call.causal, call.window, call.ones, i == 0)
        state.next_step(tile.nq)
        for h in range(tile.nh):
            pending.append(_item(qT[:, h], keys, tile, state, h, call, pending))
        if state.rescale is not None:  # every head's neg_max of the step exists; no P·V of the step is due yet
            state.rescale.issue()
    pending.append(TileStore(call.out, tile, state, diag if call.causal else 0))


def _item(qT_h, keys, tile, state, h, call, pending):
    """Scores, row max and exp of one (key step, head) item, interleaved with the P·V of the item call.lag
    back; returns the item as a PendingPv.

    Program order, chosen for engines that each run their queue in order: pᵀ transposes of the old item (TensorE),
    this item's QKᵀ (TensorE), the old item's pᵀ copies (VectorE) and P·V (TensorE), this item's row max
    (VectorE) and exp (ScalarE), then the old item's acc/run_sum update (VectorE). So TensorE multiplies new scores
    while VectorE copies old pᵀ, and neither waits for the other's long instruction."""
    due = _due(pending, call.lag)
    pT_ps = _transpose_p(due) if due else None
    s = _scores(qT_h, keys, tile.nq, call)
    pv_ps = _pv(due, pT_ps, call.scalar_copies) if due else None
    neg_max_old = None if state.neg_old is None else state.neg_old[:, h:h + 1]
    s_scale = mask_row_max(s, keys, tile.nq, neg_max_old, call.exp_scale, state.bounds, call.v2,
                           state.neg_max[:, h:h + 1])
    item = _exp(s, s_scale, keys, tile.nq, state, h, call)
    if due:
        _update(due, pv_ps, call)
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


def _drain(pending, call):
    """Issue everything still pending, in order."""
    due = _due(pending, 0)
    while due:
        _update(due, _pv(due, _transpose_p(due), call.scalar_copies), call)
        due = _due(pending, 0)


def _store(entry):
    """out rows [q0, q0 + nq), heads [h0, h0 + nh) of a TileStore = acc / run_sum (+ the v2 `output_flags`) in
    out's dtype; rows p with diag + p < 0 (causal, Sq > Skv: they see no key) get 1/run_sum := 0, i.e. zeros."""
    tile, state, out = entry.tile, entry.state, entry.out
    nq, nh, d = tile.nq, tile.nh, state.acc.shape[2]
    inv = nl.ndarray((Q_TILE, nh), dtype=nl.float32, buffer=nl.sbuf)
    nisa.reciprocal(dst=inv[:nq], data=state.run_sum[:nq])
    if entry.diag < 0:
        nisa.affine_select(dst=inv[:nq], pattern=[[0, nh]], channel_multiplier=1, on_true_tile=inv[:nq],
                           on_false_value=0.0, cmp_op=nl.greater_equal, offset=entry.diag)
    flag = None if state.q_ok is None else output_flags(state.q_ok, state.seen, nq, entry.diag)
    o_sb = nl.ndarray((Q_TILE, nh, d), dtype=out.dtype, buffer=nl.sbuf)
    for h in range(nh):  # on ScalarE: VectorE carries the row maxima
        nisa.activation(dst=o_sb[:nq, h, :], op=nl.copy, data=state.acc[:nq, h, :], scale=inv[:nq, h:h + 1],
                        bias=None if flag is None else flag[:nq, h:h + 1])
    nisa.dma_copy(dst=out[tile.b, tile.q0:tile.q0 + nq, tile.h0:tile.h0 + nh, :], src=o_sb[:nq])


def _scores(qT_h, keys, nq, call):
    """s = q·kᵀ of one head over one KeyStep, softcapped: [128, ≥n] fp32 (valid [:nq, :n]), masking left to
    `_row_max`.

    qT_h: [128, D/128, 128] SBUF; keys.kT: [128, D/128, n] SBUF (D in `tiles(d, D_CHUNK)` row slices). One 512-key
    PSUM bank per matmul, D slices accumulated in the bank. The result stays in PSUM (max and exp read it there); a
    softcap makes an SBUF tile t = tanh(scale·s/c) instead (the mask must follow the tanh)."""
    n, kT = keys.n, keys.kT
    if call.s_bufs:
        s_ps = call.s_bufs[call.s_next % len(call.s_bufs)]
        call.s_next += 1
    else:  # score_buffers 0: a new tile per item, buffered as the compiler sees fit
        s_ps = nl.ndarray((Q_TILE, -(-n // KV_TILE) * KV_TILE), dtype=nl.float32, buffer=nl.psum)
    for c0, width in tiles(n, KV_TILE):
        for j, (d0, dc) in enumerate(tiles(call.d, D_CHUNK)):
            nisa.nc_matmul(dst=s_ps[:nq, c0:c0 + width], stationary=qT_h[:dc, j, :nq],
                           moving=kT[:dc, j, c0:c0 + width], accumulate=j > 0)  # the buffer holds older scores
    if call.softcap is None:
        return s_ps
    s = nl.ndarray((Q_TILE, n), dtype=nl.float32, buffer=nl.sbuf)
    nisa.activation(dst=s[:nq, :n], op=nl.tanh, data=s_ps[:nq, :n], scale=call.scale / call.softcap)
    return s


def _exp(s, s_scale, keys, nq, state, h, call):
    """p = exp(s_scale·s + neg_max) [128, n] in the K/V dtype with its tile_sum [128, 1] in one ScalarE instruction
    (s_scale from `mask_row_max`: exp_scale, or -1 on a tile it negated); returns the item as a PendingPv. On the
    first step tile_sum goes straight into the head's run_sum (no rescale). The first call.p_dma chunks of pᵀ are
    made here, by one SBUF->SBUF dma_transpose queued right behind the exp (v3+, 2-byte p; an item shorter than
    that, the causal diagonal's, has none, nor does any when that is under P_DMA_MIN_CHUNKS chunks; `_transpose_p`
    does the rest on TensorE when the P·V is due)."""
    n, neg_max, run_sum_h = keys.n, state.neg_max[:, h:h + 1], state.run_sum[:, h:h + 1]
    p = nl.ndarray((Q_TILE, n), dtype=keys.kT.dtype, buffer=nl.sbuf)
    tile_sum = run_sum_h
    if state.rescale is not None:
        tile_sum = nl.ndarray((Q_TILE, 1), dtype=nl.float32, buffer=nl.sbuf)
    exp_rows(p[:nq, :n], s[:nq, :n], neg_max[:nq], s_scale, tile_sum[:nq])
    dma_chunks = min(call.p_dma, call.step // PMAX)  # the chunks of a whole key step's item, if this has them
    if n // PMAX < dma_chunks or dma_chunks < P_DMA_MIN_CHUNKS:
        dma_chunks = 0
    pT_dma = None
    if dma_chunks:
        pT_dma = nl.ndarray((PMAX, dma_chunks, Q_TILE), dtype=p.dtype, buffer=nl.sbuf)
        nisa.dma_transpose(dst=pT_dma[:, :, :nq], src=p[:nq, :dma_chunks * PMAX].reshape((nq, dma_chunks, PMAX)),
                           axes=(2, 1, 0))
    return PendingPv(p, tile_sum, state.rescale, keys.v, h, n, state, nq, pT_dma)


def _transpose_p(item):
    """pᵀ [128 keys, chunks, 128 queries] in PSUM of the chunks the DMA did not transpose (chunk c at c - c_dma):
    TensorE transposes of p [nq, n], 128 keys at a time. None when the DMA did them all."""
    n, nq, p, first = item.n, item.nq, item.p, item.dma_chunks
    if first * PMAX == n:
        return None
    pT_ps = nl.ndarray((PMAX, -(-n // PMAX) - first, Q_TILE), dtype=p.dtype, buffer=nl.psum)
    for c, (f0, kc) in enumerate(tiles(n - first * PMAX, PMAX)):
        f0 += first * PMAX
        nisa.nc_transpose(dst=pT_ps[:kc, c, :nq], data=p[:nq, f0:f0 + kc])
    return pT_ps


def _pv(item, pT_ps, scalar_copies):
    """pv = Σ_chunks pᵀ[chunk]ᵀ·v[chunk] [128, D] fp32 in one PSUM bank: the DMA-transposed chunks first (SBUF
    already), then the others after copying their pᵀ to SBUF (TensorE reads SBUF) in 512-key groups by VectorE
    (groups g with g % 4 < scalar_copies by ScalarE), each group's matmuls issued as soon as its copy is.
    item.v: [128 keys, n/128 chunks, D] SBUF."""
    n, nq, v_t, first = item.n, item.nq, item.v, item.dma_chunks
    pv_ps = nl.ndarray((Q_TILE, item.state.acc.shape[2]), dtype=nl.float32, buffer=nl.psum)
    for c in range(first):
        nisa.nc_matmul(dst=pv_ps[:nq, :], stationary=item.pT_dma[:, c, :nq], moving=v_t[:, c, :])
    if pT_ps is None:
        return pv_ps
    pT = nl.ndarray((PMAX, -(-n // PMAX) - first, Q_TILE), dtype=item.p.dtype, buffer=nl.sbuf)
    group = KV_TILE // PMAX  # chunks per copy
    for g, (c0, nc) in enumerate(tiles(n // PMAX - first, group)):
        psum_copy(pT[:, c0:c0 + nc, :nq], pT_ps[:, c0:c0 + nc, :nq], g % 4 < scalar_copies)
        for c in range(c0, c0 + nc):
            nisa.nc_matmul(dst=pv_ps[:nq, :], stationary=pT[:, c, :nq], moving=v_t[:, first + c, :])
    if n % PMAX:  # the ragged last chunk
        c, kc = n // PMAX - first, n % PMAX
        psum_copy(pT[:kc, c, :nq], pT_ps[:kc, c, :nq], False)
        nisa.nc_matmul(dst=pv_ps[:nq, :], stationary=pT[:kc, c, :nq], moving=v_t[:kc, first + c, :])
    return pv_ps


def _update(item, pv_ps, call):
    """acc_h = acc_h·rescale + pv (VectorE) and run_sum_h = run_sum_h·rescale + tile_sum (v3+ on the otherwise idle
    GpSimd, v2 VectorE) for the item's head h; the first step (rescale None) writes acc_h = pv (ScalarE copy), its
    tile_sum being in run_sum_h already (see `_exp`)."""
    nq, h = item.nq, item.h
    acc_h, run_sum_h = item.state.acc[:nq, h, :], item.state.run_sum[:nq, h:h + 1]
    if item.rescale is None:
        psum_copy(acc_h, pv_ps[:nq], on_scalar=call.v2)
    else:
        rescale = item.rescale.tile[:nq, h:h + 1]
        update_acc(acc_h, rescale, pv_ps[:nq])
        update_sum(run_sum_h, rescale, item.tile_sum[:nq], on_gpsimd=True)
