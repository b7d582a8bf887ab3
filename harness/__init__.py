"""nkilab.harness: the NKI emulator, checks, performance and energy model, workloads, reports and the `nkilab` CLI.

`estimate` and `Estimate` are loaded on first use, so `import nkilab.harness` stays cheap.
"""

__all__ = ["estimate", "Estimate"]


def __getattr__(name):
    if name in ("estimate", "Estimate"):
        from nkilab.harness.perf import model

        return getattr(model, name)
    raise AttributeError(f"module 'nkilab.harness' has no attribute {name!r}")
