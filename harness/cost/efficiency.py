"""The roofline-efficiency model: the kernel calls no instruction trace covers, modeled as a share of the roofline.

    time = max(FLOPs / (peak x compute), HBM bytes / (bandwidth x memory)) + launch_s          (kind "modeled")

It stands for (a) every call on a GPU (h100 / h200: nkilab's Triton kernels and the torch baselines have no
trace model), and (b) on Neuron, the calls nkilab has no NKI kernel for: a bf16-weight GEMM and the
dequantize-then-matmul baseline of a quantized GEMM (`NAIVE`). Peaks and bandwidths are the chip table's
(`nkilab.harness.chips`); weight-only schemes compute in bf16, so GEMMs use the bf16 peak.

Factors and their sources:
  [FA3]  FlashAttention-3 (arXiv 2407.08608): FP16 attention at 740 TFLOP/s = 75 % of the H100's dense peak with
         Hopper-specific code; FlashAttention-2 reaches 35 % on H100.
  [PG]   Neuron NKI performance guide (nki/deep-dives/nki_perf_guide.rst): memory-bound kernels at MBU >= 60 % are
         "considered good in practice".
  [ASSUMED] no stored source; stated here and overridable by editing this table.
"""

from __future__ import annotations

from dataclasses import dataclass

from nkilab.harness.cost.calls import is_gemm


@dataclass(frozen=True)
class Efficiency:
    """Shares of the roofline a kernel class reaches: `compute` of the dense peak, `memory` of the HBM bandwidth;
    `launch_s` its fixed per-launch cost, s (None = the target's own `launch_s`); `source` the reasons."""

    compute: float
    memory: float
    launch_s: float | None
    source: str


_GPU_LAUNCH_S = 4e-6  # one CUDA kernel launch without graphs [ASSUMED: the usual 3-5 us of launch latency]
_GPU_MEMORY = 0.8  # streaming share of HBM bandwidth a Triton kernel sustains [ASSUMED]

# kernel class -> efficiency of a Triton kernel on H100 / H200
GPU: dict[str, Efficiency] = {
    "gemm": Efficiency(0.75, _GPU_MEMORY, _GPU_LAUNCH_S,
                       "compute 0.75: the Hopper-tuned share [FA3], assumed for Triton GEMMs; memory [ASSUMED]"),
    "attn": Efficiency(0.35, _GPU_MEMORY, _GPU_LAUNCH_S,
                       "compute 0.35: FlashAttention-2's H100 share [FA3], Triton flash attention being of its kind "
                       "[ASSUMED]; memory [ASSUMED]"),
    "elementwise": Efficiency(0.75, _GPU_MEMORY, _GPU_LAUNCH_S, "memory-bound; memory [ASSUMED]"),
}

# on Neuron: a GEMM nkilab has no kernel for (bf16 weights, or the dequantize-then-matmul baseline)
NAIVE = Efficiency(0.6, 0.6, None, "MBU 0.6, the NKI guide's 'good in practice' [PG]; compute 0.6 [ASSUMED]")



def kernel_class(problem) -> str:
    """"gemm" (the weight GEMMs: their workload rows name a `projection`), "attn" (the attention families'
    rows count query heads `hq`) or "elementwise" (rms_norm, rope, silu_mul, write_kv_cache)."""
    if is_gemm(problem):
        return "gemm"
    return "attn" if "hq" in problem.params else "elementwise"


def roofline_time(flops: float, hbm_bytes: float, peak: float, bandwidth: float, eff: Efficiency) -> float:
    """max(flops / (peak x compute), bytes / (bandwidth x memory)), s (launch excluded)."""
    return max(flops / (peak * eff.compute), hbm_bytes / (bandwidth * eff.memory))
