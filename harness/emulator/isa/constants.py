"""`nki.isa.constants`: the ISA enums under the module path AWS's nki-library imports them from
(`from nki.isa.constants import dge_mode, oob_mode`); the same objects as `nki.isa.<enum>`."""

from .enums import dge_mode, dma_engine, engine, matmul_perf_mode, nc_version, oob_mode, reduce_cmd

__all__ = ["dge_mode", "dma_engine", "engine", "matmul_perf_mode", "nc_version", "oob_mode", "reduce_cmd"]
