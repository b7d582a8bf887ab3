"""Performance model of NeuronCore kernels: chip tables, per-instruction costs, a dependency schedule, rooflines.

Public names: `estimate(kernel, *args, target=)`, `model_trace(trace, target)`, `Estimate`, `get_target`,
`TARGETS`. Every figure this package produces is *modeled* (kind "modeled").
"""

from nkilab.harness.perf.chips import ALL_TARGETS, NEURON_TARGETS, TARGETS, Target, get_target
from nkilab.harness.perf.model import Estimate, estimate, model_trace

__all__ = ["ALL_TARGETS", "NEURON_TARGETS", "TARGETS", "Target", "get_target", "Estimate", "estimate",
           "model_trace"]
