"""nkilab.harness: the NKI emulator, the hardware table, checks, performance and energy model, workloads, reports
and the `nkilab` CLI.

`estimate(kernel, *args, target=)` and `Estimate` (the modeled performance of an NKI kernel) are re-exported here
from `nkilab.harness.perf.model`.
"""

from nkilab.harness.perf.model import Estimate, estimate

__all__ = ["estimate", "Estimate"]
