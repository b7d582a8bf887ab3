"""nkilab.reference: float64 NumPy reference implementations and the quantization formats.

Each function here defines the semantics the kernels of `nkilab.kernels` are checked against; the public API's
docstrings point here.
"""

from nkilab.reference.activation import silu_mul
from nkilab.reference.attention import attention, attention_varlen, visible_keys
from nkilab.reference.matmul import qmatmul
from nkilab.reference.norm import rms_norm
from nkilab.reference.paged import build_paged_cache, gather_kv, paged_attention, write_kv_cache
from nkilab.reference.quant import (
    FP8_E4M3_MAX,
    FP8_E4M3FN_MAX,
    SCHEMES,
    QuantizedActivation,
    QuantizedWeight,
    dequantize_activation,
    dequantize_weight,
    pack_int4,
    quantize_activation,
    quantize_weight,
    unpack_int4,
)
from nkilab.reference.rotary import RopeScaling, rope

__all__ = [
    "FP8_E4M3_MAX",
    "FP8_E4M3FN_MAX",
    "SCHEMES",
    "QuantizedActivation",
    "QuantizedWeight",
    "RopeScaling",
    "attention",
    "attention_varlen",
    "build_paged_cache",
    "dequantize_activation",
    "dequantize_weight",
    "gather_kv",
    "pack_int4",
    "paged_attention",
    "qmatmul",
    "quantize_activation",
    "quantize_weight",
    "rms_norm",
    "rope",
    "silu_mul",
    "unpack_int4",
    "visible_keys",
    "write_kv_cache",
]
