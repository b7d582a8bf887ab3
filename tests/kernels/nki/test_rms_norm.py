"""NKI RMSNorm matches the float64 reference within the naive working-precision error, on every target."""

import numpy as np
import pytest
from hypothesis import given
from strategies import NormProblem, norm_problems

from nkilab.harness.checks import check_output
from nkilab.harness.emulator import run
from nkilab.kernels import _registry
from nkilab.kernels.nki import launch_rms_norm
from nkilab.kernels.nki.rms_norm import rms_norm_kernel

TARGETS = ("inf2", "trn1", "trn2")
OP = _registry.get("rms_norm")


def _check(problem: NormProblem, target: str) -> None:
    (x, w), kwargs = problem.inputs()
    rows = x.reshape(-1, problem.hidden)
    residual = None if kwargs["residual"] is None else kwargs["residual"].reshape(rows.shape)
    out = launch_rms_norm.rms_norm(rows, w, eps=kwargs["eps"], residual=residual, target=target)
    for o in out if residual is not None else (out,):
        assert o.shape == rows.shape and o.dtype == x.dtype
    result = check_output(OP, out, (rows, w), dict(kwargs, residual=residual))
    assert result.passed, str(result)


@pytest.mark.parametrize("target", TARGETS)
@given(problem=norm_problems())
def test_matches_reference(problem, target):
    _check(problem, target)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_pinned_shapes(target, residual, dtype):
    # three row tiles with a ragged last one, odd H, at Llama's eps
    _check(NormProblem((300,), 131, residual, 1e-5, dtype, seed=7), target)


@pytest.mark.parametrize("target", TARGETS)
def test_a_non_finite_row_stays_in_its_row(target):
    rng = np.random.default_rng(0)
    x, r, w = (rng.standard_normal(s).astype(np.float32) for s in ((130, 64), (130, 64), (64,)))
    x[5, 3], r[129, 0] = np.nan, np.inf
    y, h = launch_rms_norm.rms_norm(x, w, eps=1e-6, residual=r, target=target)
    bad = np.zeros(130, bool)
    bad[[5, 129]] = True
    assert not np.isfinite(y[bad]).all(axis=1).any()
    assert np.isfinite(y[~bad]).all() and np.isfinite(h[~bad]).all()


@pytest.mark.parametrize("target, add_engine", [("inf2", "gpsimd"), ("trn1", "gpsimd"), ("trn2", "vector")])
def test_the_one_target_branch_moves_only_the_residual_add(target, add_engine):
    kernel, args, kwargs = launch_rms_norm.traceable(dict(rows=8, hidden=4096, residual=True, dtype="bfloat16"),
                                                     target)
    mix = run(kernel, *args, target=target, mode="trace", **kwargs).trace.instruction_mix()
    assert mix[add_engine].get("tensor_tensor") == 1
    assert mix["scalar"] == {"activation": 2} and mix["vector"]["scalar_tensor_tensor"] == 1
    assert mix["dma"]["dma_copy"] == 1 + 2 + 2  # weight broadcast; x and residual in; h and y out


def test_unsupported():
    assert "float64" in launch_rms_norm.unsupported(dtype="float64", hidden=64, residual=False)
    assert "empty problem" in launch_rms_norm.unsupported(dtype="float32", hidden=64, residual=False, empty=True)
    assert launch_rms_norm.unsupported(dtype="bfloat16", hidden=8192, residual=True) is None
    assert "SBUF" in launch_rms_norm.unsupported(dtype="float32", hidden=16384, residual=False)


def test_kernel_entry_takes_positional_defaults():
    y = run(rms_norm_kernel, np.ones((2, 4), np.float32), np.full(4, 2.0, np.float32), target="trn2").outputs
    np.testing.assert_allclose(y, np.full((2, 4), 2.0), rtol=1e-6)
