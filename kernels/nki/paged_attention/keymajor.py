"""Key-major score tiles of paged attention: v3+ decode items whose kv heads stack in one group (`tuning.key_major`).

Such an item has few rows (Llama-3.1-70B at TP8: 8, one kv head; Llama-3.1-8B: 32, 8 kv heads of 4), so a row-major
score tile [rows, n] leaves 128 - rows partitions idle in its mask and its exp, both n elements a row (and stacked
heads transpose their s^T back to rows and p forth). A key-major tile holds a whole gather of T chunks transposed,
s^T [CHUNK keys, T · rows] fp32 PSUM (column t · rows + i · g + j: chunk t's keys of head i against its row j,
`scores`), so they run T · rows elements a partition (16 · 8 against 2048 per Llama-3.1-70B gather):
    s^T     per chunk and head: its k^T stationary, the head's q^T [D, g] moving (one 64-cycle matmul); k^T by PE
            transposes per PSUM bank of (head, chunk) pairs, evacuated by ScalarE and VectorE in turn.
    mask    one range_select of the whole tile at comb index rows · (gather start + t) + column (`Bounds`) into an
            SBUF copy x, no reduce: its accumulator would mix rows.
    max     per row: a max over t per partition (VectorE), a bit-exact fp32 PE transpose, a max over partitions
            (VectorE, from PSUM); then `tiles.advance_max` on the row-major state.
    shift   s^T += neg_max / exp_scale on every key partition: (1 / exp_scale)^T @ diag(neg_max) on TensorE for
            each chunk's columns, accumulating onto the scores' own matmuls (never onto PSUM a non-matmul op wrote);
            diag by a GpSimd selection (a multiply would spread a row's non-finite neg_max over every column:
            0 * inf = NaN).
    p       exp(exp_scale · s^T) by one ScalarE instruction from PSUM, then p = 0 where the mask hid a key (a
            VectorE selection, where a key can be hidden: `softmax_pv`); chunk t's p^T is p[:, t · g : (t + 1) · g],
            the P·V stationary as it is (one head; stacked heads: o^T per head with p moving, one transpose back,
            no transposes of p); tile_sum: a sum over t per partition (VectorE), then one matmul with a ones column,
            into the P·V tile's last column.
    PSUM    a step takes four banks: k^T (two, bf16), s^T, and one for the tile_max transpose and P·V | tile_sum
            side by side; two steps in flight then leave PSUM room for the rest.
Llama-3.1-70B TP8 decode b8 ctx 4K, modeled (trn2 LNC=1): 81.7 -> 77.8 us (56.7 -> 59.6 % MBU) against row-major
tiles (ScalarE 60 -> 20 us, VectorE 53 -> 48, TensorE 51 -> 44); 67.3 -> 65.7 us with the shift accumulated in
PSUM instead of a VectorE scale-and-shift of the masked copy. A softcap (tanh of the scores) keeps row-major tiles.
The online-softmax state (`tiles.SoftmaxState`: neg_max, run_sum, acc) stays row-major, and so does the store.
Numerics as the row-major tiles', but tile_sum sums p after its cast to q's dtype (the weights P·V uses).
"""

from .._attention_tiles import psum_copy, transpose_side_by_side
from .._dtypes import itemsize
from .._shim import nisa, nl
from .._softmax import update_acc, update_sum
from .._tiling import FP32_MIN, PMAX, PSUM_FMAX
from .index import CHUNK
from .tiles import advance_max, bank_pieces, p_at_v
from .tuning import KT_BANKS


class Consts(nl.NKIObject):
    """Per-class constants: unit [rows, PMAX] float32 = 1 / exp_scale (stationary of the neg_max broadcast: it adds
    neg_max / exp_scale to the scores, `softmax_pv`) and ones_col [CHUNK, 1] float32 (moving of the tile_sum matmul).

    Raises:
        ValueError: exp_scale is 0 (the public API takes positive scales only; a kernel called with 0 is refused)."""

    def __init__(self, rows, exp_scale):
        if exp_scale == 0:
            raise ValueError("scale: key-major tiles divide by the exp scale; it must not be 0")
        self.unit = nl.ndarray((rows, PMAX), nl.float32, buffer=nl.sbuf)
        nisa.memset(dst=self.unit, value=1.0 / exp_scale)
        self.ones_col = nl.ndarray((CHUNK, 1), nl.float32, buffer=nl.sbuf)
        nisa.memset(dst=self.ones_col, value=1.0)



class Bounds(nl.NKIObject):
    """bound0 / bound1 (lo, hi) float32 [CHUNK, 1] of a key-major range_select of one item.

    Column f = t · r + j (r = the group's rows, 0 <= j < r) of the tile of the gather from position gs is key
    gs + run · p + t, at comb index r · gs + f (range_start r · gs): the key is visible iff
    r · (lo - run · p) <= r · gs + f <= r · (hi - run · p) + r - 1 (exact in fp32: `tuning.key_major` keeps
    r · positions below 2**24)."""

    def __init__(self, lo, hi):
        self.lo, self.hi = lo, hi


def bounds(ranges, run_pos, rows):
    """The `Bounds` of C items of `rows` rows each from their visible ranges [lo, hi] (`index.RowBounds` of PMAX
    rows, [PMAX, C]: decode rows share it) and run_pos [CHUNK, 1] = run · p (`IndexConsts.pos`), three instructions
    for all C."""
    cols = ranges.lo.shape[1]
    lo = nl.ndarray((CHUNK, cols), nl.float32, buffer=nl.sbuf)
    nisa.tensor_scalar(dst=lo, data=ranges.lo, op0=nl.subtract, operand0=run_pos, op1=nl.multiply,
                       operand1=float(rows))
    hi = nl.ndarray((CHUNK, cols), nl.float32, buffer=nl.sbuf)
    nisa.tensor_scalar(dst=hi, data=ranges.hi, op0=nl.subtract, operand0=run_pos, op1=nl.multiply,
                       operand1=float(rows))
    nisa.tensor_scalar(dst=hi, data=hi, op0=nl.add, operand0=float(rows - 1))
    return [Bounds(lo[:, c : c + 1], hi[:, c : c + 1]) for c in range(cols)]


def transposes(k_chunks, heads, d):
    """k^T of one gather's T chunks k_chunks ([CHUNK keys, Hkv · d] SBUF) of each kv head of `heads`, the (head,
    chunk) pairs in order, one [d, n] PSUM tile per PSUM bank of them (`tiles.bank_pieces`): [(pairs, kt_ps), ...]
    (pairs: the (i, chunk) of each CHUNK columns, i the head's place in `heads`), for `scores`. The PE transposes of
    the first KT_BANKS pieces are issued here (ahead of the previous tile's softmax step); the others hold their
    [CHUNK, d] sources instead of kt_ps, and `scores` transposes them, each right before its evacuation, so PSUM holds
    at most KT_BANKS of them ahead."""
    pairs = [(i, c) for i in range(len(heads)) for c in range(len(k_chunks))]
    pieces = []
    # fp8 k^T counted as 2-byte columns (at most 1024 a bank, as the row-major tiles' PSUM tiles)
    dtype = k_chunks[0].dtype if itemsize(k_chunks[0].dtype) >= 2 else nl.bfloat16
    for n, (p0, p1) in enumerate(bank_pieces(len(pairs), CHUNK, dtype)):
        srcs = [k_chunks[c][:, heads[i] * d : (heads[i] + 1) * d] for i, c in pairs[p0:p1]]
        pieces.append((pairs[p0:p1], _transposed(srcs, d) if n < KT_BANKS else srcs))
    return pieces


def _transposed(srcs, d):
    """[d, len(srcs) · CHUNK] PSUM: the PE transposes of srcs ([CHUNK, d] SBUF each) side by side."""
    kt_ps = nl.ndarray((d, len(srcs) * CHUNK), srcs[0].dtype, buffer=nl.psum)
    transpose_side_by_side(kt_ps, srcs)
    return kt_ps


def scores(qt, pieces, chunks, heads):
    """s^T [CHUNK, T · rows] fp32 PSUM of one gather's T = chunks chunks, from their k^T `transposes` pieces, against
    q^T [D, rows] of `heads` kv heads (rows = heads · g, head-major): column t · rows + i · g + j = chunk t's keys of
    head i · that head's q row j; each piece (transposed here if `transposes` left it) evacuated to SBUF by ScalarE
    and VectorE in turn, then its matmuls (a head's k^T against its own q rows only: a non-finite key stays in its
    head's columns)."""
    d, rows = qt.shape
    g = rows // heads
    st = nl.ndarray((CHUNK, chunks * rows), nl.float32, buffer=nl.psum)
    kts = []
    for n, (pairs, piece) in enumerate(pieces):
        kt_ps = piece if n < KT_BANKS else _transposed(piece, d)
        kt = nl.ndarray(kt_ps.shape, kt_ps.dtype, buffer=nl.sbuf)
        psum_copy(kt, kt_ps, on_scalar=n % 2 == 0)
        kts.append((pairs, kt))
    for pairs, kt in kts:
        for k, (i, c) in enumerate(pairs):
            at = c * rows + i * g
            nisa.nc_matmul(dst=st[:, at : at + g], stationary=kt[:, k * CHUNK : (k + 1) * CHUNK],
                           moving=qt[:, i * g : (i + 1) * g])
    return st


def softmax_pv(st_ps, state, call, bounds, kv, dead):
    """Update the row-major SoftmaxState in place with the key-major tile st_ps ([CHUNK, T · rows], `scores`) of the
    gather from kv.t0: x = st_ps masked (SBUF), tile_max of x, `tiles.advance_max`, st_ps += neg_max / exp_scale (a
    matmul accumulating into it), p = exp(exp_scale · st_ps) with the hidden keys' p set to 0, acc = acc · rescale +
    p @ v and run_sum likewise.

    Hidden keys' p are cleared only where the tile can hold one: with a sliding window on every tile, else in a
    runtime loop of dead (1x1 int32 0 / 1, the unit_dead of the tile's loop unit) trips: a decode row sits at
    seq_len - 1 (`launch_paged.work_plan`), so it sees every key of its sequence, and keys at or past seq_len (dead
    cache, NaN in tests) lie in that unit only."""
    rows, d = state.acc.shape
    chunks = len(kv.v_chunks)
    cols = chunks * rows

    x = nl.ndarray((CHUNK, cols), nl.float32, buffer=nl.sbuf)
    nisa.range_select(dst=x, on_true_tile=st_ps, comp_op0=nl.greater_equal, comp_op1=nl.less_equal,
                      bound0=bounds.lo, bound1=bounds.hi, range_start=rows * kv.t0, on_false_value=FP32_MIN)
    part_max = nl.ndarray((CHUNK, rows), nl.float32, buffer=nl.sbuf)
    nisa.tensor_reduce(dst=part_max, op=nl.maximum, data=x.reshape((CHUNK, chunks, rows)).permute((0, 2, 1)),
                       axis=2)
    bank = nl.ndarray((CHUNK, PSUM_FMAX), nl.float32, buffer=nl.psum)  # tile_max^T, P·V | tile_sum
    max_ps = bank[0:rows, 0:CHUNK]
    nisa.nc_transpose(dst=max_ps, data=part_max)
    tile_max = nl.ndarray((rows, 1), nl.float32, buffer=nl.sbuf)
    nisa.tensor_reduce(dst=tile_max, op=nl.maximum, data=max_ps, axis=1)
    neg_max, rescale = advance_max(state, call.exp_scale, tile_max)
    diag = nl.ndarray((rows, rows), nl.float32, buffer=nl.sbuf)
    nisa.affine_select(dst=diag, pattern=[[1, rows]], channel_multiplier=-1, on_true_tile=neg_max.broadcast(1, rows),
                       on_false_value=0.0, cmp_op=nl.equal)
    nisa.nc_matmul(dst=st_ps.reshape((CHUNK, chunks, rows)), stationary=call.key_major.unit,
                   moving=diag.expand_dim(1).broadcast(1, chunks), accumulate=True)
    p = nl.ndarray((CHUNK, cols), call.q.dtype, buffer=nl.sbuf)
    nisa.activation(dst=p, op=nl.exp, data=st_ps, scale=call.exp_scale)

    def hide(_trip=None):  # p = 0 where x holds the mask's FP32_MIN (a selection: a NaN score stays NaN)
        seen = nl.ndarray((CHUNK, cols), nl.uint8, buffer=nl.sbuf)
        nisa.tensor_scalar(dst=seen, data=x, op0=nl.not_equal, operand0=FP32_MIN)
        nisa.select_reduce(dst=p, predicate=seen, on_true=p, on_false=0.0)

    if call.window is not None:
        hide()
    else:
        trips = nisa.register_alloc()
        nisa.register_load(trips, dead)
        nl.fori_loop(0, trips, hide)
    part_sum = nl.ndarray((CHUNK, rows), nl.float32, buffer=nl.sbuf)
    nisa.tensor_reduce(dst=part_sum, op=nl.add, data=p.reshape((CHUNK, chunks, rows)).permute((0, 2, 1)), axis=2)
    pv = bank[0:rows, CHUNK : CHUNK + d + 1]  # acc's p @ v, then tile_sum
    p_at_v(pv[:, 0:d], p, kv.v_chunks, call.groups[0], bank[0:d, CHUNK + d + 1 : CHUNK + d + 1 + rows])
    nisa.nc_matmul(dst=pv[:, d : d + 1], stationary=part_sum, moving=call.key_major.ones_col)
    update_sum(state.run_sum, rescale, pv[:, d : d + 1])
    update_acc(state.acc, rescale, pv[:, 0:d])
