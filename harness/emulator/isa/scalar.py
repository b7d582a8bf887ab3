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


