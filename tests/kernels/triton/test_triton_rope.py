"""Triton rope matches the float64 reference within the naive working-precision error, any strides."""

import numpy as np
import pytest
import torch
from hypothesis import given
from strategies import FLOAT_DTYPES, INTERPRETER_DTYPES, RopeProblem, dtypes, rope_problems

import nkilab.kernels.triton as triton_backend
from nkilab.harness.checks import check_output
from nkilab.kernels import _registry, rope
from nkilab.kernels.triton.rope import rope as triton_rope

OP = _registry.get("rope")
DTYPES = INTERPRETER_DTYPES if triton_backend.INTERPRET else FLOAT_DTYPES


def _check(problem: RopeProblem) -> None:
    args, opts = problem.inputs()
    out = rope(*(torch.from_numpy(a) for a in args), **opts, backend="triton")
    result = check_output(OP, out, args, opts)
    assert result.passed, str(result)


@given(problem=rope_problems(max_tokens=40, max_heads=4, dtypes=dtypes(allowed=DTYPES)))
def test_matches_reference(problem):
    _check(problem)


@pytest.mark.parametrize("style", ["neox", "gptj"])
def test_partial_rotary_at_llama_heads(style):
    _check(RopeProblem(3, 32, 8, 128, 64, style, 500000.0, True, 131072, "float32", seed=3))


def test_strided_views_give_the_contiguous_result():
    rng = np.random.default_rng(4)
    base = torch.from_numpy(rng.standard_normal((6, 16, 5)).astype(np.float32))
    q, k = base.permute(0, 2, 1), base.permute(0, 2, 1)[:, 1:3].flip(1)  # [6, 5, 16] and [6, 2, 16] views
    pos = torch.tensor([0, 3, 1, 70, 9, 2])
    opts = dict(theta=10000.0, rotary_dim=12, style="gptj", scaling=None)
    got = triton_rope(q, k, pos, **opts)
    want = triton_rope(q.contiguous(), k.contiguous(), pos, **opts)
    assert all(torch.equal(g, w) for g, w in zip(got, want))
    assert torch.equal(got[0][..., 12:], q[..., 12:])  # the pass-through dims are copied


def test_declines_float64_and_interpreted_bfloat16():
    spec = dict(q_heads=1, kv_heads=1, head_dim=8, rotary_dim=8, style="neox")
    assert "float64" in triton_backend.unsupported("rope", dtype="float64", **spec)
    assert (triton_backend.unsupported("rope", dtype="bfloat16", **spec) is not None) == triton_backend.INTERPRET


@pytest.mark.gpu
@given(problem=rope_problems(max_tokens=300, max_heads=40, dtypes=dtypes(allowed=FLOAT_DTYPES)))
def test_gpu_matches_reference(problem):
    _check(problem)
