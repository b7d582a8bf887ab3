"""Cost of one traced instruction on one NeuronCore: how long it holds its engine, and when its output is readable.

Rules (constants from the Neuron rows of `nkilab.harness.chips`, each with its source there):
  TensorE   nc_matmul / transposes: max(N, 64) cycles at the TensorE clock, N = moving free size (a transpose
            streams an identity of P columns); x K/128 passes for deeper contractions; x4 for fp32 inputs;
            / fp8_speedup for fp8 inputs issued in a perf mode (double row on v3, MX quad on v4). Matmuls
            accumulating into one PSUM tile follow each other in the array's pipeline, with no commit wait.
  VectorE   work = free_elems x tensor_inputs / lane_rate cycles, tensor_inputs = read operands wider than one
  ScalarE   element per partition (scalars and [P, 1] columns ride along), at least 1. The ~100-cycle static
  GpSimdE   overhead hides behind the previous instruction when the engine issues back to back (the instruction
            holds the engine max(work, overhead)); an instruction that waited on a dependency pays work + overhead
            ("add a static instruction overhead of 100 engine cycles" for small or dependent instructions [PG]).
            Its output is readable `engine_commit_cycles` after its last element.
  VectorE performance mode (v3+, [A3]): tensor_copy / tensor_scalar with every operand a 2-byte float (fp8 too on
            v4) in SBUF run at `vector_lane_rate_fast` ("4x compared to NeuronCore-v2"); with one operand in PSUM,
            and tensor_tensor with 2-byte SBUF inputs, at half of it ("2x"); never below the base lane rate. Other
            ops have no fast mode. ScalarE on v4 runs 2-byte (and fp8) SBUF operands at `scalar_lane_rate_fast`.
  DMA       `dma.py`.

Times are seconds. Nothing here looks at other instructions: `schedule.py` places the costs in time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from nkilab.harness.chips import NeuronTarget
from nkilab.harness.emulator.trace import Instruction
from nkilab.harness.perf.dma import DmaCost, dma_cost
from nkilab.harness.perf.memo import CostMemo
from nkilab.reference.dtypes import peak_family

_FAST_DTYPES_V3 = ("bfloat16", "float16")
_FP8 = ("float8_e4m3", "float8_e4m3fn", "float8_e5m2")
_PERF_MODES = ("double_row", "double_row_gen3", "fp8x2", "fp8x4", "mx", "quad")
_VECTOR_4X = ("tensor_copy", "tensor_scalar")  # [A3] the 4x class (2x with an operand in PSUM)
_VECTOR_2X = ("tensor_tensor",)  # [A3] the 2x class: both inputs in SBUF
_DEFAULT_N = 512  # N of a TensorE instruction with no operand to read it from: one full moving tile


@dataclass(frozen=True)
class InstructionCost:
    """How one instruction occupies the hardware.

    Attributes:
        engine: "tensor" | "vector" | "scalar" | "gpsimd" | "dma".
        busy_s: time it holds its engine when issued right behind its predecessor (compute engines).
        stall_s: time it holds its engine when it started on a dependency (its static overhead is not hidden).
        commit_s: after its engine time, until a dependent instruction may read its output.
        dma: the transfer's `DmaCost` (DMA instructions only; their engine times are the packets').
    """

    engine: str
    busy_s: float
    stall_s: float
    commit_s: float = 0.0
    dma: DmaCost | None = None


def instruction_cost(inst: Instruction, core: NeuronTarget) -> InstructionCost:
    """Cost of `inst` on one NeuronCore of target `core` (see the module docstring for the rules); instructions
    alike in what the rules read share one (kernels issue thousands alike)."""
    if inst.engine == "dma":
        return InstructionCost("dma", 0.0, 0.0, dma=dma_cost(inst, core))
    attrs = inst.attrs
    # everything `_compute_cost` reads: the attrs below, and per operand its name, shape, dtype, buffer, direction
    key = (inst.engine, inst.opcode, *(attrs.get(a, _ABSENT) for a in _COST_ATTRS),
           tuple((o.name, o.shape, o.dtype, o.buffer, o.is_write) for o in inst.operands))
    return _MEMO.get(key, core, _compute_cost, inst)


_COST_ATTRS = ("n", "k", "in_dtype", "transpose", "is_transpose", "double_row", "perf_mode", "free_elems")
_ABSENT = object()  # an attr not given (a rule may treat absent and None apart)
_MEMO = CostMemo()


def _compute_cost(inst: Instruction, core: NeuronTarget) -> InstructionCost:
    engine = inst.engine
    if engine == "tensor":
        busy = _tensor_cycles(inst, core) / core.tensor_hz
        return InstructionCost("tensor", busy, busy, core.engine_commit_cycles / core.tensor_hz)
    if engine == "vector":
        hz, rate = core.vector_hz, _vector_rate(inst, core)
    elif engine == "scalar":
        hz = core.scalar_hz
        rate = core.scalar_lane_rate_fast if _fast_operands(inst, core) else core.scalar_lane_rate
    elif engine == "gpsimd":
        hz, rate = core.gpsimd_hz, core.gpsimd_lane_rate
    else:
        raise ValueError(f"inst.engine: {engine!r} is not a known engine (instruction {inst!r})")
    work = _elementwise_cycles(inst, rate)
    overhead = core.engine_overhead_cycles
    return InstructionCost(engine, max(work, overhead) / hz, (work + overhead) / hz, core.engine_commit_cycles / hz)


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


def _elementwise_cycles(inst: Instruction, lane_rate: float) -> float:
    free = inst.attrs.get("free_elems")
    if free is None:
        free = max((_free_elems(o.shape) for o in inst.operands), default=1)
    tensor_inputs = sum(1 for o in inst.operands if not o.is_write and _free_elems(o.shape) > 1)
    return float(free) * max(1, tensor_inputs) / lane_rate


def _fast_dtypes(core: NeuronTarget) -> tuple[str, ...]:
    return _FAST_DTYPES_V3 + (_FP8 if core.gen >= 4 else ())


def _fast_operands(inst: Instruction, core: NeuronTarget) -> bool:
    fast = _fast_dtypes(core)
    return bool(inst.operands) and all(o.dtype in fast and o.buffer != "psum" for o in inst.operands)


def _vector_rate(inst: Instruction, core: NeuronTarget) -> float:
    """VectorE elements per cycle per lane: the performance mode of the op's class, if its operands qualify."""
    fast = _fast_dtypes(core)
    ops = inst.operands
    if not ops or not all(o.dtype in fast for o in ops):
        return core.vector_lane_rate
    in_psum = any(o.buffer == "psum" for o in ops)
    if inst.opcode in _VECTOR_4X:
        rate = core.vector_lane_rate_fast / (2.0 if in_psum else 1.0)
    elif inst.opcode in _VECTOR_2X and not any(o.buffer == "psum" for o in ops if not o.is_write):
        rate = core.vector_lane_rate_fast / 2.0
    else:
        return core.vector_lane_rate
    return max(core.vector_lane_rate, rate)
