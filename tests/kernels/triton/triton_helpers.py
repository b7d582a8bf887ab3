"""Shared by the Triton kernel tests: the dtypes the interpreter can run, and the one assertion against a reference."""

import numpy as np
import torch

import nkilab.kernels.triton as triton_backend
from nkilab.harness.checks import compare

# The CPU interpreter has no bfloat16 arithmetic (triton-lang/triton#11584); bfloat16 runs only in `gpu` tests.
DTYPES = ("float32", "float16") if triton_backend.INTERPRET else ("float32", "float16", "bfloat16")


def assert_matches(out, ref64, ref_lowprec, **kwargs) -> None:
    """FlashAttention-style check (nkilab.harness.checks.compare); the comparison report is the failure message."""
    if isinstance(out, torch.Tensor):
        out = out.detach().cpu()
    assert tuple(np.shape(out)) == tuple(np.shape(ref64)), f"shape {tuple(np.shape(out))} != {np.shape(ref64)}"
    result = compare(out, ref64, ref_lowprec, **kwargs)
    assert result.passed, str(result)
