"""Tile-info objects of the NKI flash-attention kernel (`attention.py`): the query tiles, key steps, online-softmax
state and issued-late work it passes between its helpers (NKIObject classes, compile-time bookkeeping around SBUF /
PSUM tiles).

Kernel-side helper (imports only the shim and the other kernel-side helpers).
"""

from ._attention_tiles import Q_TILE
from ._shim import nl
from ._softmax import rescale_factors


class QueryTile(nl.NKIObject):
    """Query rows q0 .. q0+nq of heads h0 .. h0+nh (all reading kv head hk) of batch b, and the keys [lo, hi) some
    of its rows may see."""

    def __init__(self, b, hk, h0, nh, q0, nq, lo, hi):
        self.b, self.hk, self.h0, self.nh, self.q0, self.nq, self.lo, self.hi = b, hk, h0, nh, q0, nq, lo, hi


class KeyStep(nl.NKIObject):
    """Keys k0 .. k0+n of one online-softmax step (or all of a resident kv head's): kT [128 (D slice), D/128, n],
    v [128 keys, n/128, D] SBUF views, bad [128 keys, n/128] (v2: `_attention_finite.bad_keys`, else None), and
    the step's MaskKeep (None when every row sees every key)."""

    def __init__(self, k0, n, kT, v, bad, keep):
        self.k0, self.n, self.kT, self.v, self.bad, self.keep = k0, n, kT, v, bad, keep


class TileState(nl.NKIObject):
    """Online-softmax state of one query tile: acc [128, nh, D] and run_sum [128, nh] fp32 SBUF; neg_max and neg_old:
    [128, nh] fp32, the running neg_max of every head after the current and the previous key step (None before
    them); rescale: the current step's StepRescale (None on the first); bounds: the RowBounds (v3+ with a mask, else
    None); v2: q_ok [128, nh] and seen [128, 1] fp32 (`_attention_finite`), else None."""

    def __init__(self, nh, d, q_ok, bounds):
        self.bounds = bounds
        self.acc = nl.ndarray((Q_TILE, nh, d), dtype=nl.float32, buffer=nl.sbuf)
        self.run_sum = nl.ndarray((Q_TILE, nh), dtype=nl.float32, buffer=nl.sbuf)
        self.neg_max, self.neg_old, self.rescale = None, None, None
        self.q_ok = q_ok
        self.seen = None if q_ok is None else nl.ndarray((Q_TILE, 1), dtype=nl.float32, buffer=nl.sbuf)

    def next_step(self, nq):
        """Start a key step: a new neg_max tile, the last one kept as neg_old, a StepRescale between them."""
        self.neg_old = self.neg_max
        self.neg_max = nl.ndarray(self.run_sum.shape, dtype=nl.float32, buffer=nl.sbuf)
        self.rescale = None if self.neg_old is None else StepRescale(self.neg_old, self.neg_max, nq)


class StepRescale(nl.NKIObject):
    """tile [128, nh] fp32: rescale = exp(neg_max - neg_old) of every head of one key step of a query tile, made by
    `issue` (`_softmax.rescale_factors`: one ScalarE exp for all heads) once all their neg_max exist."""

    def __init__(self, neg_old, neg_max, nq):
        self.neg_old, self.neg_max, self.nq = neg_old, neg_max, nq
        self.tile = nl.ndarray(neg_max.shape, dtype=nl.float32, buffer=nl.sbuf)

    def issue(self):
        nq = self.nq
        rescale_factors(self.tile[:nq], self.neg_old[:nq], self.neg_max[:nq])


class PendingPv(nl.NKIObject):
    """A (key step, head) item whose P·V is still to issue: p [128, n] (q's dtype), its tile_sum ([128, 1] fp32) and
    its step's StepRescale (None on the tile's first step), v [128 keys, n/128, D], head h of `state`, nq rows;
    pT_dma [128 keys, dma_chunks, 128] SBUF: its first chunks' pᵀ made by DMA (None, dma_chunks 0: none)."""

    def __init__(self, p, tile_sum, rescale, v, h, n, state, nq, pT_dma):
        self.p, self.tile_sum, self.rescale, self.v = p, tile_sum, rescale, v
        self.h, self.n, self.state, self.nq = h, n, state, nq
        self.pT_dma, self.dma_chunks = pT_dma, 0 if pT_dma is None else pT_dma.shape[1]


class TileStore(nl.NKIObject):
    """A finished query tile waiting to be stored into `out` (HBM): its state, and diag = q0 + Skv - Sq under the
    causal mask (rows p with diag + p < 0 see no key), else 0."""

    def __init__(self, out, tile, state, diag):
        self.out, self.tile, self.state, self.diag = out, tile, state, diag
