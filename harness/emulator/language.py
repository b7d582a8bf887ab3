"""`nki.language` (nl) of the emulator: dtypes, buffers, tensor creation, loops, program ids, and the
convenience ops (experimental in NKI 0.3+, S-NL) lowered to `nisa` instructions the way the SDK
describes them ("may lower to one or more nki.isa operations", S-LG).

Convenience ops return a new SBUF tile (matmul/transpose: PSUM). Binary ops do not broadcast except a
(P, 1) tile or a scalar against a tile (lowered to `tensor_scalar`), as on hardware (S-RN known issue).
Every function here that names an ALU operator or activation (`add`, `exp`, …) can also be passed as
`op=` to `nisa` instructions.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np

from nkilab.harness.chips import get_target

from . import context, dtypes, operators
from .errors import NkiTraceError, NkiValidationError
from .language_data import (DType, MemoryRegion, broadcast_to, expand_dims,  # noqa: F401 - re-exported as nl.*
                            gather_flattened, is_hbm, is_on_chip, is_psum, is_sbuf, load_transpose2d, rand,
                            random_seed, shared_constant, shared_identity_matrix, while_loop)
from .language_lowering import make_activation as _make_activation
from .language_lowering import make_binary as _make_binary
from .language_lowering import reduce as _reduce
from .language_lowering import result_dtype as _result_dtype
from .language_math import (all, average, ceil, dropout, erf_dx, floor, fmod,  # noqa: F401 - re-exported as nl.*
                            gelu_apprx_sigmoid_dx, gelu_dx, logical_not, mod, prelu, rms_norm, silu_dx, tan, trunc,
                            var)
from .nki_object import NKIObject  # noqa: F401 - re-exported as nl.NKIObject
from .isa import activation, dma_copy, memset, nc_matmul, nc_transpose, reduce_cmd
from .isa import reciprocal as _reciprocal
from .isa import tensor_copy, tensor_copy_predicated, tensor_reduce, tensor_scalar
from .registers import VirtualRegister
from .memory import allocate
from .indexing import DynSlice
from .tensor import LEGACY_OPERATORS, NkiTensor

# ---- dtypes (S-NL) ----------------------------------------------------------------------------------
bool_ = dtypes.DTYPES["bool"]
int8, int16, int32 = dtypes.DTYPES["int8"], dtypes.DTYPES["int16"], dtypes.DTYPES["int32"]
uint8, uint16, uint32 = dtypes.DTYPES["uint8"], dtypes.DTYPES["uint16"], dtypes.DTYPES["uint32"]
float16, float32, tfloat32 = dtypes.DTYPES["float16"], dtypes.DTYPES["float32"], dtypes.DTYPES["tfloat32"]
bfloat16 = dtypes.DTYPES["bfloat16"]
float8_e4m3, float8_e4m3fn = dtypes.DTYPES["float8_e4m3"], dtypes.DTYPES["float8_e4m3fn"]
float8_e5m2, float8_e8m0fnu = dtypes.DTYPES["float8_e5m2"], dtypes.DTYPES["float8_e8m0fnu"]
float8_e5m2_x4, float8_e4m3fn_x4 = dtypes.DTYPES["float8_e5m2_x4"], dtypes.DTYPES["float8_e4m3fn_x4"]
float4_e2m1fn_x4 = dtypes.DTYPES["float4_e2m1fn_x4"]
fp32 = float32  # the legacy alias used as `nl.fp32.min` in masking code

# ---- buffers (S-NL MemoryRegion; `hbm` is the alias of private_hbm) ------------------------------------
sbuf, psum, shared_hbm = MemoryRegion.sbuf, MemoryRegion.psum, MemoryRegion.shared_hbm
private_hbm = hbm = MemoryRegion.private_hbm


class _TileSize:
    """`nl.tile_size`: hardware tile limits of the running kernel's target (default target outside a run)."""

    @property
    def _target(self):
        ctx = context.active()
        return ctx.target if ctx else get_target(neuron=True)

    pmax = property(lambda self: self._target.pmax)
    psum_fmax = property(lambda self: self._target.psum_bank_bytes // 4)
    psum_bank_fmax = psum_fmax
    psum_bank_fmax_bytes = property(lambda self: self._target.psum_bank_bytes)
    psum_num_banks = property(lambda self: self._target.psum_banks)
    gemm_stationary_fmax = property(lambda self: self._target.stationary_fmax)
    gemm_moving_fmax = property(lambda self: self._target.psum_bank_bytes // 4)
    bn_stats_fmax = 512
    sbuf_fmax_bytes = property(lambda self: self._target.sbuf_bytes)
    total_available_sbuf_size = sbuf_fmax_bytes


tile_size = _TileSize()


# ---- tensors -----------------------------------------------------------------------------------------
def ndarray(shape, dtype, buffer=sbuf, name: str = "", address=None) -> NkiTensor:
    """A new uninitialised tensor (NaN / sentinel filled) of `shape` and `dtype` in `buffer`; `address=(partition,
    byte_offset)` places an SBUF/PSUM tile in physical memory (see `memory.py`)."""
    return allocate(shape, dtype, buffer or sbuf, name, address=address)


def full(shape, fill_value, dtype, buffer=sbuf, name: str = "") -> NkiTensor:
    """A new tensor filled with `fill_value` (on-chip: one memset instruction)."""
    t = allocate(shape, dtype, buffer or sbuf, name)
    if t.on_chip:
        value = int(fill_value) if dtypes.is_int(t.dtype) else float(fill_value)
        memset(t, value)
    elif t.storage.data is not None:
        t.storage.data[...] = dtypes.cast(np.array([fill_value], np.float32), t.dtype)
    return t


def zeros(shape, dtype, buffer=sbuf, name: str = "") -> NkiTensor:
    return full(shape, 0, dtype, buffer, name)


def ones(shape, dtype, buffer=sbuf, name: str = "") -> NkiTensor:
    return full(shape, 1, dtype, buffer, name)


def zeros_like(a: NkiTensor, dtype=None, buffer=None, name: str = "") -> NkiTensor:
    return zeros(a.shape, dtype or a.dtype, buffer or a.buffer, name)


def empty_like(a: NkiTensor, dtype=None, buffer=None, name: str = "") -> NkiTensor:
    return ndarray(a.shape, dtype or a.dtype, buffer or a.buffer, name)


def ds(start: int, size: int) -> DynSlice:
    """Slice `start : start + size`."""
    return DynSlice(int(start), int(size))


# ---- loops and programs ------------------------------------------------------------------------------
def affine_range(start, stop=None, step=1):
    """Deprecated alias of `range` (S-NL)."""
    return range(start, stop, step) if stop is not None else range(start)


sequential_range = static_range = affine_range


def _bound(v) -> int:
    if isinstance(v, VirtualRegister):
        if v.value is None:
            raise NkiTraceError("loop bound register holds a value unknown in trace mode; run in mode='full'")
        return v.value
    return int(v)


def dynamic_range(start, stop=None, step=1):
    """Runtime loop (bounds may be registers); yields read-only loop registers."""
    lo, hi = (0, _bound(start)) if stop is None else (_bound(start), _bound(stop))
    for i in range(lo, hi, int(step)):
        yield VirtualRegister(i, frozen=True)


def fori_loop(lower, upper, body_fun, step=1) -> None:
    """Runtime loop: calls body_fun(i) with i a read-only VirtualRegister (usable as `.ap(scalar_offset=i)`)."""
    if int(step) <= 0:
        raise ValueError(f"step: {step} must be a positive compile-time int")
    for i in dynamic_range(lower, upper, step):
        body_fun(i)


def program_id(axis: int = 0) -> int:
    """This program instance's index along `axis` (LNC: 0 or 1)."""
    return context.current().program_id if axis == 0 else 0


def num_programs(axes: int = 0) -> int:
    """Program instances along `axes` (the LNC degree; 1 without LNC)."""
    return context.current().lnc if axes == 0 else 1


def program_ndim() -> int:
    return 1 if context.current().lnc > 1 else 0


@contextlib.contextmanager
def no_reorder():
    """Program order is already preserved by the emulator."""
    yield


def device_print(prefix: str, tensor: NkiTensor) -> None:
    """Print a tensor's values (full mode; trace mode prints its shape)."""
    vals = tensor.values() if context.current().full else None
    print(prefix, vals if vals is not None else f"<{tensor!r}: values not computed>")


# ---- data movement -----------------------------------------------------------------------------------
def load(src: NkiTensor, dtype=None) -> NkiTensor:
    """A new SBUF tile holding src (HBM); 1-D src becomes (1, n)."""
    shape = src.shape if src.ndim >= 2 else (1, src.shape[0])
    dst = ndarray(shape, dtype or src.dtype, sbuf)
    dma_copy(dst=dst, src=src)
    return dst


def store(dst: NkiTensor, value: NkiTensor) -> None:
    """dst (HBM) = value (SBUF; not PSUM)."""
    dma_copy(dst=dst, src=value)


def copy(x: NkiTensor, dtype=None) -> NkiTensor:
    """A new SBUF tile = x (VectorE tensor_copy, bit-exact for equal dtypes)."""
    dst = ndarray(x.shape, dtype or x.dtype, sbuf)
    tensor_copy(dst=dst, src=x)
    return dst


# ---- element-wise ------------------------------------------------------------------------------------
add, subtract, multiply = (_make_binary(n) for n in ("add", "subtract", "multiply"))
LEGACY_OPERATORS.update(add=add, subtract=subtract, multiply=multiply)  # NkiTensor's a + b, a - b, a * b
maximum, minimum, power = (_make_binary(n) for n in ("maximum", "minimum", "power"))
abs_max, abs_min = _make_binary("abs_max"), _make_binary("abs_min")
equal, not_equal, greater, greater_equal, less, less_equal = (
    _make_binary(n, bool_) for n in ("equal", "not_equal", "greater", "greater_equal", "less", "less_equal"))
logical_and, logical_or, logical_xor = (_make_binary(n, bool_) for n in ("logical_and", "logical_or", "logical_xor"))
bitwise_and, bitwise_or, bitwise_xor = (_make_binary(n) for n in ("bitwise_and", "bitwise_or", "bitwise_xor"))
left_shift, right_shift = _make_binary("left_shift"), _make_binary("right_shift")

exp, log, sqrt, rsqrt, tanh, sigmoid = (_make_activation(n) for n in ("exp", "log", "sqrt", "rsqrt", "tanh", "sigmoid"))
relu, gelu, silu = (_make_activation(n) for n in ("relu", "gelu", "silu"))
softplus, mish, erf = (_make_activation(n) for n in ("softplus", "mish", "erf"))
gelu_apprx_tanh, gelu_apprx_sigmoid = _make_activation("gelu_apprx_tanh"), _make_activation("gelu_apprx_sigmoid")
square, abs, sign, sin, cos, arctan = (_make_activation(n) for n in ("square", "abs", "sign", "sin", "cos", "arctan"))
negative, identity = _make_activation("negative"), _make_activation("identity")
operators.bind(copy, "copy")


def divide(x, y, dtype=None) -> NkiTensor:
    """Not a NeuronCore instruction (S-RN known issue: `nl.divide` simulates but fails to compile): raises."""
    raise NkiValidationError("divide", "op", "a hardware ALU operator: multiply by nl.reciprocal(y) instead",
                             "nl.divide")


def reciprocal(x, dtype=None) -> NkiTensor:
    """1 / x as a new SBUF tile (VectorE, float32-precise); also the `reciprocal` activation/ALU operator."""
    dst = ndarray(x.shape, _result_dtype(dtype, x))
    _reciprocal(dst=dst, data=x)
    return dst


operators.bind(reciprocal, "reciprocal")


def invert(x, dtype=None) -> NkiTensor:
    """Bitwise NOT of an integer tile."""
    dst = ndarray(x.shape, _result_dtype(dtype, x))
    tensor_scalar(dst=dst, data=x, op0=invert, operand0=None)
    return dst


operators.bind(invert, "invert")


def bypass(x):
    """The pass-through operator of activate2/tensor_scalar pipelines."""
    return x


operators.bind(bypass, "bypass")


def where(condition: NkiTensor, x: NkiTensor, y: NkiTensor, dtype=None) -> NkiTensor:
    """x where condition (a bool/uint tile) is nonzero, else y, as a new SBUF tile: a copy of y, then a predicated
    copy of x (VectorE)."""
    out_dtype = _result_dtype(dtype, x, y)
    dst = copy(y, dtype=out_dtype)
    src = x if x.dtype == out_dtype else copy(x, dtype=out_dtype)
    tensor_copy_predicated(dst=dst, src=src, predicate=condition)
    return dst


# ---- reductions --------------------------------------------------------------------------------------
def sum(x, axis, dtype=None, keepdims=False) -> NkiTensor:  # noqa: A001 - the NKI name
    """Sum over trailing free axes."""
    return _reduce(x, axis, add, dtype, keepdims)


def max(x, axis, dtype=None, keepdims=False) -> NkiTensor:  # noqa: A001
    return _reduce(x, axis, maximum, dtype, keepdims)


def min(x, axis, dtype=None, keepdims=False) -> NkiTensor:  # noqa: A001
    return _reduce(x, axis, minimum, dtype, keepdims)


def prod(x, axis, dtype=None, keepdims=False) -> NkiTensor:
    return _reduce(x, axis, multiply, dtype, keepdims)


def mean(x, axis, dtype=None, keepdims=False) -> NkiTensor:
    """Mean over trailing free axes: a sum, then one multiply by 1/count."""
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    total = _reduce(x, axis, add, float32, keepdims)
    dst = ndarray(total.shape, _result_dtype(dtype, x))
    tensor_scalar(dst=dst, data=total, op0=multiply, operand0=1.0 / math.prod(x.shape[a] for a in axes))
    return dst


operators.bind(sum, "sum")
operators.bind(max, "max")
operators.bind(min, "min")
operators.bind(prod, "prod")


# ---- tensor engine -----------------------------------------------------------------------------------
def matmul(x: NkiTensor, y: NkiTensor, transpose_x: bool = False) -> NkiTensor:
    """x[K, M].T @ y[K, N] as a new fp32 PSUM tile [M, N] (needs transpose_x=True, as on the SDK)."""
    if not transpose_x:
        raise NkiValidationError("matmul", "transpose_x", "True (x given as [K, M]; nl.matmul lowers to nc_matmul)",
                                 transpose_x)
    dst = ndarray((x.free_size, y.free_size), float32, psum)
    nc_matmul(dst=dst, stationary=x, moving=y)
    return dst


def transpose(x: NkiTensor, dtype=None) -> NkiTensor:
    """x[P, F] → [F, P]: TensorE into PSUM for SBUF x, VectorE into SBUF for PSUM x."""
    dst = ndarray((x.free_size, x.shape[0]), x.dtype, psum if x.buffer == "sbuf" else sbuf)
    nc_transpose(dst=dst, data=x)
    return dst


def softmax(x: NkiTensor, axis=-1, dtype=None) -> NkiTensor:
    """Softmax over the free axis of a 2-D tile: -max (VectorE), exp(x - max) with running sum (ScalarE),
    1/sum (VectorE), scale (VectorE)."""
    if x.ndim != 2 or axis % 2 != 1:
        raise NkiValidationError("softmax", "axis", "the free axis of a 2-D tile", axis)
    p = x.shape[0]
    neg_max = ndarray((p, 1), float32)
    tensor_reduce(dst=neg_max, op=maximum, data=x, axis=1, negate=True)
    e = ndarray(x.shape, float32)
    total = ndarray((p, 1), float32)
    activation(dst=e, op=exp, data=x, bias=neg_max, reduce_op=add, reduce_res=total, reduce_cmd=reduce_cmd.reset_reduce)
    inv = ndarray((p, 1), float32)
    _reciprocal(dst=inv, data=total)
    out = ndarray(x.shape, _result_dtype(dtype, x))
    tensor_scalar(dst=out, data=e, op0=multiply, operand0=inv)
    return out
