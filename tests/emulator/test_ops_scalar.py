"""ScalarE instructions (activation functions, scale/bias/reduce, reduce registers) value by value against NumPy, on
every target where they exist."""

import numpy as np
import pytest

from nkilab.harness.emulator import nisa, nl
from emulator_cases import ALL_TARGETS, GEN3_PLUS, new_like, uniform_f32


ACTIVATIONS = {"exp": np.exp, "copy": lambda x: x, "tanh": np.tanh, "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
               "silu": lambda x: x / (1 + np.exp(-x)), "square": np.square, "relu": lambda x: np.maximum(x, 0),
               "rsqrt": lambda x: 1 / np.sqrt(np.abs(x) + 0.5), "reciprocal": lambda x: 1 / (np.abs(x) + 0.5),
               "gelu": lambda x: 0.5 * x * (1 + np.vectorize(__import__("math").erf)(x / np.sqrt(2)))}


@pytest.mark.parametrize("target", ALL_TARGETS)
@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_functions(target, name, run_tiles):
    a = uniform_f32(16, 32, seed=21)
    shift = name in ("rsqrt", "reciprocal")

    def body(x):
        y = new_like(x)
        if shift:  # keep inputs in the functions' valid range: |x| + 0.5
            nisa.tensor_scalar(dst=y, data=x, op0=nl.abs, operand0=None, op1=nl.add, operand1=0.5)
            nisa.activation(dst=y, op=getattr(nl, name), data=y)
        else:
            nisa.activation(dst=y, op=getattr(nl, name), data=x)
        return (y,)
    got = run_tiles(body, a, target=target)[0]
    np.testing.assert_allclose(got, ACTIVATIONS[name](a.astype(np.float64)), rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_activation_scale_bias_and_reduce(target, run_tiles):
    a, s, b = uniform_f32(8, 20, seed=22), uniform_f32(8, 1, seed=23), uniform_f32(8, 1, seed=24)

    def body(x, s, b):
        y, r, y2, r2 = new_like(x), nl.ndarray((8, 1), nl.float32), new_like(x), nl.ndarray((8, 1), nl.float32)
        nisa.activation(dst=y, op=nl.exp, data=x, bias=b, scale=s, reduce_op=nl.add, reduce_res=r,
                        reduce_cmd=nisa.reduce_cmd.reset_reduce)
        nisa.activation_reduce(dst=y2, op=nl.tanh, data=x, reduce_op=nl.add, reduce_res=r2, scale=0.5)
        return y, r, y2, r2
    y, r, y2, r2 = run_tiles(body, a, s, b, target=target)
    ey = np.exp(a * s + b)
    np.testing.assert_allclose(y, ey, rtol=1e-6)
    np.testing.assert_allclose(r[:, 0], ey.sum(1), rtol=1e-5)
    np.testing.assert_allclose(y2, np.tanh(a * 0.5), rtol=1e-6)
    np.testing.assert_allclose(r2[:, 0], np.tanh(a * 0.5).sum(1), rtol=1e-5, atol=1e-6)


def test_activation_valid_input_ranges(run_tiles):
    x = np.array([[0.0, 2.0 ** -70, 1.0, 4.0, 2.0 ** 70, -1.0, 2.0 ** -50, 2.0]], np.float32)

    def body(x):
        outs = []
        for op in (nl.log, nl.sqrt, nl.rsqrt, nl.reciprocal, nl.arctan, nl.exp):
            y = new_like(x)
            nisa.activation(dst=y, op=op, data=x)
            outs.append(y)
        return tuple(outs)
    log, sqrt, rsqrt, recip, atan, exp = run_tiles(body, x)
    nan = np.nan
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(log, [[nan, nan, 0.0, np.log(np.float32(4)), nan, nan, np.log(x[0, 6]),
                                             np.log(np.float32(2))]])
        np.testing.assert_array_equal(sqrt, [np.where((x[0] >= 2.0 ** -116) & (x[0] <= 2.0 ** 118), np.sqrt(x[0]),
                                                      nan)])
        np.testing.assert_array_equal(np.isnan(rsqrt), [[True, False, False, False, False, True, False, False]])
        np.testing.assert_array_equal(np.isnan(recip), [[True, True, False, False, True, False, True, False]])
    np.testing.assert_array_equal(np.isnan(atan), [[False, False, False, True, True, False, False, True]])
    assert not np.isnan(exp).any()  # exp takes [-inf, inf]


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_activation_reduce_cmd_sequence(target, run_tiles):
    a, b = uniform_f32(8, 6, seed=36), uniform_f32(8, 6, seed=37)
    sa, sb = np.exp(a).sum(1), np.exp(b).sum(1)

    def body(x, y):
        rs = [nl.ndarray((8, 1), nl.float32) for _ in range(5)]
        z = new_like(x)
        nisa.activation(dst=z, op=nl.exp, data=x, reduce_res=rs[0], reduce_cmd=nisa.reduce_cmd.reset)  # 0
        nisa.activation(dst=z, op=nl.exp, data=x, reduce_op=nl.add, reduce_cmd=nisa.reduce_cmd.reduce)  # sa
        nisa.activation(dst=z, op=nl.exp, data=y, reduce_op=nl.add, reduce_res=rs[1])  # idle: still sa
        nisa.activation(dst=z, op=nl.exp, data=y, reduce_op=nl.add, reduce_res=rs[2],
                        reduce_cmd=nisa.reduce_cmd.reduce)  # sa + sb
        nisa.activation(dst=z, op=nl.exp, data=x, reduce_op=nl.add, reduce_res=rs[3],
                        reduce_cmd=nisa.reduce_cmd.reset_reduce)  # sa
        nisa.activation_reduce(dst=z, op=nl.exp, data=y, reduce_op=nl.add, reduce_res=rs[4])  # resets: sb
        return tuple(rs)
    r0, r1, r2, r3, r4 = (r[:, 0] for r in run_tiles(body, a, b, target=target))
    np.testing.assert_array_equal(r0, 0.0)
    np.testing.assert_allclose(r1, sa, rtol=1e-6)
    np.testing.assert_allclose(r2, sa + sb, rtol=1e-6)
    np.testing.assert_allclose(r3, sa, rtol=1e-6)
    np.testing.assert_allclose(r4, sb, rtol=1e-6)


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_engine_registers_are_per_partition_lane(target, run_tiles):
    a = uniform_f32(128, 6, seed=35)
    low, high = np.exp(a[:64]).sum(1), np.exp(a[64:]).sum(1)

    def body(x):
        z = new_like(x)
        r_lo, r_hi = nl.ndarray((64, 1), nl.float32), nl.ndarray((64, 1), nl.float32)
        nisa.activation(dst=z, op=nl.exp, data=x, reduce_cmd=nisa.reduce_cmd.reset)  # all 128 registers = 0
        nisa.activation(dst=z[64:128], op=nl.exp, data=x[64:128], reduce_op=nl.add,
                        reduce_cmd=nisa.reduce_cmd.reduce)  # lanes 64..127 only
        nisa.activation(dst=z[0:64], op=nl.exp, data=x[0:64], reduce_res=r_lo)  # idle: read lanes 0..63
        nisa.activation(dst=z[64:128], op=nl.exp, data=x[64:128], reduce_res=r_hi)  # read lanes 64..127
        v_lo, v_hi, d = nl.ndarray((64, 1), nl.float32), nl.ndarray((64, 1), nl.float32), new_like(x)
        nisa.tensor_scalar_reduce(dst=d[64:128], data=x[64:128], op0=nl.add, operand0=0.0, reduce_op=nl.add,
                                  reduce_res=v_hi)  # VectorE lanes 64..127 = row sums
        nisa.tensor_scalar_reduce(dst=d[0:64], data=x[0:64], op0=nl.add, operand0=0.0, reduce_op=nl.add,
                                  reduce_res=v_lo, reduce_cmd=nisa.reduce_cmd.reduce)  # lanes 0..63: never reset
        return r_lo, r_hi, v_lo, v_hi
    r_lo, r_hi, v_lo, v_hi = run_tiles(body, a, target=target)
    np.testing.assert_array_equal(r_lo, 0.0)
    np.testing.assert_allclose(r_hi[:, 0], high, rtol=1e-6)
    assert np.isnan(v_lo).all()
    np.testing.assert_allclose(v_hi[:, 0], a[64:].sum(1), rtol=1e-5, atol=1e-6)
    assert not np.allclose(low, high)


def test_vector_accumulators_undefined_after_idle(run_tiles):
    a = uniform_f32(4, 8, seed=38)

    def body(x):
        d, r1, r2 = new_like(x), nl.ndarray((4, 1), nl.float32), nl.ndarray((4, 1), nl.float32)
        pred = nl.ndarray((4, 8), nl.uint8)
        nisa.memset(dst=pred, value=1)
        nisa.tensor_scalar_reduce(dst=d, data=x, op0=nl.add, operand0=0.0, reduce_op=nl.add, reduce_res=r1)
        nisa.select_reduce(dst=d, predicate=pred, on_true=x, on_false=0.0)  # reduce_cmd=idle
        nisa.tensor_scalar_reduce(dst=d, data=x, op0=nl.add, operand0=0.0, reduce_op=nl.add, reduce_res=r2,
                                  reduce_cmd=nisa.reduce_cmd.reduce)
        return r1, r2
    r1, r2 = run_tiles(body, a)
    np.testing.assert_allclose(r1[:, 0], a.sum(1), rtol=1e-6)
    assert np.isnan(r2).all()  # `reduce` onto accumulators an idle instruction may have modified


def test_engine_registers_start_undefined(run_tiles):
    a = uniform_f32(4, 8, seed=39)

    def body(x):
        y, r = new_like(x), nl.ndarray((4, 1), nl.float32)
        nisa.activation(dst=y, op=nl.exp, data=x, reduce_op=nl.add, reduce_res=r, reduce_cmd=nisa.reduce_cmd.reduce)
        return (r,)
    assert np.isnan(run_tiles(body, a)[0]).all()  # `reduce` without a reset reads undefined registers


@pytest.mark.parametrize("target", GEN3_PLUS)
def test_activation_scalar_bias(target, run_tiles):
    a = uniform_f32(4, 8, seed=25)

    def body(x):
        y = new_like(x)
        nisa.activation(dst=y, op=nl.copy, data=x, bias=1.5, scale=-1.0)
        return (y,)
    np.testing.assert_array_equal(run_tiles(body, a, target=target)[0], -a + np.float32(1.5))
