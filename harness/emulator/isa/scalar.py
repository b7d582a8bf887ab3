"""ScalarE (ACT) instructions: `activation` and `activation_reduce` (S-ISA).

`out = op(data * scale + bias)` in float32, cast into dst. scale: scalar or (P, 1) float32; bias:
(P, 1) tile, or a compile-time scalar on NeuronCore-v3+ (gen2 needs a vector). The 128 `reduce_regs`
(one float32 per compute lane = absolute partition of `data`) persist across instructions: `reset`
zeroes them, `reduce` adds the free-dim sum of `out`, `reset_reduce` replaces them with it, `idle`
leaves them; `reduce_res` [P, 1] reads them out (after the update, whatever the command — with `idle`
it reads the unchanged registers).
`reduce_op` must be `nl.add` for `activation`; `activation_reduce` also takes maximum/minimum on v3+
(S-ISA only says "on NeuronCore-v2, the reduce_op must be nl.add").

Reading chosen where S-ISA is ambiguous: its pseudo-code computes `result = reduce_op(reduce_regs,
reduce_op(output))` and then `reduce_regs += result`, which taken literally would add the old registers
twice; the prose ("reduce activated data over existing values in reduce_regs") gives
`reduce_regs = reduce_regs + sum(output)`, which is what the emulator does. The reduction sees the
float32 activation results before they are cast into dst. The registers start undefined (NaN) in every
program instance, so a `reduce` before any reset shows up.
"""

from __future__ import annotations

import numpy as np

from .. import validate
from ..errors import NkiValidationError
from ..operators import activation as activation_fn
from ..operators import alu
from ..tensor import NkiTensor
from .enums import coerce
from .enums import reduce_cmd as ReduceCmd
from .issue import computes, current, f32, lanes, layout_attrs, operand, record, store


def _check(opc: str, t, dst, data, op_name: str, bias, scale) -> None:
    validate.tiles(opc, t, data=data, dst=dst)
    p = data.shape[0]
    validate.vector_operand(opc, "scale", scale, p, t, fp32=True)
    if bias is not None:
        validate.vector_operand(opc, "bias", bias, p, t)
        if not isinstance(bias, NkiTensor):
            validate.feature(opc, "bias", t.activation_scalar_bias,
                             "a (P, 1) bias tile on NeuronCore-v2 (scalar bias needs v3+)", bias, t)
        if op_name == "reciprocal" and t.gen == 2:
            raise NkiValidationError(opc, "bias", "no bias with op=reciprocal on NeuronCore-v2", bias, t.name)


def _run(ctx, opc, dst, op, data, bias, scale, reduce_op, reduce_res, reduce_cmd) -> None:
    t = ctx.target
    reduce_cmd = coerce(ReduceCmd, reduce_cmd, opc, "reduce_cmd")
    op_name, fn = activation_fn(op)
    _check(opc, t, dst, data, op_name, bias, scale)
    p = data.shape[0]
    if reduce_op is not None or reduce_res is not None:
        red = alu(reduce_op if reduce_op is not None else "add", "reduce_op")
        allowed = ("add",) if opc == "activation" or t.gen == 2 else ("add", "maximum", "minimum")
        if red.name not in allowed:
            raise NkiValidationError(opc, "reduce_op", f"one of {allowed}", red.name, t.name)
    else:
        red = alu("add")
    if reduce_res is not None:
        validate.vector_operand(opc, "reduce_res", reduce_res, p, t)
    dsts = (dst,) + ((reduce_res,) if reduce_res is not None else ())
    if computes(ctx, dsts, (data, bias, scale)):
        with np.errstate(all="ignore"):  # fp32 overflow to ±inf is the hardware result, not an error
            x = f32(data) * operand(scale, p)
            if bias is not None:
                x = x + operand(bias, p)
            out = fn(x).astype(np.float32, copy=False)
        store(dst, out)
        regs = ctx.act_regs[lanes(data)]
        if reduce_cmd in (ReduceCmd.reset, ReduceCmd.reset_reduce):
            regs[...] = red.identity
        if reduce_cmd in (ReduceCmd.reduce, ReduceCmd.reset_reduce):
            regs[...] = red.fn(regs, red.fn.reduce(out, axis=1))
        if reduce_res is not None:
            store(reduce_res, regs.reshape(p, 1))
    record(ctx, "scalar", opc, {"dst": dst, "reduce_res": reduce_res}, {"data": data, "bias": bias, "scale": scale},
           flops=dst.size * (3 if bias is not None else 2), attrs=dict(layout_attrs(dst, data), func=op_name))


def activation(dst, op, data, bias=None, scale=1.0, reduce_op=None, reduce_res=None, reduce_cmd=ReduceCmd.idle,
               name=None):
    """dst = op(data * scale + bias) on ScalarE, with the optional per-partition sum into reduce_regs (see module)."""
    _run(current(), "activation", dst, op, data, bias, scale, reduce_op, reduce_res, reduce_cmd)


def activation_reduce(dst, op, data, reduce_op, reduce_res, bias=None, scale=1.0, name=None):
    """activation with reduce_cmd=reset_reduce and reduce_res read out: reduce_res[P, 1] = reduce_op(out, free)."""
    if reduce_res is None:
        raise TypeError("activation_reduce: reduce_res is required (a (P, 1) tile)")
    _run(current(), "activation_reduce", dst, op, data, bias, scale, reduce_op, reduce_res, ReduceCmd.reset_reduce)




ACTIVATE2_PAIRS = (("multiply", "add"), ("multiply", "subtract"), ("multiply", "bypass"), ("add", "bypass"),
                   ("subtract", "bypass"), ("bypass", "bypass"))  # the (op0, op1) pipelines of activate2 — S-ISA
ACTIVATE2_REDUCE_OPS = ("add", "maximum", "minimum", "abs_max", "abs_min")
_REDUCE_IDENTITY = {"add": 0.0, "maximum": -np.inf, "minimum": np.inf, "abs_max": 0.0, "abs_min": np.inf}


def _stage(fn, x, imm, reverse: bool, p: int):
    return x if fn.name == "bypass" else (fn.fn(operand(imm, p), x) if reverse else fn.fn(x, operand(imm, p)))


def activate2(dst, op, data, imm0, imm1, op0, op1, relu_param=0.0, reverse0=False, reverse1=False, reduce_op=None,
              reduce_res=None, reduce_cmd=ReduceCmd.idle, name=None):
    """dst = op((data <op0> imm0) <op1> imm1, relu_param) on ScalarE (NeuronCore-v4), with the optional
    per-partition reduction of the activated values into the ScalarE reduce registers (shared with activation):
    reset / reset_reduce start them at reduce_op's identity, reduce / reset_reduce fold the row in, idle leaves
    them; reduce_res (P, 1) reads them out. (op0, op1) is one of ACTIVATE2_PAIRS; imm0 / imm1 / relu_param are
    scalars or (P, 1) tiles; `reverse` swaps an operator's inputs (imm <op> x). fp32 math, cast into dst."""
    opc = "activate2"
    ctx = current()
    t = ctx.target
    validate.feature(opc, "op", t.gen >= 4, "activate2 needs NeuronCore-v4", opc, t)
    reduce_cmd = coerce(ReduceCmd, reduce_cmd, opc, "reduce_cmd")
    act_name, fn = activation_fn(op)
    f0, f1 = alu(op0, "op0"), alu(op1, "op1")
    if (f0.name, f1.name) not in ACTIVATE2_PAIRS:
        raise NkiValidationError(opc, "op0/op1", f"one of {ACTIVATE2_PAIRS}", (f0.name, f1.name), t.name)
    for flag, f, what in ((reverse0, f0, "reverse0"), (reverse1, f1, "reverse1")):
        if flag and f.name == "bypass":
            raise NkiValidationError(opc, what, "only with a non-bypass operator", flag, t.name)
    validate.tiles(opc, t, data=data, dst=dst)
    p = data.shape[0]
    for pname, v in (("imm0", imm0), ("imm1", imm1), ("relu_param", relu_param)):
        validate.vector_operand(opc, pname, v, p, t)
    red = None
    if reduce_op is not None or reduce_res is not None:
        red = alu(reduce_op if reduce_op is not None else "add", "reduce_op")
        if red.name not in ACTIVATE2_REDUCE_OPS:
            raise NkiValidationError(opc, "reduce_op", f"one of {ACTIVATE2_REDUCE_OPS}", red.name, t.name)
    if reduce_res is not None:
        validate.vector_operand(opc, "reduce_res", reduce_res, p, t)
    dsts = (dst,) + ((reduce_res,) if reduce_res is not None else ())
    if computes(ctx, dsts, (data, imm0, imm1, relu_param)):
        with np.errstate(all="ignore"):
            x = _stage(f1, _stage(f0, f32(data), imm0, reverse0, p), imm1, reverse1, p)
            out = (fn(x, operand(relu_param, p)) if act_name == "prelu" else fn(x)).astype(np.float32, copy=False)
        store(dst, out)
        regs = ctx.act_regs[lanes(data)]
        if red is not None and reduce_cmd in (ReduceCmd.reset, ReduceCmd.reset_reduce):
            regs[...] = _REDUCE_IDENTITY[red.name]
        if red is not None and reduce_cmd in (ReduceCmd.reduce, ReduceCmd.reset_reduce):
            row = out[:, 0] if out.shape[1] else np.full(p, _REDUCE_IDENTITY[red.name], np.float32)
            for i in range(1, out.shape[1]):
                row = red.fn(row, out[:, i])
            regs[...] = red.fn(regs, row)
        if reduce_res is not None:
            store(reduce_res, regs.reshape(p, 1))
    flops = dst.size * (1 + sum(f.name != "bypass" for f in (f0, f1)))
    record(ctx, "scalar", opc, {"dst": dst, "reduce_res": reduce_res},
           {"data": data, "imm0": imm0, "imm1": imm1, "relu_param": relu_param}, flops=flops,
           attrs=dict(layout_attrs(dst, data), func=act_name))
