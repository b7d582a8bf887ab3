"""Runs in concurrent threads are independent: each thread has its own active run (a context variable), so
results equal the sequential ones and no run sees another's tiles (no spurious capacity errors)."""

import sys
import threading

import numpy as np
import pytest

from nkilab.harness.emulator import nisa, nl, run


def attention_like(q_t, k_t, v):
    """softmax(q @ k.T) @ v for one head, rows on partitions: q_t, k_t [D, S] (transposed), v [S, D] fp32."""
    d, s = q_t.shape
    out = nl.ndarray((s, d), nl.float32, buffer=nl.shared_hbm)
    qs, ks, vs = nl.ndarray((d, s), nl.float32), nl.ndarray((d, s), nl.float32), nl.ndarray((s, d), nl.float32)
    for dst, src in ((qs, q_t), (ks, k_t), (vs, v)):
        nisa.dma_copy(dst=dst, src=src)
    for _ in range(3):  # several PSUM tiles per run, re-allocated per step as real kernels do
        scores = nl.ndarray((s, s), nl.float32, buffer=nl.psum)
        nisa.nc_matmul(dst=scores, stationary=qs, moving=ks)
        neg_max = nl.ndarray((s, 1), nl.float32)
        nisa.tensor_reduce(dst=neg_max, op=nl.maximum, data=scores, axis=1, negate=True)
        p = nl.ndarray((s, s), nl.float32)
        total = nl.ndarray((s, 1), nl.float32)
        nisa.activation(dst=p, op=nl.exp, data=scores, bias=neg_max, reduce_op=nl.add, reduce_res=total,
                        reduce_cmd=nisa.reduce_cmd.reset_reduce)
        p_t = nl.ndarray((s, s), nl.float32, buffer=nl.psum)
        nisa.nc_transpose(dst=p_t, data=p)
        pt_sb = nl.ndarray((s, s), nl.float32)
        nisa.tensor_copy(dst=pt_sb, src=p_t)
        o = nl.ndarray((s, d), nl.float32, buffer=nl.psum)
        nisa.nc_matmul(dst=o, stationary=pt_sb, moving=vs)
        inv = nl.ndarray((s, 1), nl.float32)
        nisa.reciprocal(dst=inv, data=total)
        o_sb = nl.ndarray((s, d), nl.float32)
        nisa.tensor_scalar(dst=o_sb, data=o, op0=nl.multiply, operand0=inv)
    nisa.dma_copy(dst=out, src=o_sb)
    return out


def _inputs(seed):
    rng = np.random.default_rng(seed)
    return tuple(rng.standard_normal(shape).astype(np.float32) for shape in ((64, 128), (64, 128), (128, 64)))


@pytest.fixture
def fast_switching():
    """Switch threads every microsecond, so concurrent runs interleave instruction by instruction."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


@pytest.mark.parametrize("target", ["trn1", "trn2"])
def test_concurrent_runs_give_the_sequential_results(target, fast_switching):
    inputs = [_inputs(seed) for seed in range(4)]
    expected = [run(attention_like, *x, target=target).outputs for x in inputs]
    q_t, k_t, v = inputs[0]
    p = np.exp(q_t.T @ k_t - (q_t.T @ k_t).max(1, keepdims=True))
    np.testing.assert_allclose(expected[0], p @ v / p.sum(1, keepdims=True), rtol=1e-4, atol=1e-5)
    for _ in range(2):
        results, errors = [None] * 4, []

        def work(i):
            try:
                results[i] = run(attention_like, *inputs[i], target=target).outputs
            except Exception as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        for got, want in zip(results, expected):
            np.testing.assert_array_equal(got, want)


def test_a_thread_outside_a_run_sees_no_run(fast_switching):
    seen = []

    def kernel(x):
        t = threading.Thread(target=lambda: seen.append(_raises_outside()))
        t.start()
        t.join()
        return x

    run(kernel, np.zeros((2, 2), np.float32))
    assert seen == [True]


def _raises_outside() -> bool:
    try:
        nl.ndarray((2, 2), nl.float32)
    except RuntimeError:
        return True
    return False
