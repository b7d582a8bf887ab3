"""What the Triton backend says it cannot run, and how it sets up the CPU interpreter."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import nkilab.kernels.triton as triton_backend
from nkilab.kernels import attention

interpreter_only = pytest.mark.skipif(not triton_backend.INTERPRET, reason="interpreter behaviour")


def _attention_problem(**overrides):
    return dict(dict(head_dim=128, dtype="float16", causal=True, sliding_window=None, softcap=None), **overrides)


def _qmatmul_problem(**overrides):
    return dict(dict(scheme="int8", group_size=None, symmetric=True, w8a8=False, m=1, k=256, n=64,
                     dtype="float16"), **overrides)


@pytest.mark.parametrize("op", ["attention", "paged_attention"])
def test_supported_attention_problems(op):
    problem = _attention_problem() if op == "attention" else dict(head_dim=80, block_size=5, dtype="float32",
                                                                  sliding_window=3, softcap=30.0)
    assert triton_backend.unsupported(op, **problem) is None


@pytest.mark.parametrize("overrides,match", [
    (dict(head_dim=320), "head_dim 320 > 256"),
    (dict(dtype="float64"), "float64"),
])
def test_unsupported_attention_problems(overrides, match):
    assert match in triton_backend.unsupported("attention", **_attention_problem(**overrides))


@interpreter_only
def test_bfloat16_needs_a_gpu_under_the_interpreter():
    reason = triton_backend.unsupported("attention", **_attention_problem(dtype="bfloat16"))
    assert "bfloat16" in reason and "11584" in reason
    q = np.zeros((1, 2, 1, 64), dtype=np.float32)
    with pytest.raises(ValueError, match="backend='triton' does not support this problem: dtype bfloat16"):
        attention(torch.from_numpy(q).to(torch.bfloat16), *(torch.from_numpy(q).to(torch.bfloat16),) * 2,
                  backend="triton")


def test_qmatmul_groups():
    assert triton_backend.unsupported("qmatmul", **_qmatmul_problem(scheme="int4", group_size=128)) is None
    assert "group_size 3" in triton_backend.unsupported("qmatmul", **_qmatmul_problem(scheme="int4", group_size=3))
    small = triton_backend.unsupported("qmatmul", **_qmatmul_problem(group_size=8))
    if triton_backend.INTERPRET:
        assert small is None  # the interpreter has no minimum dot size
    else:
        assert "multiple of 16" in small


def test_write_kv_cache_supports_every_dtype():
    for dtype in ("float16", "bfloat16", "float32", "float64"):
        assert triton_backend.unsupported("write_kv_cache", head_dim=64, block_size=16, dtype=dtype) is None


def test_unknown_op():
    with pytest.raises(ValueError, match="unknown op"):
        triton_backend.unsupported("softmax")


# Triton defines its own tl.* helpers when first imported; a runtime cannot keep other packages (transformers) from
# importing it before nkilab, without TRITON_INTERPRET, on a machine without CUDA. Every op must still run, under the
# interpreter, and the compiled-mode helpers must be left as they were outside the launches.
IMPORTED_FIRST = """
import triton
import numpy as np, torch
from triton.runtime.jit import JITFunction
own_call = JITFunction.__dict__["__call__"]
import nkilab.kernels as K
from nkilab.kernels import _registry
from nkilab.kernels.triton import _interpret
assert _interpret.INTERPRET and _interpret.HELPERS_COMPILED
for op in _registry.ops_list():
    problem = op.smoke_problems("float32")[0]
    args, kwargs = op.make_inputs(problem, np.random.default_rng(0), False)
    tensors = [torch.from_numpy(a) if isinstance(a, np.ndarray) else a for a in args]
    options = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    got = np.asarray(op.check.output(op.api(*tensors, **options, backend="triton")), dtype=np.float64)
    want = np.asarray(op.check.output(op.api(*args, **kwargs, backend="reference")), dtype=np.float64)
    # float32 kernels against the float64 reference rounded to float32: a few float32 ulps at values of order 1
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=problem.name)
assert JITFunction.__dict__["__call__"] is own_call and "__get__" not in JITFunction.__dict__
print("ok")
"""


@interpreter_only
def test_every_op_runs_when_triton_was_imported_first():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run([sys.executable, "-c", IMPORTED_FIRST], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("ok")
