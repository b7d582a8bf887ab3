"""Chip tables: the numbers the performance and energy model stands on, one source per number.

Targets: "inf2", "trn1" (NeuronCore-v2), "trn2" (v3), "trn3" (v4), "h100", "h200" (NVIDIA SXM), "cpu" (one server
core, for scale). Neuron targets carry a `NeuronCore` (per-core engine clocks and rates, DMA queues, SBUF/PSUM) and
are what the instruction-level model costs; GPU and CPU targets carry only roofline figures.

Sources (tags used in the field comments):
  [A2]  aws-neuron-sdk nki/guides/architecture/trainium_inferentia2_arch.rst (NeuronCore-v2 engines, clocks)
  [A3]  aws-neuron-sdk nki/guides/architecture/trainium2_arch.rst (NeuronCore-v3)
  [A4]  aws-neuron-sdk nki/guides/architecture/trainium3_arch.rst (NeuronCore-v4)
  [HW]  aws-neuron-sdk about-neuron/arch/neuron-hardware/{inferentia2,trainium,trainium2,trainium3}.rst (chip tables)
  [DMA] aws-neuron-sdk nki/about/nki-dma-overview (16 DMA engines per core, 27.2 GB/s each on v2/v3, 38.4 on v4)
  [DBW] aws-neuron-sdk nki/deep-dives/nki-dma-bandwidth-guide (~1300 ns semaphore-to-start latency per transfer,
        payloads >= 4 KiB per partition needed to reach peak bandwidth)
  [PG]  aws-neuron-sdk nki perf guide / arch pages: matmul initiation interval max(N, 64) cycles, fp32 at 1/4 rate,
        VectorE ~N cycles per operand plus a static overhead of ~100 cycles
  [NV]  NVIDIA H100/H200 SXM datasheets (dense = sparse / 2), via shared/design/hardware-and-energy.md §5.2
  [SPR] Intel Xeon 8480+ figures, via shared/design/hardware-and-energy.md §5.3
  [FIT] fitted once against the published Trainium2 matmul measurements in `calibration.py` (same constants for
        every kernel; see `nkilab.harness.perf.calibration`)
  [ASSUMED] not published; an explicit, overridable assumption (`with_power`, CLI `--power-w`)

Derived values ([derived]) are arithmetic on the above, e.g. per-core HBM bandwidth = chip bandwidth / cores.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

GB = 1e9
TB = 1e12
KiB = 1024
MiB = 1024 * 1024

NEURON_TARGETS = ("inf2", "trn1", "trn2", "trn3")
GPU_TARGETS = ("h100", "h200")
ALL_TARGETS = NEURON_TARGETS + GPU_TARGETS + ("cpu",)

# dtype families used to look up peaks; NKI dtype names map onto them in `dtype_family`
_FP32 = ("float32", "fp32", "tfloat32_fp32")
_FP8 = ("float8_e4m3", "float8_e4m3fn", "float8_e5m2", "fp8", "float8_e4m3fnuz", "float8_e5m2fnuz")


def dtype_family(dtype: str) -> str:
    """Peak-table family of a dtype name: "fp32" | "fp8" | "int8" | "bf16" (bf16/fp16/tf32, the default)."""
    name = str(dtype).lower()
    if name in _FP32:
        return "fp32"
    if name in _FP8 or name.startswith("float8"):
        return "fp8"
    if name in ("int8", "uint8"):
        return "int8"
    return "bf16"


@dataclass(frozen=True)
class NeuronCore:
    """One physical NeuronCore: engine clocks and rates, DMA, on-chip memories.

    Rates are per core; an LNC=2 logical core is two of these (the model schedules each program id on its own
    engines and gives it its own share of HBM bandwidth).
    """

    generation: int                  # NeuronCore version: 2 (Inf2/Trn1), 3 (Trn2), 4 (Trn3)
    tensor_hz: float                 # TensorE clock [A2: 2.8 GHz; A3/A4: 2.4 GHz]
    pe_rows: int                     # systolic array 128 x 128 [A2, A3, A4]
    pe_cols: int
    matmul_min_cycles: int           # initiation interval floor: max(N, 64) cycles per nc_matmul [PG]
    fp32_factor: int                 # fp32 matmul runs at 1/4 rate (4 passes) [PG; A2 23 vs 92 TFLOPS]
    fp8_speedup: float               # fp8 "double row" perf mode (v3: 2x, K=256) / MX quad (v4: 4x) [A3, A4];
                                     # applied only when the instruction asks for it (attrs["perf_mode"])
    vector_hz: float                 # VectorE clock [A2 1.12, A3 0.96, A4 1.2 GHz]
    vector_lane_rate: float          # elements per cycle per partition lane, fp32 / mixed operands
                                     # [A2: 128 lanes x 1; A3: 256 elem/cycle = 2 per lane; A4: 256 = 2 per lane]
    vector_lane_rate_fast: float     # same, all operands 2-byte (or fp8 on v4) in SBUF ("perf mode")
                                     # [A3: 512 bf16/fp16 elem/cycle = 4 per lane; A4: 512 bf16/fp16/fp8 = 4]
    scalar_hz: float                 # ScalarE clock [A2 1.4, A3 1.2, A4 1.2 GHz]
    scalar_lane_rate: float          # [A2, A3: 128 elem/cycle = 1 per lane; A4: 128 other]
    scalar_lane_rate_fast: float     # [A4: 256 bf16/fp16/fp8 elem/cycle = 2 per lane; v2/v3 = 1]
    gpsimd_hz: float                 # GpSimdE clock [A2 1.4, A3 1.2, A4 1.2 GHz]
    gpsimd_lane_rate: float          # 8 cores x 16 partitions [A2, A3]; A4: 128 elem/cycle -> 1 per lane
    engine_overhead_cycles: int      # static cost of any Vector/Scalar/GpSimd instruction, ~100 cycles [PG]
    dma_queues: int                  # DMA engines per core, 16 [DMA]
    dma_queue_bw: float              # bytes/s per DMA engine [DMA: 27.2 GB/s v2/v3, 38.4 GB/s v4]
    dma_run_min_s: float             # least time one contiguous run (descriptor) holds a DMA engine: runs
                                     # shorter than bandwidth x this are packet-rate bound [FIT; DBW]
    dma_transfer_s: float            # per-transfer setup occupancy on each engine it uses [FIT]
    dma_latency_s: float             # semaphore-to-start latency before a transfer's data is usable, ~1.3 us [DBW]
    dma_dge_run_s: float             # extra per run for indirect / software-DGE transfers (descriptors written
                                     # by GpSimd) [ASSUMED: one more descriptor time per run]
    hbm_bw: float                    # this core's share of chip HBM bandwidth [derived: chip / cores]
    sbuf_bytes: int                  # [A2: 24 MiB = 128 x 192 KiB; A3: 28 MiB = 128 x 224 KiB; A4: 32 MiB]
    psum_bytes: int                  # 2 MiB = 128 x 16 KiB, 8 banks of 2 KiB per partition [A2, A3, A4]
    launch_s: float                  # fixed per-kernel launch overhead, reported apart from latency
                                     # [ASSUMED: ~15 us runtime launch; nrtpy/neuron-bench report device time
                                     # without it, so it never enters `latency_s`]

    def tensor_peak_flops(self, dtype: str = "bfloat16") -> float:
        """Dense TensorE FLOP/s of this core for an input dtype (fp8 at its perf-mode rate)."""
        base = 2.0 * self.pe_rows * self.pe_cols * self.tensor_hz
        family = dtype_family(dtype)
        if family == "fp32":
            return base / self.fp32_factor
        if family == "fp8":
            return base * self.fp8_speedup
        return base


@dataclass(frozen=True)
class Target:
    """A chip as the model and the reports see it.

    Attributes:
        name: target key ("trn2", "h100", …).
        kind: "neuron" | "gpu" | "cpu".
        description: one line for reports.
        cores: NeuronCores (Neuron), SMs (GPU) or 1 (cpu) per chip.
        peak_flops: dense FLOP/s per chip by dtype family ("bf16", "fp8", "fp32", "int8").
        hbm_bw: memory bandwidth per chip, bytes/s.
        hbm_bytes: memory capacity per chip, bytes.
        power_w: power per chip at full load, W (published TDP, or an [ASSUMED] figure — see `power_source`).
        power_source: where `power_w` comes from ("published: …" or "assumed: …").
        idle_share: fraction of `power_w` drawn at zero utilisation (static/idle), used by the modeled energy.
        core: per-core engine table (Neuron targets only).
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
    core: NeuronCore | None = None

    def peak(self, dtype: str = "bfloat16", *, lnc: int | None = None) -> float:
        """Dense FLOP/s for `dtype`: per logical core (lnc physical cores) on Neuron, per chip otherwise."""
        if self.core is not None:
            return self.core.tensor_peak_flops(dtype) * (lnc or 1)
        family = dtype_family(dtype)
        return self.peak_flops.get(family, self.peak_flops["bf16"])

    def bandwidth(self, *, lnc: int | None = None) -> float:
        """HBM bytes/s available to one logical core (Neuron) or to the whole chip (GPU/CPU)."""
        if self.core is not None:
            return self.core.hbm_bw * (lnc or 1)
        return self.hbm_bw

    def power(self, *, lnc: int | None = None) -> float:
        """Full-load power in W attributed to one logical core (Neuron: chip power x lnc / cores) or one chip."""
        if self.core is not None:
            return self.power_w * (lnc or 1) / self.cores
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


# DMA constants fitted once on Trainium2 (calibration.py) and shared by every generation: they describe the DMA
# engine's descriptor processing, which the docs give as the same engine design on v2-v4 [DMA].
_DMA_RUN_MIN_S = 45e-9
_DMA_TRANSFER_S = 68e-9
_DMA_LATENCY_S = 1.3e-6
_LAUNCH_S = 15e-6

_V2_CORE = NeuronCore(
    generation=2, tensor_hz=2.8e9, pe_rows=128, pe_cols=128, matmul_min_cycles=64, fp32_factor=4, fp8_speedup=1.0,
    vector_hz=1.12e9, vector_lane_rate=1.0, vector_lane_rate_fast=1.0,
    scalar_hz=1.4e9, scalar_lane_rate=1.0, scalar_lane_rate_fast=1.0,
    gpsimd_hz=1.4e9, gpsimd_lane_rate=1.0, engine_overhead_cycles=100,
    dma_queues=16, dma_queue_bw=27.2 * GB, dma_run_min_s=_DMA_RUN_MIN_S, dma_transfer_s=_DMA_TRANSFER_S,
    dma_latency_s=_DMA_LATENCY_S, dma_dge_run_s=_DMA_RUN_MIN_S,
    hbm_bw=410 * GB,                  # [HW: 820 GB/s per chip / 2 cores, derived]
    sbuf_bytes=24 * MiB, psum_bytes=2 * MiB, launch_s=_LAUNCH_S,
)

_V3_CORE = replace(
    _V2_CORE, generation=3, tensor_hz=2.4e9, fp8_speedup=2.0,
    vector_hz=0.96e9, vector_lane_rate=2.0, vector_lane_rate_fast=4.0,
    scalar_hz=1.2e9, gpsimd_hz=1.2e9,
    hbm_bw=2.9 * TB / 8,              # [HW: 2.9 TB/s per chip / 8 cores = 362.5 GB/s, derived]
    sbuf_bytes=28 * MiB,
)

_V4_CORE = replace(
    _V3_CORE, generation=4, fp8_speedup=4.0,
    vector_hz=1.2e9, scalar_hz=1.2e9, scalar_lane_rate_fast=2.0, gpsimd_hz=1.2e9,
    dma_queue_bw=38.4 * GB,
    hbm_bw=4.9 * TB / 8,              # [HW: 4.9 TB/s per chip / 8 cores = 612.5 GB/s, derived]
    sbuf_bytes=32 * MiB,
)

# AWS publishes no TDP for its chips: every Neuron power figure is an assumption, with this static share.
_NEURON_IDLE_SHARE = 0.3


def _neuron_target(name: str, chip: str, description: str, *, cores: int, peak_flops: dict, hbm_bw: float,
                   hbm_bytes: float, power_w: float, core: NeuronCore) -> Target:
    """A Neuron chip row; its power is the assumed full-load figure `power_w` (W) with `_NEURON_IDLE_SHARE`."""
    return Target(
        name=name, kind="neuron", description=description, cores=cores, peak_flops=peak_flops, hbm_bw=hbm_bw,
        hbm_bytes=hbm_bytes, power_w=power_w, idle_share=_NEURON_IDLE_SHARE,
        power_source=f"assumed: {power_w:g} W per {chip} chip at full load, {_NEURON_IDLE_SHARE:.0%} of it static "
                     "(TDP not published)",
        core=core,
    )


TARGETS: dict[str, Target] = {
    "inf2": _neuron_target(
        "inf2", "Inferentia2", "AWS Inferentia2 (NeuronCore-v2, 2 cores/chip)", cores=2,
        peak_flops={"bf16": 190 * TB, "fp8": 190 * TB, "fp32": 47.5 * TB, "int8": 380 * TB},  # [HW]
        hbm_bw=820 * GB, hbm_bytes=32 * 2**30,  # [HW]
        power_w=130.0, core=_V2_CORE,
    ),
    "trn1": _neuron_target(
        "trn1", "Trainium", "AWS Trainium (NeuronCore-v2, 2 cores/chip)", cores=2,
        peak_flops={"bf16": 190 * TB, "fp8": 190 * TB, "fp32": 47.5 * TB, "int8": 380 * TB},  # [HW]
        hbm_bw=820 * GB, hbm_bytes=32 * 2**30,  # [HW]
        power_w=210.0, core=_V2_CORE,
    ),
    "trn2": _neuron_target(
        "trn2", "Trainium2", "AWS Trainium2 (NeuronCore-v3, 8 cores/chip, LNC=2)", cores=8,
        peak_flops={"bf16": 667 * TB, "fp8": 1299 * TB, "fp32": 181 * TB, "int8": 667 * TB},  # [HW]
        hbm_bw=2.9 * TB, hbm_bytes=96 * 2**30,  # [HW]
        power_w=500.0, core=_V3_CORE,
    ),
    "trn3": _neuron_target(
        "trn3", "Trainium3", "AWS Trainium3 (NeuronCore-v4, 8 cores/chip, LNC=2)", cores=8,
        peak_flops={"bf16": 671 * TB, "fp8": 2517 * TB, "fp32": 183 * TB, "int8": 671 * TB},  # [HW]
        hbm_bw=4.9 * TB, hbm_bytes=144 * 2**30,  # [HW]
        power_w=700.0, core=_V4_CORE,
    ),
    "h100": Target(
        name="h100", kind="gpu", description="NVIDIA H100 SXM5 80GB", cores=132,
        peak_flops={"bf16": 989 * TB, "fp8": 1979 * TB, "fp32": 67 * TB, "int8": 1979 * TB},  # [NV] dense
        hbm_bw=3.35 * TB, hbm_bytes=80e9,  # [NV]
        power_w=700.0, idle_share=0.1,
        power_source="published: 700 W TDP (H100 SXM) [NV]; 10% idle share assumed",
    ),
    "h200": Target(
        name="h200", kind="gpu", description="NVIDIA H200 SXM 141GB", cores=132,
        peak_flops={"bf16": 989 * TB, "fp8": 1979 * TB, "fp32": 67 * TB, "int8": 1979 * TB},  # [NV] dense
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


def get_target(name: str) -> Target:
    """The `Target` named `name`; raises ValueError listing the known targets."""
    key = str(name).lower()
    if key not in TARGETS:
        raise ValueError(f"target: unknown {name!r}; choose one of {', '.join(ALL_TARGETS)}")
    return TARGETS[key]
