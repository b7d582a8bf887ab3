"""Host side of the NKI kernels: run a kernel for a Neuron target on the SDK or the emulator.

Launchers (`launch_<family>.py`) prepare NumPy arrays in the HBM layouts the kernels expect, call
`launch`, and return NumPy arrays; kernels (`<family>.py`) hold only NKI code.
"""

from __future__ import annotations

from ._shim import run

# why every family declines a problem with a zero-length dimension (the public API then names other backends)
EMPTY_REASON = "an input has a zero-length dimension (empty problem): nothing for a NeuronCore kernel to tile"


def launch(kernel, *args, target: str | None = None, **kwargs):
    """Run `kernel(*args, **kwargs)` and return what it returns (NumPy arrays).

    `target`: "inf2" | "trn1" | "trn2" | "trn3"; None = $NEURON_PLATFORM_TARGET_OVERRIDE, else "trn2" (resolved and
    checked by the emulator's `get_target`; the real SDK takes its target from that variable). Inputs the kernel
    writes (e.g. a KV cache) are updated in place, as on the device.
    """
    return run(kernel, *args, target=target, mode="full", **kwargs).outputs
