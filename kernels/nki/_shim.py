"""One import point for NKI kernels: the real Neuron SDK when it is installed, else nkilab's emulator.

    from nkilab.kernels.nki._shim import nki, nl, nisa, run, get_target, USING_EMULATOR

The PyPI package named `nki` is a placeholder whose import raises (the SDK ships from AWS's own pip repository,
not PyPI), and other packages could
shadow the name, so the SDK counts as present only if `nki.isa.nc_matmul` and `nki.language` exist.
`run(kernel, *args, target=None, mode="full", **kwargs)` returns `RunResult(outputs, trace)`: on the
emulator its own; on the SDK the kernel runs through `nki.jit` and the trace is empty (instruction
traces come from the emulator only). `get_target(name)` resolves a target name (the emulator's table, on both).
"""

from __future__ import annotations


try:
    import nki as _sdk
    import nki.isa
    import nki.language
except Exception:  # the PyPI placeholder raises ImportError; broken installs raise anything
    _sdk = None
if _sdk is not None and not (hasattr(_sdk.isa, "nc_matmul") and hasattr(_sdk, "language") and hasattr(_sdk, "jit")):
    _sdk = None  # something else named nki
USING_EMULATOR = _sdk is None

if USING_EMULATOR:
    from nkilab.harness.emulator import get_target, nisa, nki, nl, run
else:
    import nki.isa as nisa
    import nki.language as nl

    from nkilab.harness.emulator import RunResult, Trace, get_target

    nki = _sdk

    def run(kernel, *args, target: str | None = None, mode: str = "full", lnc: int | None = None, **kwargs):
        """Run `kernel` on the device through the SDK's `nki.jit`; the trace is empty on real hardware."""
        if mode != "full":
            raise ValueError(f"mode: {mode!r} needs the emulator; the SDK runs kernels in full only")
        jitted = kernel if hasattr(kernel, "__getitem__") else nki.jit(kernel)
        if lnc:
            jitted = jitted[lnc]
        return RunResult(jitted(*args, **kwargs), Trace(getattr(kernel, "__name__", "kernel"), target or "device"))

__all__ = ["USING_EMULATOR", "get_target", "nki", "nisa", "nl", "run"]
