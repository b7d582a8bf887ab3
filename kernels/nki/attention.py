"""Flash attention forward (prefill) as an NKI kernel: out = softmax(mask(softcap(scale · q kᵀ))) v.

The S×S score matrix never exists in HBM: scores live one [128 queries, ≤2048 keys] tile at a time in PSUM and an
online softmax (running row max m and row sum l, FlashAttention) folds every key step into fp32 accumulators.

Algorithm (all loops are Python loops over compile-time shapes):

    for b, kv head hk:    kᵀ [D, Skv] and v [128 keys, Skv/128, D] loaded once into SBUF when they fit
                          (k rows DMA'd contiguously, transposed on TensorE), else per key step below
      for each block of query heads reading hk (GQA: h // (Hq/Hkv) == hk), each 128-row query tile:
        keys [lo, hi) some row of the tile may see, from the shapes (none: the tile is stored as zeros)
        q rows [128, heads, D] in one DMA; qᵀ [D, 128] per head by TensorE transposes
        for each 2048-key step of [lo, hi) (128-aligned), for each head:
            s = qᵀ·kᵀ (4 PSUM banks, 512 keys per matmul) [+ I·mask: causal/window mask added by TensorE]
              [softcap: t = tanh(scale·s/c) in SBUF, masked by a VectorE add]
            -m' = min(-mult·rowmax(s), -m)                                      (VectorE, reads PSUM)
            p = exp(mult·s - m') in q's dtype, rowsum(p) in the same instruction (ScalarE, reads PSUM)
            pᵀ by TensorE transposes of 128-key chunks -> SBUF (VectorE);  pv = Σ_chunks pᵀ·v (one PSUM bank)
            o = o·exp(m - m') + pv;  l = l·exp(m - m') + rowsum(p)
        out = o / l  (rows that see no key: 0)
    (mult = c with a softcap, else scale.)

Schedule: engines run their instruction queues in order, so program order is the schedule. A (step, head) item's
P·V is issued PIPELINE_LAG items after its exp, interleaved with later items' QKᵀ and row max (`_item`); q rows
and resident k/v rows are DMA'd ahead, their transposes issued just before use (`_run_tiles`).

Features: causal with bottom-right alignment (query i sees keys j <= i + Skv - Sq), sliding window (also hides
j < i + Skv - Sq - w + 1), softcap (c·tanh(s/c), the c folded into the exp), GQA/MQA (the heads of a group share
each K/V tile), head_dim up to 512 (QKᵀ accumulates 128-row slices of D in PSUM; the [128, D] fp32 P·V tile still
fits one 2 KiB bank), float32 / bfloat16 / float16 inputs. Key steps no row of a tile can see are skipped and only
the columns that hold masked elements get a mask (decided from shapes). Only NeuronCore-v2-safe ops are used (no
range_select, no dma_transpose, activation bias always a (P, 1) tile); the one target branch only moves copies
between VectorE and ScalarE.

Reference: nkilab.reference.attention.attention
"""

from ._shim import nki, nisa, nl
from ._tiling import MOVING_FMAX, PMAX, tiles

Q_TILE = PMAX  # query rows per tile: the output partitions of both matmuls
KV_TILE = MOVING_FMAX  # keys per score matmul: moving free size <= 512, one 2 KiB PSUM bank of fp32 scores
KV_STEP = 4 * KV_TILE  # keys per online-softmax step (2-byte inputs): 4 PSUM banks of scores, one max/exp/rescale
Q_PREFETCH = 2  # query tiles whose q rows are DMA'd ahead of the one being computed
PIPELINE_LAG = 2  # (key step, head) items between an item's exp and its P·V in program order
D_CHUNK = PMAX  # head-dim rows per QKᵀ matmul: the contraction runs over <= 128 partitions
MAX_HEAD_DIM = 4 * D_CHUNK  # the P·V tile [128, D] fp32 must fit one 2 KiB PSUM bank (512 fp32)
RESIDENT_KV_BYTES = 48 * 1024  # SBUF bytes per partition for one (b, kv head)'s kᵀ and v; longer Skv streams tiles
HEAD_BLOCK_ELEMS = 4096  # query heads per block: heads · D fp32 accumulators <= 16 KiB per partition
MASKED = -3.0e38  # masked score (before the exp multiplier): stays finite in fp32, far below -MAX_FLOOR
MAX_FLOOR = 1.0e30  # running max starts at -MAX_FLOOR, so exp(MASKED·mult + MAX_FLOOR) == 0 for masked keys


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
                 Masked scores are -3e38 and the running max starts at -1e30, so masked keys contribute exactly 0
                 even in a key tile where a row sees nothing.
    Pseudocode:  see the module docstring.
    """
    _check_inputs(q, k, v, scale, sliding_window, softcap)
    batch, sq, hq, d = q.shape
    skv, hkv = k.shape[1], k.shape[2]
    out = nl.ndarray((batch, sq, hq, d), dtype=q.dtype, buffer=nl.shared_hbm)

    group = hq // hkv
    heads = max(1, min(group, HEAD_BLOCK_ELEMS // d))
    mult = softcap if softcap is not None else scale  # what the kept scores are multiplied by inside the exp
    masked = MASKED / max(mult, 1.0)  # so that masked · mult stays finite
    resident = _kv_bytes(skv, d, q.dtype) <= resident_kv_bytes
    # masks are added to the PSUM scores by a matmul with the identity (TensorE has slack, VectorE has not)
    ident = _identity() if causal or sliding_window is not None else None
    # pᵀ PSUM->SBUF copies: VectorE on v3+ (2-4 elements/cycle/lane; moving some to ScalarE, busy with the exps,
    # models slower); on v2 VectorE is as slow per element as ScalarE, so every other copy goes to ScalarE
    split_copies = nisa.get_nc_version() == nisa.nc_version.gen2
    cfg = (sq, skv, causal, sliding_window, scale, softcap, mult, masked, ident, split_copies)

    tasks = _visible_tiles(out, batch, sq, skv, hkv, group, heads, causal, sliding_window)
    pending = []  # issued-late work in order: ("pv", P·V of a (key step, head) item) and ("store", a query tile)
    _run_tiles(tasks, q, k, v, out, resident, cfg, pending)
    _drain(pending)
    return out


def _visible_tiles(out, batch, sq, skv, hkv, group, heads, causal, window):
    """Query tiles that see at least one key, as (b, hk, h0, nh, (q0, nq, lo, hi)) in (batch, kv head, head block,
    tile) order; [lo, hi) are the keys the tile's rows may see. Tiles that see none are stored as zeros here."""
    tasks = []
    for b in range(batch):
        for hk in range(hkv):
            for h0 in range(hk * group, (hk + 1) * group, heads):
                nh = min(heads, (hk + 1) * group - h0)
                for q0, nq in tiles(sq, Q_TILE):
                    lo, hi = _key_range(q0, nq, sq, skv, causal, window)
                    if hi > lo:
                        tasks.append((b, hk, h0, nh, (q0, nq, lo, hi)))
                    else:
                        _store_zeros(out, b, q0, nq, h0, nh)
    return tasks


def _run_tiles(tasks, q, k, v, out, resident, cfg, pending):
    """Attention of every visible query tile, with its inputs loaded ahead of use.

    q rows are loaded Q_PREFETCH tiles ahead and resident k/v rows one kv head ahead, as DMAs only; qᵀ is made one
    tile ahead and kᵀ when its kv head starts. So no in-order compute queue waits behind a DMA that is itself
    queued behind earlier output stores, and the next tile's qᵀ copies are not queued behind this tile's exps."""
    skv, d = k.shape[1], k.shape[3]
    q_rows = [_load_q_rows(q, b, tile[0], tile[1], h0, nh) for b, _, h0, nh, tile in tasks[:Q_PREFETCH]]
    qT = [_transpose_q(q_rows.pop(0), tasks[0][4][1])] if tasks else []
    kv_head, kv_all = None, None
    kv_rows = _load_kv_rows(k, v, tasks[0][0], tasks[0][1], 0, skv) if resident and tasks else None
    for t, (b, hk, h0, nh, tile) in enumerate(tasks):
        if t + Q_PREFETCH < len(tasks):
            nb, _, nh0, nnh, ntile = tasks[t + Q_PREFETCH]
            q_rows.append(_load_q_rows(q, nb, ntile[0], ntile[1], nh0, nnh))
        if t + 1 < len(tasks):
            qT.append(_transpose_q(q_rows.pop(0), tasks[t + 1][4][1]))
        if resident and (b, hk) != kv_head:
            kv_head, (k_rows, v_rows) = (b, hk), kv_rows
            following = [(nb, nhk) for nb, nhk, _, _, _ in tasks[t:] if (nb, nhk) != kv_head]
            if following:
                kv_rows = _load_kv_rows(k, v, following[0][0], following[0][1], 0, skv)
            kv_all = (_transpose_k(k_rows, skv, d), v_rows)
        _query_tile(qT.pop(0), k, v, out, kv_all, b, hk, h0, nh, tile, cfg, pending)


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


def _key_range(q0, nq, sq, skv, causal, window):
    """[lo, hi): the keys some query row of [q0, q0 + nq) may see (hi <= lo: none, the rows are fully masked)."""
    diag = q0 + skv - sq  # the last key row q0 may see under the causal mask; row p sees up to diag + p
    lo = max(0, diag - window + 1) if window is not None else 0
    hi = min(skv, diag + nq) if causal else skv
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


def _query_tile(qT, k, v, out, kv_all, b, hk, h0, nh, tile, cfg, pending):
    """Attention of query rows [q0, q0 + nq) of heads [h0, h0 + nh) (all reading kv head hk) over keys [lo, hi).

    qT: `_transpose_q` of the rows; tile: (q0, nq, lo, hi); kv_all: resident (kᵀ, v) or None (stream).
    Each (key step, head) item leaves its P·V in `pending` (also across query tiles, followed by the tile's
    store); see `_item` for the order the work is issued in."""
    sq, skv, causal, window, scale, softcap, mult, masked, ident, split_copies = cfg
    q0, nq, lo, hi = tile
    d = k.shape[3]
    step = KV_STEP * 2 // _itemsize(k.dtype)  # fp32: half the keys, so scores and pᵀ of a step fit PSUM together
    o_acc = nl.ndarray((Q_TILE, nh, d), dtype=nl.float32, buffer=nl.sbuf)
    l_acc = nl.ndarray((Q_TILE, nh), dtype=nl.float32, buffer=nl.sbuf)
    negmax = [None] * nh  # per head: -(running row max) [128, 1] fp32

    start = lo // PMAX * PMAX  # 128-aligned so 128-key chunks of P line up with the partitions of v
    for i, (offset, n) in enumerate(tiles(hi - start, step)):
        k0 = start + offset
        if kv_all is None:
            kT, v_t = _load_kv(k, v, b, hk, k0, n)
        else:
            kT = kv_all[0][:, :, k0:k0 + n]
            v_t = kv_all[1][:, k0 // PMAX:(k0 + n + PMAX - 1) // PMAX, :]
        bias = _mask_bias(q0, nq, k0, n, sq, skv, causal, window, masked)
        for h in range(nh):
            scores = (qT[:, h], kT, d, nq, n, bias, ident, scale, softcap)
            p, rowsum, alpha, negmax[h] = _item(scores, negmax[h], mult, l_acc[:, h:h + 1], pending)
            pending.append(("pv", (p, rowsum, alpha, v_t, h, n, o_acc, l_acc, nq, split_copies)))
    pending.append(("store", (o_acc, l_acc, out, b, q0, nq, h0, nh, q0 + skv - sq if causal else 0)))


def _item(scores, negmax_old, mult, l_h, pending):
    """Scores, row max and exp of one (key step, head) item, interleaved with the P·V of the item PIPELINE_LAG
    back. scores: `_scores` arguments; l_h: the head's running sum [128, 1] fp32.
    Returns (p, rowsum, alpha, negmax) as `_exp` and `_row_max`.

    Program order, chosen for engines that each run their queue in order: pᵀ transposes of the old item (TensorE),
    this item's QKᵀ (TensorE), the old item's pᵀ copies (VectorE) and P·V (TensorE), this item's row max
    (VectorE) and exp (ScalarE), then the old item's o/l update (VectorE). So TensorE multiplies new scores while
    VectorE copies old pᵀ, and neither waits for the other's long instruction."""
    qT_h, kT, d, nq, n, bias, ident, scale, softcap = scores
    due = _due(pending, PIPELINE_LAG)
    pT_ps = _transpose_p(*due) if due else None
    s = _scores(qT_h, kT, d, nq, n, bias, ident, scale, softcap)
    pv_ps = _pv(*due, pT_ps) if due else None
    negmax = _row_max(s, nq, n, negmax_old, mult)
    p, rowsum, alpha = _exp(s, nq, n, kT.dtype, negmax, negmax_old, mult, l_h)
    if due:
        _update(*due, pv_ps)
    return p, rowsum, alpha, negmax


def _due(pending, keep):
    """Pop and return the oldest pending P·V item once more than `keep` wait (None before); tile stores found in
    front of it are issued on the way."""
    while len(pending) > keep:
        kind, args = pending.pop(0)
        if kind == "pv":
            return args
        _store(*args)
    return None


def _drain(pending):
    """Issue everything still pending, in order."""
    due = _due(pending, 0)
    while due:
        _update(*due, _pv(*due, _transpose_p(*due)))
        due = _due(pending, 0)


def _store(o_acc, l_acc, out, b, q0, nq, h0, nh, diag):
    """out rows [q0, q0 + nq), heads [h0, h0 + nh) = o / l in out's dtype; rows p with diag + p < 0 (causal,
    Sq > Skv: they see no key) get 1/l := 0, i.e. zeros."""
    d = o_acc.shape[2]
    inv = nl.ndarray((Q_TILE, nh), dtype=nl.float32, buffer=nl.sbuf)
    nisa.reciprocal(dst=inv[:nq], data=l_acc[:nq])
    if diag < 0:
        nisa.affine_select(dst=inv[:nq], pattern=[[0, nh]], channel_multiplier=1, on_true_tile=inv[:nq],
                           on_false_value=0.0, cmp_op=nl.greater_equal, offset=diag)
    o_sb = nl.ndarray((Q_TILE, nh, d), dtype=out.dtype, buffer=nl.sbuf)
    for h in range(nh):  # on ScalarE: VectorE carries the row maxima
        nisa.activation(dst=o_sb[:nq, h, :], op=nl.copy, data=o_acc[:nq, h, :], scale=inv[:nq, h:h + 1])
    nisa.dma_copy(dst=out[b, q0:q0 + nq, h0:h0 + nh, :], src=o_sb[:nq])


def _mask_bias(q0, nq, k0, n, sq, skv, causal, window, masked):
    """Additive mask of the [nq, n] score tile at (q0, k0), or None when no element is masked.

    Returns (bias, c0, c1): bias [128, c1 - c0] bfloat16 SBUF holding 0 (kept) or `masked`, for score columns
    [c0, c1) — the only columns with masked elements (under causal masking the last nq - 1 keys, under a sliding
    window the first ones), so the per-head add stays narrow. Built on GpSimd (affine_select), shared by the heads.
    """
    diag = q0 + skv - sq
    rules = []  # (column range, step, channel_multiplier, offset): keep where offset + p·cm + f·step >= 0
    if causal and k0 + n - 1 > diag:
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
                           on_true_tile=bias[:nq], on_false_value=masked, cmp_op=nl.greater_equal,
                           offset=offset + c0 * step)
    return bias, c0, c1


def _load_q_rows(q, b, q0, nq, h0, nh):
    """q rows [q0, q0 + nq) of heads [h0, h0 + nh): [128, nh, D] SBUF in one DMA (nh·D contiguous per row)."""
    q_sb = nl.ndarray((Q_TILE, nh, q.shape[3]), dtype=q.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=q_sb[:nq], src=q[b, q0:q0 + nq, h0:h0 + nh, :])
    return q_sb


def _transpose_q(q_sb, nq):
    """qᵀ [128 (D slice), nh, D/128, 128 (queries)] SBUF from q rows [128, nh, D]: TensorE transposes per head,
    copied out by ScalarE."""
    nh, d = q_sb.shape[1], q_sb.shape[2]
    d_tiles = tiles(d, D_CHUNK)
    qT = nl.ndarray((D_CHUNK, nh, len(d_tiles), Q_TILE), dtype=q_sb.dtype, buffer=nl.sbuf)
    for h in range(nh):
        qT_ps = nl.ndarray((D_CHUNK, len(d_tiles), Q_TILE), dtype=q_sb.dtype, buffer=nl.psum)
        for j, (d0, dc) in enumerate(d_tiles):
            nisa.nc_transpose(dst=qT_ps[:dc, j, :nq], data=q_sb[:nq, h, d0:d0 + dc])
            _copy(qT[:dc, h, j, :nq], qT_ps[:dc, j, :nq], on_scalar=True)
    return qT


def _load_kv(k, v, b, hk, k0, n):
    """Keys [k0, k0 + n) of kv head hk: kᵀ [128 (D slice), D/128, n] and v [128 keys, n/128 chunks, D] in SBUF."""
    k_sb, v_sb = _load_kv_rows(k, v, b, hk, k0, n)
    return _transpose_k(k_sb, n, k.shape[3]), v_sb


def _load_kv_rows(k, v, b, hk, k0, n):
    """k and v rows [k0, k0 + n) of kv head hk as [128 keys, n/128 chunks, D] SBUF tiles (contiguous D-element
    runs; a strided DMA of kᵀ would move 2-byte runs)."""
    chunks = -(-n // PMAX)
    k_sb = nl.ndarray((PMAX, chunks, k.shape[3]), dtype=k.dtype, buffer=nl.sbuf)
    v_sb = nl.ndarray((PMAX, chunks, v.shape[3]), dtype=v.dtype, buffer=nl.sbuf)
    _load_rows(k_sb, k, b, hk, k0, n)
    _load_rows(v_sb, v, b, hk, k0, n)
    return k_sb, v_sb


def _transpose_k(k_sb, n, d):
    """kᵀ [128 (D slice), D/128, n] SBUF from k rows [128 keys, n/128, D]: TensorE transposes of 128 keys, four per
    PSUM tile, copied out by ScalarE."""
    d_tiles = tiles(d, D_CHUNK)
    kT = nl.ndarray((D_CHUNK, len(d_tiles), n), dtype=k_sb.dtype, buffer=nl.sbuf)
    for g0, width in tiles(n, KV_TILE):
        for j, (d0, dc) in enumerate(d_tiles):
            kT_ps = nl.ndarray((D_CHUNK, KV_TILE), dtype=k_sb.dtype, buffer=nl.psum)
            for f0, kc in tiles(width, PMAX):
                nisa.nc_transpose(dst=kT_ps[:dc, f0:f0 + kc], data=k_sb[:kc, (g0 + f0) // PMAX, d0:d0 + dc])
            _copy(kT[:dc, j, g0:g0 + width], kT_ps[:dc, :width], on_scalar=True)
    return kT


def _load_rows(dst, src, b, hk, k0, n):
    """dst[p, c, :] = src[b, k0 + 128·c + p, hk, :] for the n rows: one DMA for the whole 128-row chunks, one for
    the ragged rest."""
    skv, hkv, d = src.shape[1], src.shape[2], src.shape[3]
    full, rest = n // PMAX, n % PMAX
    if full:
        row = hkv * d  # elements between consecutive keys of one head
        nisa.dma_copy(dst=dst[:, :full, :],
                      src=src.ap(pattern=[[row, PMAX], [PMAX * row, full], [1, d]],
                                 offset=((b * skv + k0) * hkv + hk) * d))
    if rest:
        nisa.dma_copy(dst=dst[:rest, full, :], src=src[b, k0 + full * PMAX:k0 + n, hk, :])


def _scores(qT_h, kT, d, nq, n, bias, ident, scale, softcap):
    """s = q·kᵀ of one head over one key step, softcapped and masked: [128, ≥n] fp32 (valid [:nq, :n]).

    qT_h: [128, D/128, 128] SBUF; kT: [128, D/128, n] SBUF (D in `tiles(d, D_CHUNK)` row slices); bias: a
    `_mask_bias` result or None; ident: `_identity()`. One 512-key PSUM bank per matmul, D slices accumulated in
    the bank. The result stays in PSUM (max and exp read it there), the mask added by one more accumulating
    matmul I·bias per bank; a softcap makes an SBUF tile t = tanh(scale·s/c) instead, masked by a VectorE add
    (the mask must follow the tanh). Masked elements end up at `masked` (plus a finite score)."""
    s_ps = nl.ndarray((Q_TILE, -(-n // KV_TILE) * KV_TILE), dtype=nl.float32, buffer=nl.psum)  # whole banks
    for c0, width in tiles(n, KV_TILE):
        for j, (d0, dc) in enumerate(tiles(d, D_CHUNK)):
            nisa.nc_matmul(dst=s_ps[:nq, c0:c0 + width], stationary=qT_h[:dc, j, :nq],
                           moving=kT[:dc, j, c0:c0 + width])
        if bias is not None and softcap is None:
            tile, b0, b1 = bias
            lo, hi = max(b0, c0), min(b1, c0 + width)  # the mask columns inside this bank
            if lo < hi:
                nisa.nc_matmul(dst=s_ps[:nq, lo:hi], stationary=ident[:nq, :nq], moving=tile[:nq, lo - b0:hi - b0])
    if softcap is None:
        return s_ps
    s = nl.ndarray((Q_TILE, n), dtype=nl.float32, buffer=nl.sbuf)
    nisa.activation(dst=s[:nq, :n], op=nl.tanh, data=s_ps[:nq, :n], scale=scale / softcap)
    if bias is not None:
        tile, b0, b1 = bias
        nisa.tensor_tensor(dst=s[:nq, b0:b1], data1=s[:nq, b0:b1], data2=tile[:nq], op=nl.add)
    return s


def _row_max(s, nq, n, negmax_old, mult):
    """-m' = min(-mult·rowmax(s), -m) [128, 1] fp32 (VectorE); the first step clamps it at MAX_FLOOR instead.

    The exps take -m' as bias: a (P, 1) tile, as NeuronCore-v2 requires."""
    tile_negmax = nl.ndarray((Q_TILE, 1), dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_reduce(dst=tile_negmax[:nq], op=nl.maximum, data=s[:nq, :n], axis=1, negate=True)
    negmax = nl.ndarray((Q_TILE, 1), dtype=nl.float32, buffer=nl.sbuf)
    if negmax_old is None:
        nisa.tensor_scalar(dst=negmax[:nq], data=tile_negmax[:nq], op0=nl.multiply, operand0=mult,
                           op1=nl.minimum, operand1=MAX_FLOOR)
    else:
        nisa.scalar_tensor_tensor(dst=negmax[:nq], data=tile_negmax[:nq], op0=nl.multiply, operand0=mult,
                                  op1=nl.minimum, operand1=negmax_old[:nq])
    return negmax


def _exp(s, nq, n, dtype, negmax, negmax_old, mult, l_h):
    """p = exp(mult·s - m') [128, n] in `dtype` with its fp32 row sums [128, 1] in one ScalarE instruction,
    and alpha = exp(m - m') [128, 1] fp32. On the first step (negmax_old None) the row sums go straight into the
    head's running sum l_h [128, 1] and alpha is None."""
    p = nl.ndarray((Q_TILE, n), dtype=dtype, buffer=nl.sbuf)
    rowsum = l_h
    if negmax_old is not None:
        rowsum = nl.ndarray((Q_TILE, 1), dtype=nl.float32, buffer=nl.sbuf)
    nisa.activation(dst=p[:nq, :n], op=nl.exp, data=s[:nq, :n], bias=negmax[:nq], scale=mult, reduce_op=nl.add,
                    reduce_res=rowsum[:nq], reduce_cmd=nisa.reduce_cmd.reset_reduce)
    alpha = None
    if negmax_old is not None:
        alpha = nl.ndarray((Q_TILE, 1), dtype=nl.float32, buffer=nl.sbuf)
        nisa.activation(dst=alpha[:nq], op=nl.exp, data=negmax_old[:nq], bias=negmax[:nq], scale=-1.0)
    return p, rowsum, alpha


def _transpose_p(p, rowsum, alpha, v_t, h, n, o_acc, l_acc, nq, split_copies):
    """pᵀ [128 keys, n/128 chunks, 128 queries] in PSUM: TensorE transposes of p [nq, n], 128 keys at a time."""
    pT_ps = nl.ndarray((PMAX, -(-n // PMAX), Q_TILE), dtype=p.dtype, buffer=nl.psum)
    for c, (f0, kc) in enumerate(tiles(n, PMAX)):
        nisa.nc_transpose(dst=pT_ps[:kc, c, :nq], data=p[:nq, f0:f0 + kc])
    return pT_ps


def _pv(p, rowsum, alpha, v_t, h, n, o_acc, l_acc, nq, split_copies, pT_ps):
    """pv = Σ_chunks pᵀ[chunk]ᵀ·v[chunk] [128, D] fp32 in one PSUM bank, after copying pᵀ to SBUF (TensorE reads
    SBUF) in 512-key groups by VectorE (every other group by ScalarE when `split_copies`), each group's matmuls
    issued as soon as its copy is. v_t: [128 keys, n/128 chunks, D] SBUF."""
    pv_ps = nl.ndarray((Q_TILE, o_acc.shape[2]), dtype=nl.float32, buffer=nl.psum)
    pT = nl.ndarray((PMAX, -(-n // PMAX), Q_TILE), dtype=p.dtype, buffer=nl.sbuf)
    group = KV_TILE // PMAX  # chunks per copy
    for g, (c0, nc) in enumerate(tiles(n // PMAX, group)):
        _copy(pT[:, c0:c0 + nc, :nq], pT_ps[:, c0:c0 + nc, :nq], split_copies and g % 2 == 1)
        for c in range(c0, c0 + nc):
            nisa.nc_matmul(dst=pv_ps[:nq, :], stationary=pT[:, c, :nq], moving=v_t[:, c, :])
    if n % PMAX:  # the ragged last chunk
        c, kc = n // PMAX, n % PMAX
        _copy(pT[:kc, c, :nq], pT_ps[:kc, c, :nq], False)
        nisa.nc_matmul(dst=pv_ps[:nq, :], stationary=pT[:kc, c, :nq], moving=v_t[:kc, c, :])
    return pv_ps


def _update(p, rowsum, alpha, v_t, h, n, o_acc, l_acc, nq, split_copies, pv_ps):
    """o_h = o_h·alpha + pv and l_h = l_h·alpha + rowsum for head h; the first step (alpha None) writes o_h = pv
    (ScalarE copy), its row sums being in l_h already (see `_exp`). o_acc: [128, heads, D] fp32;
    l_acc: [128, heads] fp32."""
    o_h, l_h = o_acc[:nq, h, :], l_acc[:nq, h:h + 1]
    if alpha is None:
        _copy(o_h, pv_ps[:nq], on_scalar=True)
    else:
        nisa.scalar_tensor_tensor(dst=o_h, data=o_h, op0=nl.multiply, operand0=alpha[:nq], op1=nl.add,
                                  operand1=pv_ps[:nq])
        nisa.tensor_scalar(dst=l_h, data=l_h, op0=nl.multiply, operand0=alpha[:nq], op1=nl.add,
                           operand1=rowsum[:nq])


def _copy(dst, src, on_scalar):
    """PSUM -> SBUF copy on ScalarE (activation copy: valid on NeuronCore-v2, unlike a ScalarE tensor_copy) or
    VectorE."""
    if on_scalar:
        nisa.activation(dst=dst, op=nl.copy, data=src)
    else:
        nisa.tensor_copy(dst=dst, src=src)
