"""`nki.collectives` of the emulator, between the program instances of an LNC 2 launch (NKI 0.6,
`nki/api/nki/collectives` of Neuron SDK 2.32).

Ranks: the emulator runs one logical NeuronCore, so its world is the launch's program instances (rank =
`nl.program_id()`, 0 or 1); a `ReplicaGroup` names lists of those ranks, and a rank takes part with
the list that contains it. Every collective is a synchronization point (`cores.py`): all ranks of the
group must issue the same collectives in the same order; values move when the last one arrives, in
float32 for reductions (cast, RNE, into the destination dtype). Layouts (as documented):
all_reduce: every dst = op over ranks of the matching src; all_gather: dst = the ranks' srcs
concatenated along `collective_dim` in group order; reduce_scatter: src split in equal chunks along
dim 0, rank i of the group gets op over ranks of chunk i; all_to_all: src split along dim 0, chunk j of
rank i lands as chunk i of rank j; collective_permute: dst of each target = src of its source;
collective_permute_implicit(_reduce): a ring in group order (each rank sends to its successor).
Each rank records one "dma" instruction per collective with `attrs["sync"]`, `attrs["ranks"]`.
Not emulated (raise NkiTraceError): all_gather_v and all_to_all_v (their documented limits require more
than the two cores of one logical core: 4 ranks per list, or several devices).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import cores, dtypes
from .context import current
from .errors import NkiTraceError, NkiValidationError
from .isa.issue import computes, record
from .operators import alu
from .registers import VirtualRegister
from .tensor import NkiTensor

_CHANNEL = ("collective",)
_REDUCTIONS = ("add", "minimum", "maximum")


@dataclass
class ReplicaGroup:
    """Lists of ranks that take part in a collective together (lists do not overlap)."""

    replica_groups: list

    def ranks_of(self, rank: int) -> tuple[int, ...]:
        """The list of ranks that contains `rank`."""
        for group in self.replica_groups:
            if rank in group:
                return tuple(int(r) for r in group)
        raise NkiValidationError("collective", "replica_group", f"a rank list containing rank {rank}",
                                 self.replica_groups)


def rank_id(name=None) -> VirtualRegister:
    """This rank's id (the program instance id) as a register."""
    return VirtualRegister(current().program_id)


def _validate(op: str, srcs, dsts, *, hbm_only: bool = False, single: bool = False) -> tuple[list, list]:
    ctx = current()
    t = ctx.target
    srcs, dsts = list(srcs), list(dsts)
    if not srcs or len(srcs) != len(dsts) or (single and len(srcs) != 1):
        raise NkiValidationError(op, "srcs/dsts", "one tensor" if single else "equally long non-empty lists",
                                 f"{len(srcs)} srcs, {len(dsts)} dsts", t.name)
    tensors = srcs + dsts
    if not all(isinstance(x, NkiTensor) for x in tensors):
        raise NkiValidationError(op, "srcs/dsts", "NKI tensors", [type(x).__name__ for x in tensors], t.name)
    spaces = {"sbuf" if x.buffer == "sbuf" else ("hbm" if not x.on_chip else x.buffer) for x in tensors}
    allowed = {"hbm"} if hbm_only else {"hbm", "sbuf"}
    if len(spaces) != 1 or not spaces <= allowed:
        raise NkiValidationError(op, "srcs/dsts", f"all in one of {sorted(allowed)}", sorted(spaces), t.name)
    if spaces == {"sbuf"} and len(srcs) > 1:
        raise NkiValidationError(op, "srcs", "one tensor for SBUF collectives (coalescing needs HBM)", len(srcs),
                                 t.name)
    return srcs, dsts


def _collective(op: str, srcs: list, dsts: list, ranks: tuple, move) -> None:
    """Synchronize with the group and, when all arrived, call `move(arrived)` -> {rank: [dst values]} and record."""
    ctx = current()
    seq = ctx.sync_counts.get(_CHANNEL, 0)
    ctx.sync_counts[_CHANNEL] = seq + 1

    def complete(arrived: dict) -> None:
        names = {p: a[1] for p, a in arrived.items()}
        if len(set(names.values())) != 1:
            raise NkiValidationError(op, "collective", "the same collective on every rank of the group", names,
                                     ctx.target.name)
        known = all(s.storage.data is not None for a in arrived.values() for s in a[2])
        results = move({p: [s.values() for s in a[2]] for p, a in arrived.items()}) if known else {}
        for pid in sorted(arrived):
            pctx, _, s_list, d_list = arrived[pid]
            for i, d in enumerate(d_list):
                if computes(pctx, (d,), tuple(s for a in arrived.values() for s in a[2])) and results[pid]:
                    _store(op, d, i, np.asarray(results[pid][i]), ctx.target)
            nbytes = sum(d.size * d.itemsize for d in d_list)
            record(pctx, "dma", op, {f"dst{i}": d for i, d in enumerate(d_list)},
                   {f"src{i}": s for i, s in enumerate(s_list)},
                   attrs={"bytes": nbytes, "chunks": len(d_list), "chunk_bytes": nbytes / len(d_list),
                          "indirect": False, "dge": "none", "queue": pctx.next_dma_queue(), "ranks": list(ranks),
                          "sync": seq})

    cores.synchronize(op, _CHANNEL, ranks, (ctx, op, srcs, dsts), complete)


def _store(op: str, d: NkiTensor, i: int, values: np.ndarray, target) -> None:
    if values.size != d.size:
        raise NkiValidationError(op, f"dsts[{i}]", f"{values.size} elements (what the collective delivers)", d.size,
                                 target.name)
    d.write(values if values.dtype == d.dtype else dtypes.cast(dtypes.to_f32(values), d.dtype))


def _reduce(op_fn, arrays):
    out = dtypes.to_f32(arrays[0]).astype(np.float32)
    for a in arrays[1:]:
        out = op_fn(out, dtypes.to_f32(a))
    return out


def _reduction(op: str, fn):
    red = alu(fn, "op")
    if red.name not in _REDUCTIONS:
        raise NkiValidationError(op, "op", "one of nl.add, nl.minimum, nl.maximum", red.name, current().target.name)
    return red.fn


def all_reduce(srcs, dsts, replica_group: ReplicaGroup, op, priority=None, name=None) -> None:
    """Every rank's dsts[i] = op over the group's srcs[i] (element-wise; same shapes)."""
    srcs, dsts = _validate("all_reduce", srcs, dsts)
    fn, ranks = _reduction("all_reduce", op), replica_group.ranks_of(current().program_id)
    _collective("all_reduce", srcs, dsts, ranks,
                lambda vals: {p: [_reduce(fn, [vals[r][i] for r in ranks]).reshape(d.shape)
                                  for i, d in enumerate(dsts)] for p in ranks})


def all_gather(srcs, dsts, replica_group: ReplicaGroup, collective_dim: int, priority=None, name=None) -> None:
    """Every rank's dsts[i] = the group's srcs[i] concatenated along `collective_dim` (0; SBUF: 0 or 1)."""
    srcs, dsts = _validate("all_gather", srcs, dsts)
    limit = (0, 1) if srcs[0].buffer == "sbuf" else (0,)
    if collective_dim not in limit:
        raise NkiValidationError("all_gather", "collective_dim", f"one of {limit}", collective_dim,
                                 current().target.name)
    ranks = replica_group.ranks_of(current().program_id)
    _collective("all_gather", srcs, dsts, ranks,
                lambda vals: {p: [np.concatenate([vals[r][i] for r in ranks], axis=collective_dim)
                                  for i in range(len(srcs))] for p in ranks})


def reduce_scatter(srcs, dsts, replica_group: ReplicaGroup, collective_dim: int, op, priority=None,
                   name=None) -> None:
    """Rank i (position in the group) gets op over ranks of chunk i of the srcs split along dim 0."""
    srcs, dsts = _validate("reduce_scatter", srcs, dsts)
    if collective_dim != 0:
        raise NkiValidationError("reduce_scatter", "collective_dim", "0", collective_dim, current().target.name)
    fn, ranks = _reduction("reduce_scatter", op), replica_group.ranks_of(current().program_id)
    _collective("reduce_scatter", srcs, dsts, ranks,
                lambda vals: {p: [_reduce(fn, [np.split(vals[r][i], len(ranks))[j] for r in ranks])
                                  for i in range(len(srcs))] for j, p in enumerate(ranks)})


def all_to_all(srcs, dsts, replica_group: ReplicaGroup, collective_dim: int, priority=None, name=None) -> None:
    """Chunk j (along dim 0) of rank i's src lands as chunk i of rank j's dst (HBM only)."""
    srcs, dsts = _validate("all_to_all", srcs, dsts, hbm_only=True)
    if collective_dim != 0:
        raise NkiValidationError("all_to_all", "collective_dim", "0", collective_dim, current().target.name)
    ranks = replica_group.ranks_of(current().program_id)
    _collective("all_to_all", srcs, dsts, ranks,
                lambda vals: {p: [np.concatenate([np.split(vals[r][i], len(ranks))[j] for r in ranks])
                                  for i in range(len(srcs))] for j, p in enumerate(ranks)})


def collective_permute(srcs, dsts, source_target_pairs, priority=None, name=None) -> None:
    """dst of each pair's target = src of its source (HBM, one tensor); ranks no pair targets keep their dst."""
    srcs, dsts = _validate("collective_permute", srcs, dsts, hbm_only=True, single=True)
    pairs = [(int(s), int(t)) for s, t in source_target_pairs]
    ranks = tuple(sorted({r for pair in pairs for r in pair} | {current().program_id}))
    _collective("collective_permute", srcs, dsts, ranks, lambda vals: _permute(vals, pairs))


def _permute(vals: dict, pairs: list) -> dict:
    """{rank: [received values]} for each target; None for ranks no pair targets (their dst is not written)."""
    sources = {t: s for s, t in pairs}
    return {p: [vals[sources[p]][0]] if p in sources else None for p in vals}


def collective_permute_implicit(srcs_by_channel, dsts_by_channel, replica_group: ReplicaGroup, channel_ids=(0,),
                                priority=None, name=None) -> None:
    """Each rank sends srcs_by_channel[c][0] to its ring successor (group order) and receives its predecessor's."""
    _ring("collective_permute_implicit", srcs_by_channel, dsts_by_channel, replica_group, lambda s: s[0])


def collective_permute_implicit_reduce(srcs0_by_channel, srcs1_by_channel, dsts_by_channel,
                                       replica_group: ReplicaGroup, op, channel_ids=(0,), priority=None,
                                       name=None) -> None:
    """Each rank sends op(srcs0[c], srcs1[c]) to its ring successor and receives its predecessor's into dsts[c]."""
    fn = _reduction("collective_permute_implicit_reduce", op)
    srcs = [[a[0], b[0]] for a, b in zip(srcs0_by_channel, srcs1_by_channel)]
    _ring("collective_permute_implicit_reduce", srcs, dsts_by_channel, replica_group,
          lambda s: fn(dtypes.to_f32(s[0]), dtypes.to_f32(s[1])), per_channel=2)


def _ring(op: str, srcs_by_channel, dsts_by_channel, replica_group, combine, per_channel: int = 1) -> None:
    flat_srcs = [s for channel in srcs_by_channel for s in channel]
    flat_dsts = [d for channel in dsts_by_channel for d in channel]
    _validate(op, flat_srcs[::per_channel], flat_dsts)
    ranks = replica_group.ranks_of(current().program_id)

    def move(vals):
        out = {}
        for j, p in enumerate(ranks):
            prev = vals[ranks[j - 1]]
            out[p] = [combine(prev[c * per_channel:(c + 1) * per_channel]) for c in range(len(flat_dsts))]
        return out

    _collective(op, flat_srcs, flat_dsts, ranks, move)


def collective_permute_implicit_current_processing_rank_id(iteration_id: int, replica_group: ReplicaGroup,
                                                           channel_id: int = 0, name=None) -> VirtualRegister:
    """The rank whose data this rank processes at ring step `iteration_id`: its own at 0, then its predecessors'."""
    ranks = replica_group.ranks_of(current().program_id)
    j = ranks.index(current().program_id)
    return VirtualRegister(ranks[(j - int(iteration_id)) % len(ranks)])


def all_gather_v(*args, **kwargs) -> None:
    """Not emulated: its documented limits need 4 ranks per rank list (the emulator has the 2 cores of one LNC)."""
    raise NkiTraceError("nki.collectives.all_gather_v is not emulated: it needs 4 ranks per rank list")


def all_to_all_v(*args, **kwargs) -> None:
    """Not emulated: its documented limits need several devices (the emulator has the 2 cores of one LNC)."""
    raise NkiTraceError("nki.collectives.all_to_all_v is not emulated: it needs ranks on several devices")
