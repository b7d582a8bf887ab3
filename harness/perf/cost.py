"""Cost of one traced instruction on one NeuronCore: how long it holds its engine, and when its result is usable.

Rules (constants from the Neuron rows of `nkilab.harness.chips`, each with its source there):
  TensorE   nc_matmul / transposes: max(N, 64) cycles at the TensorE clock, N = moving free size (a transpose
            streams an identity of P columns); x K/128 passes for deeper contractions; x4 for fp32 inputs;
            / fp8_speedup for fp8 inputs issued in a perf mode (double row on v3, MX quad on v4).
  VectorE   overhead + free_elems x tensor_inputs / lane_rate cycles (lane_rate "fast" when every operand is a
  ScalarE   2-byte float, or fp8 on v4, in SBUF); tensor_inputs counts read operands wider than one element per
  GpSimdE   partition (scalars and [P, 1] columns ride along for free), at least 1.
  DMA       split over q = min(queues, runs) DMA engines, runs = contiguous chunks (a chunk over 64 KiB counts
            once per 64 KiB); each engine spends transfer_s + (runs/q) x max(run bytes / bw, run_min_s), with bw
            the engine's bandwidth capped at its share of the core's HBM bandwidth when HBM is touched (small
            runs are descriptor-rate bound); indirect or software-DGE transfers pay dge_run_s per run on top;
            the data is usable dma_latency_s after the engines finish. The trace's `queue` attribute (the
            emulator's round-robin issue queue) is not used: the hardware spreads each transfer over up to 16
            engines by its shape [DMA overview], and so does the model.

Times are seconds. Nothing here looks at other instructions: `schedule.py` places the costs in time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from nkilab.harness.emulator.trace import Instruction
from nkilab.harness.chips import KiB, NeuronTarget
from nkilab.reference.dtypes import peak_family

DMA_SPLIT_BYTES = 64 * KiB  # a contiguous run longer than this is cut into several descriptors/engines
_FAST_DTYPES_V3 = ("bfloat16", "float16")
_PERF_MODES = ("double_row", "double_row_gen3", "fp8x2", "fp8x4", "mx", "quad")
_DEFAULT_N = 512  # N of a TensorE instruction with no operand to read it from: one full moving tile


@dataclass(frozen=True)
class InstructionCost:
    """How one instruction occupies the hardware.

    Attributes:
        engine: "tensor" | "vector" | "scalar" | "gpsimd" | "dma".
        busy_s: time it holds its engine; for DMA, the time it holds each of the `queues` DMA engines it uses.
        queues: DMA engines the transfer is split over (1 for compute engines).
        latency_s: extra time after the engine is released before dependents may use the result.
    """

    engine: str
    busy_s: float
    queues: int = 1
    latency_s: float = 0.0


def instruction_cost(inst: Instruction, core: NeuronTarget) -> InstructionCost:
    """Cost of `inst` on one NeuronCore of target `core` (see the module docstring for the rules)."""
    if inst.engine == "tensor":
        return InstructionCost("tensor", _tensor_cycles(inst, core) / core.tensor_hz)
    if inst.engine == "dma":
        return _dma_cost(inst, core)
    if inst.engine == "vector":
        rate = core.vector_lane_rate_fast if _fast_operands(inst, core) else core.vector_lane_rate
        return InstructionCost("vector", _elementwise_cycles(inst, core, rate) / core.vector_hz)
    if inst.engine == "scalar":
        rate = core.scalar_lane_rate_fast if _fast_operands(inst, core) else core.scalar_lane_rate
        return InstructionCost("scalar", _elementwise_cycles(inst, core, rate) / core.scalar_hz)
    if inst.engine == "gpsimd":
        return InstructionCost("gpsimd", _elementwise_cycles(inst, core, core.gpsimd_lane_rate) / core.gpsimd_hz)
    raise ValueError(f"inst.engine: {inst.engine!r} is not a known engine (instruction {inst!r})")


def is_transpose(inst: Instruction) -> bool:
    """True for TensorE transposes (identity matmuls), which move data rather than compute."""
    return "transpose" in inst.opcode or bool(inst.attrs.get("transpose") or inst.attrs.get("is_transpose"))


def matmul_dtype(inst: Instruction) -> str:
    """Input dtype of a TensorE instruction (attrs["in_dtype"], else its first read operand's dtype)."""
    if "in_dtype" in inst.attrs:
        return str(inst.attrs["in_dtype"])
    reads = [o for o in inst.operands if not o.is_write]
    return reads[0].dtype if reads else "bfloat16"


def _tensor_cycles(inst: Instruction, core: NeuronTarget) -> float:
    n = inst.attrs.get("n")
    if n is None:
        n = _moving_free_size(inst)
    # a contraction deeper than the array (fp8 double-row K=256, MX quad K=512) takes one pass per 128 rows,
    # and the perf mode runs those passes fp8_speedup times faster
    passes = max(1.0, float(inst.attrs.get("k", core.pe_rows)) / core.pe_rows)
    cycles = float(max(int(n), core.matmul_min_cycles)) * passes
    family = peak_family(matmul_dtype(inst))
    if family == "fp32":
        cycles *= core.fp32_factor
    elif family == "fp8" and (inst.attrs.get("double_row")
                              or str(inst.attrs.get("perf_mode", "")).lower() in _PERF_MODES):
        cycles /= core.fp8_speedup
    return cycles


def _moving_free_size(inst: Instruction) -> int:
    """N of a TensorE op without attrs: a transpose of [P, F] streams an identity of P columns; a matmul
    streams its `moving` operand's free elements."""
    reads = [o for o in inst.operands if not o.is_write]
    if is_transpose(inst) and reads:
        return int(reads[0].shape[0])
    for o in reads:
        if o.name == "moving":
            return _free_elems(o.shape)
    writes = [o for o in inst.operands if o.is_write]
    return _free_elems(writes[0].shape) if writes else _DEFAULT_N


def _free_elems(shape: tuple[int, ...]) -> int:
    return int(math.prod(shape[1:])) if len(shape) > 1 else 1


def _elementwise_cycles(inst: Instruction, core: NeuronTarget, lane_rate: float) -> float:
    free = inst.attrs.get("free_elems")
    if free is None:
        free = max((_free_elems(o.shape) for o in inst.operands), default=1)
    tensor_inputs = sum(1 for o in inst.operands if not o.is_write and _free_elems(o.shape) > 1)
    return core.engine_overhead_cycles + float(free) * max(1, tensor_inputs) / lane_rate


def _fast_operands(inst: Instruction, core: NeuronTarget) -> bool:
    fast = _FAST_DTYPES_V3 + (("float8_e4m3", "float8_e4m3fn", "float8_e5m2") if core.gen >= 4 else ())
    return bool(inst.operands) and all(o.dtype in fast and o.buffer != "psum" for o in inst.operands)


def _dma_cost(inst: Instruction, core: NeuronTarget) -> InstructionCost:
    attrs = inst.attrs
    nbytes = int(attrs.get("bytes", 0) or max((o.access.nbytes for o in inst.operands), default=0))
    chunks = int(attrs.get("chunks", 0) or 1)
    if nbytes == 0:
        # barriers and other DMA-queue instructions that move nothing: a descriptor and the semaphore latency
        return InstructionCost("dma", core.dma_transfer_s, 1, core.dma_latency_s)
    chunk_bytes = float(attrs.get("chunk_bytes", 0) or nbytes / chunks)
    runs = chunks * max(1, math.ceil(chunk_bytes / DMA_SPLIT_BYTES))
    queues = max(1, min(core.dma_queues, runs))
    # each engine moves its runs at its own bandwidth, capped at its share of the core's HBM bandwidth for the
    # bytes that cross HBM (an HBM -> HBM copy crosses it twice); a run never takes less than one descriptor time
    bandwidth = core.dma_queue_bw
    if inst.hbm_bytes:
        bandwidth = min(bandwidth, core.core_hbm_bw / core.dma_queues * nbytes / inst.hbm_bytes)
    per_run = max(nbytes / runs / bandwidth, core.dma_run_min_s)
    if attrs.get("indirect") or str(attrs.get("dge", "")).lower() in ("swdge", "software", "sw"):
        per_run += core.dma_dge_run_s
    busy = core.dma_transfer_s + runs / queues * per_run
    return InstructionCost("dma", busy, queues, core.dma_latency_s)
