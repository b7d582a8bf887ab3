"""How `nl` convenience ops lower to `nisa` instructions (shared by `language.py` and `language_math.py`):
result dtypes, binary ops (tensor_tensor, or tensor_scalar for a scalar / (P, 1) operand), activations
(ScalarE), reductions over trailing free axes (VectorE). Every op makes its result a new SBUF tile."""

from __future__ import annotations

import builtins

from . import dtypes, operators
from .errors import NkiValidationError
from .isa import activation, tensor_reduce, tensor_scalar, tensor_tensor
from .memory import allocate
from .tensor import NkiTensor


def result_dtype(dtype, *xs):
    """`dtype` if given, else the widest float input dtype (the widest input dtype if none is a float)."""
    if dtype is not None:
        return dtypes.to_dtype(dtype)
    ts = [x.dtype for x in xs if isinstance(x, NkiTensor)]
    floats = [d for d in ts if dtypes.is_float(d)]
    return builtins.max(floats or ts, key=lambda d: d.itemsize)


def binary_op(x, y, op, dtype) -> NkiTensor:
    """x <op> y: tensor_tensor for two tiles of one layout, tensor_scalar for a scalar / (P, 1) tile."""
    if not isinstance(x, NkiTensor) and not isinstance(y, NkiTensor):
        raise TypeError("x, y: at least one must be a tile")
    if isinstance(x, NkiTensor) and isinstance(y, NkiTensor) and x.free_size == y.free_size \
            and x.shape[0] == y.shape[0]:
        dst = allocate(x.shape, result_dtype(dtype, x, y), "sbuf")
        tensor_tensor(dst=dst, data1=x, data2=y, op=op)
        return dst
    big, small, reverse = (x, y, False) if isinstance(x, NkiTensor) and (
        not isinstance(y, NkiTensor) or y.free_size == 1) else (y, x, True)
    if isinstance(small, NkiTensor) and (small.free_size != 1 or small.shape[0] != big.shape[0]):
        raise NkiValidationError(operators.op_name(op), "x/y", "same shape, or a (P, 1) tile / scalar against a tile "
                                 "(nl ops do not broadcast otherwise)", f"{list(x.shape)} and {list(y.shape)}")
    dst = allocate(big.shape, result_dtype(dtype, big), "sbuf")
    tensor_scalar(dst=dst, data=big, op0=op, operand0=small, reverse0=reverse)
    return dst


def make_binary(name: str, default_dtype=None):
    """The `nl.<name>(x, y, dtype=None)` function, bound as the ALU operator `name`."""
    def fn(x, y, dtype=default_dtype):
        return binary_op(x, y, fn, dtype)
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"Element-wise {name}(x, y) as a new SBUF tile (tensor_tensor, or tensor_scalar for a scalar/(P,1))."
    return operators.bind(fn, name)


def make_activation(name: str):
    """The `nl.<name>(x, dtype=None)` function (ScalarE activation), bound as the activation function `name`."""
    def fn(x, dtype=None):
        dst = allocate(x.shape, result_dtype(dtype, x), "sbuf")
        activation(dst=dst, op=fn, data=x)
        return dst
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"Element-wise {name}(x) on ScalarE as a new SBUF tile; also an activation function for nisa ops."
    return operators.bind(fn, name)


def reduce_shape(x: NkiTensor, axis, keepdims: bool) -> list[int]:
    """The result shape of reducing `axis` (int or tuple) of x (on-chip results stay >= 2-D)."""
    axes = tuple(sorted(a % x.ndim for a in ((axis,) if isinstance(axis, int) else axis)))
    shape = [1 if d in axes else n for d, n in enumerate(x.shape)] if keepdims else \
        [n for d, n in enumerate(x.shape) if d not in axes]
    while len(shape) < 2:
        shape.append(1)
    return shape


def reduce(x: NkiTensor, axis, op, dtype, keepdims: bool, negate: bool = False) -> NkiTensor:
    """op-reduction of x over trailing free axes (VectorE tensor_reduce) as a new SBUF tile."""
    dst = allocate(reduce_shape(x, axis, keepdims), result_dtype(dtype, x), "sbuf")
    tensor_reduce(dst=dst, op=op, data=x, axis=axis, negate=negate, keepdims=keepdims)
    return dst
