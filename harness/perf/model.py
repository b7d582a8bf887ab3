"""`estimate(kernel, *args, target=)`: the modeled performance of any NKI kernel on a Neuron target.

The kernel runs once in the emulator's trace mode (no values computed), then `schedule.schedule` times the trace
with the target's chip table. The result is a *modeled* figure: it says what the chip tables and the cost rules
of `cost.py` imply, never what a device measured.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field

from nkilab.harness.chips import NeuronTarget, get_target
from nkilab.harness.emulator import run
from nkilab.harness.emulator.trace import Trace
from nkilab.harness.perf.cost import is_transpose, matmul_dtype
from nkilab.harness.perf.roofline import roofline_bound_s
from nkilab.harness.perf.schedule import schedule
from nkilab.reference.dtypes import peak_family

METHOD = "nkilab instruction-level model: emulator trace -> per-engine costs (perf/cost.py) -> dependency schedule"
LATENCY_BOUND_SHARE = 0.5  # busiest engine under half the makespan: the kernel waits on dependencies, not work


@dataclass
class Estimate:
    """Modeled performance of one kernel launch on one Neuron target.

    Attributes:
        kernel: kernel name; target: target key; lnc: logical core degree (physical cores used).
        latency_s: kernel time, from its first instruction to its last result, s (launch overhead excluded).
        launch_overhead_s: the runtime's fixed pre-/postamble around one launch, s (the target's `launch_s`).
        with_launch_s: latency_s + launch_overhead_s, s: what a profile timeline (`total_time`) or a device
            benchmark of one launch measures, and what calibration compares with them.
        engine_busy_s: per engine ("tensor", "vector", "scalar", "gpsimd", "dma") occupied time, s.
        flops: TensorE matmul FLOPs (transposes excluded); total_flops: every FLOP in the trace.
        flops_by_dtype: TensorE FLOPs per input dtype's peak-table family ("bf16" | "fp8" | "fp32" | "int8").
        hbm_bytes: bytes read from or written to HBM.
        mfu: flops / (latency_s x TensorE peak for the dominant input dtype).
        mbu: hbm_bytes / (latency_s x HBM bandwidth of the lnc cores).
        bottleneck: busiest engine, or "latency" when no engine is busy half the time.
        roofline_s: max(FLOPs / peak, HBM bytes / bandwidth), s; latency_s >= roofline_s always.
        instructions: trace length; instruction_mix: {engine: {opcode: count}} of the trace (engines that issued any).
        kind: always "modeled"; method: how the figure was made.
    """

    kernel: str
    target: str
    lnc: int
    latency_s: float
    launch_overhead_s: float
    with_launch_s: float
    engine_busy_s: dict[str, float]
    flops: float
    total_flops: float
    flops_by_dtype: dict[str, float]
    hbm_bytes: float
    mfu: float
    mbu: float
    bottleneck: str
    roofline_s: float
    instructions: int
    instruction_mix: dict[str, dict[str, int]]
    peak_flops: float
    bandwidth: float
    kind: str = "modeled"
    method: str = METHOD
    assumptions: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def model_trace(trace: Trace, target: str | NeuronTarget = "trn2") -> Estimate:
    """Model a recorded trace on a Neuron target (`target` a key or a `NeuronTarget`; ValueError otherwise)."""
    tgt = get_target(target, neuron=True)
    timed = schedule(trace, tgt)
    lnc = max(int(trace.lnc or 1), timed.cores)
    flops_by_dtype: dict[str, float] = defaultdict(float)
    for inst in trace.instructions:
        if inst.engine == "tensor" and inst.flops and not is_transpose(inst):
            flops_by_dtype[peak_family(matmul_dtype(inst))] += inst.flops
    tensor_flops = sum(flops_by_dtype.values())
    hbm = float(trace.hbm_bytes)
    latency = timed.makespan_s
    dominant = max(flops_by_dtype, key=flops_by_dtype.get) if flops_by_dtype else "bf16"
    peak = tgt.family_peak(dominant, lnc=lnc)
    bandwidth = tgt.bandwidth(lnc=lnc)
    busiest = max(timed.engine_busy_s, key=timed.engine_busy_s.get)
    if latency <= 0 or timed.engine_busy_s[busiest] < LATENCY_BOUND_SHARE * latency:
        bottleneck = "latency"
    else:
        bottleneck = busiest
    return Estimate(
        kernel=trace.kernel, target=tgt.name, lnc=lnc, latency_s=latency, launch_overhead_s=tgt.launch_s,
        with_launch_s=latency + tgt.launch_s,
        engine_busy_s=dict(timed.engine_busy_s), flops=tensor_flops, total_flops=float(trace.flops),
        flops_by_dtype=dict(flops_by_dtype), hbm_bytes=hbm,
        mfu=tensor_flops / (latency * peak) if latency > 0 else 0.0,
        mbu=hbm / (latency * bandwidth) if latency > 0 else 0.0,
        bottleneck=bottleneck, roofline_s=roofline_bound_s(flops_by_dtype, hbm, tgt, lnc=lnc),
        instructions=len(trace), peak_flops=peak, bandwidth=bandwidth,
        instruction_mix={engine: dict(ops) for engine, ops in trace.instruction_mix().items() if ops},
        assumptions=[f"{tgt.name}: per-core tables in nkilab.harness.chips; launch pre/postamble "
                     f"{tgt.launch_s * 1e6:g} us reported apart (with_launch_s includes it)"],
    )


def estimate(kernel, *args, target: str = "trn2", **kwargs) -> Estimate:
    """Modeled performance of an NKI kernel (nkilab's or a user's) on a Neuron target.

    Args:
        kernel: an `nki.jit` kernel (emulator or SDK source), optionally indexed by LNC (`kernel[2]`).
        *args: its arguments — HBM-shaped NumPy arrays; zeros are fine, values are never computed.
        target: "inf2" | "trn1" | "trn2" | "trn3".
        **kwargs: keyword arguments of the kernel.

    Returns:
        Estimate with latency_s, engine_busy_s, flops, hbm_bytes, mfu, mbu, bottleneck (kind "modeled").
    """
    tgt = get_target(target, neuron=True)
    result = run(kernel, *args, target=tgt.name, mode="trace", **kwargs)
    return model_trace(result.trace, tgt)
