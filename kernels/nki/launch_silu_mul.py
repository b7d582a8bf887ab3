"""Host side of the NKI silu_mul kernel: the backend's `silu_mul`, `unsupported` and `traceable` (the launcher
contract of `nkilab.kernels.ops._op`).

Inputs arrive validated by the public API (`nkilab.kernels.silu_mul`) and flattened to rows: gate_up [N, 2I] NumPy
(bfloat16 as ml_dtypes), in the HBM layout the kernel reads directly.
"""

from __future__ import annotations

import numpy as np

from nkilab.kernels._adapter import numpy_dtype
from nkilab.reference.dtypes import itemsize

from ._launch import EMPTY_REASON, dtype_reason, launch, neuron_target
from .silu_mul import sbuf_bytes, silu_mul_kernel

SBUF_BUDGET_BYTES = 160 * 1024  # per partition, of the 192 KiB NeuronCore-v2 SBUF (the smallest generation)


def silu_mul(gate_up, *, target: str | None = None):
    """silu(a) * b for gate_up = [a | b] [N, 2I] float32|bfloat16|float16 on the NKI backend (real SDK if
    installed, else the emulator); `target` "inf2" | "trn1" | "trn2" | "trn3", None = $NEURON_PLATFORM_TARGET_OVERRIDE
    or "trn2". Returns [N, I] in gate_up's dtype."""
    return launch(silu_mul_kernel, np.ascontiguousarray(gate_up), target=target)


def unsupported(**problem) -> str | None:
    """Why the NKI silu_mul kernel cannot run `problem` (None when it can). Keys: dtype, intermediate, empty."""
    if problem.get("empty"):
        return EMPTY_REASON
    dtype, inter = problem.get("dtype"), problem.get("intermediate")
    if reason := dtype_reason(dtype):
        return reason
    if dtype is not None and inter is not None:
        need = sbuf_bytes(inter, itemsize(dtype))
        if need > SBUF_BUDGET_BYTES:
            return (f"intermediate {inter}: its widest equal pieces take {need} SBUF bytes per partition, over the "
                    f"kernel's budget of {SBUF_BUDGET_BYTES} (an I with a divisor in [I/4096, 128] always fits)")
    return None


def traceable(problem: dict, target: str | None):
    """(kernel, args, kwargs) at `problem`'s shapes with zero inputs, for trace mode on `target`.

    problem keys (`nkilab.kernels.ops.silu_mul`): rows, intermediate, dtype. `target` must be a Neuron target
    (ValueError otherwise).
    """
    neuron_target(target)
    gate_up = np.zeros((problem["rows"], 2 * problem["intermediate"]), numpy_dtype(problem["dtype"]))
    return silu_mul_kernel, (gate_up,), {}
