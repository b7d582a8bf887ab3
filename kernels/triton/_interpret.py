"""Decide, once, whether Triton kernels run on a CUDA GPU or under Triton's CPU interpreter.

Triton reads `TRITON_INTERPRET` when a `@triton.jit` function is *defined* — its own standard library
(`tl.zeros`, `tl.max`, …) included, which is defined when `triton` is first imported. So this module must run before
anything imports `triton`: every kernel module imports it first, and `nkilab.kernels.triton` imports it on entry.
Without a CUDA device the variable is set to 1, so `backend="triton"` works on a plain CPU machine (slowly: every
program instance runs in Python). A value the user already set is respected.

The interpreter has no bfloat16 arithmetic (triton-lang/triton#11584: `tl.dot` multiplies the raw uint16 bits), so
bfloat16 is reported unsupported while interpreting; float16/float32 and fp8 storage work.
"""

import os
import sys

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

_triton_was_imported = "triton" in sys.modules

import triton  # noqa: E402  (must follow the environment set-up above)
import triton.language as tl  # noqa: E402
from triton.runtime.interpreter import InterpretedFunction  # noqa: E402

# Ask Triton itself, so our view and the one `@triton.jit` acts on always agree.
INTERPRET: bool = bool(triton.knobs.runtime.interpret)

if _triton_was_imported and INTERPRET != isinstance(tl.zeros, InterpretedFunction):
    raise ImportError(
        "triton was imported before nkilab.kernels.triton with a different TRITON_INTERPRET setting, so its standard "
        "library was compiled for the wrong mode; import nkilab.kernels.triton first, or set TRITON_INTERPRET=1 in "
        "the environment before starting Python on a machine without a CUDA GPU")
