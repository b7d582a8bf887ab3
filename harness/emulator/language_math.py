"""`nki.language` math of NKI 0.6 beyond `language.py`: activation derivatives, tan, rounding (ceil / floor /
trunc), logical_not, var, all, rms_norm, dropout, the operator constants `prelu` and `average`, and fmod / mod
(rejected, like divide). Every function returns a new SBUF tile and lowers to `nisa` instructions, which validate,
compute and record themselves.

Lowerings the docs do not give (the compiler's are unpublished) are the emulator's choice, stated per function;
they use only documented instructions, so they are legal on every generation and the trace costs them.
"""

from __future__ import annotations

import math

from . import dtypes, operators
from .errors import NkiValidationError
from .isa import activation, tensor_copy_predicated, tensor_scalar
from .isa import dropout as _isa_dropout
from .isa import reciprocal as _isa_reciprocal
from .isa import tensor_tensor
from .isa.enums import reduce_cmd
from .language_lowering import make_activation, reduce, reduce_shape, result_dtype
from .memory import allocate
from .tensor import NkiTensor

gelu_dx, gelu_apprx_sigmoid_dx = make_activation("gelu_dx"), make_activation("gelu_apprx_sigmoid_dx")
silu_dx, erf_dx = make_activation("silu_dx"), make_activation("erf_dx")


class OperatorConstant:
    """An `nl` name that only stands for an operator passed as `op=` (`nl.prelu` to activate2, `nl.average` to
    tensor_partition_reduce); it is not a callable tile function."""

    def __init__(self, name: str):
        self.__name__ = self.name = name
        operators.bind(self, name)

    def __call__(self, *args, **kwargs):
        raise TypeError(f"nl.{self.name} is an operator constant: pass it as op= to a nki.isa instruction")

    def __repr__(self) -> str:
        return f"nl.{self.name}"


prelu, average = OperatorConstant("prelu"), OperatorConstant("average")


def _new(x: NkiTensor, dtype) -> NkiTensor:
    return allocate(x.shape, dtype, "sbuf")


def tan(x: NkiTensor, dtype=None) -> NkiTensor:
    """tan(x) = sin(x) * (1 / cos(x)): two ScalarE activations (range-reduced like `nl.sin`), a VectorE
    reciprocal and a multiply (lowering chosen by the emulator; there is no tan activation)."""
    s, c = _new(x, dtypes.float32), _new(x, dtypes.float32)
    activation(dst=s, op="sin", data=x)
    activation(dst=c, op="cos", data=x)
    _isa_reciprocal(dst=c, data=c)
    out = _new(x, result_dtype(dtype, x))
    tensor_tensor(dst=out, data1=s, data2=c, op="multiply")
    return out


ROUND_MAGIC = 1.5 * 2.0 ** 23  # (x + M) - M rounds an fp32 |x| < 2^22 to the nearest integer (RNE)
INTEGRAL_FROM = 2.0 ** 22  # every fp32 with |x| >= 2^22 already is an integer (ulp >= 0.5, and RNE keeps it)


def _rounded(x: NkiTensor, direction: str) -> NkiTensor:
    """fp32 floor / ceil of x on VectorE: r = (x + M) - M (nearest), then r -= (r > x) for floor or r += (r < x)
    for ceil; |x| >= 2^22 (already integral, and beyond the magic number's exact range) is copied unchanged."""
    r = _new(x, dtypes.float32)
    tensor_scalar(dst=r, data=x, op0="add", operand0=ROUND_MAGIC, op1="subtract", operand1=ROUND_MAGIC)
    fix = _new(x, dtypes.float32)
    tensor_tensor(dst=fix, data1=r, data2=x, op="greater" if direction == "floor" else "less")
    tensor_tensor(dst=r, data1=r, data2=fix, op="subtract" if direction == "floor" else "add")
    big = _new(x, dtypes.DTYPES["uint8"])
    tensor_scalar(dst=big, data=x, op0="abs", operand0=None, op1="greater_equal", operand1=INTEGRAL_FROM)
    src = x if x.dtype == dtypes.float32 else _converted(x)
    tensor_copy_predicated(dst=r, src=src, predicate=big)
    return r


def _converted(x: NkiTensor) -> NkiTensor:
    out = _new(x, dtypes.float32)
    tensor_scalar(dst=out, data=x, op0="multiply", operand0=1.0)
    return out


def _round_op(direction: str):
    def fn(x: NkiTensor, dtype=None) -> NkiTensor:
        if direction == "trunc":  # trunc(x) = sign(x) * floor(|x|)
            ax = _new(x, dtypes.float32)
            tensor_scalar(dst=ax, data=x, op0="abs", operand0=None)
            r = _rounded(ax, "floor")
            sign = _new(x, dtypes.float32)
            activation(dst=sign, op="sign", data=x)
        else:
            r, sign = _rounded(x, direction), None
        out = _new(x, result_dtype(dtype, x))
        if sign is None:
            tensor_scalar(dst=out, data=r, op0="multiply", operand0=1.0)
        else:
            tensor_tensor(dst=out, data1=r, data2=sign, op="multiply")
        return out
    fn.__name__ = fn.__qualname__ = direction
    fn.__doc__ = (f"Element-wise {direction}(x) as a new SBUF tile (VectorE lowering chosen by the emulator: nearest "
                  f"integer by the fp32 magic-number add, then a compare-and-correct; exact for every fp32 value).")
    return fn


ceil, floor, trunc = _round_op("ceil"), _round_op("floor"), _round_op("trunc")


def _unsupported(name: str):
    def fn(x, y, dtype=None):
        raise NkiValidationError(name, "op", "a hardware ALU operator (S-RN known issue: nl.fmod / nl.mod simulate "
                                 "but fail to compile for Trainium)", f"nl.{name}")
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = "Not a NeuronCore instruction (S-RN known issue, as nl.divide): raises NkiValidationError."
    return fn


fmod, mod = _unsupported("fmod"), _unsupported("mod")


def logical_not(x: NkiTensor, dtype=None) -> NkiTensor:
    """NOT x "implemented as XOR with 1" (S-NL): bitwise XOR with 1 for integer tiles (so a 2 gives 3, as on
    hardware), logical XOR with 1 (1.0 where x == 0) for float tiles; the result has x's dtype by default."""
    out = _new(x, result_dtype(dtype, x))
    op = "bitwise_xor" if dtypes.is_int(x.dtype) and dtypes.is_int(out.dtype) else "logical_xor"
    tensor_scalar(dst=out, data=x, op0=op, operand0=1)
    return out


def all(x: NkiTensor, axis, dtype=None) -> NkiTensor:  # noqa: A001 - the NKI name
    """Whether every element along `axis` (trailing free axes) is nonzero: a logical_and tensor_reduce (1 / 0)."""
    return reduce(x, axis, "logical_and", dtype, keepdims=False)


def _mean(x: NkiTensor, axis, count: int) -> NkiTensor:
    total = reduce(x, axis, "add", dtypes.float32, keepdims=True)
    tensor_scalar(dst=total, data=total, op0="multiply", operand0=1.0 / count)
    return total


def var(x: NkiTensor, axis, dtype=None, keepdims=False) -> NkiTensor:
    """Population variance along `axis` (trailing free axes) in fp32: mean, x - mean (the mean broadcast along
    the reduced axes), mean of the squares. The result always has the keepdims=True shape (S-NL: "keepdims:
    currently ignored")."""
    axes = tuple(sorted(a % x.ndim for a in ((axis,) if isinstance(axis, int) else axis)))
    count = math.prod(x.shape[a] for a in axes)
    mean = _mean(x, axes, count)
    spread = mean
    for a in axes:
        spread = spread.broadcast(a, x.shape[a])
    d = _new(x, dtypes.float32)
    tensor_tensor(dst=d, data1=x, data2=spread, op="subtract")
    tensor_tensor(dst=d, data1=d, data2=d, op="multiply")
    out_f32 = _mean(d, axes, count)
    out = allocate(reduce_shape(x, axes, True), result_dtype(dtype, x), "sbuf")
    tensor_scalar(dst=out, data=out_f32, op0="multiply", operand0=1.0)
    return out


def rms_norm(x: NkiTensor, w: NkiTensor, axis, n: int, epsilon: float = 1e-6, dtype=None,
             compute_dtype=None) -> NkiTensor:
    """x / sqrt(sum(x^2 along axis) / n + epsilon) * w. `axis` must cover every free dim of x (the RMS is per
    partition), w has x's layout. Lowering: ScalarE square with the per-partition sum, ScalarE rsqrt(sum / n +
    eps) (bias as a memset (P, 1) tile, legal on NeuronCore-v2), VectorE scale, VectorE multiply by w; the
    intermediates are `compute_dtype` (default float32)."""
    axes = tuple(sorted(a % x.ndim for a in ((axis,) if isinstance(axis, int) else axis)))
    if axes != tuple(range(1, x.ndim)):
        raise NkiValidationError("rms_norm", "axis", f"every free axis of x {tuple(range(1, x.ndim))}", axis)
    if not isinstance(w, NkiTensor) or w.shape[0] != x.shape[0] or w.free_size != x.free_size:
        raise NkiValidationError("rms_norm", "w", f"a tile of x's layout ({x.shape[0]} x {x.free_size})",
                                 getattr(w, "shape", w))
    work = dtypes.to_dtype(compute_dtype) if compute_dtype is not None else dtypes.float32
    p = x.shape[0]
    sq = _new(x, work)
    ss = allocate((p, 1), dtypes.float32, "sbuf")
    activation(dst=sq, op="square", data=x, reduce_op="add", reduce_res=ss, reduce_cmd=reduce_cmd.reset_reduce)
    eps = allocate((p, 1), dtypes.float32, "sbuf")
    tensor_scalar(dst=eps, data=ss, op0="multiply", operand0=0.0, op1="add", operand1=float(epsilon))
    activation(dst=ss, op="rsqrt", data=ss, scale=1.0 / float(n), bias=eps)
    y = _new(x, work)
    tensor_scalar(dst=y, data=x, op0="multiply", operand0=ss)
    out = _new(x, result_dtype(dtype, x))
    tensor_tensor(dst=out, data1=y, data2=w, op="multiply")
    return out


def dropout(x: NkiTensor, rate, dtype=None) -> NkiTensor:
    """x with each element zeroed with probability `rate` (a scalar or an (x.shape[0], 1) tile): `nisa.dropout`
    on VectorE (kept elements are not rescaled, as S-ISA dropout describes)."""
    if dtype is not None and result_dtype(dtype, x) != x.dtype:
        tmp = _new(x, x.dtype)
        _isa_dropout(dst=tmp, data=x, prob=rate)
        out = _new(x, result_dtype(dtype, x))
        tensor_scalar(dst=out, data=tmp, op0="multiply", operand0=1.0)
        return out
    out = _new(x, x.dtype)
    _isa_dropout(dst=out, data=x, prob=rate)
    return out


__all__ = ["all", "average", "ceil", "dropout", "erf_dx", "floor", "fmod", "gelu_apprx_sigmoid_dx", "gelu_dx",
           "logical_not", "mod", "prelu", "rms_norm", "silu_dx", "tan", "trunc", "var"]
