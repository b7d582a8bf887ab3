"""Performance model of NeuronCore kernels: per-instruction costs, a dependency schedule, rooflines, calibration
(mechanisms and sources: harness/perf/README.md).

Public names: `estimate(kernel, *args, target=)`, `model_trace(trace, target)`, `Estimate`. The chip figures it
stands on are the hardware table's, `nkilab.harness.chips`. Every figure this package produces is *modeled*
(kind "modeled").
"""

from nkilab.harness.perf.model import Estimate, estimate, model_trace

__all__ = ["Estimate", "estimate", "model_trace"]
