"""One kernel call's modeled time on one rank: from its NKI trace (cached), or from the roofline-efficiency model.

  "nkilab" kernels   Neuron: every call nkilab has an NKI kernel for is traced in the emulator and costed by the
                     instruction-level model (`perf.model_trace`); a bf16-weight GEMM (no NKI kernel) falls back to
                     the roofline-efficiency model (`efficiency.NAIVE`). GPU: the fused Triton kernels at the GPU
                     factors (`efficiency.GPU`).
  "naive" kernels    as above, except each quantized GEMM is the dequantize-then-matmul baseline: one pass reading
                     the packed weights and writing them in bf16, then a bf16 GEMM (two launches); a bf16 GEMM is a
                     roofline-efficiency GEMM on both kinds of chip. Other kernels have no earlier version, so they
                     stay nkilab's.

A Neuron call runs on one rank, a logical NeuronCore of `lnc` physical cores: the kernel is traced as
`kernel[lnc]` and the roofline-efficiency model uses that rank's peak and bandwidth. A kernel that does not split its
work by program id repeats the whole kernel on each core at LNC=2 (`profile.replication_note`): its LNC=2 latency
is what the model gives for that trace (no speed-up, an upper bound), and the call's `note` says so.

Traced estimates are cached (`nkilab.harness.cache`) by the source hash of the NKI kernels, the emulator, the
performance model and the chip table, the problem (its backend spec and shape parameters), the LNC and the target's
core tables (`core_key`): a second composition of the same step reads them back instead of tracing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Callable

from nkilab.harness.cache import Cache
from nkilab.harness.chips import NeuronTarget, Target
from nkilab.harness.cost.calls import is_gemm
from nkilab.harness.cost.efficiency import GPU, NAIVE, Efficiency, kernel_class, roofline_time
from nkilab.harness.perf.model import model_trace
from nkilab.harness.profile import replication_note
from nkilab.harness.record_cache import model_source_hash  # one hash of the modeled sources (tuning tables too)
from nkilab.kernels import nki
from nkilab.kernels.ops._problem import Problem

KERNELS = ("nkilab", "naive")
TRACE_METHOD = "NKI trace + instruction-level model (nkilab.harness.perf)"
ROOFLINE_METHOD = "roofline-efficiency model (cost/efficiency.py)"
BF16_BYTES = 2
CACHE_VERSION = 2  # 2: the key names the LNC, the value the replication note


@dataclass(frozen=True)
class CallCost:
    """Modeled cost of one launch of a call on one rank.

    Attributes:
        latency_s: kernel time, s; launch_s: the fixed per-launch cost(s) on top, s.
        utilization: busiest engine (trace) or roofline share (roofline model) of latency_s, 0..1 (the modeled
            energy); None for a measured call (not known).
        method: how latency_s was obtained; kind: "modeled", or "measured" (`measured.py`).
        note: what the figure leaves out or bounds (e.g. an LNC=2 kernel that repeats the whole kernel); None.
        joules: measured joules of one launch (NVML); None for a modeled call.
    """

    latency_s: float
    launch_s: float
    utilization: float | None
    method: str
    kind: str = "modeled"
    note: str | None = None
    joules: float | None = None

    @property
    def total_s(self) -> float:
        return self.latency_s + self.launch_s


def core_key(target: NeuronTarget) -> dict:
    """What a trace and its modeled time depend on in a target row: everything but its name, description and
    power (so inf2 and trn1, one NeuronCore-v2 with the same HBM share, share their cached traces)."""
    row = asdict(target)
    for name in ("name", "description", "power_w", "power_source", "idle_share"):
        row.pop(name)
    return row


def _traced(problem: Problem, target: NeuronTarget, lnc: int, cache: Cache,
            progress: Callable[[str], None] | None) -> dict:
    key = {"v": CACHE_VERSION, "what": "nki-estimate", "source": model_source_hash(), "op": problem.op,
           "spec": problem.spec(), "params": problem.params, "core": core_key(target), "lnc": lnc}

    def compute() -> dict:
        if progress is not None:
            progress(f"tracing {problem.op} {problem.name} on {target.name} (LNC={lnc})")
        trace = nki.trace(problem.op, {**problem.params, **problem.spec()}, target.name, lnc=lnc)
        est = model_trace(trace, target)
        busiest = max(est.engine_busy_s.values()) if est.engine_busy_s else 0.0
        return {"latency_s": est.latency_s, "launch_overhead_s": est.launch_overhead_s, "busiest_s": busiest,
                "bottleneck": est.bottleneck, "flops": est.flops, "hbm_bytes": est.hbm_bytes,
                "note": replication_note(trace)}

    return cache.get_or_compute(key, compute)


def gemm_weight_bytes(problem: Problem) -> float:
    """HBM bytes of a qmatmul problem's weights in its scheme (None = bf16): the op's formula at M = 0."""
    p = problem.params
    if problem.quant is None:
        return float(BF16_BYTES * p["k"] * p["n"])
    return replace(problem, params=dict(p, m=0)).hbm_bytes()


def _roofline(flops: float, hbm_bytes: float, target: Target, eff: Efficiency, lnc: int | None,
              launches: int = 1) -> CallCost:
    peak, bandwidth = target.family_peak("bf16", lnc=lnc), target.bandwidth(lnc=lnc)
    t = roofline_time(flops, hbm_bytes, peak, bandwidth, eff)
    bound = max(flops / peak, hbm_bytes / bandwidth)
    launch = target.launch_s if eff.launch_s is None and isinstance(target, NeuronTarget) else (eff.launch_s or 0.0)
    return CallCost(t, launches * launch, bound / t if t > 0 else 0.0, ROOFLINE_METHOD)


def _gemm(problem: Problem, target: Target, eff: Efficiency, fused: bool, lnc: int | None) -> CallCost:
    """A GEMM at the roofline-efficiency model: fused (reads the packed weights) or bf16 / dequantize-then-matmul."""
    p = problem.params
    activations = BF16_BYTES * (p["m"] * p["k"] + p["m"] * p["n"])
    bf16_weights = BF16_BYTES * p["k"] * p["n"]
    if fused or problem.quant is None:
        return _roofline(problem.flops(), activations + gemm_weight_bytes(problem), target, eff, lnc)
    dequant = _roofline(0.0, gemm_weight_bytes(problem) + bf16_weights, target, eff, lnc)
    matmul = _roofline(problem.flops(), activations + bf16_weights, target, eff, lnc)
    latency = dequant.latency_s + matmul.latency_s
    busy = dequant.utilization * dequant.latency_s + matmul.utilization * matmul.latency_s
    return CallCost(latency, dequant.launch_s + matmul.launch_s, busy / latency if latency else 0.0,
                    ROOFLINE_METHOD + ": dequantize-then-matmul")


def call_cost(problem: Problem, target: Target, kernels: str, cache: Cache,
              progress: Callable[[str], None] | None = None, *, lnc: int = 1) -> CallCost:
    """The modeled cost of one launch of `problem` on one rank of `target` with `kernels` ("nkilab" | "naive");
    on Neuron the rank is a logical core of `lnc` NeuronCores (ignored on a GPU)."""
    if kernels not in KERNELS:
        raise ValueError(f"kernels: must be one of {KERNELS}, got {kernels!r}")
    gemm = is_gemm(problem)
    if not isinstance(target, NeuronTarget):
        eff = GPU[kernel_class(problem)]
        if gemm:
            return _gemm(problem, target, eff, kernels == "nkilab", None)
        return _roofline(problem.flops(), problem.hbm_bytes(), target, eff, None)
    if gemm and (problem.quant is None or kernels == "naive"):
        return _gemm(problem, target, NAIVE, False, lnc)
    est = _traced(problem, target, lnc, cache, progress)
    latency = est["latency_s"]
    return CallCost(latency, est["launch_overhead_s"], est["busiest_s"] / latency if latency > 0 else 0.0,
                    TRACE_METHOD, note=est["note"])
