"""DMA instructions: `dma_copy` and `dma_compute` (S-ISA).

dma_copy moves `src` to `dst` (HBM↔SBUF, HBM↔HBM, SBUF↔SBUF; never PSUM); element counts must match
(shapes may differ: elements are taken in row-major order); different dtypes convert through float32.
Runtime addressing comes from `.ap(scalar_offset=…)` (one offset; legal on every generation) or
`.ap(vector_offset=idx, indirect_dim=0)` on an HBM tensor (per-partition rows; gather on `src`,
scatter on `dst`; NeuronCore-v3+, "indirect: v3+" S-DGE). Runtime offsets need a DGE (`dge_mode.none`
is rejected) and vector_offset needs the software DGE (not `hwdge`). The index tensor is read as
integers; a scalar_offset moves the start by value x prod(shape[indirect_dim + 1:]) and a vector_offset
row is prod(shape[1:]) elements, both of the tensor `.ap()` was called on (S-AP, S-ISA dma_copy).
Out-of-bounds runtime offsets raise (`oob_mode.error`) or are skipped (`oob_mode.skip`: those rows /
that transfer are not moved, the destination keeps its values).
In trace mode, offsets from index tiles whose values are unknown give whole-storage footprints and
no OOB check.

Trace attrs: bytes (bytes written to dst), chunks (contiguous runs: the shorter of src's and dst's
innermost contiguous run sets the run length), chunk_bytes, indirect, dge ("none" | "swdge" |
"hwdge"; unknown resolves to swdge for vector-offset DMAs, hwdge on v3+ for same-dtype copies, else
none), queue (round-robin over the 16 DMA queues in issue order), dge_mode (the mode the kernel asked for:
"unknown" unless given; the performance model resolves "unknown" itself).
"""

from __future__ import annotations

import numpy as np

from .. import dtypes, validate
from ..errors import NkiValidationError
from ..operators import alu
from ..tensor import NkiTensor
from .enums import coerce
from .enums import dge_mode as DgeMode
from .enums import engine as Engine
from .enums import oob_mode as OobMode
from .issue import computes, current, emit, record

MAX_DMA_COMPUTE_SRCS = 16  # dma_compute sources per instruction — S-ISA
# enum members bound once: member lookups cost ~0.3 us each on CPython 3.11, and every DMA compares several
_UNKNOWN, _HWDGE, _NONE, _SKIP = DgeMode.unknown, DgeMode.hwdge, DgeMode.none, OobMode.skip


def _run_length(t: NkiTensor) -> int:
    """Elements in t's innermost contiguous run (on-chip and vector-indirect runs stay within dim 0's rows): its
    layout's `run` / `run_rows`."""
    ind = t.indirect
    return t.layout.run_rows if ind is not None and ind.kind == "vector" else t.layout.run


def _check_operand(opc: str, operand: str, x, t) -> None:
    """A DMA operand's rules; a direct view's layout that passed them for target `t` is remembered (`Layout.dma_ok`),
    so `dma_copy` skips the call for further views of that layout."""
    if not isinstance(x, NkiTensor):
        raise NkiValidationError(opc, operand, "an NKI tensor", type(x).__name__, t.name)
    validate.tile(opc, operand, x, t, engine=False)
    if x.storage.buffer == "psum":
        raise NkiValidationError(opc, operand, "not in PSUM (DMA cannot access PSUM; tensor_copy to SBUF first)",
                                 "psum", t.name)
    ind = x.indirect
    if ind is not None and ind.kind == "vector":
        validate.feature(opc, operand, t.dma_vector_offset, "indirect vector_offset DMA needs NeuronCore-v3+",
                         "vector_offset", t)
        if x.on_chip:
            raise NkiValidationError(opc, operand, "vector_offset indexes an HBM tensor", x.buffer, t.name)
    if ind is None and x.out_of_bounds is None:
        x.layout.dma_ok = t


def _checked(x, t) -> bool:
    """Whether `x` is a direct in-bounds view whose layout passed `_check_operand` for `t` (nothing left to check)."""
    return type(x) is NkiTensor and x.layout.dma_ok is t and x.indirect is None and x.out_of_bounds is None


def _check_dge(opc: str, dge_mode, tensors, t) -> None:
    """Runtime addresses need a DGE (S-ISA dma_copy: "when either sw_dge or hw_dge mode is used, the src and dst
    tensors can have a dynamic start address"), and only the software DGE gathers/scatters with vector_offset."""
    kinds = {x.indirect.kind for x in tensors if x.indirect is not None}
    if kinds and dge_mode is _NONE:
        raise NkiValidationError(opc, "dge_mode", "swdge/hwdge/unknown for runtime (.ap offset) addresses", "none",
                                 t.name)
    if "vector" in kinds and dge_mode is _HWDGE:
        raise NkiValidationError(opc, "dge_mode", "swdge/unknown for vector_offset gather/scatter", "hwdge", t.name)


def _index_reads(**tensors) -> dict:
    return {f"{k}.index": v.indirect.index for k, v in tensors.items()
            if v.indirect is not None and isinstance(v.indirect.index, NkiTensor)}


def _attrs(ctx, dst: NkiTensor, srcs, dge_mode) -> dict:
    """The trace attrs of a DMA writing `dst` from `srcs` (module docstring); takes the next DMA queue."""
    attrs = _transfer_attrs(ctx.target, dst, srcs, dge_mode)
    attrs["queue"] = ctx.run.next_dma_queue()
    attrs["dge_mode"] = dge_mode._name_  # (`.name` is a Python-level property: this is the per-DMA path)
    return attrs


def _copy_attrs(ctx, dst: NkiTensor, src: NkiTensor, dge_mode) -> dict:
    """`_attrs` of a dma_copy: what depends on the transfer (its layouts, runtime-addressing kinds, `dge_mode`, the
    target) is worked out once per (dst layout, src layout, dge_mode, kinds) and target and copied; only the queue is
    per DMA."""
    ind_dst, ind_src = dst.indirect, src.indirect
    key = (dst.layout, src.layout, dge_mode._value_,  # (an Enum member hashes through a Python-level __hash__)
           None if ind_dst is None else ind_dst.kind, None if ind_src is None else ind_src.kind)
    t = ctx.target
    hit = _TRANSFERS.get(key)
    if hit is None or hit[0] is not t:
        if len(_TRANSFERS) >= _TRANSFERS_MAX:
            _TRANSFERS.clear()
        hit = _TRANSFERS[key] = (t, _transfer_attrs(t, dst, (src,), dge_mode))
    attrs = hit[1].copy()
    attrs["queue"] = ctx.run.next_dma_queue()
    attrs["dge_mode"] = dge_mode._name_
    return attrs


_TRANSFERS: dict[tuple, tuple] = {}  # `_copy_attrs` key -> (target, `_transfer_attrs`)
_TRANSFERS_MAX = 10_000


def _transfer_attrs(t, dst: NkiTensor, srcs, dge_mode) -> dict:
    """The trace attrs of a DMA writing `dst` from `srcs` on target `t` that do not depend on its place in the
    program: {"bytes", "chunks", "chunk_bytes", "indirect", "dge"} (module docstring)."""
    nbytes = dst.layout.nbytes
    run = _run_length(dst)
    indirect = dst.indirect is not None
    vector = indirect and dst.indirect.kind == "vector"
    same_dtype = True
    for x in srcs:
        r = _run_length(x)
        run = r if r < run else run  # (builtins min/max cost ~0.6 us a call on CPython 3.11: hot path)
        if x.indirect is not None:
            indirect = True
            vector = vector or x.indirect.kind == "vector"
        if x.dtype is not dst.dtype and x.dtype != dst.dtype:
            same_dtype = False
    chunks = dst.size // run if run > 1 else dst.size
    chunks = chunks if chunks > 1 else 1
    if dge_mode is not _UNKNOWN:
        dge = dge_mode._name_  # (`.name` is a Python-level property: this is the per-DMA path)
    elif vector:
        dge = "swdge"
    elif same_dtype and t.hwdge:
        dge = "hwdge"
    else:
        dge = "none"
    return {"bytes": nbytes, "chunks": chunks, "chunk_bytes": nbytes / chunks, "indirect": indirect, "dge": dge}


def dma_copy(dst, src, priority=None, oob_mode=OobMode.error, dge_mode=DgeMode.unknown, engine=Engine.unknown,
             name=None):
    """dst = src through a DMA queue (see module docstring for rules and indirect addressing)."""
    opc = "dma_copy"
    ctx = current()
    t = ctx.target
    if type(oob_mode) is not OobMode:  # (a member is the common case: coerce only raw values)
        oob_mode = coerce(OobMode, oob_mode, opc, "oob_mode")
    if type(dge_mode) is not DgeMode:
        dge_mode = coerce(DgeMode, dge_mode, opc, "dge_mode")
    if type(engine) is not Engine:
        coerce(Engine, engine, opc, "engine")
    if not _checked(dst, t):
        _check_operand(opc, "dst", dst, t)
    if not _checked(src, t):
        _check_operand(opc, "src", src, t)
    if dst.size != src.size:
        raise NkiValidationError(opc, "dst", f"element count == src's {src.size}", dst.size, t.name)
    if dge_mode is _HWDGE:
        validate.feature(opc, "dge_mode", t.hwdge, "hwdge needs NeuronCore-v3+", "hwdge", t)
        if src.dtype != dst.dtype:
            raise NkiValidationError(opc, "dst", "same dtype as src with hwdge",
                                     f"{dtypes.name(src.dtype)} -> {dtypes.name(dst.dtype)}", t.name)
    if priority is not None:
        validate.feature(opc, "priority", t.dma_priority, "DMA priority needs NeuronCore-v4", priority, t)
    if dst.indirect is None and src.indirect is None:
        places = index = None
    else:  # runtime addresses: resolved now (a direct view's place is its own offset)
        _check_dge(opc, dge_mode, (dst, src), t)
        skip = oob_mode is _SKIP
        places = {"src": src.locate(opc, "src", skip), "dst": dst.locate(opc, "dst", skip)}
        index = _index_reads(dst=dst, src=src)
    # (trace mode, a destination without values: `computes` would answer False and change nothing)
    if (ctx.full or dst.storage.data is not None) and computes(ctx, (dst,), (src, *index.values()) if index else (src,)):
        _copy(opc, dst, src, places, t)
    attrs = _copy_attrs(ctx, dst, src, dge_mode)
    if index:
        emit(ctx, "dma", opc, ("dst", "src", *index), (dst, src, *index.values()), 1, 0, attrs, places)
    else:
        emit(ctx, "dma", opc, _COPY_OPERANDS, (dst, src), 1, 0, attrs, places)


_COPY_OPERANDS = ("dst", "src")


def _copy(opc: str, dst: NkiTensor, src: NkiTensor, places: dict | None, t) -> None:
    """dma_copy's data movement (values known): src's elements into dst, converted, oob-skipped rows left alone."""
    sp, dp = (places["src"], places["dst"]) if places else (src.locate(opc, "src"), dst.locate(opc, "dst"))
    vals = src.values(sp)
    if vals is None and not sp.skip:  # trace mode, source address unknown: so is what lands in dst
        dst.storage.data = None
    elif vals is not None and not dp.skip:
        if src.dtype != dst.dtype:
            vals = dtypes.cast(dtypes.to_f32(vals), dst.dtype)
        rows_valid = None
        if sp.valid is not None and not sp.valid.all():
            if dst.shape[0] != src.shape[0]:
                raise NkiValidationError(opc, "dst", "same dim 0 as an oob-skipping vector_offset src",
                                         list(dst.shape), t.name)
            rows_valid = sp.valid
        dst.write(vals, dp, rows_valid)


def dma_compute(dst, srcs, reduce_op, scales=None, unique_indices=True, oob_mode=OobMode.error, name=None):
    """dst = srcs[0] + srcs[1] + … in float32 inside the DMA engines (reduce_op must be nl.add, scales 1.0).
    With a vector_offset operand this is a read-modify-write scatter (dst HBM) or gather (dst SBUF)."""
    opc = "dma_compute"
    ctx = current()
    t = ctx.target
    oob_mode = coerce(OobMode, oob_mode, opc, "oob_mode")
    red = alu(reduce_op, "reduce_op")
    if red.name != "add":
        raise NkiValidationError(opc, "reduce_op", "add", red.name, t.name)
    srcs = list(srcs)
    if not 1 <= len(srcs) <= MAX_DMA_COMPUTE_SRCS:
        raise NkiValidationError(opc, "srcs", f"1 to {MAX_DMA_COMPUTE_SRCS} tensors", len(srcs), t.name)
    if scales is not None and any(float(s) != 1.0 for s in scales):
        raise NkiValidationError(opc, "scales", "all 1.0", list(scales), t.name)
    if not unique_indices:
        raise NkiValidationError(opc, "unique_indices", "True (non-unique indices unsupported)", unique_indices, t.name)
    _check_operand(opc, "dst", dst, t)
    for i, s in enumerate(srcs):
        _check_operand(opc, f"srcs[{i}]", s, t)
        if s.size != dst.size:
            raise NkiValidationError(opc, f"srcs[{i}]", f"element count == dst's {dst.size}", s.size, t.name)
    if any(x.indirect is not None and x.indirect.kind == "vector" for x in [dst] + srcs) and len(srcs) != 2:
        raise NkiValidationError(opc, "srcs", "exactly 2 sources for a vector_offset read-modify-write", len(srcs),
                                 t.name)
    skip = oob_mode == OobMode.skip
    dp = dst.locate(opc, "dst", skip)
    places = {f"src{i}": s.locate(opc, f"srcs[{i}]", skip) for i, s in enumerate(srcs)}
    reads = {f"src{i}": s for i, s in enumerate(srcs)}
    index = _index_reads(dst=dst, **reads)
    if computes(ctx, (dst,), (*srcs, *index.values())):
        vals = [s.values(places[f"src{i}"]) for i, s in enumerate(srcs)]
        if all(v is not None for v in vals):
            total = sum(dtypes.to_f32(v).reshape(-1) for v in vals)
            dst.write(dtypes.cast(np.asarray(total, np.float32), dst.dtype), dp)
    record(ctx, "dma", opc, {"dst": dst}, {**reads, **index}, flops=dst.size * (len(srcs) - 1),
           places={"dst": dp, **places}, attrs=_attrs(ctx, dst, srcs, DgeMode.unknown))


_TRANSPOSE_AXES = {2: (1, 0), 3: (2, 1, 0), 4: (3, 1, 2, 0)}  # the permutations dma_transpose supports — S-ISA
HWDGE_TRANSPOSE_ROWS = 16  # hwdge dma_transpose: src.shape[0] == 16 and src.shape[-1] % 128 == 0 — S-ISA
INDIRECT_TRANSPOSE_FMAX = 128  # indirect (swdge) dma_transpose: src.shape[-1] <= 128 — S-ISA


def _check_transpose_dge(opc: str, src: NkiTensor, dge_mode, t) -> None:
    """S-ISA dma_transpose: a direct transpose runs on the hardware DGE (unknown/hwdge), an indirect (vector_offset)
    one on the software DGE (unknown/swdge), both on 2-byte dtypes; hwdge needs src [16, ..., k*128], indirect
    src.shape[-1] <= 128 and uint32 indices."""
    indirect = src.indirect is not None and src.indirect.kind == "vector"
    legal = (DgeMode.unknown, DgeMode.swdge) if indirect else (DgeMode.unknown, DgeMode.hwdge)
    if dge_mode not in legal:
        raise NkiValidationError(opc, "dge_mode", f"one of {[m.name for m in legal]} for a "
                                 f"{'vector_offset' if indirect else 'direct'} transpose", dge_mode.name, t.name)
    if (indirect or dge_mode == DgeMode.hwdge) and src.itemsize != 2:
        raise NkiValidationError(opc, "src", "a 2-byte dtype (hwdge / indirect transpose)", dtypes.name(src.dtype),
                                 t.name)
    if dge_mode == DgeMode.hwdge and (src.shape[0] != HWDGE_TRANSPOSE_ROWS or src.shape[-1] % 128):
        raise NkiValidationError(opc, "src", f"shape [{HWDGE_TRANSPOSE_ROWS}, ..., k*128] with hwdge", list(src.shape),
                                 t.name)
    if indirect:
        if src.shape[-1] > INDIRECT_TRANSPOSE_FMAX:
            raise NkiValidationError(opc, "src", f"last dim <= {INDIRECT_TRANSPOSE_FMAX} (indirect transpose)",
                                     list(src.shape), t.name)
        if src.indirect.index.dtype != dtypes.DTYPES["uint32"]:
            raise NkiValidationError(opc, "src.vector_offset", "uint32 indices (indirect transpose)",
                                     dtypes.name(src.indirect.index.dtype), t.name)


def dma_transpose(dst, src, axes=None, priority=None, dge_mode=DgeMode.unknown, oob_mode=OobMode.error, name=None):
    """dst (SBUF) = src (HBM or SBUF; may be vector-offset indirect) permuted by `axes`: (1, 0), (2, 1, 0) or
    (3, 1, 2, 0) (the default for src's rank); src.dtype == dst.dtype. NeuronCore-v3+ (DMA transpose arrived with
    Trainium2, S-A3)."""
    opc = "dma_transpose"
    ctx = current()
    t = ctx.target
    oob_mode, dge_mode = coerce(OobMode, oob_mode, opc, "oob_mode"), coerce(DgeMode, dge_mode, opc, "dge_mode")
    validate.feature(opc, "op", t.dma_transpose, "dma_transpose needs NeuronCore-v3+", opc, t)
    _check_operand(opc, "dst", dst, t)
    _check_operand(opc, "src", src, t)
    validate.buffer(opc, "dst", dst, ("sbuf",), t)
    axes = tuple(axes) if axes is not None else _TRANSPOSE_AXES.get(src.ndim)
    if axes is None or axes != _TRANSPOSE_AXES.get(len(axes)) or len(axes) != src.ndim:
        raise NkiValidationError(opc, "axes", f"one of {sorted(_TRANSPOSE_AXES.values())} matching src rank {src.ndim}",
                                 axes, t.name)
    if src.dtype != dst.dtype:
        raise NkiValidationError(opc, "dst", f"dtype == src's {dtypes.name(src.dtype)}", dtypes.name(dst.dtype), t.name)
    expected = tuple(src.shape[a] for a in axes)
    if dst.shape != expected:
        raise NkiValidationError(opc, "dst", f"shape {list(expected)} (src permuted by {axes})", list(dst.shape),
                                 t.name)
    _check_transpose_dge(opc, src, dge_mode, t)
    sp = src.locate(opc, "src", oob_mode == OobMode.skip)
    index = _index_reads(src=src)
    if computes(ctx, (dst,), (src, *index.values())):
        vals = src.values(sp)
        if vals is None:
            dst.storage.data = None
        else:
            dst.write(np.ascontiguousarray(np.transpose(vals, axes)))
    record(ctx, "dma", opc, {"dst": dst}, {"src": src, **index}, places={"src": sp},
           attrs=_attrs(ctx, dst, [src], dge_mode))
