"""Host side of the NKI kernels: choose the Neuron target and run a kernel on the SDK or the emulator.

Launchers (`launch_<family>.py`) prepare NumPy arrays in the HBM layouts the kernels expect, call
`launch`, and return NumPy arrays; kernels (`<family>.py`) hold only NKI code.
"""

from __future__ import annotations

import os

from ._shim import run

TARGETS = ("inf2", "trn1", "trn2", "trn3")
DEFAULT_TARGET = "trn2"
TARGET_ENV = "NEURON_PLATFORM_TARGET_OVERRIDE"
# why every family declines a problem with a zero-length dimension (the public API then names other backends)
EMPTY_REASON = "an input has a zero-length dimension (empty problem): nothing for a NeuronCore kernel to tile"


def resolve_target(target: str | None) -> str:
    """The target a kernel runs for: `target`, else $NEURON_PLATFORM_TARGET_OVERRIDE, else "trn2".

    Raises:
        ValueError: the target is not one of TARGETS.
    """
    name = target or os.environ.get(TARGET_ENV) or DEFAULT_TARGET
    if name not in TARGETS:
        source = "target" if target else TARGET_ENV
        raise ValueError(f"{source}: {name!r} is not a Neuron target; use one of {TARGETS}")
    return name


def launch(kernel, *args, target: str | None = None, **kwargs):
    """Run `kernel(*args, **kwargs)` for `target` and return what it returns (NumPy arrays).

    Inputs the kernel writes (e.g. a KV cache) are updated in place, as on the device.
    """
    return run(kernel, *args, target=resolve_target(target), mode="full", **kwargs).outputs
