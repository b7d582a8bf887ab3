"""Host side of the NKI RMSNorm kernel: the backend's `rms_norm`, `unsupported` and `traceable` (the launcher
contract of `nkilab.kernels.ops._op`).

Inputs arrive validated by the public API (`nkilab.kernels.rms_norm`) and flattened to rows: x [N, H], weight [H],
residual [N, H] or None, NumPy (bfloat16 as ml_dtypes), in the HBM layout the kernel reads directly.
"""

from __future__ import annotations

import numpy as np

from nkilab.kernels._adapter import numpy_dtype
from nkilab.reference.dtypes import itemsize

from . import launch_tuning as tuning
from ._launch import EMPTY_REASON, dtype_reason, launch, neuron_target
from ._tiling import PMAX
from .rms_norm import rms_norm_kernel, sbuf_tiles

SBUF_BUDGET_BYTES = 160 * 1024  # per partition, of the 192 KiB NeuronCore-v2 SBUF (the smallest generation)
# what `nkilab tune` searches (`launch_tuning`); 256 rows exceed the 128 partitions: the emulator refuses it and
# tune rejects it
TUNING_CHOICES = {"rows_per_tile": (16, 32, 64, 128, 256)}
TUNING_TABLE = tuning.table_path(__file__)


def shape_class(problem: dict) -> str:
    """The tuning-table row of a problem: whether its rows fill more than one full tile ("rows>128") or not."""
    return f"rows>{PMAX}" if problem["rows"] > PMAX else f"rows<={PMAX}"


def tuned(problem: dict, target: str) -> dict:
    """The kernel's tunable keywords for `problem` on `target`: TUNING_TABLE's, then `problem["tunables"]`."""
    return tuning.settings(tuning.load(TUNING_TABLE), target, shape_class(problem),
                            problem.get("tunables"))


def rms_norm(x, weight, *, eps: float, residual=None, target: str | None = None):
    """y = RMSNorm(x (+ residual)) · weight on the NKI backend (real SDK if installed, else the emulator).

    Args:
        x: [N, H] float32|bfloat16|float16 NumPy array; weight: [H], x's dtype; residual: None or [N, H] like x.
        eps: > 0.
        target: "inf2" | "trn1" | "trn2" | "trn3"; None = $NEURON_PLATFORM_TARGET_OVERRIDE or "trn2".

    Returns:
        y [N, H] x's dtype; with a residual, (y, h) with h = x + residual.
    """
    tunables = tuned({"rows": x.shape[0]}, neuron_target(target))
    return launch(rms_norm_kernel, np.ascontiguousarray(x), np.ascontiguousarray(weight),
                  None if residual is None else np.ascontiguousarray(residual), float(eps), target=target,
                  **tunables)


def unsupported(**problem) -> str | None:
    """Why the NKI RMSNorm kernel cannot run `problem` (None when it can). Keys: dtype, hidden, residual, empty."""
    if problem.get("empty"):
        return EMPTY_REASON
    dtype, hidden = problem.get("dtype"), problem.get("hidden")
    if reason := dtype_reason(dtype):
        return reason
    if dtype is not None and hidden is not None:
        tiles = sbuf_tiles(bool(problem.get("residual")))
        need = tiles * hidden * itemsize(dtype)
        if need > SBUF_BUDGET_BYTES:
            return (f"hidden {hidden}: {tiles} [128, H] {dtype} tiles take {need} SBUF bytes per partition, over "
                    f"the kernel's budget of {SBUF_BUDGET_BYTES}")
    return None


def traceable(problem: dict, target: str | None):
    """(kernel, args, kwargs) at `problem`'s shapes with zero inputs, for trace mode on `target`.

    problem keys (`nkilab.kernels.ops.rms_norm`): rows, hidden, residual, dtype, eps (default 1e-6), optional
    tunables ({"rows_per_tile": n}, over the tuning table's). `target` must be a Neuron target (ValueError
    otherwise); the kernel's one target branch follows the target the trace runs on.
    """
    tunables = tuned(problem, neuron_target(target))
    dt = numpy_dtype(problem["dtype"])
    n, hidden = problem["rows"], problem["hidden"]
    residual = np.zeros((n, hidden), dt) if problem.get("residual") else None
    return rms_norm_kernel, (np.zeros((n, hidden), dt), np.zeros(hidden, dt), residual,
                             float(problem.get("eps", 1e-6))), tunables
