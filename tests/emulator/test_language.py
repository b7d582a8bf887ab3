"""nl convenience ops (element-wise, reductions, matmul, transpose) lowered to nisa instructions, value by value
against NumPy on every target."""

import numpy as np
import pytest

from nkilab.harness.emulator import nl, run
from emulator_cases import ALL_TARGETS, bf16, uniform_f32


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_language_ops(target):
    a, b, v = uniform_f32(16, 32, seed=34), uniform_f32(16, 32, seed=35), uniform_f32(16, 1, seed=36)

    def kernel(a, b, v):
        x, y, vv = nl.load(a), nl.load(b), nl.load(v)
        outs = [nl.add(x, y), nl.multiply(x, 2.0), nl.subtract(x, vv), nl.exp(x), nl.sum(x, axis=1),
                nl.max(x, axis=1, keepdims=True), nl.mean(x, axis=1), nl.softmax(x, axis=1),
                nl.copy(x, dtype=nl.bfloat16),
                nl.maximum(x, 0.0)]
        res = []
        for o in outs:
            h = nl.ndarray(o.shape, o.dtype, buffer=nl.shared_hbm)
            nl.store(h, o)
            res.append(h)
        return tuple(res)
    got = run(kernel, a, b, v, target=target).outputs
    e = np.exp(a - a.max(1, keepdims=True))
    expected = [a + b, a * 2, a - v, np.exp(a), a.sum(1)[:, None], a.max(1, keepdims=True), a.mean(1)[:, None],
                e / e.sum(1, keepdims=True), a.astype(bf16), np.maximum(a, 0)]
    for g, x in zip(got, expected):
        np.testing.assert_allclose(g.astype(np.float32), x.astype(np.float32), rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_language_matmul_and_transpose(target):
    a, b = uniform_f32(64, 32, seed=37), uniform_f32(64, 48, seed=38)

    def kernel(a, b):
        p = nl.matmul(nl.load(a), nl.load(b), transpose_x=True)
        t = nl.transpose(nl.load(b))
        outs = []
        for o in (nl.copy(p), nl.copy(t)):
            h = nl.ndarray(o.shape, o.dtype, buffer=nl.shared_hbm)
            nl.store(h, o)
            outs.append(h)
        return tuple(outs)
    p, t = run(kernel, a, b, target=target).outputs
    np.testing.assert_allclose(p, a.T @ b, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(t, b.T)
