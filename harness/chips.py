"""The hardware table: one frozen description per target, read by the emulator, the performance model,
calibration, energy and the reports.

Targets: Neuron `inf2`, `trn1` (NeuronCore-v2, gen2), `trn2` (NeuronCore-v3, gen3, the default), `trn3`
(NeuronCore-v4, gen4) — what NKI kernels run on and the instruction-level model costs; `h100`, `h200` (NVIDIA SXM)
and `cpu` (one server core, for scale) carry roofline figures only. `get_target(name=None, *, neuron=False)`:
None reads NEURON_PLATFORM_TARGET_OVERRIDE, else "trn2"; `gen2`/`gen3`/`gen4` are aliases of trn1/trn2/trn3, as the
official variable accepts them; `neuron=True` requires a Neuron target (where a kernel runs).

A Neuron row (`NeuronTarget`) is the chip (cores, peaks, HBM, power) plus one NeuronCore of its generation: the
rules the emulator validates (partitions, PSUM banks, SBUF bytes, matmul limits, fp8 range, features) and the
rates the model costs (clocks, lane rates, DMA engines, launch). SBUF and PSUM are stored once, per partition: a
core holds `pmax` times that (v2: 128 x 192 KiB = 24 MiB SBUF; every generation: 128 x 16 KiB = 2 MiB PSUM).

Sources (tags in the field comments; paths in aws-neuron/aws-neuron-sdk unless another repository is named):
  [A2] [A3] [A4]  nki/guides/architecture/{trainium_inferentia2_arch,trainium2_arch,trainium3_arch}.rst
                  (NeuronCore-v2/v3/v4: engines, clocks, SBUF, PSUM)
  [HW]   about-neuron/arch/neuron-hardware/{inferentia2,trainium,trainium2,trainium3}.rst (chip tables)
  [ISA]  nki/api/nki/isa/__init__.py (nc_matmul limits and dtypes, dma_copy modes, per-generation notes)
  [TS]   nki/api/nki/language/__init__.py `tile_size` (pmax, PSUM bank size, matmul free sizes)
  [MIG]  nki/migration/index.rst (PSUM: 8 banks of 2 KiB per partition)
  [DGE]  nki/deep-dives/nki-dge.rst (indirect DMA: "v3+"; "Each TRN2 NeuronCore has two DGE instances"; "Each
         hardware-DGE DMA instruction takes approximately 600 ns"; software DGE "consumes GpSimd Engine cycles")
  [LNC]  about-neuron/arch/neuron-features/logical-neuroncore-config.rst (LNC=2 on Trn2/Trn3, their default)
  [DMA]  nki/get-started/about/nki-dma-overview.rst (16 DMA engines per core, "theoretical bandwidth of 27.2 GB/s"
         each on v2/v3, 38.4 GB/s on v4; each engine serves eight SBUF partitions)
  [DMAP] the same page's profiles: a [4, 4096] bf16 load on one engine (1416 ns for 32 KiB), a [128, 128] bf16
         load on 16 engines (97 ns per 2 KiB packet), trigger-to-start and completion-to-consumer gaps, and its
         "DMA Throughput varying Bytes per Partition" figure (flat below 2 KiB per partition, ~96 % of the
         plateau at 4 KiB)
  [DBW]  nki/deep-dives/nki-dma-bandwidth-guide.rst (per-engine achievable 17 / 23 / 33 B/ns on TRN1 / TRN2 / TRN3,
         ~1300 ns semaphore-to-start latency per transfer, payloads >= 4 KiB per partition to saturate)
  [NEX]  Neuron Explorer guide "How to identify and reduce inefficient DMA transfers" (a transfer is split into
         packets "one per engine per group of SBUF partitions"; fixed per-transfer cost: descriptor generation by
         the issuing engine, semaphores; "each packet pays a setup latency before its bytes move")
  [PG]   nki/deep-dives/nki_perf_guide.rst and the v2 arch page: matmul initiation interval max(N, 64) cycles, fp32
         at 1/4 rate, VectorE ~N cycles per input, a ~100-cycle static overhead for small or dependent
         instructions, dependent 1-element ScalarE instructions 264 cycles apart on NC-v2
  [PROF] the legacy NKI profiling guide (nki/how-to-guides/neuron_profile_for_nki.rst, removed Dec 2025): the
         timeline of its one-tile exp kernel on trn1, 29.26 us end to end
  [KO]   nki/guides/tutorials/kernel-optimization.rst (SDK 2.27 docs): the tiled fp32 matmul on trn2, 39.89 ms with
         its DMA engines 99.93 % active (one of the calibration points, `nkilab.harness.perf.calibration`)
  [LIB]  aws-neuron/nki-library qkv_cte (largest fp8 value a kernel stores: 240 on gen2/3, 448 on gen4)
  [NV]   NVIDIA H100 SXM5 80GB and H200 SXM 141GB datasheets (dense = sparse / 2)
  [SPR]  Intel Xeon Platinum 8480+: 56 cores, 350 W TDP, 8 x DDR5-4800 = 307 GB/s per socket, AMX 1024 bf16
         ops/cycle/core and 2 AVX-512 FMA units at ~2 GHz
  [NVL]  NVIDIA H100 / H200 SXM datasheets: NVLink 4, 900 GB/s per GPU (both directions together)
  [ASSUMED] not published; an explicit, overridable assumption (`Target.with_power`, CLI `--power-w`)
  [derived] arithmetic on the above, e.g. per-core HBM bandwidth = chip bandwidth / cores
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from nkilab.reference.dtypes import finite_max, peak_family

KiB = 1024
GB = 1e9
TB = 1e12

DEFAULT_TARGET = "trn2"
TARGET_ENV = "NEURON_PLATFORM_TARGET_OVERRIDE"
ALIASES = {"gen2": "trn1", "gen3": "trn2", "gen4": "trn3"}  # as NEURON_PLATFORM_TARGET_OVERRIDE accepts them
NEURON_TARGETS = ("inf2", "trn1", "trn2", "trn3")
GPU_TARGETS = ("h100", "h200")
ALL_TARGETS = NEURON_TARGETS + GPU_TARGETS + ("cpu",)


@dataclass(frozen=True, kw_only=True)
class Target:
    """A chip as the roofline, the reports and the energy model see it (every target).

    Attributes:
        name: target key ("trn2", "h100", …).
        kind: "neuron" | "gpu" | "cpu".
        description: one line for reports.
        cores: NeuronCores (Neuron), SMs (GPU) or 1 (cpu) per chip.
        peak_flops: dense FLOP/s per chip by peak-table family ("bf16", "fp8", "fp32", "int8").
        hbm_bw: memory bandwidth per chip, bytes/s.
        hbm_bytes: memory capacity per chip, bytes.
        power_w: power per chip at full load, W (published TDP, or an [ASSUMED] figure — see `power_source`).
        power_source: where `power_w` comes from ("published: …", "assumed: …" or "derived: …").
        idle_share: fraction of `power_w` drawn at zero utilisation (static/idle), used by the modeled energy.
    """

    name: str
    kind: str
    description: str
    cores: int
    peak_flops: dict
    hbm_bw: float
    hbm_bytes: float
    power_w: float
    power_source: str
    idle_share: float

    def family_peak(self, family: str, *, lnc: int | None = None) -> float:
        """Dense FLOP/s of the chip for a peak-table family ("bf16" | "fp8" | "fp32" | "int8")."""
        return self.peak_flops.get(family, self.peak_flops["bf16"])

    def peak(self, dtype: str = "bfloat16", *, lnc: int | None = None) -> float:
        """Dense FLOP/s for input `dtype`: per logical core (lnc physical cores) on Neuron, per chip otherwise."""
        return self.family_peak(peak_family(dtype), lnc=lnc)

    def bandwidth(self, *, lnc: int | None = None) -> float:
        """HBM bytes/s available to one logical core (Neuron) or to the whole chip (GPU/CPU)."""
        return self.hbm_bw

    def power(self, *, lnc: int | None = None) -> float:
        """Full-load power in W attributed to one logical core (Neuron: chip power x lnc / cores) or one chip."""
        return self.power_w

    def with_power(self, power_w: float, idle_share: float | None = None) -> "Target":
        """A copy with an overridden power assumption (W per chip at full load)."""
        if not power_w > 0:
            raise ValueError(f"power_w: must be > 0 W, got {power_w!r}")
        share = self.idle_share if idle_share is None else idle_share
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"idle_share: must be within [0, 1], got {share!r}")
        return replace(self, power_w=float(power_w), idle_share=share,
                       power_source=f"assumed: {power_w:g} W per chip (user override)")


@dataclass(frozen=True, kw_only=True)
class NeuronTarget(Target):
    """A Neuron chip and one NeuronCore of its generation; defaults are NeuronCore-v2's (`_GEN3`/`_GEN4` below).

    Rates are per physical core; an LNC=2 logical core is two of them (the model schedules each program id on its
    own engines and gives it its own share of HBM bandwidth).
    """

    # ---- what the emulator validates ------------------------------------------------------------------------
    gen: int = 2  # NeuronCore version: 2 (Inf2/Trn1), 3 (Trn2), 4 (Trn3) — [ISA] nc_version
    pmax: int = 128  # partitions of SBUF/PSUM; operand partition dim limit — [A2], [TS] pmax
    psum_banks: int = 8  # PSUM banks per partition — [MIG], [A2]
    psum_bank_bytes: int = 2 * KiB  # bytes per PSUM bank per partition (512 fp32) — [MIG], [A2]
    sbuf_bytes: int = 192 * KiB  # SBUF bytes per partition: 192 KiB [A2] (24 MiB / 128); 224 KiB [A3]; 256 KiB [A4]
    stationary_fmax: int = 128  # nc_matmul stationary free size (M) limit — [ISA] nc_matmul
    moving_fmax_fp32: int = 512  # nc_matmul moving free size N, fp32 dst: 1 bank (gen2/3), 8 banks (gen4) — [ISA]
    moving_fmax_bf16: int = 512  # same for a bf16 PSUM dst (gen4 only: 8192) — [ISA] nc_matmul
    # largest fp8 value a kernel stores: the native format's max, e4m3 240 (gen2/3), e4m3fn 448 (gen4) — [LIB]
    fp8_e4m3_max: float = finite_max("float8_e4m3")
    matmul_dst_dtypes: tuple = ("float32",)  # PSUM dst dtypes of nc_matmul: fp32 (gen2/3), + bf16 (gen4) — [ISA]
    matmul_fp8_e4m3fn: bool = False  # OCP float8_e4m3fn TensorE input: gen4 only — [ISA] nc_matmul
    matmul_double_row: bool = False  # perf_mode=double_row (fp8 2x): gen3+ — [ISA] nc_matmul
    activation_scalar_bias: bool = False  # activation bias as a scalar: gen3+ (gen2: [P,1] vector) — [ISA]
    scalar_tensor_copy: bool = False  # tensor_copy on ScalarE: not on gen2 — [ISA] tensor_copy
    range_select: bool = False  # nisa.range_select: gen3+ — [ISA]
    exponential: bool = False  # nisa.exponential: gen4 only — [ISA]
    dma_vector_offset: bool = False  # indirect (vector_offset) DMA gather/scatter: "indirect: v3+" — [DGE]
    hwdge: bool = False  # dge_mode.hwdge: gen3+ — [ISA] dma_copy
    dma_priority: bool = False  # dma_copy priority= (QoS): gen4 only — [ISA] dma_copy
    dma_transpose: bool = False  # nisa.dma_transpose: introduced with Trainium2 (gen3+) — [A3]
    lnc2: bool = False  # logical NeuronCore degree 2 (kernel[2]): Trn2/Trn3 only — [LNC]
    lnc_default: int = 1  # LNC the runtime configures by default: 1 on Inf2/Trn1, 2 on Trn2/Trn3 — [LNC]

    # ---- what the model costs (nkilab.harness.perf; the mechanisms are described in harness/perf/README.md) --------
    tensor_hz: float = 2.8e9  # TensorE clock [A2: 2.8 GHz; A3/A4: 2.4 GHz]
    pe_rows: int = 128  # systolic array 128 x 128 [A2, A3, A4]
    pe_cols: int = 128
    matmul_min_cycles: int = 64  # initiation interval floor: max(N, 64) cycles per nc_matmul [PG]
    fp32_factor: int = 4  # fp32 matmul runs at 1/4 rate (4 passes) [PG; A2 23 vs 92 TFLOPS]
    # fp8 "double row" perf mode (v3: 2x, K=256) / MX quad (v4: 4x) [A3, A4]; v2 has none (1.0). Applied only when
    # the instruction asks for it (attrs["perf_mode"])
    fp8_speedup: float = 1.0
    vector_hz: float = 1.12e9  # VectorE clock [A2 1.12, A3 0.96, A4 1.2 GHz]
    # elements per cycle per partition lane, any dtype [A2: 128 lanes x 1; A3, A4: "256 input/output for other data
    # types" = 2 per lane]
    vector_lane_rate: float = 1.0
    # VectorE performance mode, elements per cycle per lane of its 4x class (tensor_copy / tensor_scalar, SBUF, 2-byte
    # operands); its 2x class (one operand in PSUM, or tensor_tensor of 2-byte SBUF inputs) runs at half of it [A3:
    # "4x throughput lift compared to NeuronCore-v2" (512 BF16/FP16 elements/cycle), "2x"; A4: 512 BF16/FP16/FP8;
    # A2: no performance mode (1.0)]
    vector_lane_rate_fast: float = 1.0
    scalar_hz: float = 1.4e9  # ScalarE clock [A2 1.4, A3 1.2, A4 1.2 GHz]
    scalar_lane_rate: float = 1.0  # [A2, A3: 128 elem/cycle = 1 per lane; A4: 128 other]
    scalar_lane_rate_fast: float = 1.0  # [A4: 256 bf16/fp16/fp8 elem/cycle = 2 per lane; v2/v3 = 1]
    gpsimd_hz: float = 1.4e9  # GpSimdE clock [A2 1.4, A3 1.2, A4 1.2 GHz]
    gpsimd_lane_rate: float = 1.0  # 8 cores x 16 partitions [A2, A3]; A4: 128 elem/cycle -> 1 per lane
    # static cost of a Vector/Scalar/GpSimd instruction, ~100 cycles, paid when it cannot hide behind its predecessor:
    # it waits on a dependency, or it is small [PG: "add a static instruction overhead of 100 engine cycles" for
    # back-to-back instructions "with N << 128 or with every instruction depending on the output tile of the
    # previous instruction"]
    engine_overhead_cycles: int = 100
    # cycles after an instruction's last element before a dependent instruction may read its output (committed to
    # SRAM) [derived from PG: back-to-back dependent 1-element ScalarE instructions start "189 ns (264 ScalarE cycles
    # on NC-v2)" apart = 100 overhead + 1 element + 163; applied to every engine in its own cycles]
    engine_commit_cycles: int = 163
    # cross-engine semaphore wait of a compute instruction on another compute engine's result, in the waiting
    # engine's cycles [ASSUMED: the docs name the mechanism (PG: "semaphore wait on another compute engine") but give
    # no figure]
    semaphore_cycles: int = 64
    # from the last core reaching a cross-core synchronization point (core_barrier, sendrecv, a collective) to its
    # release: the "remote semaphore update" each core writes to the other before the "local semaphore wait"
    # (nki/api/nki/isa/__init__.py, core_barrier) [ASSUMED: no Neuron document gives a figure; taken as one DMA
    # completion-semaphore latency, the nearest documented semaphore path between a core and what it signals (DMAP)]
    cross_core_sync_s: float = 0.45e-6
    dma_queues: int = 16  # DMA engines per core, 16 [DMA]; also the emulator's round-robin issue queues
    # bytes/s one DMA engine achieves with payloads >= 4 KiB per partition [DBW: 17 B/ns TRN1, 23 B/ns TRN2, 33 B/ns
    # TRN3 (272 / 368 / 528 GB/s per core); the theoretical rate is 27.2 GB/s (v2, v3) / 38.4 GB/s (v4), DMA]
    dma_engine_bw: float = 17 * GB
    # SBUF partitions served by one DMA engine: a transfer's packets are one per engine per group of them [DMA: "each
    # DMA engine is typically responsible for moving data for eight SBUF partitions"; NEX: "one per engine per group
    # of SBUF partitions"]
    dma_partitions_per_engine: int = 8
    # least time a packet holds its DMA engine: its setup (descriptors, semaphore) overlaps the previous packet's
    # bytes, so an engine starts at most one packet per this time and small payloads leave it idle between packets
    # [NEX: "each packet pays a setup latency before its bytes move"; DBW: a packets-per-second bound below ~2 KiB
    # per partition]. Value fitted to the [KO] tiled kernel (DMA engines 99.93 % active on 512 B and 2 KiB per
    # partition); its bytes themselves move fast (DMAP: a 2 KiB packet in 97 ns)
    dma_packet_s: float = 600e-9
    # trigger-to-first-byte latency of a transfer and completion-to-consumer semaphore latency; together the ~1300 ns
    # "semaphore-to-start latency" [DBW], split as the DMA overview's profiles show them [DMAP: trigger to start
    # 0.7-0.9 us; last byte to the dependent ScalarE instruction 0.3-0.55 us]
    dma_start_latency_s: float = 0.85e-6
    dma_completion_s: float = 0.45e-6
    # hardware DGE: each dma instruction holds one of two DGE instances ~600 ns [DGE: "Each TRN2 NeuronCore has two
    # DGE instances"; "approximately 600 ns"]; none before v3
    hwdge_instances: int = 0
    hwdge_s: float = 600e-9
    # software DGE: GpSimd writes one descriptor per contiguous run, this many GpSimd cycles each, on top of the
    # instruction overhead [DGE: "Consumes GpSimd Engine cycles for descriptor generation", no figure]. Value fitted
    # to DMAP's throughput figure, whose transfers are triggered from the software-DGE queue (qGpSimdDynamic): its
    # flat region at ~850 ns per [128, <=2 KiB] transfer is one GpSimd descriptor pass of 128 runs
    swdge_cycles_per_descriptor: int = 7
    # dma_transpose throughput as a share of DMA copy throughput, HBM -> SBUF and SBUF -> SBUF, with dst partitions a
    # multiple of 128 and inner free size a multiple of 16 [A3: "up to 90%", "up to 50%"]; v2 has no DMA transpose
    dma_transpose_efficiency: float = 0.9
    dma_transpose_sbuf_efficiency: float = 0.5
    # HBM bandwidth sustained by streaming DMA as a share of the rated per-core share [ASSUMED: no Neuron document
    # gives a sustained figure; 0.9 is the usual DRAM efficiency (refresh, bank and read/write turnarounds)]
    hbm_sustained: float = 0.9
    # runtime preamble + postamble of one kernel launch, around the kernel's own instructions [PROF: the profiling
    # guide's one-tile exp kernel (trn1) runs 29.26 us end to end: the engines start the kernel at ~13.5 us and its
    # last DMA ends at ~23.7 us; ~19 us of the timeline is pre/postamble. No other generation publishes one: the same
    # figure stands for all (ASSUMED for v3, v4)]. Profile timelines (total_time) include it; `latency_s` does not
    launch_s: float = 19e-6

    @property
    def psum_bytes(self) -> int:
        """PSUM bytes per partition (16 KiB on every generation)."""
        return self.psum_banks * self.psum_bank_bytes

    @property
    def core_hbm_bw(self) -> float:
        """This core's share of the chip's HBM bandwidth, bytes/s [derived: chip / cores]."""
        return self.hbm_bw / self.cores

    @property
    def sustained_hbm_bw(self) -> float:
        """HBM bytes/s one core's DMA sustains when streaming: its rated share x `hbm_sustained`."""
        return self.core_hbm_bw * self.hbm_sustained

    def tensor_peak_flops(self, dtype: str = "bfloat16") -> float:
        """Dense TensorE FLOP/s of one core for an input dtype (fp8 at its perf-mode rate)."""
        return self._core_peak(peak_family(dtype))

    def _core_peak(self, family: str) -> float:
        base = 2.0 * self.pe_rows * self.pe_cols * self.tensor_hz
        if family == "fp32":
            return base / self.fp32_factor
        if family == "fp8":
            return base * self.fp8_speedup
        return base

    def family_peak(self, family: str, *, lnc: int | None = None) -> float:
        """Dense TensorE FLOP/s of one logical core (lnc physical cores) for a peak-table family."""
        return self._core_peak(family) * (lnc or 1)

    def bandwidth(self, *, lnc: int | None = None) -> float:
        return self.core_hbm_bw * (lnc or 1)

    def power(self, *, lnc: int | None = None) -> float:
        return self.power_w * (lnc or 1) / self.cores


# NeuronCore-v3 and v4 as changes from v2 (the class defaults) — sources in the field comments above
_GEN3 = dict(
    sbuf_bytes=224 * KiB, matmul_double_row=True, activation_scalar_bias=True, scalar_tensor_copy=True,
    range_select=True, dma_vector_offset=True, hwdge=True, dma_transpose=True, lnc2=True, lnc_default=2,
    tensor_hz=2.4e9, fp8_speedup=2.0, vector_hz=0.96e9, vector_lane_rate=2.0, vector_lane_rate_fast=4.0,
    scalar_hz=1.2e9, gpsimd_hz=1.2e9, dma_engine_bw=23 * GB, hwdge_instances=2,
)
_GEN4 = dict(
    _GEN3, sbuf_bytes=256 * KiB, moving_fmax_fp32=4096, moving_fmax_bf16=8192,
    fp8_e4m3_max=finite_max("float8_e4m3fn"), matmul_dst_dtypes=("float32", "bfloat16"), matmul_fp8_e4m3fn=True,
    exponential=True, dma_priority=True,
    fp8_speedup=4.0, vector_hz=1.2e9, scalar_lane_rate_fast=2.0, dma_engine_bw=33 * GB,
)
_GENERATIONS = {2: {}, 3: _GEN3, 4: _GEN4}

# AWS publishes no TDP for its chips: every Neuron power figure is an assumption, with this static share.
_NEURON_IDLE_SHARE = 0.3


def _neuron(name: str, chip: str, gen: int, *, cores: int, peak_flops: dict, hbm_bw: float, hbm_bytes: float,
            power_w: float) -> NeuronTarget:
    """A Neuron chip row of NeuronCore generation `gen`; its power is the assumed full-load figure `power_w` (W)
    with `_NEURON_IDLE_SHARE` static; the description is derived from the chip, generation, cores and LNC."""
    core = _GENERATIONS[gen]
    lnc = core.get("lnc_default", 1)
    return NeuronTarget(
        name=name, kind="neuron", gen=gen, cores=cores, peak_flops=peak_flops, hbm_bw=hbm_bw, hbm_bytes=hbm_bytes,
        description=f"AWS {chip} (NeuronCore-v{gen}, {cores} cores/chip" + (f", LNC={lnc})" if lnc > 1 else ")"),
        power_w=power_w, idle_share=_NEURON_IDLE_SHARE,
        power_source=f"assumed: {power_w:g} W per {chip} chip at full load, {_NEURON_IDLE_SHARE:.0%} of it static "
                     "(TDP not published)",
        **core,
    )


_V2_PEAKS = {"bf16": 190 * TB, "fp8": 190 * TB, "fp32": 47.5 * TB, "int8": 380 * TB}  # [HW] inf2 = trn1
_NV_PEAKS = {"bf16": 989 * TB, "fp8": 1979 * TB, "fp32": 67 * TB, "int8": 1979 * TB}  # [NV] dense, H100 = H200
# (each row gets its own copy of a shared peak dict: rows are frozen, their dicts must not alias)

TARGETS: dict[str, Target] = {
    "inf2": _neuron("inf2", "Inferentia2", 2, cores=2, peak_flops=dict(_V2_PEAKS),
                    hbm_bw=820 * GB, hbm_bytes=32 * 2**30, power_w=130.0),  # [HW]
    "trn1": _neuron("trn1", "Trainium", 2, cores=2, peak_flops=dict(_V2_PEAKS),
                    hbm_bw=820 * GB, hbm_bytes=32 * 2**30, power_w=210.0),  # [HW]
    "trn2": _neuron("trn2", "Trainium2", 3, cores=8,
                    peak_flops={"bf16": 667 * TB, "fp8": 1299 * TB, "fp32": 181 * TB, "int8": 667 * TB},  # [HW]
                    hbm_bw=2.9 * TB, hbm_bytes=96 * 2**30, power_w=500.0),  # [HW]
    "trn3": _neuron("trn3", "Trainium3", 4, cores=8,
                    peak_flops={"bf16": 671 * TB, "fp8": 2517 * TB, "fp32": 183 * TB, "int8": 671 * TB},  # [HW]
                    hbm_bw=4.9 * TB, hbm_bytes=144 * 2**30, power_w=700.0),  # [HW]
    "h100": Target(
        name="h100", kind="gpu", description="NVIDIA H100 SXM5 80GB", cores=132, peak_flops=dict(_NV_PEAKS),
        hbm_bw=3.35 * TB, hbm_bytes=80e9,  # [NV]
        power_w=700.0, idle_share=0.1,
        power_source="published: 700 W TDP (H100 SXM) [NV]; 10% idle share assumed",
    ),
    "h200": Target(
        name="h200", kind="gpu", description="NVIDIA H200 SXM 141GB", cores=132, peak_flops=dict(_NV_PEAKS),
        hbm_bw=4.8 * TB, hbm_bytes=141e9,  # [NV]
        power_w=700.0, idle_share=0.1,
        power_source="published: 700 W TDP (H200 SXM) [NV]; 10% idle share assumed",
    ),
    "cpu": Target(
        name="cpu", kind="cpu", description="one Xeon 8480+ core (for scale)", cores=1,
        peak_flops={"bf16": 2.0 * TB, "fp8": 2.0 * TB, "fp32": 128e9, "int8": 4.0 * TB},  # [SPR] AMX / AVX-512
        hbm_bw=5.5 * GB, hbm_bytes=16 * 2**30,  # [SPR] 307 GB/s per 56-core socket, derived
        power_w=6.3, idle_share=0.5,
        power_source="derived: 350 W TDP / 56 cores [SPR]; 50% idle share assumed",
    ),
}


@dataclass(frozen=True)
class Link:
    """A chip's chip-to-chip interconnect, as the cost composer's tensor-parallel collectives see it.

    Attributes:
        name: the interconnect ("NeuronLink-v2", "NVLink 4").
        bw: bytes/s one chip moves to its peers in one direction (what a ring collective's step runs at); the
            Neuron chip tables print one per-chip figure, taken here as one direction [ASSUMED].
        latency_s: fixed time of one collective launch (synchronisation and the first hop), s.
        source: where the figures come from (tags as above).
    """

    name: str
    bw: float
    latency_s: float
    source: str


# a collective's fixed cost: no Neuron or NVIDIA document gives one for these sizes [ASSUMED, like `launch_s`]
_COLLECTIVE_LATENCY_S = 10e-6
LINKS: dict[str, Link] = {
    "inf2": Link("NeuronLink-v2", 192 * 2**30, _COLLECTIVE_LATENCY_S,
                 "[HW] inferentia2: 192 GiB/s per chip (inf2.24xlarge / 48xlarge); latency [ASSUMED]"),
    "trn1": Link("NeuronLink-v2", 384 * GB, _COLLECTIVE_LATENCY_S,
                 "[HW] trainium: 4 links, 384 GB/s per chip; latency [ASSUMED]"),
    "trn2": Link("NeuronLink-v3", 1.28 * TB, _COLLECTIVE_LATENCY_S,
                 "[HW] trainium2: 1.28 TB/s per chip; latency [ASSUMED]"),
    "trn3": Link("NeuronLink-v4", 2.56 * TB, _COLLECTIVE_LATENCY_S,
                 "[HW] trainium3: 2.56 TB/s per chip; latency [ASSUMED]"),
    "h100": Link("NVLink 4", 450 * GB, _COLLECTIVE_LATENCY_S,
                 "[NVL] 900 GB/s per GPU both directions -> 450 GB/s each way [derived]; latency [ASSUMED]"),
    "h200": Link("NVLink 4", 450 * GB, _COLLECTIVE_LATENCY_S,
                 "[NVL] 900 GB/s per GPU both directions -> 450 GB/s each way [derived]; latency [ASSUMED]"),
}


def get_target(name: str | Target | None = None, *, neuron: bool = False) -> Target:
    """The table row of a target.

    Args:
        name: a key of `TARGETS` or an alias ("gen2" | "gen3" | "gen4"), case-insensitive; a `Target` (returned as
            is); or None: $NEURON_PLATFORM_TARGET_OVERRIDE when set, else "trn2".
        neuron: require a Neuron target (`NeuronTarget`): where an NKI kernel runs or the instruction model costs.

    Raises:
        TypeError: `name` is not a str, a Target or None.
        ValueError: an unknown name, or a non-Neuron target with neuron=True. The message names `target`, or
            NEURON_PLATFORM_TARGET_OVERRIDE when the value came from it, and lists the valid names.
    """
    source = "target"
    if isinstance(name, Target):
        tgt = name
    else:
        if name is None:
            env = os.environ.get(TARGET_ENV)
            source, name = (TARGET_ENV, env) if env else (source, DEFAULT_TARGET)
        if not isinstance(name, str):
            raise TypeError(f"target: expected a target name (str), a Target or None, got {name!r}")
        key = ALIASES.get(name.lower(), name.lower())
        if key not in TARGETS:
            raise ValueError(f"{source}: {name!r} is not a target; use one of {', '.join(ALL_TARGETS)} "
                             f"(aliases {', '.join(ALIASES)})")
        tgt = TARGETS[key]
    if neuron and not isinstance(tgt, NeuronTarget):
        raise ValueError(f"{source}: {tgt.name!r} is a {tgt.kind} target; NKI kernels and the instruction model need "
                         f"a Neuron target: one of {', '.join(NEURON_TARGETS)}")
    return tgt
