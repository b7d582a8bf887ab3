"""The three cuts as a waterfall: each step changes one thing, and its % change in $/Mtoken and J/token is against
the step before it.

  baseline      bf16 weights, naive kernels, on the GPU (h100)
  silicon       the same work on a Neuron target (inf2 or trn2)
  fp8, int8, int4  quantized weights, still with the dequantize-then-matmul baseline GEMMs
  kernels       int4 with nkilab's kernels (the fused qmatmul) instead of the baseline

Every point is a `compose` result (modeled). A step whose $/Mtoken is unknown (no price) has None there, and so
has the % change next to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from nkilab.harness.cost.calls import Step
from nkilab.harness.cost.composer import TokenCost, compose

STEPS = (  # (label, target role, scheme, kernels)
    ("baseline: bf16, naive kernels, GPU", "gpu", "bf16", "naive"),
    ("silicon", "neuron", "bf16", "naive"),
    ("quantization: fp8", "neuron", "fp8", "naive"),
    ("quantization: int8", "neuron", "int8", "naive"),
    ("quantization: int4 g128", "neuron", "int4", "naive"),
    ("kernels: nkilab's", "neuron", "int4", "nkilab"),
)


@dataclass
class WaterfallStep:
    """One step: its label, the composed cost, and % change vs the previous step (None when unknown)."""

    label: str
    cost: TokenCost
    usd_change_pct: float | None
    joules_change_pct: float | None

    def to_dict(self) -> dict:
        c = self.cost
        return {"label": self.label, "target": c.target, "lnc": c.lnc, "instance": c.instance, "scheme": c.scheme,
                "kernels": c.kernels, "tp": c.tp, "usd_per_mtoken": c.usd_per_mtoken,
                "joules_per_token": c.joules_per_token, "tokens_per_s": c.tokens_per_s,
                "usd_change_pct": self.usd_change_pct, "joules_change_pct": self.joules_change_pct,
                "kind": c.kind}


def _pct(new: float | None, old: float | None) -> float | None:
    if new is None or old is None or old == 0:
        return None
    return 100.0 * (new - old) / old


def waterfall(model: str, step: Step, *, gpu: str = "h100", neuron: str = "inf2", lnc: int | None = None,
              compose_fn: Callable[..., TokenCost] = compose, **options) -> list[WaterfallStep]:
    """The waterfall of `model` at `step`, from `gpu` to `neuron` (its ranks of `lnc` cores; None = its default);
    `options` go to `compose` (prices, cache, ...)."""
    out: list[WaterfallStep] = []
    for label, role, scheme, kernels in STEPS:
        target, rank = (gpu, None) if role == "gpu" else (neuron, lnc)
        cost = compose_fn(model, step, scheme, target, lnc=rank, kernels=kernels, **options)
        prev = out[-1].cost if out else None
        name = f"silicon: {target}" if label == "silicon" else label
        out.append(WaterfallStep(name, cost,
                                 _pct(cost.usd_per_mtoken, prev.usd_per_mtoken if prev else None),
                                 _pct(cost.joules_per_token, prev.joules_per_token if prev else None)))
    return out
