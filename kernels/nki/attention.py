"""Flash attention forward (prefill) as an NKI kernel: out = softmax(mask(softcap(scale · q kᵀ))) v.

The S×S score matrix never exists in HBM: scores live one [128 queries, ≤512 keys] tile at a time in PSUM/SBUF and
an online softmax (running row max m and row sum l, FlashAttention) folds every key tile into an fp32 accumulator.

Algorithm (all loops are Python loops over compile-time shapes):

    for b, kv head hk:
        kᵀ [D, Skv], v [128 keys, Skv/128, D] loaded once into SBUF (kᵀ by TensorE transposes), when they fit
        for each block of query heads h reading hk (GQA: h // (Hq/Hkv) == hk), each 128-row query tile:
            visible key range [lo, hi) of the tile from the shapes; no key visible -> store zeros
            q rows [128, heads, D] in one DMA; qᵀ [D, 128] per head (TensorE transpose)
            for each 512-key tile of [lo, hi) (kᵀ / v from SBUF, or streamed when Skv is too long to keep):
                for each head:  s = qᵀ·kᵀ (PSUM fp32) -> [c·tanh(scale·s/c)] -> [causal / window affine_select]
                                m' = max(m, rowmax(s));  p = exp(s - m') with its row sum (one ScalarE op)
                                pᵀ (TensorE transposes of 128-key chunks);  pv = Σ_chunks pᵀ·v (PSUM)
                                o = o·exp(m - m') + pv;  l = l·exp(m - m') + rowsum(p)
            out = o / l  (rows that see no key: 0)

Features: causal with bottom-right alignment (query i sees keys j <= i + Skv - Sq), sliding window (also hides
j < i + Skv - Sq - w + 1), softcap (ScalarE tanh with scale = scale/c, the c folded into the exp), GQA/MQA (the
heads of one group share each K/V tile), head_dim up to 512 (QKᵀ accumulates 128-row slices of D in PSUM; the
[128, D] fp32 P·V tile still fits one 2 KiB bank), float32 / bfloat16 / float16 inputs. Key tiles no query of a
tile can see are skipped, and masks are applied only to tiles that need them (both decided from shapes).
Only NeuronCore-v2-safe ops are used (no range_select, no dma_transpose, activation bias always a (P, 1) tile).

Reference: nkilab.reference.attention.attention
"""

from ._shim import nki, nisa, nl
from ._tiling import MOVING_FMAX, PMAX, tiles

Q_TILE = PMAX  # query rows per tile: the output partitions of both matmuls
KV_TILE = MOVING_FMAX  # keys per score tile: moving free size <= 512, one 2 KiB PSUM bank of fp32 scores
D_CHUNK = PMAX  # head-dim rows per QKᵀ matmul: the contraction runs over <= 128 partitions
MAX_HEAD_DIM = 4 * D_CHUNK  # the P·V tile [128, D] fp32 must fit one 2 KiB PSUM bank (512 fp32)
RESIDENT_KV_BYTES = 48 * 1024  # SBUF bytes per partition for one (b, kv head)'s kᵀ and v; longer Skv streams tiles
HEAD_BLOCK_ELEMS = 4096  # query heads per block: heads · D fp32 accumulators <= 16 KiB per partition
MASKED = -3.0e38  # masked score (before the exp multiplier): stays finite in fp32, far below -MAX_FLOOR
MAX_FLOOR = 1.0e30  # running max starts at -MAX_FLOOR, so exp(MASKED·mult + MAX_FLOOR) == 0 for masked keys


@nki.jit
def flash_attention(q, k, v, scale=1.0, causal=False, sliding_window=None, softcap=None):
    """Dense attention over one batch of prefill queries, GQA/MQA, causal / sliding window / softcap.

    Dimensions:  B batch; Sq, Skv query/key lengths; Hq = g·Hkv heads; D <= 512 head dim.
    Args:        q: [B, Sq, Hq, D] bfloat16|float16|float32, HBM.
                 k, v: [B, Skv, Hkv, D], q's dtype, HBM.
                 scale: score multiplier > 0 (compile-time float).
                 causal: bottom-right causal mask (query i sees keys j <= i + Skv - Sq).
                 sliding_window: w >= 1 also hides keys j < i + Skv - Sq - w + 1; None = off.
                 softcap: c > 0 maps scaled scores s -> c·tanh(s / c) before masking; None = off.
                 (Plain parameters with defaults, not keyword-only: the NKI compiler frontend rejects `*`.)
    Returns:     out: [B, Sq, Hq, D], q's dtype, shared HBM; a query that sees no key gets zeros.
    Tiling:      Sq in 128-row tiles; keys in 512-column score tiles (128-aligned), P·V in 128-key chunks;
                 D in 128-row slices for QKᵀ.
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
    resident = _kv_bytes(skv, d, q.dtype) <= RESIDENT_KV_BYTES
    cfg = (sq, skv, causal, sliding_window, scale, softcap, mult, masked)

    for b in range(batch):
        for hk in range(hkv):
            kv_all = _load_kv(k, v, b, hk, 0, skv) if resident else None
            for h0 in range(hk * group, (hk + 1) * group, heads):
                nh = min(heads, (hk + 1) * group - h0)
                for q0, nq in tiles(sq, Q_TILE):
                    _query_tile(q, k, v, out, kv_all, b, hk, h0, nh, q0, nq, cfg)
    return out


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


def _query_tile(q, k, v, out, kv_all, b, hk, h0, nh, q0, nq, cfg):
    """Attention of query rows [q0, q0 + nq) of heads [h0, h0 + nh) (all reading kv head hk) -> out."""
    sq, skv, causal, window, scale, softcap, mult, masked = cfg
    d = q.shape[3]
    diag = q0 + skv - sq  # the last key row q0 may see under the causal mask
    lo = max(0, diag - window + 1) if window is not None else 0
    hi = min(skv, diag + nq) if causal else skv
    o_sb = nl.ndarray((Q_TILE, nh, d), dtype=q.dtype, buffer=nl.sbuf)
    if hi <= lo:
        # every row of the tile is fully masked (causal with Sq > Skv): zeros, no exp arithmetic involved
        nisa.memset(dst=o_sb[:nq], value=0.0)
        nisa.dma_copy(dst=out[b, q0:q0 + nq, h0:h0 + nh, :], src=o_sb[:nq])
        return

    qT = _load_q_transposed(q, b, q0, nq, h0, nh)
    o_acc = nl.ndarray((Q_TILE, nh, d), dtype=nl.float32, buffer=nl.sbuf)
    l_acc = nl.ndarray((Q_TILE, nh), dtype=nl.float32, buffer=nl.sbuf)
    negmax = [None] * nh  # per head: -(running row max) [128, 1] fp32

    start = lo // PMAX * PMAX  # 128-aligned so 128-key chunks of P line up with the partitions of v
    for i, (offset, n) in enumerate(tiles(hi - start, KV_TILE)):
        k0 = start + offset
        if kv_all is None:
            kT, v_t = _load_kv(k, v, b, hk, k0, n)
        else:
            kT = kv_all[0][:, :, k0:k0 + n]
            v_t = kv_all[1][:, k0 // PMAX:(k0 + n + PMAX - 1) // PMAX, :]
        masks = _masks(q0, nq, k0, n, sq, skv, causal, window)
        for h in range(nh):
            negmax[h] = _attend(qT[:, h], kT, v_t, o_acc[:, h, :], l_acc[:, h:h + 1], negmax[h], i == 0, nq, n,
                                masks, scale, softcap, mult, masked)

    # out = o / l; rows before the first visible query (causal, Sq > Skv) see no key: 1/l := 0 there
    inv = nl.ndarray((Q_TILE, nh), dtype=nl.float32, buffer=nl.sbuf)
    nisa.reciprocal(dst=inv[:nq], data=l_acc[:nq])
    if causal and diag < 0:
        nisa.affine_select(dst=inv[:nq], pattern=[[0, nh]], channel_multiplier=1, on_true_tile=inv[:nq],
                           on_false_value=0.0, cmp_op=nl.greater_equal, offset=diag)
    for h in range(nh):
        nisa.tensor_scalar(dst=o_sb[:nq, h, :], data=o_acc[:nq, h, :], op0=nl.multiply, operand0=inv[:nq, h:h + 1])
    nisa.dma_copy(dst=out[b, q0:q0 + nq, h0:h0 + nh, :], src=o_sb[:nq])


def _masks(q0, nq, k0, n, sq, skv, causal, window):
    """affine_select masks a [nq, n] score tile at (q0, k0) needs: (step, channel_multiplier, offset) triples,
    keeping element (p, f) where offset + p·channel_multiplier + f·step >= 0."""
    diag = q0 + skv - sq  # last key visible to row p = 0; row p sees up to diag + p
    masks = []
    if causal and k0 + n - 1 > diag:
        masks.append((-1, 1, diag - k0))  # diag + p - (k0 + f) >= 0
    if window is not None and k0 < diag + nq - 1 - window + 1:
        masks.append((1, -1, k0 - diag + window - 1))  # k0 + f - (diag + p - w + 1) >= 0
    return masks


def _load_q_transposed(q, b, q0, nq, h0, nh):
    """qᵀ [128 (D slice), nh, D/128, 128 (queries)] in SBUF: one DMA of the q rows, TensorE transposes per head."""
    d = q.shape[3]
    q_sb = nl.ndarray((Q_TILE, nh, d), dtype=q.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=q_sb[:nq], src=q[b, q0:q0 + nq, h0:h0 + nh, :])
    d_tiles = tiles(d, D_CHUNK)
    qT = nl.ndarray((D_CHUNK, nh, len(d_tiles), Q_TILE), dtype=q.dtype, buffer=nl.sbuf)
    for h in range(nh):
        qT_ps = nl.ndarray((D_CHUNK, len(d_tiles), Q_TILE), dtype=q.dtype, buffer=nl.psum)
        for j, (d0, dc) in enumerate(d_tiles):
            nisa.nc_transpose(dst=qT_ps[:dc, j, :nq], data=q_sb[:nq, h, d0:d0 + dc])
            nisa.tensor_copy(dst=qT[:dc, h, j, :nq], src=qT_ps[:dc, j, :nq])
    return qT


def _load_kv(k, v, b, hk, k0, n):
    """Keys [k0, k0 + n) of kv head hk: kᵀ [128 (D slice), D/128, n] and v [128 keys, n/128 chunks, D] in SBUF.

    Rows are loaded contiguously (D elements per run) and k is transposed on TensorE, 128 keys at a time, four
    transposes per PSUM tile: a strided DMA of kᵀ would move 2-byte runs."""
    d = k.shape[3]
    chunks = -(-n // PMAX)
    k_sb = nl.ndarray((PMAX, chunks, d), dtype=k.dtype, buffer=nl.sbuf)
    v_sb = nl.ndarray((PMAX, chunks, d), dtype=v.dtype, buffer=nl.sbuf)
    _load_rows(k_sb, k, b, hk, k0, n)
    _load_rows(v_sb, v, b, hk, k0, n)
    d_tiles = tiles(d, D_CHUNK)
    kT = nl.ndarray((D_CHUNK, len(d_tiles), n), dtype=k.dtype, buffer=nl.sbuf)
    group = KV_TILE // PMAX  # 128-key chunks per PSUM transpose tile
    for c0 in range(0, chunks, group):
        width = min(n, (c0 + group) * PMAX) - c0 * PMAX
        for j, (d0, dc) in enumerate(d_tiles):
            kT_ps = nl.ndarray((D_CHUNK, KV_TILE), dtype=k.dtype, buffer=nl.psum)
            for c in range(c0, min(c0 + group, chunks)):
                kc = min(PMAX, n - c * PMAX)
                f0 = (c - c0) * PMAX
                nisa.nc_transpose(dst=kT_ps[:dc, f0:f0 + kc], data=k_sb[:kc, c, d0:d0 + dc])
            nisa.tensor_copy(dst=kT[:dc, j, c0 * PMAX:c0 * PMAX + width], src=kT_ps[:dc, :width])
    return kT, v_sb


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


def _attend(qT_h, kT, v_t, o_h, l_h, negmax_old, first, nq, n, masks, scale, softcap, mult, masked):
    """Fold one key tile into one head's running state; returns the new -(row max) [128, 1] fp32.

    qT_h: [128, D/128, 128] SBUF; kT: [128, D/128, n] SBUF; v_t: [128, n/128, D] SBUF;
    o_h: [128, D] fp32 SBUF accumulator; l_h: [128, 1] fp32 SBUF row sums (both updated in place)."""
    d = o_h.shape[1]
    # scores s = q·kᵀ over 128-row slices of D, accumulated in one PSUM bank
    s_ps = nl.ndarray((Q_TILE, KV_TILE), dtype=nl.float32, buffer=nl.psum)
    for j, (d0, dc) in enumerate(tiles(d, D_CHUNK)):
        nisa.nc_matmul(dst=s_ps[:nq, :n], stationary=qT_h[:dc, j, :nq], moving=kT[:dc, j, :n])
    s = s_ps  # read straight from PSUM unless a softcap or a mask needs an SBUF copy (GpSimd cannot read PSUM)
    if softcap is not None or masks:
        s = nl.ndarray((Q_TILE, KV_TILE), dtype=nl.float32, buffer=nl.sbuf)
        if softcap is not None:
            nisa.activation(dst=s[:nq, :n], op=nl.tanh, data=s_ps[:nq, :n], scale=scale / softcap)
        else:
            nisa.tensor_copy(dst=s[:nq, :n], src=s_ps[:nq, :n])
        for step, channel_multiplier, offset in masks:
            nisa.affine_select(dst=s[:nq, :n], pattern=[[step, n]], channel_multiplier=channel_multiplier,
                               on_true_tile=s[:nq, :n], on_false_value=masked, cmp_op=nl.greater_equal,
                               offset=offset)

    # -m' = min(-mult·rowmax(s), -m): the exps below use bias -m' (a (P, 1) tile, as NeuronCore-v2 requires)
    tile_negmax = nl.ndarray((Q_TILE, 1), dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_reduce(dst=tile_negmax[:nq], op=nl.maximum, data=s[:nq, :n], axis=1, negate=True)
    negmax = nl.ndarray((Q_TILE, 1), dtype=nl.float32, buffer=nl.sbuf)
    if first:
        nisa.tensor_scalar(dst=negmax[:nq], data=tile_negmax[:nq], op0=nl.multiply, operand0=mult,
                           op1=nl.minimum, operand1=MAX_FLOOR)
    else:
        nisa.scalar_tensor_tensor(dst=negmax[:nq], data=tile_negmax[:nq], op0=nl.multiply, operand0=mult,
                                  op1=nl.minimum, operand1=negmax_old[:nq])

    # p = exp(mult·s - m') in the input dtype, with its fp32 row sums, in one ScalarE instruction
    p = nl.ndarray((Q_TILE, KV_TILE), dtype=v_t.dtype, buffer=nl.sbuf)
    rowsum = nl.ndarray((Q_TILE, 1), dtype=nl.float32, buffer=nl.sbuf)
    nisa.activation(dst=p[:nq, :n], op=nl.exp, data=s[:nq, :n], bias=negmax[:nq], scale=mult, reduce_op=nl.add,
                    reduce_res=rowsum[:nq], reduce_cmd=nisa.reduce_cmd.reset_reduce)

    # pᵀ per 128-key chunk (TensorE), then pv = Σ_chunks pᵀ·v accumulated in one PSUM bank
    key_chunks = tiles(n, PMAX)
    pT_ps = nl.ndarray((PMAX, KV_TILE // PMAX, Q_TILE), dtype=v_t.dtype, buffer=nl.psum)
    for c, (f0, kc) in enumerate(key_chunks):
        nisa.nc_transpose(dst=pT_ps[:kc, c, :nq], data=p[:nq, f0:f0 + kc])
    pT = nl.ndarray((PMAX, KV_TILE // PMAX, Q_TILE), dtype=v_t.dtype, buffer=nl.sbuf)
    full = n // PMAX
    if full:
        nisa.tensor_copy(dst=pT[:, :full, :nq], src=pT_ps[:, :full, :nq])
    if n % PMAX:
        nisa.tensor_copy(dst=pT[:n % PMAX, full, :nq], src=pT_ps[:n % PMAX, full, :nq])
    pv_ps = nl.ndarray((Q_TILE, d), dtype=nl.float32, buffer=nl.psum)
    for c, (f0, kc) in enumerate(key_chunks):
        nisa.nc_matmul(dst=pv_ps[:nq, :], stationary=pT[:kc, c, :nq], moving=v_t[:kc, c, :])

    # o = o·alpha + pv, l = l·alpha + rowsum with alpha = exp(m - m') (the first tile just writes them)
    if first:
        nisa.tensor_copy(dst=o_h[:nq], src=pv_ps[:nq])
        nisa.tensor_copy(dst=l_h[:nq], src=rowsum[:nq])
    else:
        alpha = nl.ndarray((Q_TILE, 1), dtype=nl.float32, buffer=nl.sbuf)
        nisa.activation(dst=alpha[:nq], op=nl.exp, data=negmax_old[:nq], bias=negmax[:nq], scale=-1.0)
        nisa.scalar_tensor_tensor(dst=o_h[:nq], data=o_h[:nq], op0=nl.multiply, operand0=alpha[:nq], op1=nl.add,
                                  operand1=pv_ps[:nq])
        nisa.tensor_scalar(dst=l_h[:nq], data=l_h[:nq], op0=nl.multiply, operand0=alpha[:nq], op1=nl.add,
                           operand1=rowsum[:nq])
    return negmax
