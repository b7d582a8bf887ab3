"""Where a replica runs: its tensor-parallel ranks, chips and instance (HBM capacity rule), and its TP collectives.

A **rank** is one logical NeuronCore of `lnc` physical cores (the runtime's LNC setting: kernels launch as
`kernel[lnc]`), or one GPU: a Neuron chip holds cores / lnc ranks (trn2: 8 ranks at LNC=1, 4 at LNC=2), each with
that share of the chip's HBM. A replica is `tp` ranks; an instance holds `chips x ranks_per_chip` ranks, so
`replicas` replicas.

**HBM capacity rule**: a rank holds its share of the weights (every projection and the lm_head in the scheme, at
per-rank shapes; the norms and the bf16 embedding table split over TP) plus its share of the KV cache (per rank
`kv_heads_per_rank` heads: tokens x layers x 2 x heads x head_dim x the format's bytes, 2 for bf16, 1 for fp8 and
int8, int8 adding a float32 scale per token and head) within `USABLE_HBM` of its HBM (chip HBM / ranks per chip,
so an LNC=2 rank has twice an LNC=1 rank's). Without an explicit `tp`, the smallest power of two that fits is
chosen. The instance is the smallest (fewest chips, then cheapest) of the target with at least `tp` ranks.

**TP collectives** (a model, from the link table `nkilab.harness.chips.LINKS`): per layer two all-reduces of the
step's [tokens, hidden] bf16 activations (after the o and the down projections), and one all-gather of the
[logit rows, vocab] bf16 logits. A ring over `tp` ranks: all-reduce = latency + 2 (tp - 1) / tp x bytes / bw,
all-gather = latency + (tp - 1) / tp x bytes / bw. Ranks on one chip exchange through its HBM (bw = a rank's HBM
share / 2: each byte written, then read); ranks across chips over the chip's link, shared by the chip's ranks in
the ring.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

from nkilab.harness.chips import LINKS, NeuronTarget, Target
from nkilab.harness.cost.calls import DTYPE, Step, kv_cache_dtype, weight_gemms
from nkilab.harness.cost.estimate import BF16_BYTES, gemm_weight_bytes
from nkilab.harness.cost.prices import INSTANCES, PRICES
from nkilab.harness.workloads.models import ModelShape
from nkilab.kernels.ops._kv_quant import scale_bytes
from nkilab.kernels.ops._problem import Quant
from nkilab.reference.kv_quant import storage_dtype

# share of a rank's HBM the weights and KV cache may fill; the rest is the runtime, activations and scratch
# [ASSUMED: no Neuron or NVIDIA document gives a reserve; 10 % is the usual serving headroom, cf. vLLM's 0.9
# gpu_memory_utilization default]
USABLE_HBM = 0.9
MAX_TP = 64


@dataclass(frozen=True)
class Deployment:
    """A replica's placement (see the module docstring); bytes per rank."""

    target: str
    lnc: int | None
    tp: int
    ranks_per_chip: int
    chips_per_replica: int
    instance: str
    replicas: int
    weight_bytes: float
    kv_bytes: float
    hbm_bytes: float
    usable_share: float = USABLE_HBM

    def to_dict(self) -> dict:
        return asdict(self)


def check_lnc(target: Target, lnc: int | None) -> int | None:
    """The rank's LNC on `target`: `lnc`, else the target's default (`lnc_default`); None on a GPU. ValueError
    naming `lnc` for a degree the target does not run (LNC=2 exists on trn2/trn3 only)."""
    if not isinstance(target, NeuronTarget):
        if lnc not in (None, 1):
            raise ValueError(f"lnc: a logical NeuronCore degree applies to Neuron targets, not {target.name} "
                             f"(got lnc={lnc!r})")
        return None
    if lnc is None:
        return target.lnc_default
    if lnc not in (1, 2) or (lnc == 2 and not target.lnc2) or isinstance(lnc, bool):
        able = "1 or 2" if target.lnc2 else "1 only"
        raise ValueError(f"lnc: {target.name} runs LNC {able}, got {lnc!r}")
    return lnc


def ranks_per_chip(target: Target, lnc: int | None = None) -> int:
    """Ranks a chip holds: its NeuronCores / lnc (Neuron; lnc None = 1), or 1 (a GPU)."""
    return target.cores // (lnc or 1) if isinstance(target, NeuronTarget) else 1


def weight_bytes(model: ModelShape, quant: Quant | None) -> float:
    """Bytes of the weights one rank holds (`model.tp` ranks)."""
    gemms = sum(count * gemm_weight_bytes(problem) for problem, count in weight_gemms(model, quant))
    norms = (2 * model.layers + 1) * model.hidden * BF16_BYTES / model.tp  # two per layer and the final one
    embedding = model.vocab * model.hidden * BF16_BYTES / model.tp
    return gemms + norms + embedding


def kv_bytes(model: ModelShape, kv_tokens: int, kv_dtype: str = "auto") -> float:
    """Bytes of the KV cache one rank holds for `kv_tokens` cached tokens in `kv_dtype` ("auto" = the activations'
    bf16; "fp8": 1 B per element; "int8": 1 B per element + a float32 scale per token, kv head, K and V)."""
    kv, heads = kv_cache_dtype(kv_dtype), model.kv_heads_per_rank
    element = storage_dtype(kv, DTYPE).itemsize
    per_layer = 2 * heads * model.head_dim * element * kv_tokens + scale_bytes(kv, kv_tokens, heads)
    return float(model.layers * per_layer)


def _fits(model: ModelShape, step: Step, quant, target: Target, tp: int, lnc: int | None,
          kv_dtype: str) -> tuple[bool, float, float, float]:
    shaped = replace(model, tp=tp)
    w, kv = weight_bytes(shaped, quant), kv_bytes(shaped, step.kv_tokens, kv_dtype)
    hbm = target.hbm_bytes / ranks_per_chip(target, lnc)
    return w + kv <= USABLE_HBM * hbm, w, kv, hbm


def _instance(target: Target, tp: int, lnc: int | None) -> str | None:
    per_chip = ranks_per_chip(target, lnc)
    options = [i for i in INSTANCES.values() if i.target == target.name and i.chips * per_chip >= tp]
    options.sort(key=lambda i: (i.chips, PRICES[i.name].usd_per_hour or math.inf))
    return options[0].name if options else None


def deploy(model: ModelShape, step: Step, quant: Quant | None, target: Target, tp: int | None = None,
           lnc: int | None = None, kv_dtype: str = "auto") -> Deployment:
    """The replica's placement with ranks of `lnc` cores (None = the target's default, `check_lnc`); ValueError
    naming `tp` when the given degree does not fit (or none does), naming `lnc` for a degree the target lacks."""
    lnc = check_lnc(target, lnc)
    if tp is not None and (not isinstance(tp, int) or tp < 1 or model.q_heads % tp):
        raise ValueError(f"tp: must be an int >= 1 dividing the {model.q_heads} query heads, got {tp!r}")
    candidates = [tp] if tp is not None else [d for d in (2**i for i in range(7)) if d <= MAX_TP
                                              and not model.q_heads % d]
    for degree in candidates:
        ok, w, kv, hbm = _fits(model, step, quant, target, degree, lnc, kv_dtype)
        instance = _instance(target, degree, lnc)
        if ok and instance is not None:
            per_chip = ranks_per_chip(target, lnc)
            replicas = INSTANCES[instance].chips * per_chip // degree
            return Deployment(target.name, lnc, degree, per_chip, math.ceil(degree / per_chip), instance, replicas,
                              w, kv, hbm)
        if tp is not None:
            why = (f"{(w + kv) / 2**30:.2f} GiB of weights + KV per rank exceed {USABLE_HBM:.0%} of "
                   f"{hbm / 2**30:.2f} GiB" if not ok else f"no {target.name} instance has {degree} ranks")
            raise ValueError(f"tp: {degree} does not fit on {target.name} (LNC={lnc}): {why}")
    raise ValueError(f"tp: no degree in {candidates} fits {model.name} ({step.kv_tokens} KV tokens) on "
                     f"{target.name}'s instances")


def _collective_bw(target: Target, tp: int, lnc: int | None) -> float:
    per_chip = ranks_per_chip(target, lnc)
    if tp <= per_chip:
        return target.hbm_bw / per_chip / 2
    return LINKS[target.name].bw / per_chip


def collective_time(model: ModelShape, step: Step, target: Target, tp: int,
                    lnc: int | None = None) -> tuple[float, int]:
    """(seconds of TP collectives per step, collective launches per step) for a replica of `tp` ranks of `lnc`
    cores each (None: 1 on Neuron; a GPU)."""
    if tp == 1:
        return 0.0, 0
    link, bw = LINKS[target.name], _collective_bw(target, tp, lnc)
    reduce_bytes = step.tokens * model.hidden * BF16_BYTES
    gather_bytes = step.logits_rows * model.vocab * BF16_BYTES
    all_reduce = link.latency_s + 2 * (tp - 1) / tp * reduce_bytes / bw
    all_gather = link.latency_s + (tp - 1) / tp * gather_bytes / bw
    return 2 * model.layers * all_reduce + all_gather, 2 * model.layers + 1
