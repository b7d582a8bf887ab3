"""Cost of one DMA instruction (dma_copy, dma_compute, dma_transpose, and the DMA-queue instructions that move
nothing): who writes its descriptors, the packets its engines run, and the HBM time it needs.

A transfer, as the Neuron docs describe it (sources are the `chips.py` tags):
  descriptors  static ("none": written on the host before the run, no on-device cost [DGE]), hardware DGE (one of
               `hwdge_instances` DGE blocks for `hwdge_s` per instruction [DGE]) or software DGE (GpSimd writes one
               descriptor per contiguous run: `engine_overhead_cycles + swdge_cycles_per_descriptor x runs` GpSimd
               cycles [DGE]). The kernel's `dge_mode` decides; `unknown` (the default) resolves as the compiler
               would: software DGE for vector-offset gathers/scatters, the hardware DGE (v3+; software DGE before) for
               runtime scalar offsets, static descriptors for addresses known when compiling.
  packets      one per DMA engine per group of `dma_partitions_per_engine` SBUF partitions [DMA, NEX]: partition p is
               served by engine (p // 8) % 16, so a [4, F] tile uses one engine and a [128, F] tile all 16. An
               HBM -> HBM copy has no partitions: it is split in 64 KiB pieces over up to 16 engines, starting at
               the engine of its issue queue (the trace's round-robin `queue`). A packet holds
               its engine max(dma_packet_s, bytes / dma_engine_bw): an engine starts at most one packet per
               `dma_packet_s` (the per-packet setup [NEX]; the packets-per-second bound of small payloads [DBW]),
               and every contiguous run moves at least MIN_RUN_BYTES.
  HBM          the bytes crossing HBM need hbm_bytes / sustained_hbm_bw of the core's HBM time (shared by all its
               transfers): sixteen engines at 23 B/ns outrun a Trainium2 core's sustained HBM share.
  dma_transpose  all 16 engines cooperate [A3]; it moves its bytes at `dma_transpose_efficiency` (HBM source) or
               `dma_transpose_sbuf_efficiency` (SBUF source) of the copy rate, times the share of each [128, 16]
               write block its destination fills ("a multiple of 128 and a multiple of 16 in the output SBUF
               partition and inner-most free dimension sizes is a pre-requisite to achieve best DMA throughput" [A3]).

Latencies (trigger to first byte, last byte to consumer) are the scheduler's: `schedule.py`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from nkilab.harness.chips import KiB, NeuronTarget
from nkilab.harness.emulator.trace import Instruction
from nkilab.harness.perf.memo import CostMemo

HBM_SPLIT_BYTES = 64 * KiB  # an HBM -> HBM copy is cut into pieces of this size, one engine each
MIN_RUN_BYTES = 64  # [ASSUMED] a contiguous run moves at least one 64-byte burst (the docs give no figure)
TRANSPOSE_BLOCK = (128, 16)  # partitions x inner elements the 16 engines write together [A3]
_DESCRIPTORS = {"none": "static", "static": "static", "hwdge": "hwdge", "swdge": "swdge", "sw": "swdge",
                "software": "swdge"}


@dataclass(frozen=True)
class DmaCost:
    """What one DMA instruction asks of the hardware.

    Attributes:
        descriptors: "static" | "hwdge" | "swdge" (who writes the descriptors).
        issue_s: time the descriptor writer is held (a DGE instance, or GpSimd), s; 0 for static descriptors.
        packets: (engine index, seconds) per packet; empty for an instruction that moves nothing.
        hbm_s: time of the core's sustained HBM bandwidth the transfer needs, s.
        nbytes: bytes written to the destination.
    """

    descriptors: str
    issue_s: float
    packets: tuple[tuple[int, float], ...]
    hbm_s: float
    nbytes: int

    @property
    def engine_s(self) -> float:
        """DMA-engine time summed over the packets, s."""
        return sum(seconds for _, seconds in self.packets)


def descriptor_kind(inst: Instruction, core: NeuronTarget) -> str:
    """Who writes the descriptors of a DMA instruction (see the module docstring): "static" | "hwdge" | "swdge"."""
    attrs = inst.attrs
    requested = str(attrs.get("dge_mode", attrs.get("dge", "none")) or "none").lower()
    if requested != "unknown":
        kind = _DESCRIPTORS.get(requested)
        if kind is None:
            raise ValueError(f"inst.attrs['dge']: {requested!r} is not a DGE mode (instruction {inst!r})")
        return kind if kind != "hwdge" or core.hwdge_instances else "swdge"
    if str(attrs.get("dge", "")) == "swdge":  # vector-offset gathers and scatters: only the software DGE
        return "swdge"
    if attrs.get("indirect"):
        return "hwdge" if core.hwdge_instances else "swdge"
    return "static"


def dma_cost(inst: Instruction, core: NeuronTarget) -> DmaCost:
    """The `DmaCost` of a DMA-engine instruction on one core of `core` (module docstring); transfers of the same
    shape, placement and descriptors share one (kernels issue thousands alike)."""
    attrs = inst.attrs
    # everything `_dma_cost` reads, in one pass: the attrs, and per operand its name, shape, side, direction,
    # partitions and bytes (a superset of what decides the cost, so equal keys give equal costs)
    key = (inst.opcode, attrs.get("bytes"), attrs.get("chunks"), attrs.get("chunk_bytes"), attrs.get("dge"),
           attrs.get("dge_mode"), attrs.get("indirect"), attrs.get("queue"),
           tuple((o.name, o.shape, o.buffer, o.is_write, o.access.p_start, o.access.p_stop, o.access.nbytes)
                 for o in inst.operands))
    return _MEMO.get(key, core, _dma_cost, inst)


_MEMO = CostMemo()


def _dma_cost(inst: Instruction, core: NeuronTarget) -> DmaCost:
    attrs = inst.attrs
    nbytes = int(attrs.get("bytes", 0) or 0)
    kind = descriptor_kind(inst, core)
    if nbytes == 0:  # barriers and other queue instructions: a descriptor and its semaphore, no packets
        return DmaCost(kind, _issue_s(kind, 1, core), (), 0.0, 0)
    runs = max(1, int(attrs.get("chunks", 0) or 1))
    run_bytes = float(attrs.get("chunk_bytes", 0) or nbytes / runs)
    moved = nbytes * max(1, len(inst.reads) - _index_reads(inst)) if inst.opcode == "dma_compute" else nbytes
    hbm_s = inst.hbm_bytes / core.sustained_hbm_bw
    if inst.opcode == "dma_transpose":
        packets = _transpose_packets(inst, moved, core)
    else:
        packets = _copy_packets(inst, moved, runs, max(run_bytes, MIN_RUN_BYTES), core)
    return DmaCost(kind, _issue_s(kind, runs, core), packets, hbm_s, nbytes)


def _issue_s(kind: str, runs: int, core: NeuronTarget) -> float:
    if kind == "hwdge":
        return core.hwdge_s
    if kind == "swdge":
        return (core.engine_overhead_cycles + core.swdge_cycles_per_descriptor * runs) / core.gpsimd_hz
    return 0.0


def _index_reads(inst: Instruction) -> int:
    return sum(1 for o in inst.operands if not o.is_write and o.name.endswith(".index"))


def _sbuf_side(inst: Instruction):
    """The access on the SBUF side of a transfer (the destination when both are on chip), or None (HBM -> HBM)."""
    on_chip = [o for o in inst.operands if not o.access.is_hbm and not o.name.endswith(".index")]
    on_chip.sort(key=lambda o: not o.is_write)  # the destination first
    return on_chip[0].access if on_chip else None


def _copy_packets(inst: Instruction, nbytes: int, runs: int, run_bytes: float, core: NeuronTarget):
    side = _sbuf_side(inst)
    if side is None:  # no partitions to follow: the pieces start at the engine of the instruction's queue
        pieces = max(1, min(core.dma_queues, math.ceil(nbytes / HBM_SPLIT_BYTES)))
        share = [1.0 / pieces] * pieces
        first = int(inst.attrs.get("queue", 0) or 0)
        engines = [(first + j) % core.dma_queues for j in range(pieces)]
    else:
        engines, share = _partition_groups(side.p_start, side.p_stop, core)
    data_s = runs * run_bytes / core.dma_engine_bw
    return tuple((e, max(core.dma_packet_s, data_s * f)) for e, f in zip(engines, share))


def _partition_groups(p0: int, p1: int, core: NeuronTarget) -> tuple[list[int], list[float]]:
    """Engines serving partitions [p0, p1) and each one's share of the transfer."""
    p1 = max(p1, p0 + 1)
    group = core.dma_partitions_per_engine
    counts: dict[int, int] = {}
    for g in range(p0 // group, (p1 - 1) // group + 1):
        lo, hi = max(p0, g * group), min(p1, (g + 1) * group)
        engine = g % core.dma_queues
        counts[engine] = counts.get(engine, 0) + hi - lo
    total = p1 - p0
    engines = sorted(counts)
    return engines, [counts[e] / total for e in engines]


def _transpose_packets(inst: Instruction, nbytes: int, core: NeuronTarget):
    dst = next((o for o in inst.operands if o.is_write), None)
    src = next((o for o in inst.operands if not o.is_write and not o.name.endswith(".index")), None)
    efficiency = core.dma_transpose_sbuf_efficiency if src is not None and not src.access.is_hbm \
        else core.dma_transpose_efficiency
    if dst is not None and len(dst.shape) >= 2:
        p, inner = int(dst.shape[0]), int(dst.shape[-1])
        block_p, block_f = TRANSPOSE_BLOCK
        efficiency *= p / (math.ceil(p / block_p) * block_p) * inner / (math.ceil(inner / block_f) * block_f)
    per_engine = nbytes / core.dma_queues / (core.dma_engine_bw * efficiency)
    return tuple((e, max(core.dma_packet_s, per_engine)) for e in range(core.dma_queues))
