"""Hardware facts per NeuronCore generation, as frozen dataclasses (one comment and source per field).

Sources (see shared/design/nki-api.md §0 for the tags): S-A2/S-A3/S-A4 = Trainium/Inferentia2, Trainium2,
Trainium3 architecture guides; S-ISA = `nki.isa` API reference; S-MIG = NKI migration guide; S-NL =
`nki.language` reference; R-LIB = aws-neuron/nki-library.

Targets: `inf2`, `trn1` → gen2 (NeuronCore-v2); `trn2` → gen3 (NeuronCore-v3, the default);
`trn3` → gen4 (NeuronCore-v4). `gen2`/`gen3`/`gen4` are accepted as aliases, as the official
`NEURON_PLATFORM_TARGET_OVERRIDE` accepts them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

KIB = 1024
DEFAULT_TARGET = "trn2"
TARGET_ENV = "NEURON_PLATFORM_TARGET_OVERRIDE"


@dataclass(frozen=True)
class Target:
    """One NeuronCore generation as the emulator validates it."""

    name: str  # the target string the kernel was run for ("inf2", "trn1", "trn2", "trn3")
    gen: int  # NeuronCore version: 2 (Trn1/Inf2), 3 (Trn2), 4 (Trn3) — S-ISA nc_version
    pmax: int = 128  # partitions of SBUF/PSUM; operand partition dim limit — S-A2, nl.tile_size.pmax
    psum_banks: int = 8  # PSUM banks per partition — S-MIG §0.1→0.2, S-A2
    psum_bank_bytes: int = 2 * KIB  # bytes per PSUM bank per partition (512 fp32) — S-MIG, S-A2
    sbuf_bytes: int = 192 * KIB  # SBUF bytes/partition: 192 KiB S-A2 (24 MiB/128); 224 KiB S-A3; 256 KiB S-A4
    stationary_fmax: int = 128  # nc_matmul stationary free size (M) limit — S-ISA nc_matmul
    moving_fmax_fp32: int = 512  # nc_matmul moving free size N, fp32 dst: 1 bank (gen2/3), 8 banks (gen4) — S-ISA
    moving_fmax_bf16: int = 512  # same for a bf16 PSUM dst (gen4 only: 8192) — S-ISA nc_matmul
    fp8_e4m3_max: float = 240.0  # largest kernel fp8 value: 240 (e4m3, gen2/3), 448 (e4m3fn, gen4) — R-LIB qkv_cte
    matmul_dst_dtypes: tuple = ("float32",)  # PSUM dst dtypes of nc_matmul: fp32 (gen2/3), + bf16 (gen4) — S-ISA
    matmul_fp8_e4m3fn: bool = False  # OCP float8_e4m3fn TensorE input: gen4 only — S-ISA nc_matmul
    matmul_double_row: bool = False  # perf_mode=double_row (fp8 2x): gen3+ — S-ISA nc_matmul
    activation_scalar_bias: bool = False  # activation bias as a scalar: gen3+ (gen2: [P,1] vector) — S-ISA
    scalar_tensor_copy: bool = False  # tensor_copy on ScalarE: not on gen2 — S-ISA tensor_copy
    range_select: bool = False  # nisa.range_select: gen3+ — S-ISA
    exponential: bool = False  # nisa.exponential: gen4 only — S-ISA
    dma_vector_offset: bool = False  # indirect (vector_offset) DMA gather/scatter: "indirect: v3+" — S-DGE
    hwdge: bool = False  # dge_mode.hwdge: gen3+ — S-ISA dma_copy
    dma_priority: bool = False  # dma_copy priority= (QoS): gen4 only — S-ISA dma_copy
    dma_transpose: bool = False  # nisa.dma_transpose: introduced with Trainium2 (gen3+) — S-A3
    lnc2: bool = False  # logical NeuronCore degree 2 (kernel[2]): Trn2/Trn3 only — S-LNCCFG

    @property
    def psum_bytes(self) -> int:
        """PSUM bytes per partition (16 KiB on every generation)."""
        return self.psum_banks * self.psum_bank_bytes


_GEN2 = dict(gen=2)
_GEN3 = dict(gen=3, sbuf_bytes=224 * KIB, matmul_double_row=True, activation_scalar_bias=True,
             scalar_tensor_copy=True, range_select=True, dma_vector_offset=True, hwdge=True, dma_transpose=True,
             lnc2=True)
_GEN4 = dict(_GEN3, gen=4, sbuf_bytes=256 * KIB, moving_fmax_fp32=4096, moving_fmax_bf16=8192, fp8_e4m3_max=448.0,
             matmul_dst_dtypes=("float32", "bfloat16"), matmul_fp8_e4m3fn=True, exponential=True, dma_priority=True)

TARGETS = {
    "inf2": Target("inf2", **_GEN2),
    "trn1": Target("trn1", **_GEN2),
    "trn2": Target("trn2", **_GEN3),
    "trn3": Target("trn3", **_GEN4),
}
_ALIASES = {"gen2": "trn1", "gen3": "trn2", "gen4": "trn3"}


def get_target(name: str | None = None) -> Target:
    """The Target for `name`; None reads NEURON_PLATFORM_TARGET_OVERRIDE, else the default "trn2".

    Raises:
        ValueError: unknown target name.
    """
    source = "target"
    if name is None:
        source = TARGET_ENV if os.environ.get(TARGET_ENV) else "target"
        name = os.environ.get(TARGET_ENV) or DEFAULT_TARGET
    key = _ALIASES.get(name, name)
    if key not in TARGETS:
        raise ValueError(f"{source}: {name!r} is not one of {sorted(TARGETS) + sorted(_ALIASES)}")
    return TARGETS[key]
