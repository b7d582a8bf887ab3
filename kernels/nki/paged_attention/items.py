"""Work items of paged attention's pipeline (`__init__._pipeline`): the plan in SBUF, a batch of items' gather
indices and row bounds computed at once, an item's q^T and state, and its output rows with their stores held back."""

from .._dtypes import itemsize
from .._shim import nisa, nl
from .._tiling import PSUM_FMAX
from . import keymajor
from .index import add_band, add_comb, block_indices, row_bounds, slot_indices
from .tiles import SoftmaxState, load_q_group, output_rows, store_rows
from .tuning import STORE_BYTES, TABLE_BYTES

PLAN_PARTITION = 16  # the partition of the plan rows (`load_row`)


class PlanRows(nl.NKIObject):
    """The per-item plan in SBUF, loaded once up front: lens (float32 [PMAX, N], item w's seq_len on every partition
    in column w: `index.item_len_rows`, loaded first by `_pipeline`); q0 [1, N] int32
    (entry w: a runtime value for scalar offsets), trips [1, N * S * V] int32 (entry (w * S + m) * V + v: trips of
    item w's span m run v, 0 or 1) and dead [1, N * U] int32 (entry w * U + j: unit_dead[w, j])."""

    def __init__(self, lens, item_q0, tile_trips, unit_dead):
        n, self.spans, self.runs = tile_trips.shape
        self.units = unit_dead.shape[1]
        self.lens = lens
        self.q0 = load_row(item_q0, n)
        self.trips = load_row(tile_trips, n * self.spans * self.runs)
        self.dead = load_row(unit_dead, n * self.units)
        self.reg = nisa.register_alloc()  # one register serves every loop bound (a loop reads it on entry)

    def trip(self, w, m, v):
        """The register, loaded with the trips (0 / 1) of run v of item w's span m."""
        at = (w * self.spans + m) * self.runs + v
        nisa.register_load(self.reg, self.trips[0:1, at : at + 1])
        return self.reg


class WorkItem(nl.NKIObject):
    """What one work item w keeps while its score tiles run: row bounds per row block, gather index, per-group q^T
    tiles and SoftmaxStates (all declared outside the tiles' runtime loops, which update the states in place)."""

    def __init__(self, w, bounds, index, qs, states):
        self.w, self.bounds, self.index, self.qs, self.states = w, bounds, index, qs, states


def load_row(plan, size):
    """A plan array of `size` int32 elements as one SBUF row [1, size], on partition PLAN_PARTITION: read only by
    DMAs and register loads, so it may take any partition, and its DMA runs on DMA engine 2 (partition p: engine
    (p // 8) % 16, modeled), away from the per-item DMAs (`index.dma_rows`)."""
    row = nl.ndarray((PLAN_PARTITION + 1, size), nl.int32, buffer=nl.sbuf)[PLAN_PARTITION:, :]
    nisa.dma_copy(dst=row, src=plan.reshape((1, size)))
    return row


def table_batches(stream, max_blocks, consts):
    """The items of a stream ([(call, w), ...], w every nl.num_programs(0)-th item) as ranges of at most
    TABLE_BYTES // (4 · cols) items (cols: int32 entries of one item's table tile per partition) and PSUM_FMAX (the
    moving free size of `index.slot_indices`' matmul over the batch's block 0 entries), one `index.load_tables` DMA
    each."""
    ws = [w for _, w in stream]
    step = ws[1] - ws[0] if len(ws) > 1 else 1
    cols = consts.pos.shape[1] if consts.pos is not None else max_blocks
    per = min(PSUM_FMAX, max(1, TABLE_BYTES // (4 * cols)))
    return [range(ws[i], ws[min(i + per, len(ws)) - 1] + 1, step) for i in range(0, len(ws), per)]


def prepare(call, consts, plan, items, tables):
    """{w: (GatherIndex, [RowBounds or keymajor.Bounds per row block])} of the work items `items` (a range of one
    `table_batches` batch, their table rows `tables`, `index.load_tables`): the neutralised gather indices and the
    visible key ranges of all of them at once, one instruction per step (`index.slot_indices` / `block_indices`,
    `index.row_bounds`)."""
    lens = plan.lens[:, items.start : items.stop : items.step]
    deads = [plan.dead[0:1, w * plan.units : (w + 1) * plan.units] for w in items]
    if call.vector_dma:
        indices = slot_indices(tables, lens, consts, call.block_size, deads)
    else:
        indices = block_indices(tables, lens, consts)
    rows, blocks = call.pos_cols.shape[0], call.blocks
    j0 = items.start - call.items.first
    pos = call.pos_cols.reshape((rows, call.items.count, blocks))[:, j0 : j0 + items.stop - items.start : items.step, :]
    bounds = row_bounds(pos, lens[0:rows, :].expand_dim(2).broadcast(2, blocks), call.causal, call.window)
    if not call.vector_dma:
        add_band(bounds)
    elif call.comb_ramp is not None:
        add_comb(bounds, call.comb_ramp, call.run, call.tile_run, call.window)
    if call.key_major is not None:
        columns = keymajor.bounds(bounds, consts.pos[:, 0:1], len(call.groups[0]) * call.rows)
    else:
        columns = [bounds.column(c) for c in range(len(items) * blocks)]
    return {w: (index, columns[j * blocks : (j + 1) * blocks]) for j, (w, index) in enumerate(zip(items, indices))}


def setup_item(call, consts, plan, w, prepared):
    """WorkItem w from its `prepare` entry (gather index, row bounds): q^T, state."""
    index, bounds = prepared
    q0 = plan.q0[0:1, w : w + 1]
    k = (w - call.items.first) // nl.num_programs(0)  # w's place in its program's stream of the class
    qs = [load_q_group(call.q, q0, grp, call.g, call.block_bq, call.vector_dma, k, b * call.block_bq)
          for grp, b in zip(call.groups, call.group_block)]
    states = [SoftmaxState(len(grp) * call.rows, call.d, call.exp_scale) for grp in call.groups]
    return WorkItem(w, bounds, index, qs, states)


def finish(call, item):
    """The output rows of a finished WorkItem, per group (res, its row_dst column (-1: skipped,
    `PagedCall.dst_cols`), kv heads): `tiles.output_rows`, for `tiles.store_rows`."""
    dst = [call.dst_cols[:, j : j + 1] for j in call.block_cols(item.w)]
    return [(output_rows(state, call.out.dtype, call.v_rows[gi]), dst[b], grp)
            for gi, (state, grp, b) in enumerate(zip(item.states, call.groups, call.group_block))]


class Stores(nl.NKIObject):
    """Output stores held back until the gathers issued before the end of `_pipeline` (or STORE_BYTES of held
    output rows a partition): a store's packets on the DMA engine of its rows' partitions between two gathers' hold
    up every later gather, whose packets span all 16 engines, while HBM idles."""

    def __init__(self):
        self.held, self.bytes = [], 0

    def add(self, call, rows):
        for res, dst, grp in rows:
            self.held.append((call, res, dst, grp))
            self.bytes += res.shape[1] * itemsize(res.dtype)
        while self.bytes > STORE_BYTES:
            self._issue(*self.held.pop(0))

    def flush(self):
        while self.held:
            self._issue(*self.held.pop(0))

    def _issue(self, call, res, dst, grp):
        self.bytes -= res.shape[1] * itemsize(res.dtype)
        store_rows(call.out, res, dst, grp, call.g, call.vector_dma)
