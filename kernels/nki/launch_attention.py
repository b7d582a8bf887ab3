"""Host side of the NKI flash-attention kernel: the backend's `attention`, `unsupported` and `traceable` (the
launcher contract of `nkilab.kernels.ops._op`).

Inputs arrive validated by the public API (`nkilab.kernels.attention`) with `scale` already resolved; arrays are
NumPy (bfloat16 as ml_dtypes) in the HBM layout the kernel reads directly: q [B, Sq, Hq, D], k, v [B, Skv, Hkv, D].
"""

from __future__ import annotations

import numpy as np

from nkilab.kernels._adapter import numpy_dtype
from nkilab.reference.dtypes import itemsize

from . import launch_tuning
from ._attention_tunables import NAMES as TUNABLES
from ._attention_tunables import defaults
from ._launch import EMPTY_REASON, dtype_reason, launch, neuron_target
from ._shim import get_target
from .attention import MAX_HEAD_DIM, flash_attention

# what `nkilab tune` searches (`launch_tuning`): values around `_attention_tunables`' defaults; kv_step 4096 puts a
# step's fp32 scores in all 8 PSUM banks: the kernel's score_buffers rule refuses it (v3+), the emulator's PSUM
# capacity check where score tiles overlap other work (v2), and tune rejects it
TUNING_CHOICES = {"kv_step": (1024, 2048, 4096), "q_prefetch": (2, 4), "pipeline_lag": (4, 16)}
TUNING_TABLE = launch_tuning.table_path(__file__)  # rows: overrides of `_attention_tunables`' defaults ({} = none)


def shape_class(problem: dict) -> str:
    """The tuning-table row of a problem: its inputs' bytes per element (`_attention_tunables`' classes)."""
    return f"{itemsize(problem['dtype'])}-byte"


def tuned(problem: dict, target: str, tunables: dict | None = None) -> dict:
    """The kernel keywords of a call's tunables: TUNING_TABLE's (target, class) row, then `tunables` (else
    `problem["tunables"]`, trace mode's)."""
    row = launch_tuning.settings(launch_tuning.load(TUNING_TABLE), target, shape_class(problem))
    return {**row, **_tunables(tunables if tunables is not None else problem.get("tunables"))}


def attention(q, k, v, *, causal=False, scale, sliding_window=None, softcap=None, target: str | None = None,
              tunables: dict | None = None, lnc: int | None = None):
    """Flash attention on the NKI backend (real SDK if installed, else the emulator).

    Args:
        q: [B, Sq, Hq, D] float32|bfloat16|float16 NumPy array.
        k, v: [B, Skv, Hkv, D], q's dtype; Hq % Hkv == 0.
        causal, sliding_window, softcap: as in `nkilab.kernels.attention`.
        scale: score multiplier (float > 0; the API resolves None to D ** -0.5).
        target: "inf2" | "trn1" | "trn2" | "trn3"; None = $NEURON_PLATFORM_TARGET_OVERRIDE or "trn2".
        tunables: None, or {name: int} overriding the kernel's defaults for the target (names: TUNABLES, their
            meaning and defaults in `_attention_tunables`; the kernel checks the values).
        lnc: None or 1 (one NeuronCore), or 2 (trn2/trn3: two NeuronCores of one logical core share the (b, kv head)
            groups, or the query tiles when there are fewer groups; the emulator refuses 2 elsewhere).

    Returns:
        out: [B, Sq, Hq, D] NumPy array, q's dtype.
    """
    return launch(flash_attention, q, k, v, target=target, **_options(causal, scale, sliding_window, softcap),
                  **tuned({"dtype": q.dtype}, neuron_target(target), tunables), **({"lnc": lnc} if lnc else {}))


def default_tunables(target: str | None, dtype: str) -> dict:
    """{name: value} the kernel uses on `target` for `dtype` inputs when no override is given."""
    return defaults(get_target(neuron_target(target), neuron=True).gen == 2, np.dtype(numpy_dtype(dtype)).itemsize)


def unsupported(**problem) -> str | None:
    """Why the NKI attention kernel cannot run `problem` (None when it can). Keys: head_dim, dtype, causal,
    sliding_window, softcap, empty."""
    if problem.get("empty"):
        return EMPTY_REASON
    head_dim, dtype = problem.get("head_dim"), problem.get("dtype")
    if head_dim is not None and head_dim > MAX_HEAD_DIM:
        return f"head_dim {head_dim} > {MAX_HEAD_DIM} (the [128, D] fp32 P·V tile must fit one PSUM bank)"
    return dtype_reason(dtype)


def traceable(problem: dict, target: str | None):
    """(kernel, args, kwargs) running `problem` at its real shapes with zero inputs, for trace mode on `target`.

    problem keys (`nkilab.kernels.ops.attention`): b, sq, skv, hq, hkv, head_dim, dtype, causal, sliding_window,
    softcap; optional scale (default head_dim ** -0.5) and tunables (as in `attention`). `target` must be a Neuron
    target (ValueError otherwise); the kernel takes its generation branch and its LNC from the trace's launch
    (`_launch.trace(..., lnc=)`)."""
    target = neuron_target(target)
    dt = numpy_dtype(problem["dtype"])
    b, sq, skv, hq, hkv, d = (problem[key] for key in ("b", "sq", "skv", "hq", "hkv", "head_dim"))
    args = (np.zeros((b, sq, hq, d), dt), np.zeros((b, skv, hkv, d), dt), np.zeros((b, skv, hkv, d), dt))
    scale = problem.get("scale") or d**-0.5
    kwargs = _options(problem.get("causal", False), scale, problem.get("sliding_window"), problem.get("softcap"))
    return flash_attention, args, {**kwargs, **tuned(problem, target)}


def _options(causal, scale, sliding_window, softcap) -> dict:
    """Kernel keyword arguments as plain Python scalars (compile-time constants of the kernel)."""
    return dict(scale=float(scale), causal=bool(causal),
                sliding_window=None if sliding_window is None else int(sliding_window),
                softcap=None if softcap is None else float(softcap))


def _tunables(tunables: dict | None) -> dict:
    """The kernel keywords of a tunables override; ValueError naming `tunables` for an unknown name."""
    if tunables is None:
        return {}
    if not isinstance(tunables, dict):
        raise TypeError(f"tunables: must be a dict {{name: int}} or None, got {type(tunables).__name__}")
    unknown = sorted(set(tunables) - set(TUNABLES))
    if unknown:
        raise ValueError(f"tunables: unknown name(s) {unknown}; the kernel's tunables are {list(TUNABLES)}")
    return dict(tunables)
