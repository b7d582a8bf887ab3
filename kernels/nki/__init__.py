"""NKI backend of `nkilab.kernels`: hand-written NKI kernels and their NumPy launchers.

Each launcher takes validated NumPy arrays (bfloat16/fp8 as ml_dtypes) with the public signature
minus `backend`, plus `target` ("inf2" | "trn1" | "trn2" | "trn3"; default $NEURON_PLATFORM_TARGET_OVERRIDE
or "trn2"), runs on the real Neuron SDK when it is installed and on nkilab's emulator otherwise, and
returns NumPy arrays.

`unsupported(op, **problem)` says why a problem cannot run here (None when it can);
`traceable(op, problem, target)` returns `(kernel, args, kwargs)` for the performance model's trace
mode at any shape.
"""

from . import launch_attention, launch_paged, launch_qmatmul
from .launch_attention import attention
from .launch_paged import paged_attention, write_kv_cache
from .launch_qmatmul import qmatmul

_FAMILIES = {
    "qmatmul": launch_qmatmul,
    "attention": launch_attention,
    "write_kv_cache": launch_paged,
    "paged_attention": launch_paged,
}

__all__ = ["qmatmul", "attention", "write_kv_cache", "paged_attention", "unsupported", "traceable"]


def _family(op: str):
    if op not in _FAMILIES:
        raise ValueError(f"op: {op!r} is not one of {tuple(_FAMILIES)}")
    return _FAMILIES[op]


def unsupported(op: str, **problem) -> str | None:
    """Why the NKI backend cannot run `op` on `problem` (None when it can); keys as in the public API."""
    return _family(op).unsupported(op, **problem)


def traceable(op: str, problem: dict, target: str):
    """`(kernel, args, kwargs)` running `op` at `problem`'s shapes, for trace mode (inputs are zeros)."""
    return _family(op).traceable(op, problem, target)
