"""ALU operators and activation functions, keyed by NKI name, and their binding to `nl` functions.

Kernels pass `nl` functions (`op=nl.add`, `op=nl.exp`) as operators; `language.py` binds each to its
name here, and the engines look operators up by the object they were given (NumPy ufuncs of the
same name are accepted too, as the legacy API used them).

ALU ops (S-SH "Supported Math Operators"): arithmetic ops compute in float32; comparisons give 1.0/0.0;
bitvec ops work on integer bit patterns. There is no divide (nor fmod/mod): S-RN lists `nl.divide` as
"works in simulation but fails when compiled", so the emulator rejects it.
Activation functions (S-SH): the hardware uses piece-wise polynomial approximations whose error is
unpublished, so the emulator uses exact float32 math (erf via Abramowitz–Stegun 7.1.26, |error| < 1.5e-7,
below float32 resolution at 1) inside each function's valid input range and NaN outside it
(`ACTIVATION_RANGES`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

f32 = np.float32


@dataclass(frozen=True)
class AluOp:
    """kind: "arith" (float32 math), "bitvec" (integer bits) or "unary" (arith, one input)."""

    name: str
    kind: str
    fn: Callable
    identity: float | None = None  # reduction identity (None: not a reduction op)

    @property
    def arity(self) -> int:
        """Inputs the operator takes (unary arithmetic ops and bitwise `invert` take one)."""
        return 1 if self.kind == "unary" or self.name == "invert" else 2


def _cmp(fn):
    return lambda a, b: fn(a, b).astype(f32)


def _erf(x):
    t = 1.0 / (1.0 + 0.3275911 * np.abs(x))
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return (np.sign(x) * (1.0 - poly * np.exp(-x * x))).astype(f32)


def _sigmoid(x):
    return (1.0 / (1.0 + np.exp(-x))).astype(f32)


_SQRT_2PI = f32(np.sqrt(2.0 * np.pi))
_GELU_SIGMOID_K = f32(1.702)  # gelu_apprx_sigmoid(x) = x * sigmoid(1.702 x)


def _gelu_dx(x):
    """d/dx of x * Phi(x) = Phi(x) + x * phi(x)."""
    return (0.5 * (1.0 + _erf(x / np.sqrt(f32(2)))) + x * np.exp(-0.5 * x * x) / _SQRT_2PI).astype(f32)


def _gelu_apprx_sigmoid_dx(x):
    s = _sigmoid(_GELU_SIGMOID_K * x)
    return (s + _GELU_SIGMOID_K * x * s * (1.0 - s)).astype(f32)


def _silu_dx(x):
    s = _sigmoid(x)
    return (s * (1.0 + x * (1.0 - s))).astype(f32)


def _erf_dx(x):
    return (f32(2.0 / np.sqrt(np.pi)) * np.exp(-x * x)).astype(f32)


def _prelu(x, alpha=0.0):
    """x for x > 0, alpha * x otherwise (alpha: activate2's relu_param; 0 through `activation`)."""
    return np.where(x > 0, x, np.asarray(alpha, f32) * x).astype(f32)


ALU_OPS = {op.name: op for op in [
    AluOp("add", "arith", np.add, 0.0),
    AluOp("subtract", "arith", np.subtract, 0.0),
    AluOp("multiply", "arith", np.multiply, 1.0),
    AluOp("maximum", "arith", np.maximum, -np.inf),
    AluOp("minimum", "arith", np.minimum, np.inf),
    AluOp("power", "arith", np.power),
    AluOp("abs_max", "arith", lambda a, b: np.maximum(np.abs(a), np.abs(b))),
    AluOp("abs_min", "arith", lambda a, b: np.minimum(np.abs(a), np.abs(b))),
    AluOp("equal", "arith", _cmp(np.equal)),
    AluOp("not_equal", "arith", _cmp(np.not_equal)),
    AluOp("greater", "arith", _cmp(np.greater)),
    AluOp("greater_equal", "arith", _cmp(np.greater_equal)),
    AluOp("less", "arith", _cmp(np.less)),
    AluOp("less_equal", "arith", _cmp(np.less_equal)),
    AluOp("logical_and", "arith", _cmp(lambda a, b: (a != 0) & (b != 0)), 1.0),
    AluOp("logical_or", "arith", _cmp(lambda a, b: (a != 0) | (b != 0)), 0.0),
    AluOp("logical_xor", "arith", _cmp(lambda a, b: (a != 0) ^ (b != 0)), 0.0),
    AluOp("bitwise_and", "bitvec", np.bitwise_and, -1),
    AluOp("bitwise_or", "bitvec", np.bitwise_or, 0),
    AluOp("bitwise_xor", "bitvec", np.bitwise_xor, 0),
    AluOp("left_shift", "bitvec", np.left_shift),
    AluOp("right_shift", "bitvec", np.right_shift),  # logical shift (S-SH: arithmetic shift right unsupported)
    AluOp("invert", "bitvec", lambda a, b=None: np.invert(a)),
    AluOp("abs", "unary", lambda a, b=None: np.abs(a)),
    AluOp("square", "unary", lambda a, b=None: a * a),
    AluOp("relu", "unary", lambda a, b=None: np.maximum(a, f32(0))),
    AluOp("rsqrt", "unary", lambda a, b=None: (1.0 / np.sqrt(a)).astype(f32)),
    AluOp("reciprocal", "unary", lambda a, b=None: (1.0 / a).astype(f32)),
    AluOp("bypass", "unary", lambda a, b=None: a),
]}

ACTIVATIONS: dict[str, Callable] = {
    "copy": lambda x: x,
    "identity": lambda x: x,
    "exp": np.exp,
    "log": np.log,
    "sqrt": np.sqrt,
    "rsqrt": lambda x: (1.0 / np.sqrt(x)).astype(f32),
    "reciprocal": lambda x: (1.0 / x).astype(f32),
    "square": lambda x: x * x,
    "abs": np.abs,
    "sign": np.sign,
    "negative": np.negative,
    "relu": lambda x: np.maximum(x, f32(0)),
    "sigmoid": _sigmoid,
    "tanh": np.tanh,
    "silu": lambda x: x * _sigmoid(x),
    "gelu": lambda x: (0.5 * x * (1.0 + _erf(x / np.sqrt(f32(2))))).astype(f32),
    "gelu_apprx_tanh": lambda x: (0.5 * x * (1.0 + np.tanh(f32(0.7978845608) * (x + f32(0.044715) * x ** 3)))
                                  ).astype(f32),
    "gelu_apprx_sigmoid": lambda x: x * _sigmoid(_GELU_SIGMOID_K * x),
    "gelu_dx": _gelu_dx,
    "gelu_apprx_sigmoid_dx": _gelu_apprx_sigmoid_dx,
    "silu_dx": _silu_dx,
    "erf_dx": _erf_dx,
    "prelu": _prelu,
    "softplus": lambda x: np.logaddexp(f32(0), x).astype(f32),
    "mish": lambda x: x * np.tanh(np.logaddexp(f32(0), x)).astype(f32),
    "erf": _erf,
    "sin": np.sin,
    "cos": np.cos,
    "arctan": np.arctan,
}

_BOUND: dict[int, str] = {}
_NUMPY = {np.add: "add", np.subtract: "subtract", np.multiply: "multiply", np.maximum: "maximum",
          np.minimum: "minimum", np.exp: "exp", np.tanh: "tanh", np.equal: "equal", np.greater: "greater",
          np.greater_equal: "greater_equal", np.less: "less", np.less_equal: "less_equal", np.abs: "abs",
          np.square: "square", np.sqrt: "sqrt", np.log: "log", np.bitwise_and: "bitwise_and",
          np.bitwise_or: "bitwise_or", np.bitwise_xor: "bitwise_xor", np.power: "power"}


def bind(func: Callable, name: str) -> Callable:
    """Make `func` (an nl function) stand for the operator / activation `name`."""
    _BOUND[id(func)] = name
    return func


def op_name(op) -> str | None:
    if isinstance(op, str):
        return op
    return _BOUND.get(id(op)) or _NUMPY.get(op)


_REDUCTION_ALIASES = {"max": "maximum", "min": "minimum", "sum": "add", "prod": "multiply"}


_ALU_OF: dict = {}  # operator object (nl function, ufunc, name) -> AluOp, filled as ops are used


def alu(op, what: str = "op") -> AluOp:
    """The ALU operator `op` stands for (`nl.max`/`nl.min`/`nl.sum` name maximum/minimum/add).
    Raises TypeError for anything else."""
    try:
        return _ALU_OF[op]
    except (KeyError, TypeError):  # not seen yet, or unhashable
        pass
    name = op_name(op)
    name = _REDUCTION_ALIASES.get(name, name)
    if name not in ALU_OPS:
        raise TypeError(f"{what}: {getattr(op, '__name__', op)!r} is not an ALU operator; use one of {sorted(ALU_OPS)}")
    _ALU_OF[op] = ALU_OPS[name]
    return ALU_OPS[name]


# Valid input ranges of ScalarE's polynomial approximations (S-SH activation table); the functions not listed
# take [-inf, inf]. reciprocal's range applies to |x|. Outside them the hardware returns "invalid results";
# the emulator returns NaN there so a kernel relying on them shows up. sin ([-π, π]) is left out: `nl.sin`
# range-reduces first, and on ScalarE the hardware's cubic extrapolation (sin(9.0) ≈ 27.65) is not modelled.
ACTIVATION_RANGES: dict[str, tuple[float, float]] = {
    "log": (2.0 ** -64, 2.0 ** 64),
    "sqrt": (2.0 ** -116, 2.0 ** 118),
    "rsqrt": (2.0 ** -87, 2.0 ** 97),
    "reciprocal": (2.0 ** -42, 2.0 ** 42),
    "arctan": (-np.pi / 2, np.pi / 2),
}


def activation(op) -> tuple[str, Callable]:
    """(name, float32 function) of an activation function, NaN outside its valid input range
    (`ACTIVATION_RANGES`). Raises TypeError for anything else."""
    name = op_name(op)
    if name not in ACTIVATIONS:
        raise TypeError(f"op: {getattr(op, '__name__', op)!r} is not an activation function; "
                        f"use one of {sorted(ACTIVATIONS)}")
    fn = ACTIVATIONS[name]
    if name not in ACTIVATION_RANGES:
        return name, fn
    lo, hi = ACTIVATION_RANGES[name]

    def ranged(x):
        v = np.abs(x) if name == "reciprocal" else x
        with np.errstate(all="ignore"):
            return np.where((lo <= v) & (v <= hi), fn(x), np.float32(np.nan)).astype(np.float32)
    return name, ranged
