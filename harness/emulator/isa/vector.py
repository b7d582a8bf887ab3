"""VectorE (and Vector/GpSimd/Scalar multi-engine) instructions (S-ISA).

Arithmetic runs in float32 on inputs upcast from their storage dtype; results are cast into the
destination dtype with round-to-nearest-even. Bitvec operators work on integer bit patterns (shifts
are logical) and results keep the destination's low bits (wrap, no saturation).
All-int32/uint32 `tensor_tensor` defaults to GpSimd, whose native integer arithmetic the emulator
models in int64 with saturation into the destination.

The VectorE accumulator registers (one float32 per lane = absolute partition of the input) are shared
by `tensor_scalar_reduce`, `range_select`, `select_reduce`, `exponential` and `tensor_scalar_cumulative`
and persist across instructions (`reduce_cmd`): reset / reset_reduce start them at the reduction's
identity (S-ISA says "reset to 0" for add and "-inf" for select_reduce's max; the emulator generalises to
the identity: 0, 1, -inf, +inf), reduce adds onto them, load_reduce starts them at `reduce_init`, and a
given `reduce_res` reads them out after the update. They start undefined (NaN) in every program instance
and become undefined again after an `idle` instruction (S-ISA: "even when reduce_cmd is set to idle, the
accumulator state may still be modified").
"""

from __future__ import annotations

import math

import numpy as np

from .. import dtypes, validate
from ..errors import NkiValidationError
from ..operators import AluOp, alu
from ..tensor import NkiTensor
from .enums import coerce
from .enums import engine as Engine
from .enums import reduce_cmd as ReduceCmd
from .issue import computes, current, f32, lanes, layout_attrs, operand, raw, record, store

_ENGINE_NAMES = {Engine.vector: "vector", Engine.gpsimd: "gpsimd", Engine.scalar: "scalar"}
_CMP_OPS = ("equal", "less", "less_equal", "greater", "greater_equal")
RANGE_INDEX_LIMIT = 2 ** 24  # range_select compares range_start + f in float32: exact below 2^24 — S-ISA


def _engine_name(op: str, engine, allowed: tuple[str, ...], default: str, target) -> str:
    if engine is None:
        return default
    engine = coerce(Engine, engine, op, "engine")
    if engine == Engine.unknown:
        return default
    name = _ENGINE_NAMES.get(engine)
    if name not in allowed:
        raise NkiValidationError(op, "engine", f"one of {allowed}", engine, target.name)
    return name


_UNSIGNED = {1: np.uint8, 2: np.uint16, 4: np.uint32}


def bits(t: NkiTensor) -> np.ndarray:
    """A tile's raw bit patterns as non-negative int64 [P, F] (bitvec operators see bits, not values)."""
    return raw(t).view(_UNSIGNED[t.itemsize]).astype(np.int64)


def store_bits(dst: NkiTensor, res: np.ndarray) -> None:
    """Write bitvec results: keep dst's low bits (wrapping, as a bit pattern), no saturation."""
    width = _UNSIGNED[dst.itemsize]
    store(dst, (res & np.iinfo(width).max).astype(width).view(dst.dtype))


def _binary(fn: AluOp, a, b, reverse: bool = False):
    return fn.fn(b, a) if reverse else fn.fn(a, b)


def reduce_rows(fn: AluOp, x: np.ndarray) -> np.ndarray:
    """Reduce the last axis of x with an ALU operator (float32 or integer bits)."""
    if isinstance(fn.fn, np.ufunc):
        return fn.fn.reduce(x, axis=-1)
    acc = x[..., 0]
    for i in range(1, x.shape[-1]):
        acc = fn.fn(acc, x[..., i])
    return acc


def update_accumulator(ctx, src: NkiTensor, cmd, row: np.ndarray | None, fn, identity: float, init=None) -> np.ndarray:
    """Apply `reduce_cmd` to the VectorE accumulators of the lanes `src` occupies; returns them [P, 1].
    After `idle` they are undefined (NaN): S-ISA warns that an idle instruction may still modify them."""
    acc = ctx.vec_acc[lanes(src)]
    partitions = src.shape[0]
    if cmd == ReduceCmd.idle:
        acc[...] = np.nan
    elif cmd in (ReduceCmd.reset, ReduceCmd.reset_reduce):
        acc[...] = identity
    elif cmd == ReduceCmd.load_reduce:
        acc[...] = np.reshape(operand(identity if init is None else init, partitions), -1)
    if cmd in (ReduceCmd.reduce, ReduceCmd.reset_reduce, ReduceCmd.load_reduce) and row is not None:
        acc[...] = fn(acc, row.reshape(-1))
    return acc.reshape(partitions, 1)


def _float_result(opc: str, reduce_res: NkiTensor, t) -> None:
    """select_reduce / exponential write their accumulators into a float reduce_res only (S-ISA)."""
    if not dtypes.is_float(reduce_res.dtype):
        raise NkiValidationError(opc, "reduce_res", "a float dtype", dtypes.name(reduce_res.dtype), t.name)


def tensor_copy(dst, src, engine=Engine.unknown, name=None):
    """dst = src on Vector (default), Scalar (NeuronCore-v3+) or GpSimd (no PSUM); bit-exact for equal dtypes,
    else through float32. Same partitions and elements per partition."""
    op = "tensor_copy"
    ctx = current()
    t = ctx.target
    validate.tiles(op, t, src=src, dst=dst)
    eng = _engine_name(op, engine, ("vector", "scalar", "gpsimd"), "vector", t)
    if eng == "scalar":
        validate.feature(op, "engine", t.scalar_tensor_copy,
                         "ScalarE tensor_copy needs NeuronCore-v3+ (use activation(op=nl.copy))", "scalar", t)
    if eng == "gpsimd":
        validate.gpsimd_no_psum(op, {"dst": dst, "src": src}, t)
    if computes(ctx, (dst,), (src,)):
        vals = raw(src)
        store(dst, vals if vals.dtype == dst.dtype else dtypes.to_f32(vals))
    record(ctx, eng, op, {"dst": dst}, {"src": src}, attrs=layout_attrs(dst, src))


def memset(dst, value, engine=Engine.unknown, name=None):
    """Fill dst with a compile-time constant on VectorE (default) or GpSimd (no PSUM).

    "value must match dst dtype" (S-MIG 0.3: `value=2` for int32; a float into an int tile is a compile error)
    is read as: integer dst ⇒ an int within the dtype's range; float dst ⇒ an int or a float, cast with RNE."""
    op = "memset"
    ctx = current()
    t = ctx.target
    validate.tile(op, "dst", dst, t)
    eng = _engine_name(op, engine, ("vector", "gpsimd"), "vector", t)
    if eng == "gpsimd":
        validate.gpsimd_no_psum(op, {"dst": dst}, t)
    if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, bool):
        raise NkiValidationError(op, "value", "a compile-time int or float", value, t.name)
    if dtypes.is_packed(dst.dtype) and value != 0:
        raise NkiValidationError(op, "value", f"0 for the packed {dtypes.name(dst.dtype)} dst (S-MIG 0.3: x4 "
                                 "packed types take only value=0)", value, t.name)
    if dtypes.is_int(dst.dtype):
        if isinstance(value, (float, np.floating)):
            raise NkiValidationError(op, "value", f"an int for {dtypes.name(dst.dtype)} dst (value dtype == dst dtype)",
                                     value, t.name)
        info = np.iinfo(dst.dtype) if dst.dtype.kind != "b" else np.iinfo(np.uint8)
        if not info.min <= value <= info.max:
            raise NkiValidationError(op, "value", f"in [{info.min}, {info.max}] for {dtypes.name(dst.dtype)}", value,
                                     t.name)
    if computes(ctx, (dst,), ()):
        if dtypes.is_packed(dst.dtype):
            store(dst, np.zeros((dst.shape[0], dst.free_size), dst.dtype))
        else:
            full = np.full((dst.shape[0], dst.free_size), value, np.int64 if dtypes.is_int(dst.dtype) else np.float32)
            store(dst, full)
    record(ctx, eng, op, {"dst": dst}, {}, attrs=layout_attrs(dst))


def tensor_tensor(dst, data1, data2, op, engine=Engine.unknown, name=None):
    """dst = data1 <op> data2 element-wise (same partitions / elements per partition; not both inputs in PSUM)."""
    opc = "tensor_tensor"
    ctx = current()
    t = ctx.target
    fn = alu(op)
    if fn.arity == 1:
        raise NkiValidationError(opc, "op", "a binary ALU operator", fn.name, t.name)
    validate.tiles(opc, t, data1=data1, data2=data2, dst=dst)
    validate.not_both_psum(opc, "data1", data1, "data2", data2, t)
    int32 = all(x.dtype in (dtypes.DTYPES["int32"], dtypes.DTYPES["uint32"]) for x in (dst, data1, data2))
    no_psum = all(x.buffer != "psum" for x in (dst, data1, data2))
    default = "gpsimd" if fn.name == "power" or (int32 and no_psum) else "vector"
    eng = _engine_name(opc, engine, ("vector", "gpsimd"), default, t)
    if eng == "gpsimd":
        validate.gpsimd_no_psum(opc, {"dst": dst, "data1": data1, "data2": data2}, t)
    if fn.kind == "bitvec":
        validate.int_dtypes(opc, {"dst": dst, "data1": data1, "data2": data2}, t)
    if computes(ctx, (dst,), (data1, data2)):
        if fn.kind == "bitvec":
            store_bits(dst, fn.fn(bits(data1), bits(data2)))
        elif int32 and eng == "gpsimd":
            store(dst, fn.fn(raw(data1).astype(np.int64), raw(data2).astype(np.int64)))
        else:
            store(dst, fn.fn(f32(data1), f32(data2)))
    record(ctx, eng, opc, {"dst": dst}, {"data1": data1, "data2": data2}, flops=dst.size,
           attrs=layout_attrs(dst, data1, data2))


def binary_arith(opc: str, t, op0, op1) -> tuple[AluOp, AluOp]:
    """op0 and op1 as ALU operators, both binary arithmetic (scalar_tensor_tensor, tensor_tensor_scan)."""
    fns = alu(op0, "op0"), alu(op1, "op1")
    for f in fns:
        if f.kind != "arith":
            raise NkiValidationError(opc, "op0/op1", "binary arithmetic operators", f.name, t.name)
    return fns


def _check_operand(opc: str, name: str, fn: AluOp, value, partitions: int, t) -> None:
    """A tensor_scalar-style operand: None/0 for a unary operator, else a scalar or (P, 1) tile — float32 for
    arithmetic operators (S-ISA tensor_scalar), any integer tile for bitvec ones (its bits are used)."""
    if fn.arity == 1:
        if isinstance(value, NkiTensor) or value not in (None, 0):
            raise NkiValidationError(opc, name, f"None or 0 for the unary operator {fn.name}", value, t.name)
        return
    validate.vector_operand(opc, name, value, partitions, t, fp32=fn.kind != "bitvec")


def _apply(fn: AluOp, x, value, reverse: bool, partitions: int):
    if fn.arity == 1:
        return fn.fn(x)
    if fn.kind == "bitvec":
        v = np.int64(value) if not isinstance(value, NkiTensor) else bits(value).reshape(partitions, 1)
        return _binary(fn, x, v, reverse)
    return _binary(fn, x, operand(value, partitions), reverse)


def tensor_scalar(dst, data, op0, operand0, reverse0=False, op1=None, operand1=None, reverse1=False,
                  engine=Engine.unknown, name=None):
    """dst = (data <op0> operand0) <op1> operand1; operands are scalars or (P, 1) tiles broadcast along the free dim;
    `reverse` swaps an operator's inputs. Both operators arithmetic or both bitvec (bitvec: integer dtypes)."""
    opc = "tensor_scalar"
    ctx = current()
    t = ctx.target
    fn0 = alu(op0, "op0")
    fn1 = alu(op1, "op1") if op1 is not None else None
    validate.tiles(opc, t, data=data, dst=dst)
    p = data.shape[0]
    _check_operand(opc, "operand0", fn0, operand0, p, t)
    if fn1 is not None:
        _check_operand(opc, "operand1", fn1, operand1, p, t)
        if (fn0.kind == "bitvec") != (fn1.kind == "bitvec"):
            raise NkiValidationError(opc, "op0/op1", "both arithmetic or both bitvec", (fn0.name, fn1.name), t.name)
    bitvec = fn0.kind == "bitvec"
    if bitvec:
        validate.int_dtypes(opc, {"dst": dst, "data": data}, t)
    eng = _engine_name(opc, engine, ("vector", "scalar", "gpsimd"), "vector", t)
    if eng == "gpsimd":
        if fn0.name != "rsqrt" or fn1 is not None:
            raise NkiValidationError(opc, "engine", "GpSimd tensor_scalar only for op0=rsqrt", fn0.name, t.name)
        validate.gpsimd_no_psum(opc, {"dst": dst, "data": data}, t)
    if eng == "scalar" and t.gen == 3 and (fn0.name, fn1.name if fn1 else None) not in (
            ("multiply", "add"), ("multiply", None), ("add", None)):
        raise NkiValidationError(opc, "op0/op1", "ScalarE on trn2: (multiply, add), (multiply,), (add,)",
                                 (fn0.name, fn1.name if fn1 else None), t.name)
    reads = {"data": data, "operand0": operand0, "operand1": operand1}
    if computes(ctx, (dst,), (data, operand0, operand1)):
        x = bits(data) if bitvec else f32(data)
        x = _apply(fn0, x, operand0, reverse0, p)
        if fn1 is not None:
            x = _apply(fn1, x, operand1, reverse1, p)
        (store_bits if bitvec else store)(dst, x)
    record(ctx, eng, opc, {"dst": dst}, reads, flops=dst.size * (2 if fn1 else 1), attrs=layout_attrs(dst, data))


def scalar_tensor_tensor(dst, data, op0, operand0, op1, operand1, reverse0=False, reverse1=False, name=None):
    """dst = (data <op0> operand0) <op1> operand1 with operand0 a scalar / (P, 1) tile and operand1 a full tile;
    arithmetic operators only; data and operand1 not both in PSUM."""
    opc = "scalar_tensor_tensor"
    ctx = current()
    t = ctx.target
    fn0, fn1 = binary_arith(opc, t, op0, op1)
    validate.tiles(opc, t, data=data, operand1=operand1, dst=dst)
    validate.not_both_psum(opc, "data", data, "operand1", operand1, t)
    p = data.shape[0]
    validate.vector_operand(opc, "operand0", operand0, p, t)
    if computes(ctx, (dst,), (data, operand0, operand1)):
        x = _binary(fn0, f32(data), operand(operand0, p), reverse0)
        store(dst, _binary(fn1, x, f32(operand1), reverse1))
    record(ctx, "vector", opc, {"dst": dst}, {"data": data, "operand0": operand0, "operand1": operand1},
           flops=2 * dst.size, attrs=layout_attrs(dst, data, operand1))


def tensor_reduce(dst, op, data, axis, negate=False, keepdims=False, name=None):
    """dst = op-reduction of data over `axis` (S-ISA tensor_reduce): an int or tuple of trailing contiguous free
    axes ending at the last one (negative axes count from the end; 0, the partition axis, never), float32 math
    (bitvec operators: integer bits), `negate` multiplies the result by -1 (arithmetic operators only).
    dst must hold data.shape[0] partitions x the kept elements per partition; `keepdims` only names the shape
    the caller chose for dst, so both (P, K) and (P, K, 1) are accepted."""
    opc = "tensor_reduce"
    ctx = current()
    t = ctx.target
    fn = alu(op)
    validate.tile(opc, "dst", dst, t)
    validate.tile(opc, "data", data, t)
    axes = tuple(sorted(a % data.ndim for a in ((axis,) if isinstance(axis, int) else axis)))
    if not axes or 0 in axes or axes != tuple(range(axes[0], data.ndim)):
        raise NkiValidationError(opc, "axis", f"trailing contiguous free axes ending at {data.ndim - 1}", axis, t.name)
    kept = math.prod(data.shape[1:axes[0]])
    if dst.shape[0] != data.shape[0] or dst.free_size != kept:
        raise NkiValidationError(opc, "dst", f"{data.shape[0]} partitions x {kept} elements", 
                                 f"{dst.shape[0]} x {dst.free_size}", t.name)
    if fn.kind == "bitvec":
        validate.int_dtypes(opc, {"dst": dst, "data": data}, t)
        if negate:
            raise NkiValidationError(opc, "negate", "only with arithmetic operators", fn.name, t.name)
    if computes(ctx, (dst,), (data,)):
        if fn.kind == "bitvec":
            store_bits(dst, reduce_rows(fn, bits(data).reshape(data.shape[0], kept, -1)))
        else:
            res = reduce_rows(fn, f32(data).reshape(data.shape[0], kept, -1))
            store(dst, -res if negate else res)
    record(ctx, "vector", opc, {"dst": dst}, {"data": data}, flops=data.size, attrs=layout_attrs(dst, data))


def tensor_scalar_reduce(dst, data, op0, operand0, reduce_op, reduce_res, reverse0=False,
                         reduce_cmd=ReduceCmd.reset_reduce, reduce_init=None, name=None):
    """dst = data <op0> operand0; reduce_res[P, 1] = reduce_op over all free elements, through the VectorE
    accumulators (reset_reduce / reduce / load_reduce with reduce_init)."""
    opc = "tensor_scalar_reduce"
    ctx = current()
    t = ctx.target
    reduce_cmd = coerce(ReduceCmd, reduce_cmd, opc, "reduce_cmd")
    fn0, red = alu(op0, "op0"), alu(reduce_op, "reduce_op")
    if fn0.kind == "bitvec":
        raise NkiValidationError(opc, "op0", "an arithmetic operator", fn0.name, t.name)
    if reverse0:
        raise NkiValidationError(opc, "reverse0", "False (S-ISA: reverse0 not supported yet)", reverse0, t.name)
    if reduce_cmd not in (ReduceCmd.reset_reduce, ReduceCmd.reduce, ReduceCmd.load_reduce):
        raise NkiValidationError(opc, "reduce_cmd", "reset_reduce, reduce or load_reduce", reduce_cmd.name, t.name)
    if (reduce_cmd == ReduceCmd.load_reduce) != (reduce_init is not None):
        raise NkiValidationError(opc, "reduce_init", "set exactly when reduce_cmd is load_reduce",
                                 f"reduce_init={reduce_init}, reduce_cmd={reduce_cmd.name}", t.name)
    if red.name not in ("add", "multiply", "maximum", "minimum"):
        raise NkiValidationError(opc, "reduce_op", "add, multiply, maximum or minimum", red.name, t.name)
    validate.tiles(opc, t, data=data, dst=dst)
    p = data.shape[0]
    _check_operand(opc, "operand0", fn0, operand0, p, t)
    validate.vector_operand(opc, "reduce_res", reduce_res, p, t)
    if computes(ctx, (dst, reduce_res), (data, operand0)):
        y = _apply(fn0, f32(data), operand0, False, p)
        store(dst, y)
        acc = update_accumulator(ctx, data, reduce_cmd, reduce_rows(red, y), red.fn, red.identity, reduce_init)
        store(reduce_res, acc)
    record(ctx, "vector", opc, {"dst": dst, "reduce_res": reduce_res}, {"data": data, "operand0": operand0},
           flops=2 * data.size, attrs=layout_attrs(dst, data))


def reciprocal(dst, data, name=None):
    """dst = 1 / data in float32 on VectorE."""
    opc = "reciprocal"
    ctx = current()
    t = ctx.target
    validate.tiles(opc, t, data=data, dst=dst)
    if computes(ctx, (dst,), (data,)):
        with np.errstate(divide="ignore"):
            store(dst, np.float32(1.0) / f32(data))
    record(ctx, "vector", opc, {"dst": dst}, {"data": data}, flops=dst.size, attrs=layout_attrs(dst, data))


def range_select(dst, on_true_tile, comp_op0, comp_op1, bound0, bound1, reduce_cmd=ReduceCmd.reset_reduce,
                 reduce_res=None, reduce_op=None, range_start=0, on_false_value=dtypes.FP32_MIN, name=None):
    """Keep on_true[p, f] where comp_op0(range_start + f, bound0[p]) and comp_op1(range_start + f, bound1[p]),
    else FP32_MIN; max-reduce through the VectorE accumulators into reduce_res. NeuronCore-v3+ (S-ISA).

    Index and bounds compare in float32 (range_start + f must stay below 2^24). The max is taken over the float32
    selected values before the cast into dst, so a fully masked row reduces to FP32_MIN even when dst is bf16 (where
    FP32_MIN becomes -inf) — the S-ISA numerical-stability note relies on this."""
    opc = "range_select"
    ctx = current()
    t = ctx.target
    reduce_cmd = coerce(ReduceCmd, reduce_cmd, opc, "reduce_cmd")
    validate.feature(opc, "op", t.range_select, "range_select needs NeuronCore-v3+", opc, t)
    c0, c1 = alu(comp_op0, "comp_op0"), alu(comp_op1, "comp_op1")
    for c in (c0, c1):
        if c.name not in _CMP_OPS:
            raise NkiValidationError(opc, "comp_op", f"one of {_CMP_OPS}", c.name, t.name)
    red = alu(reduce_op) if reduce_op is not None else alu("maximum")
    if red.name != "maximum":
        raise NkiValidationError(opc, "reduce_op", "maximum", red.name, t.name)
    if np.float32(on_false_value) != np.float32(dtypes.FP32_MIN):
        raise NkiValidationError(opc, "on_false_value", f"FP32_MIN ({dtypes.FP32_MIN})", on_false_value, t.name)
    validate.tiles(opc, t, on_true_tile=on_true_tile, dst=dst)
    if not dtypes.is_float(on_true_tile.dtype):
        raise NkiValidationError(opc, "on_true_tile", "a float dtype", dtypes.name(on_true_tile.dtype), t.name)
    p, f = on_true_tile.shape[0], on_true_tile.free_size
    if not isinstance(range_start, (int, np.integer)) or isinstance(range_start, bool):
        raise NkiValidationError(opc, "range_start", "a compile-time int", range_start, t.name)
    if range_start <= -RANGE_INDEX_LIMIT or range_start + f - 1 >= RANGE_INDEX_LIMIT:
        raise NkiValidationError(opc, "range_start", f"range_start + free index within ±{RANGE_INDEX_LIMIT} "
                                 "(compared in float32)", f"{range_start}..{range_start + f - 1}", t.name)
    for bname, b in (("bound0", bound0), ("bound1", bound1)):
        if not isinstance(b, NkiTensor) or b.dtype != dtypes.float32:
            raise NkiValidationError(opc, bname, f"a float32 ({p}, 1) tile", b, t.name)
        validate.vector_operand(opc, bname, b, p, t)
    if reduce_res is not None:
        validate.vector_operand(opc, "reduce_res", reduce_res, p, t)
    dsts = (dst,) + ((reduce_res,) if reduce_res is not None else ())
    if computes(ctx, dsts, (on_true_tile, bound0, bound1)):
        idx = (np.float32(range_start) + np.arange(f, dtype=np.float32))[None, :]
        mask = (c0.fn(idx, operand(bound0, p)) != 0) & (c1.fn(idx, operand(bound1, p)) != 0)
        out = np.where(mask, f32(on_true_tile), np.float32(dtypes.FP32_MIN))
        store(dst, out)
        acc = update_accumulator(ctx, on_true_tile, reduce_cmd, out.max(axis=1), np.maximum, -np.inf)
        if reduce_res is not None:
            store(reduce_res, acc)
    record(ctx, "vector", opc, {"dst": dst, "reduce_res": reduce_res},
           {"on_true_tile": on_true_tile, "bound0": bound0, "bound1": bound1}, flops=3 * dst.size,
           attrs=layout_attrs(dst, on_true_tile))


def select_reduce(dst, predicate, on_true, on_false, reduce_res=None, reduce_cmd=ReduceCmd.idle, reduce_op=None,
                  reverse_pred=False, name=None):
    """dst = where(predicate (xor reverse_pred), on_true, on_false); optional max-reduce into reduce_res through
    the VectorE accumulators. predicate: int8/uint8/int16/uint16 tile (nonzero = true); on_false: scalar or (P, 1).
    The max is taken over the float32 selected values before the cast into dst; with the default reduce_cmd=idle
    reduce_res reads accumulators that are undefined (NaN) — pass reset_reduce to get the row max."""
    opc = "select_reduce"
    ctx = current()
    t = ctx.target
    reduce_cmd = coerce(ReduceCmd, reduce_cmd, opc, "reduce_cmd")
    red = alu(reduce_op) if reduce_op is not None else alu("maximum")
    if red.name != "maximum":
        raise NkiValidationError(opc, "reduce_op", "maximum", red.name, t.name)
    validate.tiles(opc, t, on_true=on_true, dst=dst, predicate=predicate)
    validate.not_both_psum(opc, "on_true", on_true, "predicate", predicate, t)
    if dtypes.name(predicate.dtype) not in ("int8", "uint8", "int16", "uint16"):
        raise NkiValidationError(opc, "predicate", "int8/uint8/int16/uint16", dtypes.name(predicate.dtype), t.name)
    if dtypes.name(on_true.dtype) in ("int32", "uint32"):
        raise NkiValidationError(opc, "on_true", "not int32/uint32", dtypes.name(on_true.dtype), t.name)
    p = on_true.shape[0]
    validate.vector_operand(opc, "on_false", on_false, p, t)
    if reduce_res is not None:
        validate.vector_operand(opc, "reduce_res", reduce_res, p, t)
        _float_result(opc, reduce_res, t)
    dsts = (dst,) + ((reduce_res,) if reduce_res is not None else ())
    if computes(ctx, dsts, (predicate, on_true, on_false)):
        keep = raw(predicate) != 0
        out = np.where(~keep if reverse_pred else keep, f32(on_true), operand(on_false, p))
        store(dst, out)
        acc = update_accumulator(ctx, on_true, reduce_cmd, out.max(axis=1), np.maximum, -np.inf)
        if reduce_res is not None:
            store(reduce_res, acc)
    record(ctx, "vector", opc, {"dst": dst, "reduce_res": reduce_res},
           {"predicate": predicate, "on_true": on_true, "on_false": on_false}, flops=dst.size,
           attrs=layout_attrs(dst, on_true))


def exponential(dst, src, max_value=0.0, reduce_res=None, reduce_cmd=ReduceCmd.idle, reduce_init=0.0, name=None):
    """dst = exp(src - max_value) on VectorE, optional running sum via the accumulators (reset_reduce starts at 0,
    load_reduce at reduce_init; idle leaves them undefined). max_value: scalar or float32 (P, 1). NeuronCore-v4 only
    (S-ISA exponential)."""
    opc = "exponential"
    ctx = current()
    t = ctx.target
    reduce_cmd = coerce(ReduceCmd, reduce_cmd, opc, "reduce_cmd")
    validate.feature(opc, "op", t.exponential, "exponential needs NeuronCore-v4", opc, t)
    validate.tiles(opc, t, src=src, dst=dst)
    p = src.shape[0]
    validate.vector_operand(opc, "max_value", max_value, p, t, fp32=True)
    if reduce_cmd == ReduceCmd.reset:
        raise NkiValidationError(opc, "reduce_cmd", "idle, reset_reduce, reduce or load_reduce", "reset", t.name)
    if reduce_cmd != ReduceCmd.load_reduce and reduce_init != 0.0:
        raise NkiValidationError(opc, "reduce_init", "0.0 unless reduce_cmd is load_reduce", reduce_init, t.name)
    if reduce_res is not None:
        validate.vector_operand(opc, "reduce_res", reduce_res, p, t)
        _float_result(opc, reduce_res, t)
    dsts = (dst,) + ((reduce_res,) if reduce_res is not None else ())
    if computes(ctx, dsts, (src, max_value)):
        out = np.exp(f32(src) - operand(max_value, p))
        store(dst, out)
        acc = update_accumulator(ctx, src, reduce_cmd, out.sum(axis=1), np.add, 0.0, reduce_init)
        if reduce_res is not None:
            store(reduce_res, acc)
    record(ctx, "vector", opc, {"dst": dst, "reduce_res": reduce_res}, {"src": src, "max_value": max_value},
           flops=2 * dst.size, attrs=layout_attrs(dst, src))
