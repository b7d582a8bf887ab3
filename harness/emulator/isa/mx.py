"""Microscaling (OCP MX) instructions of NeuronCore-v4 (S-ISA): `quantize_mx` (VectorE) and `nc_matmul_mx`
(TensorE).

Layout (S-ISA, `nki/deep-dives/mxfp-matmul.rst`): a scaling group is 8 partitions x 4 elements of the unquantized
tile; quantized data packs those 4 free-dim elements into one x4 element (float8_*_x4: 4 bytes, element 4j+q in
byte q, little-endian; float4_e2m1fn_x4: 16 bits, nibble q). Scales are float8_e8m0fnu (or uint8) exponents
(value 2^(bits - 127)); group g of a tile (partitions 8g..8g+7) keeps its scale in its own 32-partition quadrant,
at partition (g // 4) * 32 + g % 4 of the scale tile, one column per x4 element.

quantize_mx's block scale is the 0.5 release notes' one: X = 2^(floor(log2(amax)) - (E_max - 1)), two times the
OCP sample algorithm's, E_max = 8 (float8_e4m3fn) or 15 (float8_e5m2); an all-zero group gets X = 2^-127. Values
are divided by X and cast with round-to-nearest-even (they stay below 2^E_max, so they never saturate).
"""

from __future__ import annotations

import ml_dtypes
import numpy as np

from .. import dtypes, validate
from ..errors import NkiValidationError
from .issue import computes, current, f32, raw, record
from .tensor_engine import accumulate_psum

GROUP_P, GROUP_F = 8, 4  # a scaling group: 8 partitions x 4 free elements — S-ISA
QUADRANT = 32
E_MAX = {"float8_e4m3fn_x4": 8, "float8_e5m2_x4": 15}  # max unbiased exponent of the element type — S-ISA
ELEMENT = {"float8_e4m3fn_x4": ml_dtypes.float8_e4m3fn, "float8_e5m2_x4": ml_dtypes.float8_e5m2,
           "float4_e2m1fn_x4": ml_dtypes.float4_e2m1fn}
SCALE_DTYPES = ("float8_e8m0fnu", "uint8")
E8M0_BIAS = 127
_FP4_VALUES = np.arange(16, dtype=np.uint8).view(ml_dtypes.float4_e2m1fn).astype(np.float32)


def scale_rows(partitions: int) -> np.ndarray:
    """Scale-tile partition of each scaling group of a `partitions`-row data tile: (g // 4) * 32 + g % 4."""
    g = np.arange(partitions // GROUP_P)
    return (g // 4) * QUADRANT + g % 4


def unpack(x4: np.ndarray, name: str) -> np.ndarray:
    """float32 [P, F, 4] values of an x4 bit-pattern array [P, F] (`x4` raw structured storage)."""
    bits = x4.view(np.uint32 if name.startswith("float8") else np.uint16).astype(np.uint32)
    if name.startswith("float8"):
        b = np.stack([(bits >> (8 * q)) & 0xFF for q in range(4)], axis=-1).astype(np.uint8)
        return b.view(ELEMENT[name]).astype(np.float32)
    return _FP4_VALUES[np.stack([(bits >> (4 * q)) & 0xF for q in range(4)], axis=-1)]


def _scale_values(scale: np.ndarray, partitions: int, cols: int) -> np.ndarray:
    """float32 [groups, cols] scale factors 2^(e - 127) from a scale tile's raw bytes."""
    rows = scale_rows(partitions)
    if rows.max(initial=0) >= scale.shape[0] or cols > scale.shape[1]:
        raise NkiValidationError("nc_matmul_mx", "scale", f"partitions {rows.tolist()} x {cols} columns",
                                 list(scale.shape))
    e = scale.view(np.uint8)[rows, :cols].astype(np.int32)
    return np.ldexp(np.float32(1.0), e - E8M0_BIAS).astype(np.float32)


def _check_scale(opc: str, name: str, s, data_partitions: int, cols: int, t) -> None:
    """A scale operand may start anywhere its 4-per-quadrant rows fit in the quadrant (the deep-dive packs two
    tensors' scales at quadrant offsets 0 and 4), so the engines' start-partition rule is not applied."""
    validate.tile(opc, name, s, t, engine=False)
    start = s.offset // s.storage.free
    if start % QUADRANT + min(4, data_partitions // GROUP_P) > QUADRANT:
        raise NkiValidationError(opc, name, "scale rows within one 32-partition quadrant", f"start partition {start}",
                                 t.name)
    validate.buffer(opc, name, s, ("sbuf",), t)
    if dtypes.name(s.dtype) not in SCALE_DTYPES:
        raise NkiValidationError(opc, name, f"dtype in {SCALE_DTYPES}", dtypes.name(s.dtype), t.name)
    need = int(scale_rows(data_partitions).max(initial=0)) + 1
    if s.shape[0] < need or s.free_size < cols:
        raise NkiValidationError(opc, name, f"at least [{need}, {cols}] (group g's scale at partition "
                                 "(g // 4) * 32 + g % 4)", f"{s.shape[0]} x {s.free_size}", t.name)


def _check_mx_partitions(opc: str, name: str, x, t) -> None:
    p = x.shape[0]
    if p % QUADRANT or p > t.pmax:
        raise NkiValidationError(opc, name, f"partition dim a multiple of {QUADRANT}, at most {t.pmax}", p, t.name)


def quantize_mx(dst, src, dst_scale, name=None):
    """dst[P, F/4] (float8_e4m3fn_x4 / float8_e5m2_x4) and dst_scale (float8_e8m0fnu / uint8, layout above) =
    MXFP8 quantization of src[P, F] (bf16 / fp16, SBUF) in groups of 8 partitions x 4 elements. NeuronCore-v4."""
    opc = "quantize_mx"
    ctx = current()
    t = ctx.target
    validate.feature(opc, "op", t.gen >= 4, "quantize_mx needs NeuronCore-v4", opc, t)
    for n, x in (("dst", dst), ("src", src)):
        validate.tile(opc, n, x, t)
        validate.buffer(opc, n, x, ("sbuf",), t)
    if dtypes.name(src.dtype) not in ("bfloat16", "float16"):
        raise NkiValidationError(opc, "src", "bfloat16 or float16", dtypes.name(src.dtype), t.name)
    out_name = dtypes.name(dst.dtype)
    if out_name not in E_MAX:
        raise NkiValidationError(opc, "dst", f"dtype in {tuple(E_MAX)}", out_name, t.name)
    _check_mx_partitions(opc, "src", src, t)
    p, f = src.shape[0], src.free_size
    if f % GROUP_F or dst.shape[0] != p or dst.free_size * GROUP_F != f:
        raise NkiValidationError(opc, "dst", f"[{p}, {f // GROUP_F}] for src [{p}, {f}] (free size a multiple of 4)",
                                 f"{dst.shape[0]} x {dst.free_size}", t.name)
    _check_scale(opc, "dst_scale", dst_scale, p, f // GROUP_F, t)
    if computes(ctx, (dst, dst_scale), (src,)):
        x = f32(src)
        groups = x.reshape(p // GROUP_P, GROUP_P, f // GROUP_F, GROUP_F)
        amax = np.abs(groups).max(axis=(1, 3))
        _, e2 = np.frexp(amax)  # amax = m * 2^e2, m in [0.5, 1) -> floor(log2 amax) = e2 - 1
        exp = np.where(amax > 0, (e2 - 1) - (E_MAX[out_name] - 1), -E8M0_BIAS)
        code = np.clip(exp + E8M0_BIAS, 0, 254).astype(np.uint8)
        factor = np.ldexp(np.float32(1.0), code.astype(np.int32) - E8M0_BIAS)
        q = (groups / factor[:, None, :, None]).reshape(p, f).astype(ELEMENT[out_name])
        dst.write(np.ascontiguousarray(q).view(np.uint8).reshape(p, -1).view(np.uint32).view(dst.dtype))
        sc = raw(dst_scale).view(np.uint8).copy()
        sc[scale_rows(p), :f // GROUP_F] = code
        dst_scale.write(sc.view(dst_scale.dtype))
    record(ctx, "vector", opc, {"dst": dst, "dst_scale": dst_scale}, {"src": src}, flops=2 * src.size,
           attrs={"partitions": p, "free_elems": f})


def _check_mx_tiling(opc: str, tile_position, tile_size, k: int, t) -> int:
    """Row tiling only (column size 128, start column 0): returns the row tile size (128 untiled)."""
    if not tile_position and not tile_size:
        return t.pmax
    if not (tile_position and tile_size):
        raise NkiValidationError(opc, "tile_position/tile_size", "both set to enable tiling mode",
                                 (tile_position, tile_size), t.name)
    (row, col), (size, col_size) = tile_position, tile_size
    if col != 0 or col_size != t.pmax or size not in (32, 64, 128) or row % size or row + size > t.pmax:
        raise NkiValidationError(opc, "tile_position/tile_size", "row tiles of 32/64/128 at a multiple of their "
                                 "size, start column 0, column size 128", (tile_position, tile_size), t.name)
    if k > size:
        raise NkiValidationError(opc, "stationary", f"partition dim <= the row tile size {size}", k, t.name)
    return size


def nc_matmul_mx(dst, stationary, moving, stationary_scale, moving_scale, tile_position=None, tile_size=None,
                 accumulate=None, name=None):
    """dst[M, N] = sum over partitions k and packed q of (S[k, m, q] * s_scale) * (M[k, n, q] * m_scale): MX
    matmul with dequantization, contracting 4 * K values. stationary [K, M] / moving [K, N] in float8_e5m2_x4,
    float8_e4m3fn_x4 or float4_e2m1fn_x4 (SBUF; K a multiple of 32; M even, <= 128; N <= 4096 for an fp32 dst,
    8192 for bf16), scales as quantize_mx lays them out, dst fp32/bf16 PSUM. `accumulate` as nc_matmul.
    NeuronCore-v4."""
    opc = "nc_matmul_mx"
    ctx = current()
    t = ctx.target
    validate.feature(opc, "op", t.gen >= 4, "nc_matmul_mx needs NeuronCore-v4", opc, t)
    for n, x, buf in (("dst", dst, "psum"), ("stationary", stationary, "sbuf"), ("moving", moving, "sbuf")):
        validate.tile(opc, n, x, t)
        validate.buffer(opc, n, x, (buf,), t)
    names = {n: dtypes.name(x.dtype) for n, x in (("stationary", stationary), ("moving", moving))}
    for n, dn in names.items():
        if dn not in ELEMENT:
            raise NkiValidationError(opc, n, f"dtype in {tuple(ELEMENT)}", dn, t.name)
    k, m, n_ = stationary.shape[0], stationary.free_size, moving.free_size
    _check_mx_partitions(opc, "stationary", stationary, t)
    if moving.shape[0] != k:
        raise NkiValidationError(opc, "moving", f"partition dim == stationary's {k}", moving.shape[0], t.name)
    _check_mx_tiling(opc, tile_position, tile_size, k, t)
    if m % 2 or m > t.stationary_fmax:
        raise NkiValidationError(opc, "stationary", f"free size even, <= {t.stationary_fmax}", m, t.name)
    dst_name = dtypes.name(dst.dtype)
    if dst_name not in ("float32", "bfloat16"):
        raise NkiValidationError(opc, "dst", "float32 or bfloat16", dst_name, t.name)
    n_max = t.moving_fmax_bf16 if dst_name == "bfloat16" else t.moving_fmax_fp32
    if n_ > n_max:
        raise NkiValidationError(opc, "moving", f"free size (N) <= {n_max}", n_, t.name)
    if dst.shape[0] != m or dst.free_size != n_:
        raise NkiValidationError(opc, "dst", f"[M={m}, N={n_}]", f"{dst.shape[0]} x {dst.free_size}", t.name)
    _check_scale(opc, "stationary_scale", stationary_scale, k, m, t)
    _check_scale(opc, "moving_scale", moving_scale, k, n_, t)
    reads = {"stationary": stationary, "moving": moving, "stationary_scale": stationary_scale,
             "moving_scale": moving_scale}
    if computes(ctx, (dst,), tuple(reads.values())):
        s = unpack(raw(stationary), names["stationary"])
        mv = unpack(raw(moving), names["moving"])
        s *= np.repeat(_scale_values(raw(stationary_scale), k, m), GROUP_P, axis=0)[:, :, None]
        mv *= np.repeat(_scale_values(raw(moving_scale), k, n_), GROUP_P, axis=0)[:, :, None]
        res = np.einsum("kmq,knq->mn", s, mv, dtype=np.float32, optimize=True)
        accumulate_psum(dst, res, accumulate)
    in_dtype = names["stationary"].removesuffix("_x4")
    record(ctx, "tensor", opc, {"dst": dst}, reads, flops=2 * 4 * k * m * n_,
           attrs={"k": 4 * k, "m": m, "n": n_, "in_dtype": in_dtype, "perf_mode": "mx", "transpose": False})
