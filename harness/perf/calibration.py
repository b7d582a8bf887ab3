"""Calibration: the model against published device measurements, one constant set per generation, no per-kernel
factor.

The published points (paths in aws-neuron/aws-neuron-sdk unless another repository is named):
  [KO]   nki/guides/tutorials/kernel-optimization.rst (SDK 2.27 docs), trn2, one NeuronCore, Neuron Profiler
         timelines: fp32 lhsT[8192, 4096] x rhs[8192, 8192], tiled 39.89 ms, loads hoisted 28.20 ms, free dims
         blocked 2 x 2 28.41 ms, all dims blocked 16/2/8 (partial sums in SBUF) 28.30 ms.
  [AT]   awslabs/nki-autotune kernel_library README, trn2, bf16 M = K = N = 2048, MFU from the Neuron profiler
         summary (mfu_estimated_percent: matmul FLOPs / (total_time x 2·128·128 FLOP/cycle x 2.4 GHz)): the
         all-blocked kernel 60.6 % (blocking 16/2/8) and 79.1 % (4/1/8) (README at b672385: its port
         kernel_manual_79.05mfu.py, "upstream default 16/2/8 ... drops to 60.56% at 2K³"); the hand-tuned lhsT.rhs
         kernel 90.92 % (kernel_hand_90.92mfu.py) and lhs.rhs with a DMA transpose 89.26 % ("10-rep mean",
         kernel_handtuned_89.26mfu.py), both at d57bcc3 (2026-06).
  [PROF] the legacy NKI profiling guide (nki/how-to-guides/neuron_profile_for_nki.rst, Dec 2025), trn1: its
         one-tile exp kernel's timeline, 29.26 us end to end (input tile [128, 512] fp32).

Every published figure is a whole-launch figure (a profile's total_time includes the runtime's pre-/postamble), so
the modeled figure it is compared with is `Estimate.with_launch_s` (kernel + launch); MFU points use it too. The
kernels are `calibration_kernels.py`. `nkilab calibrate` renders the table (`calibration_report.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nkilab.harness.chips import get_target
from nkilab.harness.emulator import run
from nkilab.harness.perf import calibration_kernels as ck
from nkilab.harness.perf.model import Estimate, model_trace
from nkilab.reference.dtypes import numpy_dtype

TOLERANCE = 0.25  # issue 18: every point within +-25 % of the published value
SOURCES = {  # the tags of `CalibrationPoint.source` (the module docstring has the detail)
    "[KO]": "aws-neuron-sdk nki/guides/tutorials/kernel-optimization.rst (SDK 2.27 docs), trn2 profile timelines",
    "[AT]": "awslabs/nki-autotune kernel_library README (2048^3 bf16 on trn2, profiler MFU)",
    "[PROF]": "aws-neuron-sdk legacy nki/how-to-guides/neuron_profile_for_nki.rst (Dec 2025), trn1 timeline",
}


@dataclass(frozen=True)
class CalibrationPoint:
    """One published measurement and the kernel that reproduces its structure.

    Attributes:
        name: short id. kernel: a function of `calibration_kernels`; kwargs: its blocking.
        inputs: ((shape, dtype name), ...) of the kernel's HBM arguments (zeros; trace mode computes nothing).
        target: where it was measured. metric: "latency_s" or "mfu"; published: the value in that metric.
        source: tag (module docstring) and item. method: how the figure was measured.
        structure: the kernel's loop structure in one line.
    """

    name: str
    kernel: object
    kwargs: dict
    inputs: tuple
    target: str
    metric: str
    published: float
    source: str
    method: str
    structure: str


_KO = "Neuron Profiler timeline (trn2, one NeuronCore)"
_AT = "profiler MFU: matmul FLOPs / (total_time x TensorE peak)"
_FP32 = (((8192, 4096), "float32"), ((8192, 8192), "float32"))
_BF16 = (((2048, 2048), "bfloat16"), ((2048, 2048), "bfloat16"))
_AT_BLOCKED = "N, K, M blocks of {} tiles; one PSUM + one staging tile per M block, shared by its output tiles"

POINTS = (
    CalibrationPoint("fp32 4096x8192x8192 tiled", ck.matmul_tiled, {}, _FP32, "trn2", "latency_s", 39.89e-3,
                     "[KO] tiled kernel", _KO, "per (m, n): per k: load both tiles, matmul into PSUM; then store"),
    CalibrationPoint("fp32 4096x8192x8192 hoisted", ck.matmul_hoisted, {}, _FP32, "trn2", "latency_s", 28.20e-3,
                     "[KO] loads hoisted", _KO, "per m: lhsT column; per (m, n): rhs column, 64 matmuls, store"),
    CalibrationPoint("fp32 4096x8192x8192 free-blocked 2x2", ck.matmul_free_blocked, {}, _FP32, "trn2",
                     "latency_s", 28.41e-3, "[KO] free dims blocked", _KO,
                     "2 x 2 output tiles per block: per k 2 + 2 loads feed 4 matmuls"),
    CalibrationPoint("fp32 4096x8192x8192 all-blocked 16/2/8", ck.matmul_all_blocked, {}, _FP32, "trn2",
                     "latency_s", 28.30e-3, "[KO] all dims blocked", _KO,
                     "N, K, M blocks; partial sums added into SBUF accumulators"),
    CalibrationPoint("bf16 2048^3 all-blocked 16/2/8", ck.matmul_all_blocked,
                     dict(tiles_m=16, tiles_n=2, tiles_k=8, shared_partials=True), _BF16, "trn2", "mfu", 0.606,
                     "[AT] all-blocked 16/2/8", _AT, _AT_BLOCKED.format("16/2/8")),
    CalibrationPoint("bf16 2048^3 all-blocked 4/1/8", ck.matmul_all_blocked,
                     dict(tiles_m=4, tiles_n=1, tiles_k=8, shared_partials=True), _BF16, "trn2", "mfu", 0.791,
                     "[AT] all-blocked 4/1/8", _AT, _AT_BLOCKED.format("4/1/8")),
    CalibrationPoint("bf16 2048^3 lhsT.rhs hand-tuned", ck.matmul_lhst_rhs_streamed, {}, _BF16, "trn2", "mfu",
                     0.9092, "[AT] kernel_hand_90.92mfu", _AT,
                     "N blocks; K halves x M blocks streamed through 2 x 4 rotating tile sets; PSUM per tile"),
    CalibrationPoint("bf16 2048^3 lhs.rhs DMA transpose", ck.matmul_lhs_rhs_transposed, {}, _BF16, "trn2", "mfu",
                     0.8926, "[AT] kernel_handtuned_89.26mfu (10-rep mean)", _AT,
                     "M halves, N blocks, K halves; lhs transposed by dma_transpose on the way in"),
    CalibrationPoint("fp32 [128, 512] exp, one tile", ck.exp_one_tile, {}, (((128, 512), "float32"),), "trn1",
                     "latency_s", 29.26e-6, "[PROF] profiling guide exp kernel", "Neuron Profiler timeline, whole",
                     "load (software DGE), exp on ScalarE, store (software DGE)"),
)
# points that trace in seconds (the tiled, hoisted and free-blocked fp32 kernels trace 66k-99k instructions each)
QUICK_POINTS = tuple(p for p in POINTS if p.inputs is not _FP32 or p.kernel is ck.matmul_all_blocked)


def model_point(point: CalibrationPoint) -> Estimate:
    """Trace `point`'s kernel at its shapes (zeros; trace mode computes nothing) and model it on its target."""
    args = [np.zeros(shape, numpy_dtype(dtype)) for shape, dtype in point.inputs]
    result = run(point.kernel, *args, target=point.target, mode="trace", **point.kwargs)
    return model_trace(result.trace, get_target(point.target, neuron=True))


def modeled_value(point: CalibrationPoint, est: Estimate) -> float:
    """The estimate in the point's metric, for the whole launch (kernel + launch pre/postamble)."""
    if point.metric == "latency_s":
        return est.with_launch_s
    return est.flops / (est.with_launch_s * est.peak_flops)


def show(point: CalibrationPoint, value: float) -> str:
    """A value in the point's metric, for tables."""
    if point.metric == "mfu":
        return f"{value:.1%} MFU"
    return f"{value * 1e3:.2f} ms" if value >= 1e-3 else f"{value * 1e6:.2f} us"


def calibration_table(points=POINTS, progress=None) -> list[dict]:
    """One row per point: name, structure, published (with source and method), modeled (kernel + launch, and the
    two parts), ratio (model / published), bottleneck, roofline. `progress(i, n, point)` is called before each
    point is traced."""
    rows = []
    for i, point in enumerate(points):
        if progress is not None:
            progress(i, len(points), point)
        est = model_point(point)
        value = modeled_value(point, est)
        rows.append({"name": point.name, "target": point.target, "structure": point.structure,
                     "published": show(point, point.published), "source": point.source, "method": point.method,
                     "modeled": show(point, value), "kernel_s": est.latency_s, "launch_s": est.launch_overhead_s,
                     "ratio": value / point.published, "bottleneck": est.bottleneck, "roofline_s": est.roofline_s,
                     "latency_s": est.latency_s, "mfu": est.mfu, "engine_busy_s": est.engine_busy_s})
    return rows
