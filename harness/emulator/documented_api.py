"""The documented API of NKI 0.6.0 (Neuron SDK 2.32.0): every public name of `nki.language` and `nki.isa` in the
release's API stubs, in stub order, with where they came from. `tests/emulator/test_documented_api.py` checks that
each exists in the emulator and has a value test.

Source: aws-neuron/aws-neuron-sdk at 81ce03ae (2026-08-21, the Neuron 2.32.0 documentation), files
`nki/api/nki/language/__init__.py` (the `nl` stubs, 134 names) and `nki/api/nki/isa/__init__.py` (the `nisa` stubs,
67 names: module-level functions, classes and constants; the stubs' imports excluded).
"""

RELEASE = "NKI 0.6.0 (Neuron SDK 2.32.0)"
COMMIT = "aws-neuron/aws-neuron-sdk@81ce03ae261e12925e53437a0f690478e6366155"
LANGUAGE_DOC = "nki/api/nki/language/__init__.py"
ISA_DOC = "nki/api/nki/isa/__init__.py"

LANGUAGE = (
    "DType", "bool_", "int8", "int16", "int32", "uint8", "uint16", "uint32", "float16", "float32", "bfloat16",
    "tfloat32", "float8_e4m3", "float8_e4m3fn", "float8_e5m2", "float8_e5m2_x4", "float8_e4m3fn_x4",
    "float8_e8m0fnu", "float4_e2m1fn_x4", "sbuf", "psum", "hbm", "private_hbm", "shared_hbm", "tile_size",
    "average", "prelu", "bypass", "MemoryRegion", "NKIObject", "NkiTensor", "is_hbm", "is_on_chip", "is_psum",
    "is_sbuf", "add", "subtract", "multiply", "divide", "maximum", "minimum", "abs_max", "abs_min", "abs",
    "square", "power", "equal", "not_equal", "less", "less_equal", "greater", "greater_equal", "bitwise_and",
    "bitwise_or", "bitwise_xor", "invert", "left_shift", "right_shift", "logical_and", "logical_or",
    "logical_xor", "logical_not", "exp", "log", "sqrt", "rsqrt", "tanh", "sigmoid", "relu", "gelu",
    "gelu_apprx_sigmoid", "gelu_apprx_tanh", "gelu_dx", "gelu_apprx_sigmoid_dx", "silu", "silu_dx", "softplus",
    "mish", "erf", "erf_dx", "reciprocal", "copy", "sin", "cos", "tan", "arctan", "ceil", "floor", "trunc",
    "negative", "sign", "fmod", "mod", "sum", "max", "min", "mean", "prod", "var", "all", "softmax", "rms_norm",
    "where", "dropout", "ones", "full", "zeros_like", "empty_like", "random_seed", "expand_dims",
    "broadcast_to", "transpose", "matmul", "no_reorder", "load_transpose2d", "gather_flattened", "ds",
    "affine_range", "sequential_range", "static_range", "dynamic_range", "fori_loop", "while_loop", "ndarray",
    "zeros", "load", "store", "program_id", "num_programs", "program_ndim", "shared_constant",
    "shared_identity_matrix", "device_print", "rand"
)

ISA = (
    "tensor_engine", "vector_engine", "scalar_engine", "gpsimd_engine", "unknown_engine", "engine",
    "reduce_cmd", "dge_mode", "oob_mode", "matmul_perf_mode", "nc_version", "dma_engine", "NkiInstruction",
    "NkiValidationError", "VirtualRegister", "get_nc_sub_version", "get_nc_version", "dma_copy", "tensor_copy",
    "memset", "tensor_copy_predicated", "nc_matmul", "nc_matmul_mx", "nc_transpose", "dma_transpose",
    "tensor_tensor", "tensor_scalar", "tensor_reduce", "tensor_partition_reduce", "tensor_scalar_cumulative",
    "activation", "activation_reduce", "activate2", "iota", "affine_select", "local_gather", "nc_n_gather",
    "bn_stats", "bn_aggr", "tensor_tensor_scan", "nc_stream_shuffle", "rng", "dropout", "set_rng_seed",
    "rand_set_state", "rand_get_state", "rand2", "exponential", "reciprocal", "max8", "sequence_bounds",
    "scalar_tensor_tensor", "tensor_scalar_reduce", "core_barrier", "dma_compute", "quantize_mx",
    "range_select", "select_reduce", "sendrecv", "register_alloc", "register_move", "register_load",
    "register_store", "nc_find_index8", "nc_match_replace8", "nonzero_with_count", "topk"
)

# modules the docs name beside nl / nisa: `nki.typing` (S-MIG 0.2 -> 0.3, "nki.typing module"),
# `nki.isa.constants` (imported by AWS's nki-library: `from nki.isa.constants import dge_mode, oob_mode`)
TYPING = ("tensor",)
ISA_CONSTANTS = ("dge_mode", "oob_mode")


def documented() -> list[tuple[str, str, str]]:
    """[(module, name, doc path)] of every documented name, nl first."""
    return ([("nki.language", n, LANGUAGE_DOC) for n in LANGUAGE] + [("nki.isa", n, ISA_DOC) for n in ISA]
            + [("nki.typing", n, "nki/migration/index.rst") for n in TYPING]
            + [("nki.isa.constants", n, "nki-library nkilib imports") for n in ISA_CONSTANTS])
