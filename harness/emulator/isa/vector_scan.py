"""VectorE statistics and scans: `bn_stats`, `bn_aggr`, `max8`, `tensor_tensor_scan`, `tensor_scalar_cumulative`,
and `tensor_copy_predicated` (S-ISA). Float32 math, results cast into dst."""

from __future__ import annotations

import numpy as np

from .. import dtypes, validate
from ..errors import NkiValidationError
from ..operators import alu
from ..tensor import NkiTensor
from .enums import coerce
from .enums import reduce_cmd as ReduceCmd
from .issue import computes, current, f32, lanes, layout_attrs, operand, raw, record, store
from .vector import binary_arith

BN_STATS_FMAX = 512  # bn_stats elements per partition — S-ISA, nl.tile_size.bn_stats_fmax
MAX8_RANGE = (8, 16384)  # max8 elements read per partition — S-ISA
_CUMULATIVE_OPS = ("add", "subtract", "multiply", "maximum", "minimum")
_CUMULATIVE_IDENTITY = {"add": 0.0, "subtract": 0.0, "multiply": 1.0, "maximum": -np.inf, "minimum": np.inf}


def _pair(opc: str, t, dst: NkiTensor, src: NkiTensor, src_name: str = "data") -> None:
    validate.tile(opc, "dst", dst, t)
    validate.tile(opc, src_name, src, t)


def bn_stats(dst, data, name=None):
    """dst[P, 6] = (count, mean, var*count) of the even-, then odd-indexed free elements of data (≤ 512 each row)."""
    opc = "bn_stats"
    ctx = current()
    t = ctx.target
    _pair(opc, t, dst, data)
    if data.free_size > BN_STATS_FMAX:
        raise NkiValidationError(opc, "data", f"elements per partition <= {BN_STATS_FMAX}", data.free_size, t.name)
    if dst.shape[0] != data.shape[0] or dst.free_size != 6:
        raise NkiValidationError(opc, "dst", f"[{data.shape[0]}, 6]", f"{dst.shape[0]} x {dst.free_size}", t.name)
    if computes(ctx, (dst,), (data,)):
        x = f32(data)
        cols = []
        for half in (x[:, 0::2], x[:, 1::2]):
            n = half.shape[1]
            mean = half.mean(axis=1) if n else np.zeros(x.shape[0], np.float32)
            m2 = ((half - mean[:, None]) ** 2).sum(axis=1) if n else mean
            cols += [np.full(x.shape[0], n, np.float32), mean, m2]
        store(dst, np.stack(cols, axis=1))
    record(ctx, "vector", opc, {"dst": dst}, {"data": data}, flops=3 * data.size, attrs=layout_attrs(dst, data))


def bn_aggr(dst, data, name=None):
    """dst[P, 2] = (mean, variance) aggregated from (count, mean, var*count) triples of bn_stats outputs."""
    opc = "bn_aggr"
    ctx = current()
    t = ctx.target
    _pair(opc, t, dst, data)
    if data.free_size % 3:
        raise NkiValidationError(opc, "data", "elements per partition a multiple of 3", data.free_size, t.name)
    if dst.shape[0] != data.shape[0] or dst.free_size != 2:
        raise NkiValidationError(opc, "dst", f"[{data.shape[0]}, 2]", f"{dst.shape[0]} x {dst.free_size}", t.name)
    if computes(ctx, (dst,), (data,)):
        x = f32(data).reshape(data.shape[0], -1, 3)
        count, mean, m2 = x[..., 0], x[..., 1], x[..., 2]
        total = count.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            mu = (count * mean).sum(axis=1) / total
            var = (m2 + count * (mean - mu[:, None]) ** 2).sum(axis=1) / total
        store(dst, np.stack([mu, var], axis=1))
    record(ctx, "vector", opc, {"dst": dst}, {"data": data}, flops=4 * data.size, attrs=layout_attrs(dst, data))


def max8(dst, src, name=None):
    """dst[P, 8] = the 8 largest values of each partition of src, descending."""
    opc = "max8"
    ctx = current()
    t = ctx.target
    _pair(opc, t, dst, src, "src")
    lo, hi = MAX8_RANGE
    if not lo <= src.free_size <= hi:
        raise NkiValidationError(opc, "src", f"{lo} to {hi} elements per partition", src.free_size, t.name)
    if dst.shape[0] != src.shape[0] or dst.free_size != 8:
        raise NkiValidationError(opc, "dst", f"[{src.shape[0]}, 8]", f"{dst.shape[0]} x {dst.free_size}", t.name)
    if computes(ctx, (dst,), (src,)):
        store(dst, -np.sort(-f32(src), axis=1)[:, :8])
    record(ctx, "vector", opc, {"dst": dst}, {"src": src}, flops=src.size, attrs=layout_attrs(dst, src))


def tensor_tensor_scan(dst, data0, data1, initial, op0, op1, reverse0=False, reverse1=False, name=None):
    """Per partition: r[0] = op1(op0(data0[0], initial), data1[0]); r[i] = op1(op0(data0[i], r[i-1]), data1[i]).
    reverse0 makes data0 the rhs of op0, reverse1 makes data1 the lhs of op1; initial: scalar or (P, 1)."""
    opc = "tensor_tensor_scan"
    ctx = current()
    t = ctx.target
    f0, f1 = binary_arith(opc, t, op0, op1)
    validate.tiles(opc, t, data0=data0, data1=data1, dst=dst)
    validate.not_both_psum(opc, "data0", data0, "data1", data1, t)
    p = data0.shape[0]
    validate.vector_operand(opc, "initial", initial, p, t)
    if computes(ctx, (dst,), (data0, data1, initial)):
        a, b = f32(data0), f32(data1)
        prev = np.broadcast_to(operand(initial, p), (p, 1)).reshape(p)
        out = np.empty_like(a)
        for i in range(a.shape[1]):
            tmp = f0.fn(prev, a[:, i]) if reverse0 else f0.fn(a[:, i], prev)
            prev = f1.fn(b[:, i], tmp) if reverse1 else f1.fn(tmp, b[:, i])
            out[:, i] = prev
        store(dst, out)
    record(ctx, "vector", opc, {"dst": dst}, {"data0": data0, "data1": data1, "initial": initial},
           flops=2 * dst.size, attrs=layout_attrs(dst, data0, data1))


def tensor_scalar_cumulative(dst, src, op0, op1, imm0, imm1=None, reduce_cmd=ReduceCmd.reset_reduce, name=None):
    """Per partition scan through the VectorE accumulator: reg = op1(op0(src[i], imm0), reg); dst[i] = reg.
    reset_reduce starts reg at op1's identity, reduce keeps it, load_reduce loads imm1. No int32/uint32."""
    opc = "tensor_scalar_cumulative"
    ctx = current()
    t = ctx.target
    reduce_cmd = coerce(ReduceCmd, reduce_cmd, opc, "reduce_cmd")
    f0, f1 = alu(op0, "op0"), alu(op1, "op1")
    if f0.kind == "bitvec":
        raise NkiValidationError(opc, "op0", "an arithmetic operator", f0.name, t.name)
    if f1.name not in _CUMULATIVE_OPS:
        raise NkiValidationError(opc, "op1", f"one of {_CUMULATIVE_OPS}", f1.name, t.name)
    validate.tiles(opc, t, src=src, dst=dst)
    for operand_name, x in (("dst", dst), ("src", src)):
        if dtypes.name(x.dtype) in ("int32", "uint32"):
            raise NkiValidationError(opc, operand_name, "not int32/uint32", dtypes.name(x.dtype), t.name)
    p = src.shape[0]
    validate.vector_operand(opc, "imm0", imm0, p, t, fp32=True)
    if reduce_cmd not in (ReduceCmd.reset_reduce, ReduceCmd.reduce, ReduceCmd.load_reduce):
        raise NkiValidationError(opc, "reduce_cmd", "reset_reduce, reduce or load_reduce", reduce_cmd.name, t.name)
    if reduce_cmd == ReduceCmd.load_reduce:
        if imm1 is None:
            raise NkiValidationError(opc, "imm1", "the accumulator's start value with load_reduce", imm1, t.name)
        validate.vector_operand(opc, "imm1", imm1, p, t, fp32=True)
    if computes(ctx, (dst,), (src, imm0, imm1)):
        x = f0.fn(f32(src), operand(imm0, p)) if f0.arity == 2 else f0.fn(f32(src))
        if reduce_cmd == ReduceCmd.reset_reduce:
            reg = np.full(p, _CUMULATIVE_IDENTITY[f1.name], np.float32)
        elif reduce_cmd == ReduceCmd.load_reduce:
            reg = np.broadcast_to(operand(imm1, p), (p, 1)).reshape(p)
        else:
            reg = ctx.vec_acc[lanes(src)].copy()
        out = np.empty_like(x)
        for i in range(x.shape[1]):
            reg = f1.fn(x[:, i], reg)
            out[:, i] = reg
        ctx.vec_acc[lanes(src)] = reg
        store(dst, out)
    record(ctx, "vector", opc, {"dst": dst}, {"src": src, "imm0": imm0, "imm1": imm1}, flops=2 * dst.size,
           attrs=layout_attrs(dst, src))


def tensor_copy_predicated(dst, src, predicate, reverse_pred=False, name=None):
    """dst = src (tile or scalar) where predicate (uint8/16/32 or bool; xor reverse_pred) is nonzero; elsewhere dst
    keeps its values. src and dst share a dtype; src and predicate not both in PSUM."""
    opc = "tensor_copy_predicated"
    ctx = current()
    t = ctx.target
    validate.tiles(opc, t, dst=dst, predicate=predicate)
    if dtypes.name(predicate.dtype) not in ("uint8", "uint16", "uint32", "bool"):
        raise NkiValidationError(opc, "predicate", "uint8/uint16/uint32", dtypes.name(predicate.dtype), t.name)
    if isinstance(src, NkiTensor):
        validate.tiles(opc, t, dst=dst, src=src)
        validate.not_both_psum(opc, "src", src, "predicate", predicate, t)
        if src.dtype != dst.dtype:
            raise NkiValidationError(opc, "src", f"dtype == dst's {dtypes.name(dst.dtype)}", dtypes.name(src.dtype),
                                     t.name)
    if computes(ctx, (dst,), (dst, src, predicate)):
        keep = raw(predicate) != 0
        new = raw(src) if isinstance(src, NkiTensor) else dtypes.cast(np.full(keep.shape, src, np.float32), dst.dtype)
        store(dst, np.where(~keep if reverse_pred else keep, new, raw(dst)))
    record(ctx, "vector", opc, {"dst": dst}, {"src": src, "predicate": predicate, "dst_old": dst},
           attrs=layout_attrs(dst, predicate))
