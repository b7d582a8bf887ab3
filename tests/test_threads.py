"""Concurrent calls are independent (issue 10, items 4 and 5): every op from 4 threads at once returns bitwise what
it returns called sequentially, on the reference, the NKI emulator (per-thread run state, a ContextVar in
`nkilab.harness.emulator.context`) and Triton (interpreted launches serialized in `nkilab.kernels.triton._interpret`;
compiled CUDA launches run concurrently).

Each thread runs a different problem (the op's pinned problem, `fuzz.cases.PINNED`, with its own seed); the
threads start together at a barrier. The op list is the registry's.
"""

import dataclasses
import functools
import threading

import numpy as np
import pytest
from fuzz.calls import run
from fuzz.cases import BACKEND_IDS, BACKEND_TARGETS, CASES, PINNED

from nkilab.kernels import _registry, attention
from nkilab.kernels._adapter import to_numpy

THREADS = 4


def _call(op: str, backend: str, target: str | None, seed: int) -> np.ndarray:
    """The op's pinned problem (`fuzz.cases.PINNED`) with data from `seed`, on fresh arrays (caches are written)."""
    case = CASES[op]
    return _output(op, run(case, case.call(dataclasses.replace(PINNED[op], seed=seed)), backend, target))


@functools.cache
def _sequential(op: str, backend: str, target: str | None, seed: int) -> np.ndarray:
    """`_call` alone in the process, made once per session and read-only: the per-op tests and the every-op test
    compare their threads' results with the same sequential ones."""
    out = _call(op, backend, target, seed)
    out.flags.writeable = False
    return out


def _concurrently(fn, count: int = THREADS) -> list:
    """fn(i) for i < count, each in its own thread, started together; re-raises the first error of a thread."""
    barrier = threading.Barrier(count)
    results, errors = [None] * count, []

    def work(i):
        barrier.wait()
        try:
            results[i] = fn(i)
        except BaseException as e:  # noqa: BLE001  (re-raised below, in the test's thread)
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def _bitwise_equal(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


@pytest.mark.parametrize(("backend", "target"), BACKEND_TARGETS, ids=BACKEND_IDS)
@pytest.mark.parametrize("op", _registry.OPS)
def test_four_threads_match_sequential_calls(op, backend, target):
    sequential = [_sequential(op, backend, target, seed) for seed in range(THREADS)]
    concurrent = _concurrently(lambda i: _call(op, backend, target, i))
    assert all(_bitwise_equal(c, s) for c, s in zip(concurrent, sequential)), f"{op} on {backend}: a result differs"


@pytest.mark.parametrize("target", ["inf2", "trn2"])
def test_issue_reproducer_nki_attention_from_four_threads(target):
    """Issue 10 item 4: causal GQA attention [1, 24, 6, 64] over 2 kv heads from 4 threads (PSUM-bank errors or
    different results when the emulator's run state was shared)."""
    rng = np.random.default_rng(0)
    qs = [rng.standard_normal((1, 24, 6, 64)).astype(np.float32) for _ in range(THREADS)]

    def f(i):
        q = qs[i]
        return attention(q, q[:, :, :2], q[:, :, :2], causal=True, backend="nki", target=target)

    sequential = [f(i) for i in range(THREADS)]
    concurrent = _concurrently(f)
    assert all(_bitwise_equal(c, s) for c, s in zip(concurrent, sequential))


def test_issue_reproducer_triton_every_op_at_once():
    """Issue 10 item 5: interpreted Triton launches of different kernels from 4 threads at once (InterpreterErrors
    "x >= grid_dim[0]" and "Did you forget to add @triton.jit?", once a wrong result, before launches were
    serialized). Thread i runs every op, starting at op i, on the op's pinned problem with seed i."""
    ops = _registry.OPS

    def f(i):
        return {op: _call(op, "triton", None, i) for op in ops[i % len(ops):] + ops[:i % len(ops)]}

    for i, result in enumerate(_concurrently(f)):
        assert all(_bitwise_equal(out, _sequential(op, "triton", None, i)) for op, out in result.items()), i


def _output(op: str, out) -> np.ndarray:
    return np.asarray(to_numpy(_registry.get(op).check.output(out)))
