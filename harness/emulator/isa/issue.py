"""What every `nisa` op does around its math: find the run, decide whether to compute, write results,
record the instruction.

Compute gating: in "full" mode every op computes. In "trace" mode an op computes only when all its
destinations are integer tensors and all its inputs hold known values — that keeps index tiles
(block tables, slot mappings, iota ramps) exact for indirect addressing while skipping all float
math; any other write makes its destination storage unknown (`data = None`).
"""

from __future__ import annotations

import numpy as np

from .. import dtypes
from ..context import ProgramContext, current  # noqa: F401 - current: the isa modules' way to the active run
from ..indexing import Place
from ..storage import strided_view
from ..tensor import NkiTensor
from ..trace import Instruction, Operand


def computes(ctx: ProgramContext, dsts: tuple, srcs: tuple) -> bool:
    """Whether this op's values are computed (see module docstring); marks skipped destinations unknown."""
    if ctx.full:
        return True
    known = True
    for d in dsts:
        if d.storage.data is None or d.dtype.kind not in "iub":
            known = False
            break
    if known:
        for s in srcs:
            if isinstance(s, NkiTensor) and s.storage.data is None:
                known = False
                break
    if not known:
        for d in dsts:
            d.storage.data = None
    return known


def f32(t: NkiTensor) -> np.ndarray:
    """A tile's values as float32 [P, F] (F = elements per partition)."""
    return dtypes.to_f32(t.values()).reshape(t.shape[0], -1)


def raw(t: NkiTensor) -> np.ndarray:
    """A tile's values in storage dtype as [P, F]."""
    return t.values().reshape(t.shape[0], -1)


def operand(v, partitions: int) -> np.ndarray | np.float32:
    """A scalar / (P, 1) operand as float32 broadcastable against [P, F]."""
    return np.float32(v) if not isinstance(v, NkiTensor) else f32(v).reshape(partitions, 1)


def store(dst: NkiTensor, values: np.ndarray) -> None:
    """Cast engine results into dst's dtype (RNE, saturating ints) and write them; a non-matmul write
    to PSUM ends those elements' matmul accumulation state."""
    dst.write(dtypes.cast(values, dst.dtype))
    st = dst.storage
    if st.flags is not None:
        strided_view(st.flags, dst.shape, dst.strides, dst.offset)[...] = False


def record(ctx: ProgramContext, engine: str, opcode: str, writes: dict, reads: dict, *, flops: int = 0,
           attrs: dict | None = None, places: dict | None = None) -> None:
    """Append the instruction: operands (destinations first) with their footprints and bytes (`places`: the runtime
    place of each indirect operand); the on-chip tensors it touches are live at its index (`liveness.py`).
    The hot path of every op: one footprint per view is computed once (`NkiTensor.trace_access`), and records are
    made with `tuple.__new__` (the NamedTuple constructors' Python frame skipped)."""
    ops = []
    instructions = ctx.trace.instructions
    index = len(instructions)
    is_write = True
    for group in (writes, reads):
        for name, t in group.items():
            if not isinstance(t, NkiTensor):
                continue
            st = t.storage
            life = st.life
            if life is not None:
                if life.first < 0:
                    life.first = index
                life.last = index
            if t.indirect is None:
                acc = t._access or t.trace_access()
            else:
                acc = t.access((places or {}).get(name) or Place(t.offset), t.size * t.itemsize)  # indirect: rare
            ops.append(_new_tuple(Operand, (name, t.shape, st.dtype_name, st.buffer, acc, is_write)))
        is_write = False
    instructions.append(_new_tuple(Instruction, (index, engine, opcode, tuple(ops), flops, {} if attrs is None else attrs,
                                                 ctx.program_id)))


_new_tuple = tuple.__new__


def touch(t: NkiTensor) -> None:
    """A use of `t` by a sequencer op that records no instruction (register_load/store): live at the next index."""
    life = t.storage.life
    if life is not None:
        index = len(current().trace.instructions)
        if life.first < 0:
            life.first = index
        life.last = index


def lanes(t: NkiTensor) -> slice:
    """The compute lanes (absolute partitions) an on-chip operand occupies: engine registers are per lane, so a
    reduction over rows 64:128 lands in registers 64:128."""
    start = t.storage.start_partition + t.offset // t.storage.free
    return slice(start, start + t.shape[0])


def layout_attrs(*tensors) -> dict:
    """{"partitions", "free_elems"} of the largest operand (the first of the largest; the cost model's per-element
    work)."""
    big = None
    for t in tensors:
        if isinstance(t, NkiTensor) and (big is None or t.size > big.size):
            big = t
    return {"partitions": big.shape[0], "free_elems": big.size // big.shape[0]}
