"""Paged KV-cache write: scatter new tokens' keys and values into their cache slots, in place.

    key_cache[slot // block_size, slot % block_size] = key[t]   for every t with slot = slot_mapping[t] != -1

Algorithm: the cache is viewed as rows `[num_blocks * block_size, Hkv * D]` (one row per slot, the vLLM
"flash" layout makes a slot's heads contiguous), the new tokens as rows `[T, Hkv * D]`. The slots of every
PMAX-token tile are loaded first, each into an SBUF (P, 1) int32 index tile (no scatter waits in the DMA queues
behind a later tile's index load), then per tile
- NeuronCore-v3+ (trn2): indirect DMAs per cache scatter the tile's token rows to rows `slots[p]`
  (`.ap(vector_offset=slots, indirect_dim=0)`): HBM -> HBM in DMAs of `scatter_bytes` (no SBUF staging of the
  payload), or, for `stage_min_t <= T <= stage_max_t`, one HBM -> SBUF load and one SBUF -> HBM scatter (the
  tunables and why: `_kv_cache_tunables`);
- NeuronCore-v2 (inf2, trn1; the docs allow only scalar dynamic offsets there): one DMA per token and
  cache whose destination row is the 1x1 `scalar_offset` slots[t].

No path reads slot values on the host or branches on them: a contiguous run of slots (prefill) and any other
mapping take the same DMAs.

Padding: slot -1 names row -1, outside the cache in both int32 and uint32 readings, and every DMA runs with
`oob_mode.skip`, which drops exactly the transfers (rows) whose dynamic index is out of bounds (S-ISA
dma_copy), so padded tokens leave the cache untouched without a remap or a branch on slot values. The
public API has already rejected slots below -1 or past the cache.

Quantized caches (`quant`, see `nkilab.reference.kv_quant` for the bit-exact rules): each token tile is loaded into
SBUF and its codes are computed there before the same scatter DMAs (SBUF -> HBM) —
- fp8 (per tensor or per kv head): x · (1 / s) against a [PMAX, Hkv · D] row of the float32 reciprocals (one
  memset per head, built once; a per-tensor scale is a scalar operand instead), clamped to ±max, cast to the
  cache's fp8 dtype (round-to-nearest-even);
- int8: |x| reduced over D per (token, head) into amax [n, Hkv], s = max(amax · (1/127), TINY), its reciprocal,
  x · (1 / s) per head (a per-partition scalar), clamped to ±127, cast to int8 (RNE, saturating); the scales
  [n, Hkv] are scattered into the scale caches with the same slot indices.

Reference: nkilab.reference.paged.write_kv_cache.
"""

from ._kv_cache_tunables import resolve
from ._shim import nisa, nki, nl
from ._tiling import PMAX, tiles


@nki.jit
def write_kv_cache_kernel(key, value, key_cache, value_cache, slot_mapping, k_scale_cache=None, v_scale_cache=None,
                          quant=None, stage_min_t=None, stage_max_t=None, scatter_bytes=None):
    """Scatter T tokens into a paged cache, in place.

    Dimensions:  T new tokens; num_blocks x block_size slots; Hkv kv heads of D.
    Args:        key, value: [T, Hkv, D] cache dtype ("auto"), else float32|bfloat16|float16, HBM.
                 key_cache, value_cache: [num_blocks, block_size, Hkv, D], HBM, updated in place.
                 slot_mapping: [T] int32, HBM; -1 = skip, else in [0, num_blocks * block_size).
                 k_scale_cache, v_scale_cache: int8 only: [num_blocks, block_size, Hkv] float32, HBM, in place.
                 quant: None ("auto"); ("fp8", fmax, k_inv, v_inv), k_inv / v_inv tuples of Hkv float32
                 reciprocal scales; ("int8", qmax, inv_qmax, tiny): 127, float32 1/127, the scale floor.
                 stage_min_t, stage_max_t, scatter_bytes: tunables (`_kv_cache_tunables`; None = default).
    Returns:     (key_cache, value_cache), the same HBM tensors.
    Tiling:      tokens in PMAX-row tiles (index loads first, then per tile and cache the scatter DMAs: v3+ one
                 per `scatter_bytes` of rows, or one staged; v2 one per token).
    """
    t_total, hkv, d = key.shape
    num_blocks, block_size = key_cache.shape[0], key_cache.shape[1]
    row = hkv * d
    num_slots = num_blocks * block_size
    vector_dma = nisa.get_nc_version() != nisa.nc_version.gen2  # indirect vector_offset DMA is v3+
    tun = resolve(not vector_dma, dict(stage_min_t=stage_min_t, stage_max_t=stage_max_t, scatter_bytes=scatter_bytes))
    stage = quant is None and tun["stage_min_t"] <= t_total <= tun["stage_max_t"]
    # rows per HBM -> HBM scatter (v2 scatters token by token whatever the count)
    hbm_rows = max(1, tun["scatter_bytes"] // (row * (4 if key_cache.dtype == nl.float32 else 2)))
    pairs = [(new.reshape((t_total, row)), cache.reshape((num_slots, row)))
             for new, cache in ((key, key_cache), (value, value_cache))]
    scale_rows = None
    if quant is not None and quant[0] == "int8":
        scale_rows = [c.reshape((num_slots, hkv)) for c in (k_scale_cache, v_scale_cache)]
    inv_rows = None
    if quant is not None and quant[0] == "fp8":
        inv_rows = [_inverse_row(inv, d, min(PMAX, t_total)) for inv in quant[2:]]
    token_tiles = tiles(t_total, PMAX)
    for (start, n), slots in zip(token_tiles, _load_slots(slot_mapping, t_total)):
        for i, (new_rows, cache_rows) in enumerate(pairs):
            src, step = new_rows[start : start + n, :], hbm_rows
            if inv_rows is not None:
                src, step = _fp8_codes(src, inv_rows[i], quant[1], cache_rows.dtype), n
            elif scale_rows is not None:
                src, scales = _int8_codes(src, hkv, d, *quant[1:])
                step = n
                _scatter(scale_rows[i], scales, slots, vector_dma)
            elif stage:
                src, step = _staged(src), n
            for r0, rows in tiles(n, step):
                _scatter(cache_rows, src[r0 : r0 + rows, :], slots[r0 : r0 + rows, :], vector_dma)
    return key_cache, value_cache


def _load_slots(slot_mapping, t_total):
    """Every tile's slots, loaded before any scatter: a list of SBUF (n, 1) int32 index tiles, one per PMAX-token
    tile of `tiles(t_total, PMAX)`, from slot_mapping [T] int32 HBM. The first tile comes alone (the first scatters
    wait for it only), the other whole tiles in ONE DMA into a [PMAX, T // PMAX - 1] tile (column j = tile j + 1,
    a strided read), a ragged last tile in its own."""
    full, rest = divmod(t_total, PMAX)
    out = _slot_columns(slot_mapping, 0, 1) if full else []
    if full > 1:
        out += _slot_columns(slot_mapping, PMAX, full - 1)
    if rest:
        out += _slot_columns(slot_mapping, full * PMAX, 1, rest)
    return out


def _slot_columns(slot_mapping, start, count, rows=PMAX):
    """`count` index tiles (rows, 1) of slot_mapping[start + j * rows + p], one DMA into a [rows, count] SBUF tile."""
    columns = nl.ndarray((rows, count), nl.int32, buffer=nl.sbuf)
    nisa.dma_copy(dst=columns, src=slot_mapping.ap([[1, rows], [rows, count]], offset=start))
    return [columns[:, j : j + 1] for j in range(count)]


def _staged(src):
    """SBUF copy [n, row] of the HBM rows src (same dtype)."""
    staged = nl.ndarray(src.shape, src.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=staged, src=src)
    return staged


def _scatter(cache_rows, src, slots, vector_dma):
    """cache_rows[slots[p]] = src[p] for the n rows of src (HBM or SBUF [n, row]); slot -1 rows are skipped."""
    n, row = src.shape
    if vector_dma:
        nisa.dma_copy(dst=cache_rows.ap([[row, n], [1, row]], offset=0, vector_offset=slots, indirect_dim=0),
                      src=src, oob_mode=nisa.oob_mode.skip)
        return
    for t in range(n):
        nisa.dma_copy(dst=cache_rows.ap([[row, 1], [1, row]], offset=0, scalar_offset=slots[t : t + 1, :],
                                        indirect_dim=0),
                      src=src[t : t + 1, :], oob_mode=nisa.oob_mode.skip)


def _inverse_row(inv, d, rows):
    """fp8: the multiplier of x: inv[0] (a float) when every head has one scale (per tensor), else float32
    [rows, Hkv * D] SBUF, head h's D columns = inv[h] (the reciprocal of its scale)."""
    if len(set(inv)) == 1:
        return inv[0]
    tile = nl.ndarray((rows, len(inv) * d), nl.float32, buffer=nl.sbuf)
    for h, value in enumerate(inv):
        nisa.memset(dst=tile[:, h * d : (h + 1) * d], value=value)
    return tile


def _fp8_codes(src, inv_row, fmax, dtype):
    """fp8 codes [n, row] (SBUF, `dtype`) of the HBM rows src: clamp(x · inv, ±fmax), cast RNE; inv_row as
    `_inverse_row` makes it. A per-tensor scale multiplies by a scalar (one input stream, not two): min(x · inv,
    fmax) in float32, then max(·, -fmax) cast; per-head scales: x · inv_row, then the clamp and cast."""
    n, row = src.shape
    x = nl.ndarray((n, row), src.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=x, src=src)
    scaled = nl.ndarray((n, row), nl.float32, buffer=nl.sbuf)
    codes = nl.ndarray((n, row), dtype, buffer=nl.sbuf)
    if isinstance(inv_row, float):
        nisa.tensor_scalar(dst=scaled, data=x, op0=nl.multiply, operand0=inv_row, op1=nl.minimum, operand1=fmax)
        nisa.tensor_scalar(dst=codes, data=scaled, op0=nl.maximum, operand0=-fmax)
        return codes
    nisa.tensor_tensor(dst=scaled, data1=x, data2=inv_row[0:n, :], op=nl.multiply)
    nisa.tensor_scalar(dst=codes, data=scaled, op0=nl.minimum, operand0=fmax, op1=nl.maximum, operand1=-fmax)
    return codes


def _int8_codes(src, hkv, d, qmax, inv_qmax, tiny):
    """(int8 codes [n, Hkv * D], float32 scales [n, Hkv]) SBUF of the HBM rows src, symmetric per (token, head)."""
    n, row = src.shape
    x = nl.ndarray((n, hkv, d), src.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=x, src=src.reshape((n, hkv, d)))
    mag = nl.ndarray((n, hkv, d), src.dtype, buffer=nl.sbuf)  # |x| (exact in x's dtype), only its maxima are used
    scales = nl.ndarray((n, hkv), nl.float32, buffer=nl.sbuf)
    for h in range(hkv):  # amax over D per head: |x| and its max in one VectorE pass
        nisa.tensor_scalar_reduce(dst=mag[:, h, :], data=x[:, h, :], op0=nl.abs_max, operand0=0.0,
                                  reduce_op=nl.maximum, reduce_res=scales[:, h : h + 1])
    nisa.tensor_scalar(dst=scales, data=scales, op0=nl.multiply, operand0=inv_qmax, op1=nl.maximum,
                       operand1=tiny)
    inv = nl.ndarray((n, hkv), nl.float32, buffer=nl.sbuf)
    nisa.reciprocal(dst=inv, data=scales)
    scaled = nl.ndarray((n, hkv, d), nl.float32, buffer=nl.sbuf)
    for h in range(hkv):  # min(x · inv, qmax) per head (inv a per-partition scalar), then one max + cast per tile
        nisa.tensor_scalar(dst=scaled[:, h, :], data=x[:, h, :], op0=nl.multiply, operand0=inv[:, h : h + 1],
                           op1=nl.minimum, operand1=qmax)
    codes = nl.ndarray((n, row), nl.int8, buffer=nl.sbuf)
    nisa.tensor_scalar(dst=codes, data=scaled.reshape((n, row)), op0=nl.maximum, operand0=-qmax)
    return codes, scales
