"""Rotary position embedding of q and k: each head's first r dims rotated in r/2 planes by its token's angles.

    pair (x1, x2) of plane i, token t:  (x1 cos - x2 sin, x2 cos + x1 sin),  angle = position[t] * inv_freq[i]
    neox: x1 = x[i], x2 = x[i + r/2];  gptj (interleaved): x1 = x[2i], x2 = x[2i + 1];  dims r..D pass through.

cos/sin come from a host table, not from the angle on device. ScalarE's sin is only valid on [-pi, pi] and the
NeuronCore has no floating-point mod (nl.fmod / nl.mod do not compile for Trainium), so on-device angles would need
a magic-number range reduction (several VectorE passes) and two activations per token and plane in every layer,
with the fp32 angle's error on top. A table row per position, `cos_sin[p] = [cos | sin]` (r fp32 values: vLLM's
cos_sin_cache layout, computed once in float64 on the host), is gathered per token with an indirect DMA: the same
work for every layer, exact to fp32, and r x 4 bytes per token next to the heads' kilobytes.

Algorithm: rows on partitions, a row = g heads of one token (`layout`): prefill puts whole tokens on partitions,
a decode step of 1-32 tokens cuts each token into H/g head groups so that the tokens fill the 128 partitions
(`_split.pieces_per_row`); every head group of a token gets that token's table row. Per tile of rows:
  A. the index column: NeuronCore-v3+ loads each row's position with one DMA (a token's position repeated over its
     head groups by a stride-0 pattern); NeuronCore-v2 loads the tile's positions, one per token;
  B. DMA the rows of x (q or k, contiguous [rows, g * D] in HBM), then the table rows: v3+ ONE indirect DMA
     (`vector_offset`); v2 (scalar dynamic offsets only) one DMA per token whose source row is its 1x1
     `scalar_offset` position and whose stride-0 pattern fills that token's head-group rows. With `consecutive`
     positions (one sequence's prefill, which the launcher detects) every generation reads the tile's rows as one
     run from its first token's row instead: one DMA per tile, no per-row index;
  C. a = x * cos (VectorE; cos broadcast over heads by stride-0 access patterns), b1 = x2 * sin, b2 = x1 * sin
     (GpSimd);
  D. x1 = a1 - b1, x2 = a2 + b2 (VectorE), one rounding into x's dtype, written into the loaded tile (the
     pass-through dims need no copy); then the tile is DMAed out (to new arrays, or over q and k when `in_place`).
     On v2, where GpSimd is as fast per element as VectorE, GpSimd takes x2's sum too, unless it is busy writing
     the descriptors of the per-token DMAs (it writes those of every runtime-offset DMA on v2, and of the
     software-DGE gathers on v3+).
The stages are software-pipelined: iteration i issues A(i+2), B(i+1), C(i), D(i-1), so every engine's in-order
queue holds independent work (VectorE runs a(i) while GpSimd finishes b(i-1)) and the index and gather DMAs run
ahead of the compute. q and k tiles alternate; a k tile of the same tokens and layout as the q tile before it
reuses its index column and table rows. Only NeuronCore-v2 instructions outside the gather branch, so the same
program runs on inf2, trn1, trn2, trn3. Rows never mix: a non-finite value reaches only its own head and token.

Numerics: the table's cos/sin are fp32 roundings of float64 values; products and sums in fp32; one rounding into
x's dtype. Reference: nkilab.reference.rotary.rope.
"""

from ._shim import nisa, nki, nl
from ._split import pieces_per_row
from ._tiling import PMAX, tiles

MAX_ROW_ELEMS = 4096  # elements of one partition row of x (g heads x D): x of three tiles, a and b of two fit any SBUF


def layout(tokens, heads, head_dim):
    """(groups G per token, heads g per row), G * g = heads: the fewest groups that fill the partitions."""
    groups = pieces_per_row(tokens, heads, max(1, MAX_ROW_ELEMS // head_dim), 1)
    return groups, heads // groups


@nki.jit
def rope_kernel(q, k, positions, cos_sin, interleaved=False, in_place=False, consecutive=False):
    """Rotate q and k by the table rows of their tokens' positions.

    Dimensions:  T tokens; Hq, Hkv heads of D; r = rotary_dim (even, <= D); R table rows.
    Args:        q: [T, Hq, D], k: [T, Hkv, D], bfloat16|float16|float32, HBM.
                 positions: [T] int32, HBM: the table row of each token, in [0, R).
                 cos_sin: [R, r] float32, HBM: row p = [cos(p f_i) | sin(p f_i)], i < r/2.
                 interleaved: False = neox (halves), True = gptj (pairs); compile-time.
                 in_place: True = write over q and k (what vLLM's rotary_embedding does) and return them.
                 consecutive: True = the caller promises positions[t] = positions[0] + t (one sequence's prefill):
                 a tile's table rows are one run, read by one DMA from its first token's row, on every generation.
                 (Plain parameters with defaults, not keyword-only: the NKI compiler frontend rejects `*`.)
    Returns:     (q', k'): new shared-HBM tensors of q's and k's shapes and dtype (q, k themselves if in_place).
    Tiling:      per tensor, rows of g heads (`layout`), whole tokens per tile of <= PMAX rows; stages pipelined;
                 with LNC 2 the two cores take alternate runs of tiles that share a gather.
    Numerics:    fp32 products and sums of fp32 cos/sin; one rounding into x's dtype.
    """
    # how a tile's table rows are read: one run from its first token's row; else a vector_offset gather (v3+), or
    # one DMA per token (v2 has scalar runtime offsets only)
    gen2 = nisa.get_nc_version() == nisa.nc_version.gen2
    gather = "run" if consecutive else "token" if gen2 else "vector"
    # x2's sum: on v2 GpSimd is as fast as VectorE per element and takes it, unless it writes per-token descriptors
    second = nisa.engine.gpsimd if gather == "run" and gen2 else nisa.engine.vector
    items, outs = _plan(q, k, in_place)
    if not items:
        return outs[0], outs[1]
    last_use = {it["key"]: i for i, it in enumerate(items)}
    index, table, staged, done = {}, {}, {}, None
    for i in range(-2, len(items) + 1):
        if 0 <= i + 2 < len(items) and items[i + 2]["key"] not in index:  # A(i+2)
            index[items[i + 2]["key"]] = _index(items[i + 2], positions, gather)
        if 0 <= i + 1 < len(items):  # B(i+1)
            staged[i + 1] = _fetch(items[i + 1], index, table, cos_sin, gather)
        if 0 <= i < len(items):  # C(i)
            staged[i] = staged[i] + _products(items[i], staged[i], q.shape[2], interleaved)
        if done is not None:  # D(i-1)
            _finish(items[done], staged.pop(done), q.shape[2], interleaved, second)
            if last_use[items[done]["key"]] == done:
                del index[items[done]["key"]]
                del table[items[done]["key"]]
        done = i if 0 <= i < len(items) else None
    return outs[0], outs[1]


def _plan(q, k, in_place):
    """(tiles, outputs): this program instance's tiles of q and of k, alternating, as dicts (rows in/out, groups,
    heads per row, tokens t0..t0+nt, key = what its index column and table rows depend on)."""
    n_tok = q.shape[0]
    work, outs = [], []
    for x in (q, k):
        out = x if in_place else nl.ndarray(x.shape, dtype=x.dtype, buffer=nl.shared_hbm)
        outs.append(out)
        groups, per_row = layout(n_tok, x.shape[1], x.shape[2])
        flat = (n_tok * groups, per_row * x.shape[2])
        work.append([dict(rows_in=x.reshape(flat), rows_out=out.reshape(flat), groups=groups, per_row=per_row,
                          t0=t0, nt=nt, key=(t0, nt, groups)) for t0, nt in tiles(n_tok, PMAX // groups)])
    items = [w[i] for i in range(max(len(w) for w in work)) for w in work if i < len(w)]
    # LNC: each program instance takes every num_programs-th run of tiles sharing a key (identical control flow)
    units = [0]
    for prev, item in zip(items, items[1:]):
        units.append(units[-1] + (item["key"] != prev["key"]))
    pid, nprog = nl.program_id(0), nl.num_programs(0)
    return [item for item, unit in zip(items, units) if unit % nprog == pid], outs


def _index(item, positions, gather):
    """Stage A: the tile's table rows as an SBUF int32 column: its first token's ("run"), every token's ("token"),
    or every partition row's ("vector": a token's repeated over its head groups by a stride-0 pattern)."""
    t0, nt, groups = item["t0"], item["nt"], item["groups"]
    tokens, repeat = {"run": (1, 1), "token": (nt, 1), "vector": (nt, groups)}[gather]
    idx = nl.ndarray((tokens * repeat, 1), dtype=nl.int32, buffer=nl.sbuf)
    nisa.dma_copy(dst=idx, src=positions.ap([[1, tokens], [0, repeat]], offset=t0))
    return idx


def _fetch(item, index, table, cos_sin, gather):
    """Stage B: (x rows, table rows) of one tile in SBUF; the table rows are read once per key."""
    rows_in, t0, nt, groups, key = item["rows_in"], item["t0"], item["nt"], item["groups"], item["key"]
    n, width = nt * groups, cos_sin.shape[1]
    xt = nl.ndarray((n, rows_in.shape[1]), dtype=rows_in.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=xt, src=rows_in[t0 * groups : (t0 + nt) * groups, :])
    if key not in table:
        cs = nl.ndarray((n, width), dtype=nl.float32, buffer=nl.sbuf)
        idx = index[key]
        if gather == "vector":
            nisa.dma_copy(dst=cs, src=cos_sin.ap([[width, n], [1, width]], offset=0, vector_offset=idx,
                                                 indirect_dim=0))
        else:  # "run": nt rows from the first token's; "token": one row per token; each repeated per head group
            for j in range(1 if gather == "run" else nt):
                rows = nt if gather == "run" else 1
                nisa.dma_copy(dst=cs[j * groups : j * groups + rows * groups, :],
                              src=cos_sin.ap([[width, rows], [0, groups], [1, width]], offset=0,
                                             scalar_offset=idx[j : j + 1, :], indirect_dim=0))
        table[key] = cs
    return xt, table[key]


def _views(item, xt, cs, interleaved):
    """Access patterns of one tile: member(t, row, heads_stride, m) = pair member m (0: x1, 1: x2) of every plane
    of every head of t; freq(f) = cos (f = 0) or sin (f = 1) of the row's token, broadcast over its heads."""
    n, per_row, half = xt.shape[0], item["per_row"], cs.shape[1] // 2
    offset, step = (1, 2) if interleaved else (half, 1)

    def member(t, row, heads_stride, m):
        return t.ap([[row, n], [heads_stride, per_row], [step, half]], offset=m * offset)

    def freq(f):
        return cs.ap([[cs.shape[1], n], [0, per_row], [1, half]], offset=f * half)

    return member, freq


def _products(item, staged, head_dim, interleaved):
    """Stage C: a = x * cos over the rotated dims (VectorE), b = (x2 * sin | x1 * sin) (GpSimd); fp32 tiles."""
    xt, cs = staged
    n, free, per_row, rotary = xt.shape[0], xt.shape[1], item["per_row"], cs.shape[1]
    half = rotary // 2
    member, freq = _views(item, xt, cs, interleaved)
    # cos of plane i for both members: [heads, i, member] (gptj) or [heads, member, i] (neox), stride 0 but i
    pattern = [[1, half], [0, 2]] if interleaved else [[0, 2], [1, half]]
    cos = cs.ap([[rotary, n], [0, per_row]] + pattern, offset=0)
    a = nl.ndarray((n, per_row * rotary), dtype=nl.float32, buffer=nl.sbuf)
    b = nl.ndarray((n, per_row * rotary), dtype=nl.float32, buffer=nl.sbuf)
    x_rot = xt.ap([[free, n], [head_dim, per_row], [1, rotary]], offset=0)
    nisa.tensor_tensor(dst=a, data1=x_rot, data2=cos, op=nl.multiply, engine=nisa.engine.vector)
    for m in (0, 1):  # b's member m = the other member times sin
        nisa.tensor_tensor(dst=member(b, per_row * rotary, rotary, m), data1=member(xt, free, head_dim, 1 - m),
                           data2=freq(1), op=nl.multiply, engine=nisa.engine.gpsimd)
    return a, b


def _finish(item, staged, head_dim, interleaved, second):
    """Stage D: x1 = a1 - b1 (VectorE), x2 = a2 + b2 (engine `second`) into the loaded tile (x's dtype), then the
    tile to HBM."""
    xt, cs, a, b = staged
    free, per_row, rotary = xt.shape[1], item["per_row"], cs.shape[1]
    member, _ = _views(item, xt, cs, interleaved)
    for m, op, engine in ((0, nl.subtract, nisa.engine.vector), (1, nl.add, second)):
        nisa.tensor_tensor(dst=member(xt, free, head_dim, m), data1=member(a, per_row * rotary, rotary, m),
                           data2=member(b, per_row * rotary, rotary, m), op=op, engine=engine)
    t0, nt, groups = item["t0"], item["nt"], item["groups"]
    nisa.dma_copy(dst=item["rows_out"][t0 * groups : (t0 + nt) * groups, :], src=xt)
