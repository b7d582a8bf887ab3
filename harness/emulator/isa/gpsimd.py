"""GpSimd instructions: `iota` and `affine_select` (S-ISA). GpSimd cannot access PSUM.

Both evaluate the affine value `offset + p * channel_multiplier + Σ step_i * idx_i` over a ≤ 4-D
`pattern = [[step, num], …]` (outer to inner, Π num == elements per partition) in int32 arithmetic.
"""

from __future__ import annotations

import math

import numpy as np

from .. import dtypes, validate
from ..errors import NkiValidationError
from ..operators import alu, op_name
from ..registers import VirtualRegister
from .issue import computes, current, f32, layout_attrs, raw, record, store
from .vector import bits, store_bits


def _affine(opc: str, t, dst, pattern, offset, channel_multiplier) -> np.ndarray | None:
    """int64 [P, F] affine values (None when a register offset is unknown); validates the pattern."""
    pattern = [[int(s), int(n)] for s, n in pattern]
    if not 1 <= len(pattern) <= 4:
        raise NkiValidationError(opc, "pattern", "1 to 4 [step, num] pairs", pattern, t.name)
    count = math.prod(n for _, n in pattern)
    if count != dst.free_size:
        raise NkiValidationError(opc, "pattern", f"product of nums == elements per partition {dst.free_size}", count,
                                 t.name)
    if isinstance(offset, VirtualRegister):
        offset = offset.value
    if offset is None:
        return None
    vals = np.full((dst.shape[0],) + tuple(n for _, n in pattern), int(offset), np.int64)
    vals += (np.arange(dst.shape[0], dtype=np.int64) * int(channel_multiplier)).reshape((-1,) + (1,) * len(pattern))
    for d, (step, n) in enumerate(pattern):
        shape = [1] * (len(pattern) + 1)
        shape[d + 1] = n
        vals += (np.arange(n, dtype=np.int64) * step).reshape(shape)
    # int32 arithmetic on the engine: wrap like the hardware's 32-bit registers
    return ((vals + 2 ** 31) % 2 ** 32 - 2 ** 31).reshape(dst.shape[0], -1)


def iota(dst, pattern, offset=0, channel_multiplier=0, name=None):
    """dst[p, i…] = offset + p * channel_multiplier + Σ step_d * i_d (int32 math, cast to dst dtype); dst in SBUF."""
    opc = "iota"
    ctx = current()
    t = ctx.target
    validate.tile(opc, "dst", dst, t)
    validate.gpsimd_no_psum(opc, {"dst": dst}, t)
    validate.buffer(opc, "dst", dst, ("sbuf",), t)
    vals = _affine(opc, t, dst, pattern, offset, channel_multiplier)
    if computes(ctx, (dst,), ()) and vals is not None:
        store(dst, vals if dst.dtype.kind in "iu" else vals.astype(np.float32))
    record(ctx, "gpsimd", opc, {"dst": dst}, {}, attrs=layout_attrs(dst))


def affine_select(dst, pattern, channel_multiplier, on_true_tile, on_false_value, cmp_op=None, offset=0, name=None):
    """dst = on_true_tile where cmp_op(affine value, 0) else on_false_value (a float32 scalar, cast to dst's dtype);
    dst, on_true in SBUF; cmp_op defaults to nl.equal. Selected elements are copied bit-exact when on_true_tile and
    dst share a dtype, else cast through float32 (S-ISA)."""
    opc = "affine_select"
    ctx = current()
    t = ctx.target
    cmp = alu(cmp_op if cmp_op is not None else "equal", "cmp_op")
    validate.tiles(opc, t, on_true_tile=on_true_tile, dst=dst)
    validate.gpsimd_no_psum(opc, {"dst": dst, "on_true_tile": on_true_tile}, t)
    validate.buffer(opc, "dst", dst, ("sbuf",), t)
    validate.buffer(opc, "on_true_tile", on_true_tile, ("sbuf",), t)
    if not isinstance(on_false_value, (int, float, np.floating, np.integer)):
        raise NkiValidationError(opc, "on_false_value", "a float32 scalar", on_false_value, t.name)
    vals = _affine(opc, t, dst, pattern, offset, channel_multiplier)
    if computes(ctx, (dst,), (on_true_tile,)) and vals is not None:
        keep = cmp.fn(vals, np.int64(0)) != 0
        if on_true_tile.dtype == dst.dtype:  # selected elements move bit-exact; only a dtype change goes via fp32
            fill = dtypes.cast(np.array([on_false_value], np.float32), dst.dtype)
            store(dst, np.where(keep, raw(on_true_tile), fill))
        else:
            store(dst, np.where(keep, f32(on_true_tile), np.float32(on_false_value)))
    record(ctx, "gpsimd", opc, {"dst": dst}, {"on_true_tile": on_true_tile}, flops=dst.size,
           attrs=layout_attrs(dst, on_true_tile))


_PARTITION_REDUCE_OPS = ("add", "average", "maximum", "bitwise_or", "bitwise_and")


def tensor_partition_reduce(dst, op, data, name=None):
    """dst[1, F] = op-reduction of data[P, F] across its partitions, on GpSimd (SBUF only). `nl.average` is the
    float32 mean over the partitions (the sum times 1/P)."""
    opc = "tensor_partition_reduce"
    ctx = current()
    t = ctx.target
    average = op_name(op) == "average"
    fn = alu("add" if average else op)
    if fn.name not in _PARTITION_REDUCE_OPS:
        raise NkiValidationError(opc, "op", f"one of {_PARTITION_REDUCE_OPS}", fn.name, t.name)
    validate.tile(opc, "dst", dst, t)
    validate.tile(opc, "data", data, t)
    validate.gpsimd_no_psum(opc, {"dst": dst, "data": data}, t)
    if dst.shape[0] != 1 or dst.free_size != data.free_size:
        raise NkiValidationError(opc, "dst", f"[1, {data.free_size}]", f"{dst.shape[0]} x {dst.free_size}", t.name)
    if fn.kind == "bitvec":
        validate.int_dtypes(opc, {"dst": dst, "data": data}, t)
    if computes(ctx, (dst,), (data,)):
        if fn.kind == "bitvec":
            store_bits(dst, fn.fn.reduce(bits(data), axis=0)[None, :])
        else:
            res = fn.fn.reduce(f32(data), axis=0)[None, :]
            store(dst, res * np.float32(1.0 / data.shape[0]) if average else res)
    record(ctx, "gpsimd", opc, {"dst": dst}, {"data": data}, flops=data.size, attrs=layout_attrs(dst, data))
