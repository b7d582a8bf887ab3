"""NKI backend of `nkilab.kernels`: hand-written NKI kernels and their NumPy launchers.

Each op names its launcher (`launch_<family>.py`, see `nkilab.kernels.ops`). A launcher takes validated NumPy
arrays (bfloat16/fp8 as ml_dtypes) with the public signature minus `backend`, plus `target` ("inf2" | "trn1" |
"trn2" | "trn3"; default $NEURON_PLATFORM_TARGET_OVERRIDE or "trn2"), runs on the real Neuron SDK when it is
installed and on nkilab's emulator otherwise, and returns NumPy arrays.

Backend-wide entry points, derived from the op registry:
  `unsupported(op, **problem)`    why a problem cannot run here (None when it can);
  `traceable(op, problem, target)` `(kernel, args, kwargs)` at any shape, for the emulator's trace mode on `target`;
  `trace(op, problem, target, lnc=1)`  the instruction trace of `kernel[lnc]` for `target` (the model's input).
"""

from nkilab.kernels import _registry

from . import _launch

__all__ = ["unsupported", "traceable", "trace"]


def unsupported(op: str, **problem) -> str | None:
    """Why the NKI backend cannot run `op` on `problem` (None when it can); keys as in the public API."""
    return _registry.unsupported(op, "nki", **problem)


def traceable(op: str, problem: dict, target: str | None):
    """`(kernel, args, kwargs)` running `op` at `problem`'s shapes on `target`, for trace mode (inputs are zeros)."""
    return _registry.backend_module(op, "nki").traceable(problem, target)


def trace(op: str, problem: dict, target: str | None, *, lnc: int = 1):
    """The emulator's instruction trace of `op`'s kernel at `problem`'s shapes, run for `target` as `kernel[lnc]`
    (trace mode)."""
    return _launch.trace(_registry.backend_module(op, "nki").traceable, problem, target, lnc=lnc)
