"""Value tests of the documented `nki.language` math (NKI 0.6): element-wise operators, activations and their
derivatives, rounding, reductions, normalisation, selection, dropout — each against NumPy (float64 references,
results cast the way the engines cast: fp32 math, round-to-nearest-even into the destination dtype)."""

import math

import numpy as np
import pytest
from api_coverage import covers

from nkilab.harness.emulator import TARGETS, NkiValidationError, nl, run

ALL_TARGETS = tuple(TARGETS)


def _x(*shape, lo=-3.0, hi=3.0, seed=0):
    return np.random.default_rng(seed).uniform(lo, hi, shape).astype(np.float32)


BINARY = {
    "add": np.add, "subtract": np.subtract, "multiply": np.multiply, "maximum": np.maximum, "minimum": np.minimum,
    "power": lambda a, b: np.power(np.abs(a), b), "equal": np.equal, "not_equal": np.not_equal, "less": np.less,
    "less_equal": np.less_equal, "greater": np.greater, "greater_equal": np.greater_equal,
    "logical_and": np.logical_and, "logical_or": np.logical_or, "logical_xor": np.logical_xor,
    "abs_max": lambda a, b: np.maximum(np.abs(a), np.abs(b)), "abs_min": lambda a, b: np.minimum(np.abs(a), np.abs(b)),
}


@covers(*(f"nl.{n}" for n in BINARY))
@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_float_ops(name, run_tiles):
    a, b = _x(4, 16, seed=1), _x(4, 16, seed=2)
    a[0, :4] = b[0, :4]  # some equal pairs for the comparisons
    if name == "power":
        a = np.abs(a) + 0.5
    fn = getattr(nl, name)
    (got,) = run_tiles(lambda x, y: (fn(x, y, dtype=nl.float32),), a, b)
    np.testing.assert_allclose(got, BINARY[name](a, b).astype(np.float32), rtol=2e-6, atol=1e-6)


BITWISE = {"bitwise_and": np.bitwise_and, "bitwise_or": np.bitwise_or, "bitwise_xor": np.bitwise_xor,
           "left_shift": np.left_shift, "right_shift": np.right_shift}


@covers(*(f"nl.{n}" for n in BITWISE), "nl.invert")
@pytest.mark.parametrize("name", sorted(BITWISE) + ["invert"])
def test_bitwise_ops(name, run_tiles):
    rng = np.random.default_rng(3)
    a = rng.integers(0, 2 ** 16, (4, 8)).astype(np.int32)
    b = rng.integers(0, 8, (4, 8)).astype(np.int32)
    if name == "invert":
        (got,) = run_tiles(lambda x: (nl.invert(x),), a)
        np.testing.assert_array_equal(got, np.invert(a))
    else:
        (got,) = run_tiles(lambda x, y: (getattr(nl, name)(x, y),), a, b)
        np.testing.assert_array_equal(got, BITWISE[name](a, b))


def _erf(x):
    return np.vectorize(math.erf)(x)


def _sig(x):
    return 1 / (1 + np.exp(-x))


UNARY = {  # name -> (float64 reference, input range)
    "exp": (np.exp, (-3, 3)), "log": (np.log, (0.1, 5)), "sqrt": (np.sqrt, (0.1, 5)),
    "rsqrt": (lambda x: 1 / np.sqrt(x), (0.1, 5)), "tanh": (np.tanh, (-3, 3)), "sigmoid": (_sig, (-4, 4)),
    "relu": (lambda x: np.maximum(x, 0), (-3, 3)), "gelu": (lambda x: 0.5 * x * (1 + _erf(x / np.sqrt(2))), (-3, 3)),
    "gelu_apprx_tanh": (lambda x: 0.5 * x * (1 + np.tanh(0.7978845608 * (x + 0.044715 * x ** 3))), (-3, 3)),
    "gelu_apprx_sigmoid": (lambda x: x * _sig(1.702 * x), (-3, 3)),
    "gelu_dx": (lambda x: 0.5 * (1 + _erf(x / np.sqrt(2))) + x * np.exp(-x * x / 2) / np.sqrt(2 * np.pi), (-3, 3)),
    "gelu_apprx_sigmoid_dx": (lambda x: _sig(1.702 * x) * (1 + 1.702 * x * (1 - _sig(1.702 * x))), (-3, 3)),
    "silu": (lambda x: x * _sig(x), (-3, 3)), "silu_dx": (lambda x: _sig(x) * (1 + x * (1 - _sig(x))), (-3, 3)),
    "softplus": (lambda x: np.log1p(np.exp(x)), (-3, 3)), "mish": (lambda x: x * np.tanh(np.log1p(np.exp(x))), (-3, 3)),
    "erf": (_erf, (-2, 2)), "erf_dx": (lambda x: 2 / np.sqrt(np.pi) * np.exp(-x * x), (-2, 2)),
    "reciprocal": (lambda x: 1 / x, (0.5, 4)), "copy": (lambda x: x, (-3, 3)), "sin": (np.sin, (-3, 3)),
    "cos": (np.cos, (-3, 3)), "tan": (np.tan, (-1.2, 1.2)), "arctan": (np.arctan, (-1.5, 1.5)),
    "negative": (np.negative, (-3, 3)), "sign": (np.sign, (-3, 3)), "abs": (np.abs, (-3, 3)),
    "square": (np.square, (-3, 3)),
}


@covers(*(f"nl.{n}" for n in UNARY))
@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_ops(name, run_tiles):
    ref, (lo, hi) = UNARY[name]
    x = _x(8, 32, lo=lo, hi=hi, seed=4)
    (got,) = run_tiles(lambda t: (getattr(nl, name)(t),), x)
    np.testing.assert_allclose(got, ref(x.astype(np.float64)), rtol=2e-5, atol=2e-6)


@covers("nl.ceil", "nl.floor", "nl.trunc")
@pytest.mark.parametrize("target", ALL_TARGETS)
def test_rounding_exact_on_every_fp32(target, run_tiles):
    x = np.array([[3.2, -3.7, 3.7, -3.2, 2.5, -2.5, 0.5, -0.5, 0.0, 7.0, -7.0, 4194303.5, -4194303.5, 8388609.0,
                   1e20, -1e20, 1.0000001, -0.9999999]], np.float32)
    got = run_tiles(lambda t: (nl.ceil(t), nl.floor(t), nl.trunc(t)), x, target=target)
    for out, ref in zip(got, (np.ceil, np.floor, np.trunc)):
        np.testing.assert_array_equal(out, ref(x))


@covers("nl.ceil", "nl.floor")
def test_rounding_casts_into_integer_dtype(run_tiles):
    x = np.array([[1.5, -1.5, 2.0001]], np.float32)
    c, f = run_tiles(lambda t: (nl.ceil(t, dtype=nl.int32), nl.floor(t, dtype=nl.int32)), x)
    np.testing.assert_array_equal(c, [[2, -1, 3]])
    np.testing.assert_array_equal(f, [[1, -2, 2]])


@covers("nl.logical_not")
def test_logical_not_is_xor_with_one(run_tiles):
    ints = np.array([[0, 1, 2, 3]], np.int32)
    floats = np.array([[0.0, 1.0, 2.5, -1.0]], np.float32)
    i, f = run_tiles(lambda a, b: (nl.logical_not(a), nl.logical_not(b)), ints, floats)
    np.testing.assert_array_equal(i, [[1, 0, 3, 2]])  # bitwise XOR 1, as documented ("inputs should be 0 or 1")
    np.testing.assert_array_equal(f, [[1.0, 0.0, 0.0, 0.0]])


@covers("nl.divide", "nl.fmod", "nl.mod")
@pytest.mark.parametrize("name", ["divide", "fmod", "mod"])
def test_divide_fmod_mod_rejected_as_not_hardware(name, run_tiles):
    x = _x(2, 4)
    with pytest.raises(NkiValidationError) as e:
        run_tiles(lambda a, b: (getattr(nl, name)(a, b),), x, x)
    assert e.value.op == name and e.value.operand == "op"


@covers("nl.sum", "nl.max", "nl.min", "nl.mean", "nl.prod", "nl.var", "nl.all")
def test_reductions(run_tiles):
    x = _x(4, 3, 8, lo=0.5, hi=1.5, seed=5)
    x[1, 0, 3] = 0.0
    outs = run_tiles(lambda t: (nl.sum(t, axis=2), nl.max(t, axis=[1, 2]), nl.min(t, axis=-1, keepdims=True),
                                nl.mean(t, axis=(1, 2)), nl.prod(t, axis=2), nl.var(t, axis=2),
                                nl.var(t, axis=(1, 2)), nl.all(t, axis=2)), x)
    s, mx, mn, mean, prod, var2, var12, al = outs
    np.testing.assert_allclose(s, x.sum(axis=2), rtol=1e-6)
    np.testing.assert_array_equal(mx.reshape(4), x.max(axis=(1, 2)))
    np.testing.assert_array_equal(mn, x.min(axis=-1, keepdims=True))
    np.testing.assert_allclose(mean.reshape(4), x.mean(axis=(1, 2)), rtol=1e-6)
    np.testing.assert_allclose(prod, x.prod(axis=2), rtol=1e-5)
    assert var2.shape == (4, 3, 1) and var12.shape == (4, 1, 1)  # "result always has keepdims=True shape"
    np.testing.assert_allclose(var2[..., 0], x.astype(np.float64).var(axis=2), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(var12.reshape(4), x.astype(np.float64).var(axis=(1, 2)), rtol=1e-4)
    np.testing.assert_array_equal(al, np.all(x != 0, axis=2).astype(np.float32))


@covers("nl.softmax")
def test_softmax(run_tiles):
    x = _x(16, 64, seed=6)
    (got,) = run_tiles(lambda t: (nl.softmax(t, axis=1),), x)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    np.testing.assert_allclose(got, e / e.sum(axis=1, keepdims=True), rtol=1e-5, atol=1e-7)


@covers("nl.rms_norm")
@pytest.mark.parametrize("target", ALL_TARGETS)
def test_rms_norm(target, run_tiles):
    x, w = _x(8, 64, seed=7), _x(8, 64, seed=8)
    (got,) = run_tiles(lambda a, b: (nl.rms_norm(a, b, axis=1, n=64, epsilon=1e-3),), x, w, target=target)
    ref = x / np.sqrt((x.astype(np.float64) ** 2).sum(axis=1, keepdims=True) / 64 + 1e-3) * w
    np.testing.assert_allclose(got, ref, rtol=2e-5, atol=1e-6)


@covers("nl.where")
def test_where(run_tiles):
    c = np.array([[1, 0, 1, 0]], np.uint8)
    x, y = np.array([[1.0, 2.0, 3.0, 4.0]], np.float32), np.array([[-1.0, -2.0, -3.0, -4.0]], np.float32)
    (got,) = run_tiles(lambda cc, a, b: (nl.where(cc, a, b),), c, x, y)
    np.testing.assert_array_equal(got, [[1.0, -2.0, 3.0, -4.0]])


@covers("nl.dropout")
def test_dropout_zeroes_at_the_rate_and_keeps_the_rest(run_tiles):
    x = _x(128, 512, lo=1.0, hi=2.0, seed=9)
    (got,) = run_tiles(lambda t: (nl.dropout(t, 0.25),), x)
    dropped = got == 0
    assert abs(dropped.mean() - 0.25) < 0.01  # 65536 draws: 0.01 is > 5 standard deviations
    np.testing.assert_array_equal(got[~dropped], x[~dropped])  # no rescaling of kept values
    (all_dropped, none_dropped) = run_tiles(lambda t: (nl.dropout(t, 1.0), nl.dropout(t, 0.0)), x)
    assert not all_dropped.any() and np.array_equal(none_dropped, x)


def test_binary_broadcast_rule_names_operands():
    def kernel(a):
        t = nl.load(a)
        nl.add(t, nl.load(a[:, 0:2]))
    with pytest.raises(NkiValidationError, match="do not broadcast"):
        run(kernel, _x(4, 8))
