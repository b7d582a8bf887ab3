"""Cross-core instructions of an LNC 2 launch: `core_barrier` and `sendrecv` (S-ISA; NeuronCore-v3+).

Both are synchronization points: the calling program instance waits until its peers reach the matching
call (`cores.py` interleaves the programs there, deterministically). core_barrier: every core in `cores`
(only (0, 1) is supported, as on hardware) waits for the others; its `data` (the shared HBM tensor the
cores synchronize on) is recorded as read, so the trace orders the barrier after the writes to it.
sendrecv: the calling core sends its SBUF `src` to core `send_to_rank`'s `dst` and receives core
`recv_from_rank`'s `src` into its own `dst`; calls with the same `pipe_id` synchronize with each
other, different pipes independently. Values move when the last participant arrives (sources are read
before any destination is written). Each participant records one instruction, in program-id order;
`attrs["sync"]` numbers the synchronization point on its channel, so a model can match the partners.
"""

from __future__ import annotations

from .. import dtypes, validate
from ..cores import synchronize
from ..errors import NkiValidationError
from ..tensor import NkiTensor
from .enums import dma_engine as DmaEngine
from .enums import engine as Engine
from .issue import computes, current, record

GPSIMD_DMA_MAX_ELEMS = 256  # sendrecv via gpsimd_dma: 1024 B/partition of 32-bit, 512 of 16-bit, 256 of 8-bit — S-ISA
_TRACE_ENGINES = {Engine.tensor: "tensor", Engine.vector: "vector", Engine.scalar: "scalar", Engine.gpsimd: "gpsimd",
                  Engine.dma: "dma", Engine.sync: "dma", Engine.unknown: "gpsimd"}


def _lnc2(op: str, ctx) -> None:
    t = ctx.target
    validate.feature(op, "op", t.lnc2, f"{op} needs NeuronCore-v3+ with LNC 2", op, t)
    if ctx.lnc != 2:
        raise NkiValidationError(op, "launch", "a kernel launched with LNC 2 (kernel[2])", f"lnc {ctx.lnc}", t.name)


def core_barrier(data, cores=(0, 1), engine=Engine.gpsimd, name=None):
    """Wait until every core in `cores` reaches this barrier (see module docstring)."""
    op = "core_barrier"
    ctx = current()
    _lnc2(op, ctx)
    t = ctx.target
    if not isinstance(data, NkiTensor) or data.buffer != "shared_hbm":
        raise NkiValidationError(op, "data", "a shared_hbm tensor the cores synchronize on",
                                 getattr(data, "buffer", type(data).__name__), t.name)
    if sorted(int(c) for c in cores) != [0, 1]:
        raise NkiValidationError(op, "cores", "(0, 1) (the two cores of the logical core)", cores, t.name)
    if engine not in _TRACE_ENGINES:
        raise NkiValidationError(op, "engine", "a nisa.engine member", engine, t.name)
    seq = _sequence(ctx, (op,))

    def complete(arrived: dict) -> None:
        for pid in sorted(arrived):
            pctx, tensor = arrived[pid]
            record(pctx, _TRACE_ENGINES[engine], op, {}, {"data": tensor},
                   attrs={"cores": [0, 1], "sync": seq, "partitions": 1, "free_elems": 1})

    synchronize(op, (op,), (0, 1), (ctx, data), complete)


def sendrecv(src, dst, send_to_rank, recv_from_rank, pipe_id, dma_engine=DmaEngine.dma, name=None):
    """Send `src` to core `send_to_rank` and receive core `recv_from_rank`'s `src` into `dst` (module docstring)."""
    op = "sendrecv"
    ctx = current()
    _lnc2(op, ctx)
    t = ctx.target
    for operand, x in (("src", src), ("dst", dst)):
        validate.tile(op, operand, x, t, engine=False)
        validate.buffer(op, operand, x, ("sbuf",), t)
    validate.same_layout(op, "src", src, {"dst": dst}, t)
    if src.dtype != dst.dtype:
        raise NkiValidationError(op, "dst", f"dtype == src's {dtypes.name(src.dtype)}", dtypes.name(dst.dtype), t.name)
    if dma_engine == DmaEngine.gpsimd_dma and src.free_size > GPSIMD_DMA_MAX_ELEMS:
        raise NkiValidationError(op, "src", f"at most {GPSIMD_DMA_MAX_ELEMS * src.itemsize} bytes per partition "
                                 "with dma_engine.gpsimd_dma", src.free_size * src.itemsize, t.name)
    ranks = {}
    for operand, rank in (("send_to_rank", send_to_rank), ("recv_from_rank", recv_from_rank)):
        if not isinstance(rank, int) or isinstance(rank, bool) or rank not in (0, 1):
            raise NkiValidationError(op, operand, "0 or 1 (a core of the logical core)", rank, t.name)
        ranks[operand] = rank
    channel = (op, int(pipe_id))
    seq = _sequence(ctx, channel)
    engine_name = "gpsimd" if dma_engine == DmaEngine.gpsimd_dma else "dma"

    def complete(arrived: dict) -> None:
        for pid, (_, _, _, to, frm) in arrived.items():
            if arrived[frm][3] != pid or arrived[to][4] != pid:
                raise NkiValidationError(op, "send_to_rank/recv_from_rank", "matching partners (core a sends to b "
                                         "exactly when b receives from a)",
                                         {p: a[3:] for p, a in arrived.items()}, t.name)
        received = {pid: arrived[frm][1].values() for pid, (_, _, _, _, frm) in arrived.items()}
        for pid in sorted(arrived):
            pctx, s, d, to, frm = arrived[pid]
            if computes(pctx, (d,), (arrived[frm][1],)):
                d.write(received[pid])
            nbytes = d.size * d.itemsize
            record(pctx, engine_name, op, {"dst": d}, {"src": s},
                   attrs={"bytes": nbytes, "chunks": d.shape[0], "chunk_bytes": nbytes / d.shape[0],
                          "indirect": False, "dge": "none", "queue": pctx.next_dma_queue(), "send_to_rank": to,
                          "recv_from_rank": frm, "pipe_id": channel[1], "sync": seq})

    participants = {ctx.program_id, ranks["send_to_rank"], ranks["recv_from_rank"]}
    synchronize(op, channel, participants, (ctx, src, dst, ranks["send_to_rank"], ranks["recv_from_rank"]),
                      complete)


def _sequence(ctx, channel: tuple) -> int:
    """This program's arrival number on `channel` (0, 1, …): the same for the partners of one sync point."""
    k = ctx.sync_counts.get(channel, 0)
    ctx.sync_counts[channel] = k + 1
    return k
