"""`compose`: the modeled cost of a token — one decoder step of a model, end to end, on one deployment.

    step latency = sum over calls (launches x (kernel time + per-launch cost)) + TP collectives
    tokens/s     = step tokens / step latency, per replica; x replicas per instance; / ranks, chips
    J/token      = the replica's modeled joules per step / step tokens                (`energy`)
    $/Mtoken     = $/h / (tokens/s per instance x 3600) x 10^6; None with the reason when the price is unknown

The calls (`calls.step_calls`) are modeled one by one (`estimate.call_cost`: NKI traces, cached, or the
roofline-efficiency model), the placement and collectives come from `deployment`. Prefill tokens are input tokens,
decode tokens output tokens (`token_kind`); a mixed step prices every processed token alike. Every figure is
modeled (`kind`); the result says how (`method`, `assumptions`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Callable

from nkilab.harness.cache import Cache
from nkilab.harness.chips import get_target
from nkilab.harness.cost import energy
from nkilab.harness.cost.calls import Step, step_calls
from nkilab.harness.cost.deployment import collective_time, deploy
from nkilab.harness.cost.estimate import KERNELS, call_cost
from nkilab.harness.cost.prices import INSTANCES, price_of
from nkilab.harness.workloads.models import MODELS
from nkilab.kernels.ops._problem import Quant

# weight schemes: bf16 (no quantization), fp8 e4m3 / int8 per output channel, int4 in groups of 128 (symmetric)
SCHEMES: dict[str, Quant | None] = {"bf16": None, "fp8": Quant("fp8_e4m3"), "int8": Quant("int8"),
                                    "int4": Quant("int4", 128)}
TOKEN_KIND = {"prefill": "input", "decode": "output", "mixed": "processed"}
COLLECTIVES = "TP collectives"


@dataclass
class TokenCost:
    """The modeled cost of one step and its tokens (`to_dict()` is the `nkilab cost --json` object)."""

    model: str
    phase: str
    target: str
    instance: str
    scheme: str
    kernels: str
    batch: int
    ctx: int | None
    prefill: int
    tp: int
    tokens_per_step: int
    token_kind: str
    latency_s_per_step: float
    tokens_per_s: float
    tokens_per_s_per_replica: float
    tokens_per_s_per_core: float
    tokens_per_s_per_chip: float
    joules_per_token: float
    energy_kind: str
    energy_method: str
    energy_assumption: str
    usd_per_hour: float | None
    price_source: str | None
    price_date: str | None
    price_reason: str | None
    usd_per_mtoken: float | None
    deployment: dict
    breakdown: list[dict]
    kind: str = "modeled"
    method: str = "sum of per-call modeled costs (NKI traces or roofline efficiency) + TP collectives"
    assumptions: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def scheme_quant(scheme: str) -> Quant | None:
    if scheme not in SCHEMES:
        raise ValueError(f"scheme: must be one of {tuple(SCHEMES)}, got {scheme!r}")
    return SCHEMES[scheme]


def _breakdown(parts: list[tuple[str, int, float, str]], total: float) -> list[dict]:
    return [{"kernel": name, "calls": calls, "latency_s": seconds, "share": seconds / total if total else 0.0,
             "method": method} for name, calls, seconds, method in parts]


def compose(model: str, step: Step, scheme: str, target: str, *, tp: int | None = None, kernels: str = "nkilab",
            prices: dict[str, float] | None = None, cache: Cache | None = None, power_w: float | None = None,
            progress: Callable[[str], None] | None = None) -> TokenCost:
    """Model one step of `model` ("llama-3.1-8b", ...) on `target` ("inf2" ... "h200").

    Args:
        step: the work (`Step`: prefill S, decode batch at contexts, mixed).
        scheme: "bf16" | "fp8" | "int8" | "int4" (g128) weights.
        tp: tensor-parallel ranks per replica (None = the least power of two the HBM rule allows).
        kernels: "nkilab" (nkilab's kernels) | "naive" (dequantize-then-matmul GEMMs).
        prices: {instance: $/h} overrides; cache: the trace cache (None = the default one); power_w: the chip
            power assumption override, W; progress: called with a line before each trace that is not cached.
    """
    if model not in MODELS:
        raise ValueError(f"model: unknown {model!r}; choose one of {', '.join(MODELS)}")
    if kernels not in KERNELS:
        raise ValueError(f"kernels: must be one of {KERNELS}, got {kernels!r}")
    quant, tgt = scheme_quant(scheme), get_target(target)
    place = deploy(MODELS[model], step, quant, tgt, tp)
    shape = replace(MODELS[model], tp=place.tp)
    cache = cache if cache is not None else Cache()
    costs, parts = [], []
    for call in step_calls(shape, step, quant):
        cost = call_cost(call.problem, tgt, kernels, cache, progress)
        costs.append((cost, call.count))
        parts.append((call.name, call.count, call.count * cost.total_s, cost.method))
    coll_s, coll_n = collective_time(shape, step, tgt, place.tp)
    if coll_n:
        parts.append((COLLECTIVES, coll_n, coll_s, "ring model over the link table (deployment.py)"))
    latency = sum(p[2] for p in parts)
    per_replica = step.tokens / latency
    per_instance = per_replica * place.replicas
    price = price_of(place.instance, prices)
    usd_mtok = price.usd_per_hour / (per_instance * 3600) * 1e6 if price.usd_per_hour is not None else None
    joules = energy.step_joules(costs, coll_s, tgt, place.tp, power_w=power_w)
    uniform = len(set(step.contexts)) == 1
    return TokenCost(
        model=model, phase=step.phase, target=tgt.name, instance=place.instance, scheme=scheme, kernels=kernels,
        batch=step.batch, ctx=step.contexts[0] if uniform else None, prefill=step.prefill, tp=place.tp,
        tokens_per_step=step.tokens, token_kind=TOKEN_KIND[step.phase], latency_s_per_step=latency,
        tokens_per_s=per_instance, tokens_per_s_per_replica=per_replica, tokens_per_s_per_core=per_replica / place.tp,
        tokens_per_s_per_chip=per_instance / INSTANCES[place.instance].chips, joules_per_token=joules / step.tokens, energy_kind="modeled",
        energy_method=energy.METHOD, energy_assumption=energy.assumption(tgt, power_w),
        usd_per_hour=price.usd_per_hour, price_source=price.source, price_date=price.date, price_reason=price.reason,
        usd_per_mtoken=usd_mtok, deployment=place.to_dict(), breakdown=_breakdown(parts, latency),
        assumptions=[f"rank = one NeuronCore (LNC=1, as the kernels trace) or one GPU; {place.replicas} replica(s) "
                     f"of tp={place.tp} per {place.instance}",
                     "calls run back to back (no overlap between kernels); each launch pays its fixed cost",
                     "prefill computes the logits of the last token only"],
    )
