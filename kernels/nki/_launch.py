"""Host side of the NKI kernels: run a kernel for a Neuron target on the SDK or the emulator, or trace it.

Launchers (`launch_<family>.py`) prepare NumPy arrays in the HBM layouts the kernels expect, call `launch`, and
return NumPy arrays; kernels (`<family>.py`) hold only NKI code. Each launcher module also defines
`unsupported(**problem)` and `traceable(problem, target)` (the backend contract of `nkilab.kernels.ops._op`).
"""

from __future__ import annotations

from ._shim import get_target, run

# why every family declines a problem with a zero-length dimension (the public API then names other backends)
EMPTY_REASON = "an input has a zero-length dimension (empty problem): nothing for a NeuronCore kernel to tile"
DTYPES = ("float32", "bfloat16", "float16")  # input dtypes NeuronCore kernels compute in (no float64 on device)


def dtype_reason(dtype) -> str | None:
    """Why a kernel computing in DTYPES declines input dtype `dtype` (None when it is one of them or unknown)."""
    if dtype is None or str(dtype) in DTYPES:
        return None
    return f"dtype {dtype} is not computed on NeuronCores; use one of {DTYPES}"


def launch(kernel, *args, target: str | None = None, **kwargs):
    """Run `kernel(*args, **kwargs)` and return what it returns (NumPy arrays).

    `target`: "inf2" | "trn1" | "trn2" | "trn3"; None = $NEURON_PLATFORM_TARGET_OVERRIDE, else "trn2" (resolved and
    checked by the emulator's `get_target`; the real SDK takes its target from that variable). Inputs the kernel
    writes (e.g. a KV cache) are updated in place, as on the device.
    """
    return run(kernel, *args, target=target, mode="full", **kwargs).outputs


def neuron_target(target: str | None) -> str:
    """The resolved Neuron target name for `target` (None: $NEURON_PLATFORM_TARGET_OVERRIDE, else "trn2");
    ValueError naming `target` for a name that is not a Neuron target (e.g. "h100")."""
    return get_target(target, neuron=True).name


def trace(traceable, problem: dict, target: str | None, *, lnc: int = 1):
    """The emulator's instruction trace of `traceable(problem, target)` (a launcher's hook) run for `target` as
    `kernel[lnc]` (1, or 2 on trn2/trn3: both program instances of the logical core): the kernel's own target
    branches (NeuronCore-v2 vs v3+) are taken as on that generation. Trace mode: no values."""
    name = neuron_target(target)
    kernel, args, kwargs = traceable(problem, name)
    return run(kernel, *args, target=name, mode="trace", lnc=lnc, **kwargs).trace
