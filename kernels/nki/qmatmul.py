"""Quantized matmul on NeuronCores: y[M, N] = x[M, K] @ W[K, N] with W = (q - z) * s (formats: nkilab.reference.quant).

Schemes: int8 (q int8 [K, N]); int4 (q packed two per byte along K, uint8 [K/2, N], low nibble = even k;
symmetric -8..7 or asymmetric 0..15 with zero points z); fp8_e4m3 / fp8_e4m3fn (q fp8 [K, N]); scales s
float32 per output channel [1, N] or per group of G rows along K [K/G, N]; W8A8: x itself fp8 [M, K] with
one float32 scale per token [M, 1] and fp8 per-channel weights. TensorE multiplies bf16 (or fp8 e4m3, which
it takes natively) with fp32 PSUM accumulation; every quantized value is exact in bf16, so the only rounding
before the fp32 sums is x -> bf16 (and, for prefill group scales, (q - z) * s -> bf16, as a naive bf16 run).
W8A8 e4m3 prefill on NeuronCore-v3+ multiplies fp8 x fp8 in double-row mode (x^T exact in fp8).

int4 nibbles as fp8 (decode): a byte u in 0..15 read as float8_e4m3 (1-4-3, exponent bias 7, subnormals)
is exactly u · 2^-9: u < 8 is the subnormal (u/8) · 2^-6, u >= 8 has exponent field 1 and mantissa u - 8,
(1 + (u-8)/8) · 2^-6 — both u · 2^-9, the two exponents sharing the scale 2^-6. So a tile of isolated
offset-binary nibbles, one per byte, is VIEWED as float8_e4m3 and goes to TensorE as is (fp8 e4m3 with a
bf16 moving operand: native on NeuronCore-v2 and v3), with no conversion instruction; the products and fp32
sums carry the exact factor 2^-9 (a power of two: scaling commutes with every fp32 rounding short of the
fp32 subnormal range), which FP8_NIBBLE = 2^9 folded into the scales removes exactly. With exact products
and fp32 sums, the partial sums are those of the bf16 path scaled by 2^-9, bit for bit. This relies on
TensorE taking fp8 subnormal inputs as such (no flush to zero), as ml_dtypes and the emulator do: nibbles
1..7 are fp8 subnormals, NKI documents neither way whether TensorE flushes them, and a device check of that
is still owed. The kernel option int4_nibbles_as_fp8=False (e.g. `launch(qmatmul_kernel, *args,
int4_nibbles_as_fp8=False, **kwargs)` with `launch_qmatmul.kernel_inputs`) converts the nibbles to bf16
instead (one ScalarE and one GpSimd copy per fetch, no subnormals, no 2^9): the same results, slower
(modeled on trn2 at Llama-3.1-8B gate/up decode, M = 1, g128: 253 us against 159 us, ScalarE-bound).

Two schedules, chosen by M at compile time:

decode (M <= decode_max_m: 16, or 32 for int4, whose prefill pays a dequant op per weight; and M·b <= 512):
the weights are the STATIONARY operand, x^T the moving one, so each 128 x 128 weight block costs one
max(M·b, 64)-cycle matmul (b = groups per K tile) instead of a 512-column pass, and
the weights stream from HBM exactly once, in DMAs of up to DECODE_DMA_COLS columns (long runs). int8 and
fp8e4m3fn tiles arrive as 1-byte values and are converted to bf16 on VectorE, ScalarE and GpSimd in turn (a
casting DMA would write 2 bytes per weight, making the DMA queues, not HBM, the limit); fp8 e4m3 goes to
TensorE as loaded. Group scales never touch the weights: the moving operand of a K tile holding b groups is
block-diagonal — x^T copied into b column blocks, block j keeping only the rows of group j — so one matmul
leaves each group's partial sum in its own PSUM slot, P[n, g, m]. The epilogue works on those small fp32
partial sums with output channels on the partitions: y^T[n, m] = Σ_g s[g, n] (P[n, g, m] - z[g, n] X[g, m]),
where X[g, m] = Σ_{k in g} x[m, k] (int4 only) is reduced from the x rows once per call, and the z·s·X term,
a contraction over the groups, runs as a small fp32 matmul; the epilogue's VectorE ops each cover every
128-channel sub-tile of one PSUM bank. int4 tiles are unpacked on VectorE into offset-binary nibbles
u = q + z_eff (z_eff = 8 for symmetric, via xor 8), one byte each, through uint32 views of the packed bytes:
with K/2 packed rows on partitions and N along the free dim, the 4 bytes of a word are 4 output channels of
one packed row, so low = w32 & 0x0F0F0F0F (^ 0x08080808) is the even-k tile and high = (w32 >> 4) &
0x0F0F0F0F (^ 0x08080808) the odd-k tile of the same channels — 2 VectorE instructions (asymmetric) or 3
(symmetric: tensor_scalar takes two operators) on N/4 elements per packed row, i.e. 0.25-0.375 VectorE
element-ops per packed byte instead of 2 bit ops and 2 conversions. The tiles are then viewed as fp8 (see
above); several K tiles of a narrow block are loaded and unpacked together (>= DECODE_DMA_COLS columns per
instruction). z_eff and 2^9 are folded into the epilogue (int4_nibbles_as_fp8=False: the tiles are
converted to bf16 on ScalarE / GpSimd instead, and only z_eff is folded). y^T is transposed on TensorE
(after rounding to a 16-bit y: 2-byte transposes) and stored as rows of y.

    for n_block (<= 4096 columns, blocks split over LNC programs):
        for chunk of groups (PSUM slots [128, groups, M] of every 128-channel n_sub fit 4 banks):
            for k_tile in chunk: w = load(q[k_tile, n_block])  (int4: unpack, view as fp8 or convert)
                for n_sub: P[n_sub] += w[:, n_sub]^T · xm[k_tile]
            yT[n_sub] (+)= Σ_g sT[n_sub, g] · P[n_sub, g]  -  (z·s)[:, n_sub]^T · X^T   (int4: sT = 2^9 · s^T)
        y[:, n_block] = transpose(yT)

prefill (larger M): x^T is the stationary operand [K tile, <= 128 rows of M], the weights the
moving one [K tile, <= 512 columns], so TensorE streams full 512-column tiles and y comes out row-major.
x rows are loaded, cast to bf16 and transposed on TensorE once per M block kept resident in SBUF
(prefill_sbuf_bytes per partition); the block accumulates in PSUM in groups of PREFILL_PSUM_BANKS M tiles,
one bank each, over all of K. When two N tiles of dequantized weights fit next to x^T (K up to ~4.8K), each
N tile is loaded and dequantized once per M block and kept resident while every group of M tiles uses it,
the next one being prepared meanwhile; for larger K the M block is a single group and each weight tile is
loaded and dequantized inside the K loop. Group scales / zero points are applied to the weight tile
(amortised over the M tiles); per-channel scales (and W8A8 token scales) to the fp32 PSUM result. int4
nibbles are isolated with the same uint32 bit ops as in decode and then dequantized from their uint8 values
(one op per weight, as before: an fp8 view would not remove it, since prefill applies z and group scales
to the weights, and folding them into the fp32 result would change the rounding).

    for m_block: xT = transpose(bf16(x[m_block]))
        for n_tile (512): wd[k] = dequant(q[k, n_tile]) for every k tile (large K: inside the k loop)
            for group of <= 4 m_tiles: acc[m_tile] = Σ_k xT[k, m_tile]^T · wd[k]
                y[m_tile, n_tile] = acc[m_tile] * s_out

int4 contracts in two halves into the same PSUM tile: low nibbles (even k) against x's even columns and
high nibbles (odd k) against its odd columns (strided views of the loaded x rows).

Limits: group sizes whose rows per partition tile (G, or G/2 for int4) divide 128 or are a multiple of 128;
K <= MAX_K. The NeuronCore-v2-safe op subset, so the kernel is valid for inf2, trn1, trn2 and trn3; the one
gen3+ op (double-row fp8 matmul, W8A8 e4m3 prefill) sits behind `nisa.get_nc_version()` with the v2 path kept.

Reference: nkilab.reference.matmul.qmatmul.
"""

from ._shim import nisa, nki, nl
from ._tiling import MOVING_FMAX, PMAX, PSUM_FMAX, STATIONARY_FMAX, tiles

N_BLOCK = MOVING_FMAX  # prefill N tile (moving free size), decode store width: 512 fp32 = one 2 KiB PSUM bank
N_SUB = STATIONARY_FMAX  # decode: output channels per matmul (stationary free size <= 128)
DECODE_MAX_M = 16  # largest M run with the weight-stationary decode schedule
DECODE_MAX_M_INT4 = 32  # int4: its prefill pays a dequant op per weight, decode none (modeled on trn2 and
# inf2 at Llama-3.1-8B gate_up, decode stays ahead up to M ~ 64; 32 keeps a margin)
DECODE_DMA_COLS = 4096  # decode: weight columns per DMA (4 KiB int8 runs per partition: fewer, longer runs)
DECODE_MIN_DMA_COLS = 1024  # decode int8/fp8: weight columns per DMA at least (>= 1 KiB runs per partition)
DECODE_PSUM_BANKS = 4  # decode: PSUM banks of partial sums per DMA block (the rest: transposes, stores)
DECODE_LOOKAHEAD = 2  # decode: weight fetches loaded and converted/unpacked ahead of the one being multiplied
PREFILL_SBUF_BYTES = 160 * 1024  # prefill: SBUF bytes per partition for the resident x^T of one M block, two
# x pieces and (small K) two N tiles of weights; the rest of NeuronCore-v2's 192 KiB holds streamed tiles
X_CHUNK = 2048  # prefill: x columns loaded per DMA for the transposes (a multiple of the 256-column K steps)
PREFILL_PSUM_BANKS = 4  # prefill: M tiles per block, each accumulating one [128, 512] fp32 bank over all of K;
# double-buffered (the next N tile accumulates while this one is scaled and stored) they fill the 8 banks
MAX_K = 32768  # prefill keeps the bf16 x^T of >= 128 rows of M in SBUF (2K bytes per partition: 64 KiB)
INT4_SYM_OFFSET = 8  # symmetric int4: q = (nibble xor 8) - 8, so u = nibble xor 8 = q + 8 is unsigned
NIBBLE_MASK = 0x0F0F0F0F  # the low nibble of each byte of a uint32 word (4 packed bytes = 4 output channels)
NIBBLE_FLIP = 0x08080808  # xor 8 in each byte: symmetric nibbles to offset binary
FP8_NIBBLE = 2.0 ** 9  # a byte u in 0..15 read as float8_e4m3 is exactly u / FP8_NIBBLE (see Numerics)
ACCEPTED_OUT = ("float32", "bfloat16", "float16")


@nki.jit
def qmatmul_kernel(x, w, scales, zeros=None, x_scales=None, scheme="int8", group_size=None, symmetric=True,
                   out_dtype="float32", decode_max_m=None, prefill_sbuf_bytes=PREFILL_SBUF_BYTES,
                   int4_nibbles_as_fp8=True):
    """y = x @ ((q - z) * s) for weight-only int8/int4/fp8 and W8A8 fp8 (see the module docstring).

    Config arguments follow the tensors without a `*` separator: the NKI 0.2-0.6 compiler frontend
    rejects keyword-only parameters (S-LG, S-MIG kernel-language rules; tags in `nkilab.harness.emulator`); callers
    pass them by keyword.

    Dimensions:  M rows of x; K contraction (K % G == 0, even for int4, K <= MAX_K); N output channels.
    Args:        x: [M, K] float32|bfloat16|float16, or fp8 for W8A8, HBM.
                 w: int8 [K, N] | uint8 [K/2, N] (int4) | float8_e4m3 / float8_e4m3fn [K, N], HBM.
                 scales: float32 [K/G, N] or [1, N] (per channel), HBM.
                 zeros: uint8 zero points shaped like scales (int4 asymmetric), else None.
                 x_scales: float32 [M, 1] per-token scales (W8A8), else None.
                 scheme: "int8" | "int4" | "fp8_e4m3" | "fp8_e4m3fn"; group_size: G or None (per channel);
                 symmetric: False for int4 with zero points; out_dtype: "float32" | "bfloat16" | "float16".
                 decode_max_m: largest M using the decode schedule (None: DECODE_MAX_M, or
                 DECODE_MAX_M_INT4 for int4); prefill_sbuf_bytes: see PREFILL_SBUF_BYTES;
                 int4_nibbles_as_fp8: int4 decode feeds the nibbles to TensorE as fp8 views (True) or
                 converted to bf16 (False: for a TensorE that flushes fp8 subnormals, see Numerics).
    Returns:     y: [M, N] out_dtype, shared HBM.
    Numerics:    x rounded to bf16; quantized values exact in bf16; fp32 PSUM sums; decode applies scales
                 and zero points to fp32 partial sums (int4: nibbles read as fp8 = u · 2^-9 exactly, 2^9
                 folded into the scales, or converted to bf16); prefill group schemes round (q - z) * s to
                 bf16.
    """
    m, k = x.shape
    n = w.shape[1]
    if decode_max_m is None:
        decode_max_m = DECODE_MAX_M_INT4 if scheme == "int4" else DECODE_MAX_M
    w8a8 = x_scales is not None
    geo = _Geometry(scheme, group_size, symmetric, k, m, w8a8, out_dtype=out_dtype,
                    fp8_nibbles=int4_nibbles_as_fp8)
    # decode's block-diagonal moving operand [K tile, groups, M] must fit one matmul's free size
    decode = m <= decode_max_m and geo.ngmax * m <= MOVING_FMAX
    if not decode and w8a8 and scheme == "fp8_e4m3" and nisa.get_nc_version() != nisa.nc_version.gen2:
        # W8A8 prefill with e4m3 on NeuronCore-v3+: fp8 x fp8 double-row matmuls (2x TensorE rate); v2 keeps bf16
        geo = _Geometry(scheme, group_size, symmetric, k, m, w8a8, pairs=True, out_dtype=out_dtype)
    out = nl.ndarray((m, n), dtype=getattr(nl, out_dtype), buffer=nl.shared_hbm)
    # LNC: each program instance takes every num_programs-th N block (identical control flow on both cores)
    pid, nprog = nl.program_id(0), nl.num_programs(0)
    if decode:
        _decode(x, w, scales, zeros, x_scales, out, geo, pid, nprog)
    else:
        _prefill(x, w, scales, zeros, x_scales, out, geo, pid, nprog, prefill_sbuf_bytes)
    return out


class _Geometry(nl.NKIObject):
    """Compile-time tiling facts of one call: K tiles ("steps") with the groups each covers, and group chunks.

    rows: partition rows of w in HBM (K, or K/2 for int4); gr: rows per group (all rows per channel);
    parity: 2 for int4 (even/odd k packed in one row), else 1; pairs: K steps of 256 rows for fp8 double-row
    matmuls (W8A8 prefill on NeuronCore-v3+); steps: (r0, rows, g0, ng) per K step of <= 128 rows (256 with
    pairs), covering groups g0 .. g0+ng-1 (per channel: every step is group 0, ng 1); ngmax: most groups in
    a step; nhalves: x^T slots per step (int4: even/odd k; pairs: rows r0.. and r0+128..; else 1);
    narrow_out: y is 16-bit (decode rounds y^T before transposing it); fp8_nibbles: int4 decode multiplies
    the nibbles as fp8 views (u · 2^-9), else as bf16 copies.
    """

    def __init__(self, scheme, group_size, symmetric, k, m, w8a8, pairs=False, out_dtype="float32",
                 fp8_nibbles=False):
        self.scheme, self.symmetric, self.w8a8, self.m, self.pairs = scheme, symmetric, w8a8, m, pairs
        self.narrow_out = out_dtype != "float32"
        self.int4 = scheme == "int4"
        self.fp8_nibbles = self.int4 and fp8_nibbles
        self.per_channel = group_size is None
        self.parity = 2 if self.int4 else 1
        self.nhalves = 2 if (self.int4 or pairs) else 1
        self.rows = k // self.parity
        self.gr = self.rows if self.per_channel else group_size // self.parity
        self.ngroups = 1 if self.per_channel else self.rows // self.gr
        self.steps = []
        for r0, rows in tiles(self.rows, 2 * PMAX if pairs else PMAX):
            if self.per_channel:
                self.steps.append((r0, rows, 0, 1))
            else:
                self.steps.append((r0, rows, r0 // self.gr, max(1, rows // self.gr)))
        self.ngmax = max(ng for _, _, _, ng in self.steps)

    def halves(self, i):
        """[(x column start, stop, step), partition rows] of each x^T slot of K step i."""
        r0, rows, _, _ = self.steps[i]
        if self.int4:
            return [((2 * r0 + h, 2 * (r0 + rows), 2), rows) for h in range(2)]
        if self.pairs:
            return [((r0 + PMAX * h, r0 + PMAX * h + min(PMAX, rows - PMAX * h), 1), min(PMAX, rows - PMAX * h))
                    for h in range(2) if rows > PMAX * h]
        return [((r0, r0 + rows, 1), rows)]

    def chunks(self, max_groups):
        """Consecutive steps grouped so that each chunk covers at most `max_groups` groups:
        list of (g0, ngroups, [step indices])."""
        out = []
        for i, (_, _, g0, ng) in enumerate(self.steps):
            if out and g0 + ng - out[-1][0] <= max_groups:
                c0, _, idx = out[-1]
                out[-1] = (c0, g0 + ng - c0, idx + [i])
            else:
                out.append((g0, ng, [i]))
        return out


# ---- decode --------------------------------------------------------------------------------------------------


def _decode(x, w, scales, zeros, x_scales, out, geo, pid, nprog):
    m = geo.m
    n = w.shape[1]
    # group chunks small enough that min_cols columns of partial sums fit the PSUM banks: int8/fp8 decode is
    # bound by the weight DMAs (longer runs help); int4 by VectorE, where more chunks mean more epilogue ops
    min_cols = N_BLOCK if geo.int4 else DECODE_MIN_DMA_COLS
    chunks = geo.chunks(max(1, min(PMAX, DECODE_PSUM_BANKS * PSUM_FMAX * N_SUB // (min_cols * m))))
    x_sb = nl.ndarray((m, x.shape[1]), dtype=nl.bfloat16, buffer=nl.sbuf)
    nisa.dma_copy(dst=x_sb, src=x)
    moving = _decode_moving(x_sb, geo)
    gsums = [_group_sums_T(x_sb, geo, cg0, gc) for cg0, gc, _ in chunks] if geo.int4 else None
    xs_rep = None
    if geo.w8a8:
        # per-token scales as a row replicated over the output-channel partitions: partition stride 0 in HBM
        xs_rep = nl.ndarray((PMAX, m), dtype=nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=xs_rep, src=x_scales.ap([[0, PMAX], [1, m]], offset=0))
    # sub-tiles whose partial sums share one PSUM bank; the DMA block spans up to DECODE_PSUM_BANKS banks
    per_bank = max(1, PSUM_FMAX // (max(gc for _, gc, _ in chunks) * m))
    blocks = tiles(n, min(DECODE_DMA_COLS, DECODE_PSUM_BANKS * per_bank * N_SUB))
    # the weight fetches in stream order; each is loaded and converted DECODE_LOOKAHEAD fetches ahead of its
    # matmuls, so in every engine's program order the next tiles' conversions come before this block's
    # epilogue (which waits for TensorE) instead of queueing behind it.
    # int4 fetches several K steps per DMA and unpack instruction (>= DECODE_DMA_COLS columns' worth): the
    # bit ops' fixed cost per instruction is large next to narrow blocks' element work
    per_fetch = max(1, DECODE_DMA_COLS // blocks[0][1]) if geo.int4 else 1
    work = [(b, c, run) for b in range(pid, len(blocks), nprog) for c in range(len(chunks))
            for run in _step_runs(geo, chunks[c][2], per_fetch)]
    ahead = [_fetch(w, geo, blocks, work[t]) for t in range(min(DECODE_LOOKAHEAD, len(work)))]
    # a block's output is stored once the next block's matmuls are issued: a store DMA waiting for its
    # epilogue would hold back, on its DMA queues, the weight transfers issued after it
    pending = []
    for t, (b, c, run) in enumerate(work):
        if t + DECODE_LOOKAHEAD < len(work):
            ahead.append(_fetch(w, geo, blocks, work[t + DECODE_LOOKAHEAD]))
        fetched = ahead.pop(0)
        nb0, nbw = blocks[b]
        subs = tiles(nbw, N_SUB)
        cg0, gc, step_ids = chunks[c]
        if run[0] == step_ids[0]:
            if c == 0:
                yT = nl.ndarray((PMAX, len(subs), m), dtype=nl.float32, buffer=nl.sbuf)
            banks = [nl.ndarray((PMAX, len(batch), gc, m), dtype=nl.float32, buffer=nl.psum)
                     for batch in _batches(subs, per_bank)]
            parts = [banks[j // per_bank][:, j % per_bank, :, :] for j in range(len(subs))]
        for i, weights in zip(run, fetched):
            _, rows, g0, ng = geo.steps[i]
            for wt, xm in zip(weights, moving[i]):
                for j, (j0, nsz) in enumerate(subs):
                    nisa.nc_matmul(dst=parts[j][0:nsz, g0 - cg0:g0 - cg0 + ng, :],
                                   stationary=wt[0:rows, j0:j0 + nsz], moving=xm[0:rows])
        if run[-1] != step_ids[-1]:
            continue
        if c == 0 and pending:
            _store_transposed(out, *pending.pop(), geo)
        s_sb = _load_rows(scales, cg0, gc, nb0, nbw)
        zs_sb = None
        if geo.int4 and not geo.symmetric:
            zs_sb = _load_rows(zeros, cg0, gc, nb0, nbw)
            nisa.tensor_tensor(dst=zs_sb, data1=zs_sb, data2=s_sb, op=nl.multiply)
        for bank, batch, (b0, nb) in zip(banks, _batches(subs, per_bank), tiles(len(subs), per_bank)):
            rows = batch[0][1]
            _decode_epilogue(yT[0:rows, b0:b0 + nb, :], bank[0:rows], batch, s_sb, zs_sb, gc,
                             gsums[c] if gsums else None, xs_rep, geo, accumulate=c > 0)
        if c == len(chunks) - 1:
            pending.append((yT, subs, nb0, nbw))
    for args in pending:
        _store_transposed(out, *args, geo)


def _step_runs(geo, step_ids, per_fetch):
    """step_ids (consecutive K steps) cut into runs of at most per_fetch steps with equal rows (a ragged last
    step runs alone), each loaded by one DMA."""
    runs = []
    for i in step_ids:
        if runs and len(runs[-1]) < per_fetch and geo.steps[runs[-1][0]][1] == geo.steps[i][1]:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def _fetch(w, geo, blocks, item):
    """The weight tiles of decode work item (block b, chunk, run of K steps): per step, its TensorE operand(s)."""
    b, _, run = item
    nb0, nbw = blocks[b]
    if not geo.int4:
        return [_load_weight_tile(w, geo.steps[i][0], geo.steps[i][1], nb0, nbw, geo, turn=b + i) for i in run]
    r0, rows, _, _ = geo.steps[run[0]]
    n = w.shape[1]
    # packed rows r0 + rows * s + p of the run's steps s as one [rows, steps, nbw] tile (runs of full steps)
    lo, hi = _load_nibbles(w.ap([[n, rows], [rows * n, len(run)], [1, nbw]], offset=r0 * n + nb0), geo.symmetric)
    if geo.fp8_nibbles:
        lo, hi = lo.view(nl.float8_e4m3), hi.view(nl.float8_e4m3)
    else:  # one ScalarE and one GpSimd copy for the whole run (VectorE has just unpacked it)
        lo, hi = _converted(lo[..., 0:nbw], 1), _converted(hi[..., 0:nbw], 2)
    return [[lo[:, s, :], hi[:, s, :]] for s in range(len(run))]


def _decode_moving(x_sb, geo):
    """Per K step, the moving operand(s) [rows, ng, M] bf16: x^T, block-diagonal over the step's groups
    (int4: one for the even-k half, one for the odd-k half). x_sb: [M, K] bf16 SBUF."""
    m = geo.m
    mask = _group_mask(geo) if geo.ngmax > 1 else None
    moving = []
    for i, (_, rows, _, ng) in enumerate(geo.steps):
        halves = []
        for (c0, c1, cs), _ in geo.halves(i):
            cols = x_sb[0:m, c0:c1:cs]
            xT_ps = nl.ndarray((rows, 1, m), dtype=nl.bfloat16, buffer=nl.psum)
            nisa.nc_transpose(dst=xT_ps, data=cols)
            xm = nl.ndarray((rows, ng, m), dtype=nl.bfloat16, buffer=nl.sbuf)
            if ng > 1:
                nisa.tensor_tensor(dst=xm, data1=xT_ps.broadcast(1, ng),
                                   data2=mask[0:rows, 0:ng, :].broadcast(2, m), op=nl.multiply)
            else:
                nisa.tensor_copy(dst=xm, src=xT_ps)
            halves.append(xm)
        moving.append(halves)
    return moving


def _group_mask(geo):
    """mask[p, j, 0] = 1.0 where partition row p of a K step belongs to its j-th group (p // gr == j), else 0."""
    ones = nl.ndarray((PMAX, geo.ngmax, 1), dtype=nl.bfloat16, buffer=nl.sbuf)
    nisa.memset(dst=ones, value=1.0)
    lower = nl.ndarray((PMAX, geo.ngmax, 1), dtype=nl.bfloat16, buffer=nl.sbuf)
    nisa.affine_select(dst=lower, pattern=[[-geo.gr, geo.ngmax], [1, 1]], channel_multiplier=1, on_true_tile=ones,
                       on_false_value=0.0, cmp_op=nl.greater_equal, offset=0)
    mask = nl.ndarray((PMAX, geo.ngmax, 1), dtype=nl.bfloat16, buffer=nl.sbuf)
    nisa.affine_select(dst=mask, pattern=[[geo.gr, geo.ngmax], [1, 1]], channel_multiplier=-1, on_true_tile=lower,
                       on_false_value=0.0, cmp_op=nl.greater_equal, offset=geo.gr - 1)
    return mask


def _group_sums_T(x_sb, geo, cg0, gc):
    """int4 zero-point folding: X^T[g, m] = Σ_{k in group cg0 + g} x[m, k] for gc groups, float32 SBUF [gc, M]
    (a VectorE reduce of the x rows, then a TensorE transpose to put the groups on the partitions)."""
    m, k = geo.m, geo.rows * geo.parity
    kg = k // geo.ngroups
    sums = nl.ndarray((m, gc), dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_reduce(dst=sums, op=nl.add, data=x_sb.reshape((m, geo.ngroups, kg))[:, cg0:cg0 + gc, :], axis=2)
    ps = nl.ndarray((gc, m), dtype=nl.float32, buffer=nl.psum)
    nisa.nc_transpose(dst=ps, data=sums)
    sums_T = nl.ndarray((gc, m), dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_copy(dst=sums_T, src=ps)
    return sums_T


def _load_rows(t, g0, gc, nb0, nbw):
    """Rows g0 .. g0+gc of a [groups, N] HBM tensor, columns nb0 .. nb0+nbw, as float32 SBUF [gc, nbw]."""
    sb = nl.ndarray((gc, nbw), dtype=nl.float32, buffer=nl.sbuf)
    nisa.dma_copy(dst=sb, src=t[g0:g0 + gc, nb0:nb0 + nbw])
    return sb


def _batches(subs, per_bank):
    """The 128-channel sub-tiles in runs of per_bank (the sub-tiles whose partial sums share a PSUM bank)."""
    return [subs[b0:b0 + nb] for b0, nb in tiles(len(subs), per_bank)]


def _transposed(src, batch, gc, scale):
    """float32 SBUF [rows, nb, gc, 1] (rows = the first sub-tile's channels): for each sub-tile (j0, nsz) of
    `batch`, columns j0 .. j0+nsz of src [gc, nbw] times `scale` (a power of two: exact) with the channels
    moved onto partitions (TensorE transposes into one PSUM bank, one ScalarE copy out)."""
    rows = batch[0][1]
    ps = nl.ndarray((rows, len(batch), gc), dtype=nl.float32, buffer=nl.psum)
    for jj, (j0, nsz) in enumerate(batch):
        nisa.nc_transpose(dst=ps[0:nsz, jj, :], data=src[0:gc, j0:j0 + nsz])
    sb = nl.ndarray((rows, len(batch), gc, 1), dtype=nl.float32, buffer=nl.sbuf)
    nisa.activation(dst=sb, op=nl.copy, data=ps, scale=scale)
    return sb


def _decode_epilogue(acc, part, batch, s_sb, zs_sb, gc, gsum_T, xs_rep, geo, accumulate):
    """acc[:, j, :] (+)= Σ_g sT_j[:, g] · part[:, j, g, :] - Σ_g (z·s)[g, sub-tile j]^T · X[g] for the
    128-channel sub-tiles j of `batch` (those sharing one PSUM bank), each VectorE op covering all of them.

    acc: SBUF [rows, nb, M]; part: PSUM [rows, nb, gc, M] per-group partial sums; batch: nb (j0, nsz)
    sub-tiles (only the last may be ragged: its rows past nsz are never stored); s_sb / zs_sb: [gc, nbw]
    float32 SBUF rows of the scales / zero points times scales (int4 asymmetric; symmetric: z = 8);
    gsum_T: [gc, M] group sums of x (int4); xs_rep: [128, M] token scales (W8A8). The zero-point term is a
    contraction over the groups, so it runs on TensorE in fp32 (stationary = the [gc, nsz] rows as loaded,
    moving = X^T) instead of on VectorE."""
    m = geo.m
    rows, nb = batch[0][1], len(batch)
    # int4 partial sums come from the fp8 view of the nibbles, u / FP8_NIBBLE: the factor rides on the scales
    sT = _transposed(s_sb, batch, gc, FP8_NIBBLE if geo.fp8_nibbles else 1.0)
    res = nl.ndarray((rows, nb, m), dtype=nl.float32, buffer=nl.sbuf) if (accumulate or geo.int4) else acc
    if geo.per_channel:
        nisa.tensor_tensor(dst=res, data1=part[:, :, 0, :], data2=sT[:, :, 0, :].broadcast(2, m), op=nl.multiply)
        if geo.w8a8:
            nisa.tensor_tensor(dst=res, data1=res, data2=xs_rep[0:rows, :].expand_dim(1).broadcast(1, nb),
                               op=nl.multiply)
    else:
        scaled = nl.ndarray((rows, nb, gc, m), dtype=nl.float32, buffer=nl.sbuf)
        nisa.tensor_tensor(dst=scaled, data1=part, data2=sT.broadcast(3, m), op=nl.multiply)
        nisa.tensor_reduce(dst=res, op=nl.add, data=scaled.permute((0, 1, 3, 2)), axis=3)
    if geo.int4:
        corr = nl.ndarray((rows, nb, m), dtype=nl.float32, buffer=nl.psum)
        sz, z = (s_sb, -float(INT4_SYM_OFFSET)) if geo.symmetric else (zs_sb, -1.0)
        for jj, (j0, nsz) in enumerate(batch):
            nisa.nc_matmul(dst=corr[0:nsz, jj, :], stationary=sz[0:gc, j0:j0 + nsz], moving=gsum_T)
        nisa.scalar_tensor_tensor(dst=res if accumulate else acc, data=corr, op0=nl.multiply, operand0=z,
                                  op1=nl.add, operand1=res)
    if accumulate:
        nisa.tensor_tensor(dst=acc, data1=acc, data2=res, op=nl.add)


def _store_transposed(out, yT, subs, nb0, nbw, geo):
    """out[:, nb0 : nb0+nbw] = yT^T, 512 columns at a time: TensorE transposes of each [nsz, M] sub-tile into
    one PSUM bank, one copy out of PSUM, one DMA. A 16-bit y is rounded first (one ScalarE copy: the same
    single rounding as the final cast), so the transposes move 2-byte elements (fp32 ones take 4 passes)."""
    m = geo.m
    if geo.narrow_out:
        rounded = nl.ndarray((subs[0][1], len(subs), m), dtype=out.dtype, buffer=nl.sbuf)
        nisa.activation(dst=rounded, op=nl.copy, data=yT[0:subs[0][1]])
        yT = rounded
    for o0, ow in tiles(nbw, N_BLOCK):
        o_ps = nl.ndarray((m, ow), dtype=yT.dtype, buffer=nl.psum)
        for j, (j0, nsz) in enumerate(subs):
            if o0 <= j0 < o0 + ow:
                nisa.nc_transpose(dst=o_ps[:, j0 - o0:j0 - o0 + nsz], data=yT[0:nsz, j, :])
        o_sb = nl.ndarray((m, ow), dtype=out.dtype, buffer=nl.sbuf)
        if geo.int4:  # ScalarE: VectorE unpacks the int4 weights
            nisa.activation(dst=o_sb, op=nl.copy, data=o_ps)
        else:
            nisa.tensor_copy(dst=o_sb, src=o_ps)
        nisa.dma_copy(dst=out[:, nb0 + o0:nb0 + o0 + ow], src=o_sb)


# ---- weight tiles (both schedules) -----------------------------------------------------------------------------


def _load_weight_tile(w, r0, rows, nb0, nbw, geo, turn=None):
    """TensorE-ready weight tile [rows, nbw] of partition rows r0 .. r0+rows (int8, fp8; int4 nibbles come
    from `_load_nibbles`), in a one-element list: bf16 (int8, fp8e4m3fn), or the fp8 e4m3 tile as loaded.

    turn: None = the DMA casts int8 / fp8e4m3fn to bf16 while it moves them; an int = load the 1-byte values
    and convert them on engine turn % 3 (Vector, Scalar, GpSimd in rotation) — decode uses this, because a
    casting DMA writes 2 bytes per weight and its DMA queues, not HBM, would then bound the weight stream."""
    src = w[r0:r0 + rows, nb0:nb0 + nbw]
    if geo.scheme == "fp8_e4m3" or turn is not None:
        raw = nl.ndarray((rows, nbw), dtype=w.dtype, buffer=nl.sbuf)
        nisa.dma_copy(dst=raw, src=src)
        return [raw if geo.scheme == "fp8_e4m3" else _converted(raw, turn)]
    wt = nl.ndarray((rows, nbw), dtype=nl.bfloat16, buffer=nl.sbuf)
    nisa.dma_copy(dst=wt, src=src)
    return [wt]


def _converted(t, turn):
    """t as a new bf16 SBUF tile, converted on VectorE (turn % 3 == 0), ScalarE (1) or GpSimd (2)."""
    out = nl.ndarray(t.shape, dtype=nl.bfloat16, buffer=nl.sbuf)
    if turn % 3 == 0:
        nisa.tensor_copy(dst=out, src=t)
    elif turn % 3 == 1:
        nisa.activation(dst=out, op=nl.copy, data=t)  # ScalarE: activation copy is valid on NeuronCore-v2 too
    else:
        nisa.tensor_copy(dst=out, src=t, engine=nisa.engine.gpsimd)
    return out


def _load_nibbles(src, symmetric):
    """Packed int4 HBM view [rows, ..., nbw] -> (low, high) nibbles u = q + z_eff, one per byte: uint8 SBUF
    tiles [rows, ..., nbw rounded up to 4] (pad columns are never read); symmetric ones xor 8 (offset binary).

    The bit ops run on uint32 views, 4 packed bytes (4 channels of one row) per element, so VectorE handles
    nbw/4 elements per instruction; byte j of a word stays byte j (bytes never cross: masks keep each
    byte's own nibble, and the logical shift's carry-in from the next byte is masked off)."""
    nbw = src.shape[-1]
    shape = tuple(src.shape[:-1]) + (-(-nbw // 4) * 4,)
    packed = nl.ndarray(shape, dtype=nl.uint8, buffer=nl.sbuf)
    nisa.dma_copy(dst=packed[..., 0:nbw], src=src)
    words = packed.view(nl.uint32)
    lo = nl.ndarray(shape, dtype=nl.uint8, buffer=nl.sbuf)
    hi = nl.ndarray(shape, dtype=nl.uint8, buffer=nl.sbuf)
    lo_w, hi_w = lo.view(nl.uint32), hi.view(nl.uint32)
    flip = nl.bitwise_xor if symmetric else None
    nisa.tensor_scalar(dst=lo_w, data=words, op0=nl.bitwise_and, operand0=NIBBLE_MASK, op1=flip,
                       operand1=NIBBLE_FLIP if symmetric else None)
    nisa.tensor_scalar(dst=hi_w, data=words, op0=nl.right_shift, operand0=4, op1=nl.bitwise_and,
                       operand1=NIBBLE_MASK)
    if symmetric:  # a third operator: tensor_scalar takes two
        nisa.tensor_scalar(dst=hi_w, data=hi_w, op0=nl.bitwise_xor, operand0=NIBBLE_FLIP)
    return lo, hi


# ---- prefill -------------------------------------------------------------------------------------------------


def _prefill(x, w, scales, zeros, x_scales, out, geo, pid, nprog, sbuf_bytes):
    m = x.shape[0]
    # bytes per partition of one resident x^T row (bf16, or fp8 with pairs) = of one dequantized weight column
    row_bytes = len(geo.steps) * geo.nhalves * (1 if geo.pairs else 2)
    budget = sbuf_bytes - 2 * X_CHUNK * 2  # less two bf16 x pieces [128, X_CHUNK] (one loading, one transposing)
    # weights resident per N tile (reused by the whole M block) when two N tiles take at most half the budget
    resident = 2 * N_BLOCK * row_bytes <= budget // 2
    if resident:
        m_block = max(PMAX, (budget - 2 * N_BLOCK * row_bytes) // row_bytes // PMAX * PMAX)
    else:
        m_block = min(PREFILL_PSUM_BANKS * PMAX, max(PMAX, budget // row_bytes // PMAX * PMAX))
    mine = tiles(w.shape[1], N_BLOCK)[pid::nprog]
    if not mine:
        return
    for mb0, mbw in tiles(m, m_block):
        _prefill_block(x, w, scales, zeros, x_scales, out, geo, mb0, mbw, mine, resident)


def _prefill_block(x, w, scales, zeros, x_scales, out, geo, mb0, mbw, n_tiles, resident):
    """Rows mb0 .. mb0+mbw of y for this program's N tiles, in groups of PREFILL_PSUM_BANKS M tiles that
    accumulate over all of K in PSUM. resident: each N tile's weights are dequantized once for the whole
    block (the next N tile's are prepared while this one multiplies); else each weight tile is loaded and
    dequantized inside the K loop and used by the (single) group of M tiles."""
    xT = _prefill_xT(x, geo, mb0, mbw)
    m_tiles = tiles(mbw, PMAX)
    groups = [m_tiles[g:g + PREFILL_PSUM_BANKS] for g in range(0, len(m_tiles), PREFILL_PSUM_BANKS)]
    wd = _dequant_n_tile(w, scales, zeros, n_tiles[0], geo) if resident else None
    pending = []
    for t, (nb0, nbw) in enumerate(n_tiles):
        wd_next = None
        if resident and t + 1 < len(n_tiles):
            wd_next = _dequant_n_tile(w, scales, zeros, n_tiles[t + 1], geo)
        s_out = _replicated_row(scales, 0, nb0, nbw, nl.float32) if geo.per_channel else None
        for group in groups:
            accs = [nl.ndarray((msz, nbw), dtype=nl.float32, buffer=nl.psum) for _, msz in group]
            for i in range(len(geo.steps)):
                for mov, slot, rows, double in wd[i] if resident else _moving_tiles(w, scales, zeros, i, nb0, nbw,
                                                                                    geo):
                    for acc, (mt0, msz) in zip(accs, group):
                        if double:
                            nisa.nc_matmul(dst=acc, stationary=xT[:, slot:slot + 2, mt0:mt0 + msz], moving=mov,
                                           perf_mode=nisa.matmul_perf_mode.double_row)
                        else:
                            nisa.nc_matmul(dst=acc, stationary=xT[0:rows, slot, mt0:mt0 + msz],
                                           moving=mov[0:rows, :])
            # store the previous group now, after this one's matmuls are issued: its epilogue overlaps them, and
            # its store DMAs (waiting for that epilogue) no longer hold back the weight loads issued before them
            if pending:
                _prefill_store_group(*pending.pop(), out, x_scales, mb0, geo)
            pending.append((accs, group, s_out, nb0, nbw))
        wd = wd_next
    for args in pending:
        _prefill_store_group(*args, out, x_scales, mb0, geo)


def _prefill_store_group(accs, group, s_out, nb0, nbw, out, x_scales, mb0, geo):
    for acc, (mt0, msz) in zip(accs, group):
        _prefill_store(acc, out, s_out, x_scales, mb0 + mt0, msz, nb0, nbw, geo)


def _prefill_store(acc, out, s_out, x_scales, m0, msz, nb0, nbw, geo):
    """out[m0 : m0+msz, nb0 : nb0+nbw] = acc [msz, nbw] PSUM x per-channel scales (x token scales, W8A8)."""
    y_sb = nl.ndarray((msz, nbw), dtype=out.dtype, buffer=nl.sbuf)
    if geo.w8a8:
        xs_col = nl.ndarray((msz, 1), dtype=nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=xs_col, src=x_scales[m0:m0 + msz, :])
        nisa.scalar_tensor_tensor(dst=y_sb, data=acc, op0=nl.multiply, operand0=xs_col, op1=nl.multiply,
                                  operand1=s_out[0:msz, :])
    elif geo.per_channel:
        nisa.tensor_tensor(dst=y_sb, data1=acc, data2=s_out[0:msz, :], op=nl.multiply)
    else:
        nisa.activation(dst=y_sb, op=nl.copy, data=acc)
    nisa.dma_copy(dst=out[m0:m0 + msz, nb0:nb0 + nbw], src=y_sb)


def _dequant_n_tile(w, scales, zeros, n_tile, geo):
    """`_moving_tiles` of every K step for the columns of n_tile = (nb0, nbw)."""
    nb0, nbw = n_tile
    return [_moving_tiles(w, scales, zeros, i, nb0, nbw, geo) for i in range(len(geo.steps))]


def _moving_tiles(w, scales, zeros, i, nb0, nbw, geo):
    """Moving operands of K step i for columns nb0 .. nb0+nbw: [(tile, x^T slot, partition rows, double_row)].

    With pairs, a full 256-row step is one fp8 tile [128, 2, nbw] (partition p, pair j = weight row
    r0 + 128 j + p, the layout of its x^T slots 2i, 2i+1) for one double-row matmul; a ragged last step
    falls back to plain fp8 matmuls, one per 128-row half."""
    r0, rows, _, _ = geo.steps[i]
    if geo.pairs and rows == 2 * PMAX:
        n = w.shape[1]
        pair = nl.ndarray((PMAX, 2, nbw), dtype=w.dtype, buffer=nl.sbuf)
        nisa.dma_copy(dst=pair, src=w.ap([[n, PMAX], [PMAX * n, 2], [1, nbw]], offset=r0 * n + nb0))
        return [(pair, geo.nhalves * i, PMAX, True)]
    if geo.pairs:
        out = []
        for h, ((c0, c1, _), rows_h) in enumerate(geo.halves(i)):
            half = nl.ndarray((rows_h, nbw), dtype=w.dtype, buffer=nl.sbuf)
            nisa.dma_copy(dst=half, src=w[c0:c1, nb0:nb0 + nbw])
            out.append((half, geo.nhalves * i + h, rows_h, False))
        return out
    tiles_i = _dequant_tile(w, scales, zeros, geo.steps[i], nb0, nbw, geo)
    return [(t, geo.nhalves * i + h, rows, False) for h, t in enumerate(tiles_i)]


def _prefill_xT(x, geo, mb0, mbw):
    """Resident x^T of rows mb0 .. mb0+mbw: SBUF [128, steps * nhalves, mbw] (slot i * nhalves + h = half h
    of K step i), bf16 (fp8 e4m3 with pairs: the values came from fp8, so the cast back is exact), from
    [128, X_CHUNK] pieces of x cast to bf16 by the DMA and transposed on TensorE."""
    k = x.shape[1]
    xT = nl.ndarray((PMAX, len(geo.steps) * geo.nhalves, mbw), dtype=nl.float8_e4m3 if geo.pairs else nl.bfloat16,
                    buffer=nl.sbuf)
    for mt0, msz in tiles(mbw, PMAX):
        for c0, cw in tiles(k, X_CHUNK):
            x_sb = nl.ndarray((msz, cw), dtype=nl.bfloat16, buffer=nl.sbuf)
            nisa.dma_copy(dst=x_sb, src=x[mb0 + mt0:mb0 + mt0 + msz, c0:c0 + cw])
            for i in range(len(geo.steps)):
                for h, ((a, b, cs), rows) in enumerate(geo.halves(i)):
                    if c0 <= a < c0 + cw:  # a step's columns never straddle two chunks (X_CHUNK % 256 == 0)
                        ps = nl.ndarray((rows, msz), dtype=nl.bfloat16, buffer=nl.psum)
                        nisa.nc_transpose(dst=ps, data=x_sb[:, a - c0:b - c0:cs])
                        nisa.tensor_copy(dst=xT[0:rows, i * geo.nhalves + h, mt0:mt0 + msz], src=ps)
    return xT


def _replicated_row(t, g, nb0, nbw, dtype, rows=PMAX):
    """Row g of a [groups, N] HBM tensor (columns nb0 .. nb0+nbw) on `rows` partitions: partition stride 0."""
    sb = nl.ndarray((rows, nbw), dtype=dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=sb, src=t.ap([[0, rows], [1, nbw]], offset=g * t.shape[1] + nb0))
    return sb


def _replicated_groups(t, step, gr, nb0, nbw, dtype):
    """[rows, nbw] tile whose partition row r holds row (r0 + r) // gr of a [groups, N] HBM tensor: each
    group's row repeated over its gr partitions by a stride-0 HBM access pattern."""
    r0, rows, g0, ng = step
    sb = nl.ndarray((rows, nbw), dtype=dtype, buffer=nl.sbuf)
    per = rows // ng  # partitions per group within this step
    nisa.dma_copy(dst=sb, src=t.ap([[t.shape[1], ng], [0, per], [1, nbw]], offset=g0 * t.shape[1] + nb0))
    return sb


def _dequant_tile(w, scales, zeros, step, nb0, nbw, geo):
    """Moving weight tile(s) [rows, nbw] for prefill: per channel the exact q - z (scales come later);
    per group (q - z) * s rounded to bf16. int4: [low (even k), high (odd k)]."""
    r0, rows, _, _ = step
    if not geo.int4 and geo.per_channel:
        return _load_weight_tile(w, r0, rows, nb0, nbw, geo)
    src = w[r0:r0 + rows, nb0:nb0 + nbw]
    s_rep = None if geo.per_channel else _replicated_groups(scales, step, geo.gr, nb0, nbw, nl.float32)
    if not geo.int4:
        q = nl.ndarray((rows, nbw), dtype=w.dtype, buffer=nl.sbuf)
        nisa.dma_copy(dst=q, src=src)
        wd = nl.ndarray((rows, nbw), dtype=nl.bfloat16, buffer=nl.sbuf)
        nisa.tensor_tensor(dst=wd, data1=q, data2=s_rep, op=nl.multiply)
        return [wd]
    z_rep = None
    if not geo.symmetric:
        z_rep = (_replicated_row(zeros, 0, nb0, nbw, nl.float32, rows) if geo.per_channel
                 else _replicated_groups(zeros, step, geo.gr, nb0, nbw, nl.float32))
    halves = []
    for nib in _load_nibbles(src, geo.symmetric):
        u = nib[:, 0:nbw]
        wd = nl.ndarray((rows, nbw), dtype=nl.bfloat16, buffer=nl.sbuf)
        if geo.symmetric and geo.per_channel:
            nisa.tensor_scalar(dst=wd, data=u, op0=nl.subtract, operand0=float(INT4_SYM_OFFSET))
        elif geo.symmetric:
            nisa.scalar_tensor_tensor(dst=wd, data=u, op0=nl.subtract, operand0=float(INT4_SYM_OFFSET),
                                      op1=nl.multiply, operand1=s_rep)
        elif geo.per_channel:
            nisa.tensor_tensor(dst=wd, data1=u, data2=z_rep, op=nl.subtract, engine=nisa.engine.gpsimd)
        else:
            diff = nl.ndarray((rows, nbw), dtype=nl.float32, buffer=nl.sbuf)
            nisa.tensor_tensor(dst=diff, data1=u, data2=z_rep, op=nl.subtract, engine=nisa.engine.gpsimd)
            nisa.tensor_tensor(dst=wd, data1=diff, data2=s_rep, op=nl.multiply)
        halves.append(wd)
    return halves
