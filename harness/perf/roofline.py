"""Roofline bounds: the time no kernel can beat, given its FLOPs and HBM bytes.

    bound_s = max(sum_d flops_d / peak_d, hbm_bytes / bandwidth)

with `flops_d` the TensorE FLOPs done with input dtype family d (bf16 | fp8 | fp32 | int8) and `peak_d` that
family's dense peak. Vector/Scalar FLOPs are left out of the compute term (their peaks are far below TensorE's
and the roofline is drawn for matmul work), so the bound stays a lower bound.
"""

from __future__ import annotations

from nkilab.harness.chips import Target


def compute_bound_s(flops_by_family: dict[str, float], target: Target, *, lnc: int | None = None) -> float:
    """Time for the TensorE FLOPs alone at peak: sum over peak-table families of flops / peak, s."""
    return sum(f / target.family_peak(family, lnc=lnc) for family, f in flops_by_family.items() if f)


def memory_bound_s(hbm_bytes: float, target: Target, *, lnc: int | None = None) -> float:
    """Time to move `hbm_bytes` at the target's HBM bandwidth, s."""
    return hbm_bytes / target.bandwidth(lnc=lnc)


def roofline_bound_s(flops_by_family: dict[str, float], hbm_bytes: float, target: Target, *,
                     lnc: int | None = None) -> float:
    """max(compute bound, memory bound), s — what `latency_s` can never go below."""
    return max(compute_bound_s(flops_by_family, target, lnc=lnc), memory_bound_s(hbm_bytes, target, lnc=lnc))


def ridge_point(target: Target, dtype: str = "bfloat16") -> float:
    """FLOPs per byte where the compute and memory roofs meet."""
    return target.peak(dtype) / target.bandwidth()
