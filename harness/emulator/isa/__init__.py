"""`nki.isa` of the emulator: one module per engine (tensor_engine, vector, scalar, gpsimd, dma); each op
validates its operands for the run's target, computes (skipped in trace mode), and records one trace
instruction."""

from ..context import current as _current
from ..errors import NkiValidationError
from ..registers import VirtualRegister
from . import constants
from .dma import dma_compute, dma_copy, dma_transpose
from .enums import (dge_mode, dma_engine, engine, gpsimd_engine, matmul_perf_mode, nc_version, oob_mode, reduce_cmd,
                    scalar_engine, tensor_engine, unknown_engine, vector_engine)
from .gpsimd import affine_select, iota, tensor_partition_reduce
from .gpsimd_gather import local_gather, nc_n_gather, nonzero_with_count, sequence_bounds, topk
from .instruction import NkiInstruction
from .mx import nc_matmul_mx, quantize_mx
from .registers import register_alloc, register_load, register_move, register_store
from .rng import dropout, rand2, rand_get_state, rand_set_state, rng, set_rng_seed
from .scalar import activate2, activation, activation_reduce
from .sync import core_barrier, sendrecv
from .tensor_engine import nc_matmul, nc_transpose
from .vector_search import nc_find_index8, nc_match_replace8, nc_stream_shuffle

# the `tensor_engine` submodule import above rebinds the package attribute; restore the SDK's deprecated constant
tensor_engine = engine.tensor
from .vector_scan import (bn_aggr, bn_stats, max8, tensor_copy_predicated, tensor_scalar_cumulative,
                          tensor_tensor_scan)
from .vector import (exponential, memset, range_select, reciprocal, scalar_tensor_tensor, select_reduce, tensor_copy,
                     tensor_reduce, tensor_scalar, tensor_scalar_reduce, tensor_tensor)


def get_nc_version() -> nc_version:
    """The NeuronCore version of the running kernel's target."""
    return nc_version(_current().target.gen)


def get_nc_sub_version() -> int:
    """The silicon revision within the target's nc_version (S-ISA: 0 first, 1 second). The emulator's targets are
    the first revision of each generation: 0."""
    _current()
    return 0


__all__ = [
    "NkiInstruction", "NkiValidationError", "VirtualRegister", "activate2", "activation", "constants", "dropout",
    "get_nc_sub_version", "local_gather", "nc_find_index8", "nc_match_replace8", "nc_matmul_mx", "nc_n_gather",
    "nc_stream_shuffle", "nonzero_with_count", "quantize_mx", "rand2", "rand_get_state", "rand_set_state", "rng",
    "sequence_bounds", "set_rng_seed", "topk", "activation_reduce", "affine_select", "bn_aggr",
    "bn_stats", "core_barrier", "dma_transpose", "max8", "tensor_copy_predicated", "tensor_partition_reduce",
    "tensor_scalar_cumulative", "tensor_tensor_scan", "dge_mode",
    "dma_compute", "dma_copy", "dma_engine", "engine", "exponential", "get_nc_version", "gpsimd_engine", "iota",
    "matmul_perf_mode", "memset", "nc_matmul", "nc_transpose", "nc_version", "oob_mode", "range_select", "reciprocal",
    "reduce_cmd", "register_alloc", "register_load", "register_move", "register_store", "scalar_engine",
    "scalar_tensor_tensor", "sendrecv", "select_reduce", "tensor_copy", "tensor_engine", "tensor_reduce", "tensor_scalar",
    "tensor_scalar_reduce", "tensor_tensor", "unknown_engine", "vector_engine",
]
