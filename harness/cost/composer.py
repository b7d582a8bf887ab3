"""`compose`: the modeled cost of a token — one decoder step of a model, end to end, on one deployment.

    step latency = sum over calls (launches x (kernel time + per-launch cost)) + TP collectives
    tokens/s     = step tokens / step latency, per replica; x replicas per instance; / ranks, chips
    J/token      = the replica's modeled joules per step / step tokens                (`energy`)
    $/Mtoken     = $/h / (tokens/s per instance x 3600) x 10^6; None with the reason when the price is unknown

The calls (`calls.step_calls`) are modeled one by one (`estimate.call_cost`: NKI traces at the deployment's LNC,
cached, or the roofline-efficiency model), the placement and collectives come from `deployment`. Prefill tokens are
input tokens, decode tokens output tokens (`token_kind`); a mixed step prices every processed token alike. A
composition is modeled, or, given per-call records measured on the GPU (`measured`), measured throughout (`kind`);
the result says how (`method`, `assumptions`, `energy_kind`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Callable

from nkilab.harness.cache import Cache
from nkilab.harness.chips import Target, get_target
from nkilab.harness.cost import energy
from nkilab.harness.cost import measured as measured_calls
from nkilab.harness.cost.calls import Call, Step, step_calls
from nkilab.harness.cost.deployment import Deployment, check_lnc, collective_time, deploy
from nkilab.harness.cost.estimate import KERNELS, CallCost, call_cost
from nkilab.harness.cost.measured import MeasuredCalls
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
    """The cost of one step and its tokens (`to_dict()` is the `nkilab cost --json` object). tokens/s are per
    instance (`tokens_per_s`), replica, rank (an LNC-core logical NeuronCore or a GPU), physical NeuronCore (`_core`;
    a GPU's = its rank's) and chip."""

    model: str
    phase: str
    target: str
    instance: str
    scheme: str
    kernels: str
    kv_dtype: str
    lnc: int | None
    batch: int
    ctx: int | None
    prefill: int
    tp: int
    tokens_per_step: int
    token_kind: str
    latency_s_per_step: float
    tokens_per_s: float
    tokens_per_s_per_replica: float
    tokens_per_s_per_rank: float
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


def _breakdown(parts: list[tuple[str, int, float, str, str | None]], total: float) -> list[dict]:
    return [{"kernel": name, "calls": calls, "latency_s": seconds, "share": seconds / total if total else 0.0,
             "method": method, "note": note} for name, calls, seconds, method, note in parts]


def _rank(lnc: int | None) -> str:
    return f"a logical NeuronCore of {lnc} core(s) (LNC={lnc})" if lnc else "one GPU"


def step_plan(model: str, step: Step, scheme: str, target: Target, *, tp: int | None = None,
              lnc: int | None = None, kv_dtype: str = "auto") -> tuple[Deployment, list[Call]]:
    """The deployment of `model` at `step` on `target` (`deployment.deploy`, its `lnc` resolved) and the calls of
    one step on one of its ranks (`calls.step_calls`): what `compose` costs and `--record-calls` measures."""
    if model not in MODELS:
        raise ValueError(f"model: unknown {model!r}; choose one of {', '.join(MODELS)}")
    quant = scheme_quant(scheme)
    place = deploy(MODELS[model], step, quant, target, tp, check_lnc(target, lnc), kv_dtype)
    return place, step_calls(replace(MODELS[model], tp=place.tp), step, quant, kv_dtype)


def _call_costs(calls: list[Call], target: Target, kernels: str, lnc: int | None, measured: MeasuredCalls | None,
                cache: Cache, progress) -> list[CallCost]:
    """Each call's cost: modeled (`estimate.call_cost` at `lnc`), or from `measured` (every call or a ValueError)."""
    if measured is None:
        return [call_cost(c.problem, target, kernels, cache, progress, lnc=lnc or 1) for c in calls]
    costs = [measured.call_cost(c.problem) for c in calls]
    missing = [c.problem for c, cost in zip(calls, costs) if cost is None]
    if missing:
        raise measured_calls.missing_error(measured, missing)
    return costs


def _labels(place: Deployment, target: Target, power_w: float | None, measured: MeasuredCalls | None) -> dict:
    """The `kind`, `method`, `assumptions` and energy fields of a modeled or a measured composition."""
    if measured is not None:
        return dict(kind=measured_calls.KIND, method=measured_calls.METHOD, energy_kind=measured_calls.ENERGY_KIND,
                    energy_method=measured_calls.ENERGY_METHOD,
                    energy_assumption=f"none: NVML energy per call measured on {measured.device} ({measured.path})",
                    assumptions=[f"each call measured alone on {measured.device} (warm, p50 of repeats); calls run "
                                 f"back to back", f"{place.replicas} replica(s) of tp=1 per {place.instance}",
                                 "prefill computes the logits of the last token only"])
    return dict(kind="modeled", method=TokenCost.method, energy_kind="modeled", energy_method=energy.METHOD,
                energy_assumption=energy.assumption(target, place.lnc, power_w),
                assumptions=[f"rank = {_rank(place.lnc)}, {place.ranks_per_chip} per chip; {place.replicas} "
                             f"replica(s) of tp={place.tp} per {place.instance}",
                             "calls run back to back (no overlap between kernels); each launch pays its fixed cost",
                             "prefill computes the logits of the last token only"])


def compose(model: str, step: Step, scheme: str, target: str, *, tp: int | None = None, lnc: int | None = None,
            kv_dtype: str = "auto", kernels: str = "nkilab", prices: dict[str, float] | None = None,
            cache: Cache | None = None, power_w: float | None = None, progress: Callable[[str], None] | None = None,
            measured: MeasuredCalls | None = None) -> TokenCost:
    """Model one step of `model` ("llama-3.1-8b", ...) on `target` ("inf2" ... "h200").

    Args:
        step: the work (`Step`: prefill S, decode batch at contexts, mixed).
        scheme: "bf16" | "fp8" | "int8" | "int4" (g128) weights.
        tp: tensor-parallel ranks per replica (None = the least power of two the HBM rule allows).
        lnc: Neuron: NeuronCores per rank, the runtime's logical-core degree (None = the target's default: 1 on
            inf2 / trn1, 2 on trn2 / trn3); every kernel is modeled as `kernel[lnc]`. Not for GPUs.
        kv_dtype: the KV cache's format, "auto" (the activations' bf16) | "fp8" | "int8" (`calls.KV_DTYPES`).
        kernels: "nkilab" (nkilab's kernels) | "naive" (dequantize-then-matmul GEMMs).
        prices: {instance: $/h} overrides; cache: the trace cache (None = the default one); power_w: the chip
            power assumption override, W; progress: called with a line before each trace that is not cached.
        measured: per-call records measured on the target GPU (`measured.load`): the row is `kind: "measured"`,
            every call from the records (ValueError naming the calls the file lacks), energy NVML-measured.
    """
    if kernels not in KERNELS:
        raise ValueError(f"kernels: must be one of {KERNELS}, got {kernels!r}")
    tgt = get_target(target)
    place, calls = step_plan(model, step, scheme, tgt, tp=tp, lnc=lnc, kv_dtype=kv_dtype)
    lnc = place.lnc
    if measured is not None:
        measured_calls.check_deployment(measured, kernels, place.tp)
    costs = _call_costs(calls, tgt, kernels, lnc, measured, cache if cache is not None else Cache(), progress)
    parts = [(c.name, c.count, c.count * cost.total_s, cost.method, cost.note) for c, cost in zip(calls, costs)]
    counted = [(cost, c.count) for c, cost in zip(calls, costs)]
    coll_s, coll_n = collective_time(replace(MODELS[model], tp=place.tp), step, tgt, place.tp, lnc)
    if coll_n:
        parts.append((COLLECTIVES, coll_n, coll_s, "ring model over the link table (deployment.py)", None))
    latency = sum(p[2] for p in parts)
    per_replica = step.tokens / latency
    per_instance = per_replica * place.replicas
    price = price_of(place.instance, prices)
    usd_mtok = price.usd_per_hour / (per_instance * 3600) * 1e6 if price.usd_per_hour is not None else None
    if measured is None:
        joules = energy.step_joules(counted, coll_s, tgt, place.tp, lnc, power_w=power_w)
    else:
        joules = measured_calls.step_joules(counted)
    uniform = len(set(step.contexts)) == 1
    return TokenCost(
        model=model, phase=step.phase, target=tgt.name, instance=place.instance, scheme=scheme, kernels=kernels,
        kv_dtype=kv_dtype, lnc=lnc, batch=step.batch, ctx=step.contexts[0] if uniform else None,
        prefill=step.prefill, tp=place.tp,
        tokens_per_step=step.tokens, token_kind=TOKEN_KIND[step.phase], latency_s_per_step=latency,
        tokens_per_s=per_instance, tokens_per_s_per_replica=per_replica, tokens_per_s_per_rank=per_replica / place.tp,
        tokens_per_s_per_core=per_replica / (place.tp * (lnc or 1)),
        tokens_per_s_per_chip=per_instance / INSTANCES[place.instance].chips, joules_per_token=joules / step.tokens,
        usd_per_hour=price.usd_per_hour, price_source=price.source, price_date=price.date, price_reason=price.reason,
        usd_per_mtoken=usd_mtok, deployment=place.to_dict(), breakdown=_breakdown(parts, latency),
        **_labels(place, tgt, power_w, measured))
