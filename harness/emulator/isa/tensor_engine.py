"""TensorE instructions: `nc_matmul` and `nc_transpose` (S-ISA).

nc_matmul: `dst[M, N] = stationary[K, M].T @ moving[K, N]`, K on the partitions of both inputs,
fp32 accumulation inside TensorE and in PSUM (S-A2). `accumulate`: False overwrites, True adds,
None (default) overwrites PSUM elements no matmul has written since their last non-matmul write
and adds onto the others ("first write overwrites, subsequent accumulate", S-ISA). The emulator
tracks this per PSUM element; a memset/tensor_copy/activation write into PSUM resets it, and so does
an `nc_transpose` (its `accumulate` is "not exposed": it always overwrites). Readings chosen where S-ISA
is silent: accumulating onto PSUM initialised by a non-matmul op is undefined on v2/v3 hardware
(S-ISA nc_matmul: accumulate=True onto an uninitialised location is undefined); the emulator overwrites there with
accumulate=None and adds (with a warning) with
accumulate=True. `is_transpose=True` is a profiler hint on NeuronCore-v2 (an ordinary matmul); on v3+
it is the bit-accurate transpose mode: moving must be the [K, K] identity and dst = stationary.T exactly
(NaN/Inf included).
"""

from __future__ import annotations

import warnings

import numpy as np

from .. import dtypes, validate
from ..errors import NkiValidationError
from ..storage import strided_view
from ..tensor import NkiTensor
from .enums import engine as Engine
from .enums import coerce, matmul_perf_mode
from .issue import computes, current, emit, f32, layout_attrs, raw, record, store

_MATMUL_INPUTS = ("float8_e4m3", "float8_e5m2", "bfloat16", "float16", "float32")
_DOUBLE_ROW = matmul_perf_mode.double_row  # bound once: enum member lookups are slow on the per-matmul path


def _check_matmul_dtypes(op: str, stationary: NkiTensor, moving: NkiTensor, target, double: bool) -> None:
    allowed = _MATMUL_INPUTS + (("float8_e4m3fn",) if target.matmul_fp8_e4m3fn else ())
    if double:
        allowed = tuple(n for n in allowed if n.startswith("float8"))
    names = {}
    for operand, t in (("stationary", stationary), ("moving", moving)):
        names[operand] = dtypes.name(t.dtype)
        if names[operand] not in allowed:
            hint = " (no int8 on TensorE: cast to bf16/fp8 first)" if dtypes.is_int(t.dtype) else ""
            raise NkiValidationError(op, operand, f"dtype in {allowed}{hint}", names[operand], target.name)
    pair = set(names.values())
    if "float32" in pair and len(pair) > 1:
        raise NkiValidationError(op, "stationary/moving", "float32 pairs only with float32", sorted(pair), target.name)
    if {"float8_e4m3", "float8_e4m3fn"} <= pair:
        raise NkiValidationError(op, "stationary/moving", "no mixing of float8_e4m3 and float8_e4m3fn", sorted(pair),
                                 target.name)


def _check_tiling(op: str, tile_position, tile_size, target) -> None:
    """Tiling mode: both tuples set; tiles of 128/64 PE rows/columns (32 on v3+) at multiples of their size."""
    if not tile_position and not tile_size:
        return
    if not (tile_position and tile_size):
        raise NkiValidationError(op, "tile_position/tile_size", "both set to enable tiling mode",
                                 (tile_position, tile_size), target.name)
    sizes = (128, 64, 32) if target.gen >= 3 else (128, 64)
    for (start, size), what in zip(zip(tile_position, tile_size), ("row", "column")):
        if size not in sizes or start % size or start + size > target.pmax:
            raise NkiValidationError(op, "tile_position/tile_size", f"{what} tile of {sizes} PEs at a multiple of its "
                                     f"size within {target.pmax}", (start, size), target.name)


def _check_bank(op: str, dst: NkiTensor, target) -> None:
    """A matmul output on gen2/3 lies in one 2 KiB PSUM bank (S-ISA: N ≤ 512 = one bank of fp32): the bytes its
    footprint spans in the partition (the trace footprint, computed once per view: placed tiles' is in bytes)."""
    bank = target.psum_bank_bytes
    if target.moving_fmax_fp32 > bank // 4:
        return
    acc = dst.trace_access()
    scale = 1 if dst.storage.placement is not None else dst.storage.dtype.itemsize
    lo, hi = acc.start * scale, acc.stop * scale
    if lo // bank != (hi - 1) // bank:
        raise NkiValidationError(op, "dst", f"output within one {bank}-byte PSUM bank",
                                 f"bytes [{lo}, {hi}) of the partition", target.name)


def nc_matmul(dst, stationary, moving, is_stationary_onezero=False, is_moving_onezero=False, is_transpose=False,
              accumulate=None, tile_position=(), tile_size=(), perf_mode=matmul_perf_mode.none, name=None):
    """`dst = stationary.T @ moving` on TensorE (SBUF inputs, PSUM dst), see module docstring."""
    op = "nc_matmul"
    ctx = current()
    t = ctx.target
    if dst._valid_for is not t:  # (in operand order: a view that passed for `t` has nothing left to check)
        validate.tile(op, "dst", dst, t)
    if stationary._valid_for is not t:
        validate.tile(op, "stationary", stationary, t)
    if moving._valid_for is not t:
        validate.tile(op, "moving", moving, t)
    key = plan = None
    if type(perf_mode) is matmul_perf_mode and type(tile_position) is tuple and type(tile_size) is tuple:
        key = (stationary.layout, moving.layout, dst.layout, perf_mode is _DOUBLE_ROW, bool(is_transpose),
               tile_position, tile_size)
        try:
            plan = _PLANS.get(key)
        except TypeError:  # unhashable tiling entries: checked every time
            key = None
    if plan is None or plan[0] is not t:
        plan = _plan(op, dst, stationary, moving, is_transpose, tile_position, tile_size, perf_mode, t)
        if key is not None:
            if len(_PLANS) >= _PLANS_MAX:
                _PLANS.clear()
            _PLANS[key] = plan
    else:
        _check_bank(op, dst, t)  # the one rule that depends on where dst is (its plan: only on what the operands are)
    _, k, m, n, rows, double, transpose_mode, in_dtype = plan
    # (trace mode, a destination without values: `computes` would answer False and change nothing)
    if (ctx.full or dst.storage.data is not None) and computes(ctx, (dst,), (stationary, moving)):
        s = dtypes.to_f32(stationary.values()).reshape(k * rows, m)
        if transpose_mode:  # bit-accurate: no products, so NaN/Inf stay where they are
            res = np.ascontiguousarray(s.T)
        else:
            res = s.T @ dtypes.to_f32(moving.values()).reshape(k * rows, n)
        accumulate_psum(dst, res, accumulate)
    emit(ctx, "tensor", op, _MATMUL_OPERANDS, (dst, stationary, moving), 1, 2 * k * rows * m * n,
         {"k": k * rows, "m": m, "n": n, "in_dtype": in_dtype, "transpose": bool(is_transpose), "double_row": double})


# nc_matmul's rules on what its operands are (layouts, dtypes, flags) hold for every matmul with the same ones: the
# plan of a (stationary, moving, dst layout, double_row, is_transpose, tiling) combination is checked once per target
_PLANS: dict[tuple, tuple] = {}
_PLANS_MAX = 10_000


def _plan(op, dst, stationary, moving, is_transpose, tile_position, tile_size, perf_mode, t) -> tuple:
    """Check every nc_matmul rule past the per-operand ones, in order; returns (target, k, m, n, rows, double_row,
    transpose_mode, in_dtype)."""
    if stationary.storage.buffer != "sbuf" or moving.storage.buffer != "sbuf" or dst.storage.buffer != "psum":
        validate.buffer(op, "stationary", stationary, ("sbuf",), t)
        validate.buffer(op, "moving", moving, ("sbuf",), t)
        validate.buffer(op, "dst", dst, ("psum",), t)
    double = (perf_mode if type(perf_mode) is matmul_perf_mode else coerce(matmul_perf_mode, perf_mode, op, "perf_mode")
              ) is _DOUBLE_ROW
    if double:
        validate.feature(op, "perf_mode", t.matmul_double_row, "double_row needs NeuronCore-v3+", perf_mode, t)
        for operand, x in (("stationary", stationary), ("moving", moving)):
            if x.ndim < 3 or x.shape[1] != 2:
                raise NkiValidationError(op, operand, "double_row layout [K, 2, ...]", list(x.shape), t.name)
    _check_matmul_dtypes(op, stationary, moving, t, double)
    rows = 2 if double else 1
    k = stationary.shape[0]
    m, n = stationary.size // (k * rows), moving.size // (moving.shape[0] * rows)
    if tile_position or tile_size:
        _check_tiling(op, tile_position, tile_size, t)
    if double and tile_size and tile_size[1] != t.pmax:
        raise NkiValidationError(op, "perf_mode", "double_row without column tiling (tile_size column == 128)",
                                 tile_size, t.name)
    k_max, m_max = (tile_size[0], tile_size[1]) if tile_size else (t.pmax, t.stationary_fmax)
    if k > k_max:
        raise NkiValidationError(op, "stationary", f"partition dim (K) <= {k_max}", k, t.name)
    if moving.shape[0] != k:
        raise NkiValidationError(op, "moving", f"partition dim (K) == stationary's {k}", moving.shape[0], t.name)
    if m > m_max:
        raise NkiValidationError(op, "stationary", f"free size (M) <= {m_max}", m, t.name)
    dst_name = dst.storage.dtype_name
    allowed_dst = t.matmul_dst_dtypes + ((stationary.storage.dtype_name,) if is_transpose else ())
    if dst_name not in allowed_dst:
        raise NkiValidationError(op, "dst", f"PSUM dtype in {allowed_dst}", dst_name, t.name)
    n_max = t.moving_fmax_bf16 if dst_name == "bfloat16" else t.moving_fmax_fp32
    if n > n_max:
        raise NkiValidationError(op, "moving", f"free size (N) <= {n_max}", n, t.name)
    if dst.shape[0] != m or dst.size != m * n:
        raise NkiValidationError(op, "dst", f"[M={m}, N={n}] (partitions x elements per partition)",
                                 f"{dst.shape[0]} x {dst.free_size}", t.name)
    _check_bank(op, dst, t)
    transpose_mode = bool(is_transpose) and t.gen >= 3
    if transpose_mode and n != k:
        raise NkiValidationError(op, "moving", f"the [K, K] identity in transpose mode (K={k})", n, t.name)
    return t, k, m, n, rows, double, transpose_mode, _in_dtype(stationary, moving)


_MATMUL_OPERANDS = ("dst", "stationary", "moving")


def _in_dtype(a: NkiTensor, b: NkiTensor) -> str:
    """The slower of the two input dtypes (wider elements run slower on TensorE; a's on a tie)."""
    return (a if a.dtype.itemsize >= b.dtype.itemsize else b).storage.dtype_name


def accumulate_psum(dst: NkiTensor, res: np.ndarray, accumulate) -> None:
    """Write matmul results `res` into PSUM dst under `accumulate` (None / True / False, see the module)."""
    st = dst.storage
    flags = strided_view(st.flags, dst.shape, dst.strides, dst.offset)
    if accumulate is False:
        new = res
    else:
        old = f32(dst)
        written = flags.reshape(res.shape)
        if accumulate is True and not written.all():
            # the official simulator warns too (S-RN 0.5.0): hardware accumulates onto whatever PSUM holds
            warnings.warn("nc_matmul: accumulate=True onto PSUM elements no matmul has written (undefined on "
                          "hardware; use accumulate=None for a first write)", RuntimeWarning, stacklevel=3)
        new = old + res if accumulate is True else np.where(written, old + res, res)
    dst.write(dtypes.cast(new, dst.dtype))
    flags[...] = True


def nc_transpose(dst, data, engine=Engine.unknown, name=None):
    """Swap partition and (flattened) free axes: dst[F, P] = data[P, F], dst.dtype == data.dtype.

    TensorE: data ≤ [128, 128] in SBUF → PSUM dst; VectorE: ≤ [32, 32], SBUF or PSUM (S-ISA). engine=unknown
    picks TensorE for an SBUF → PSUM transpose, else VectorE. Bit-exact on VectorE and on NeuronCore-v3+ TensorE.
    NeuronCore-v2 TensorE transposes by a matmul with an identity (S-ISA: "not bit-accurate if the input data
    contains NaN/Inf"): dst[f, p] = Σ_k data[k, f] * I[k, p], so a NaN/±inf at data[k, f] makes every dst[f, p]
    with p != k NaN (inf * 0) — the whole output row f when P > 1 — see `_identity_matmul_transpose`.
    Signed zeros are not modelled (-0.0 stays -0.0)."""
    op = "nc_transpose"
    ctx = current()
    t = ctx.target
    if type(engine) is not Engine:  # (a member is the common case: coerce only raw values)
        engine = coerce(Engine, engine, op, "engine")
    if dst._valid_for is not t:  # (in operand order: a view that passed for `t` has nothing left to check)
        validate.tile(op, "dst", dst, t)
    if data._valid_for is not t:
        validate.tile(op, "data", data, t)
    key = (dst.layout, data.layout, engine._value_)  # (an Enum member hashes through a Python-level __hash__)
    plan = _TRANSPOSE_PLANS.get(key)
    if plan is None or plan[0] is not t:
        if len(_TRANSPOSE_PLANS) >= _PLANS_MAX:
            _TRANSPOSE_PLANS.clear()
        plan = _TRANSPOSE_PLANS[key] = _transpose_plan(op, dst, data, engine, t)
    _, on_tensor, attrs = plan
    # (trace mode, a destination without values: `computes` would answer False and change nothing)
    if (ctx.full or dst.storage.data is not None) and computes(ctx, (dst,), (data,)):
        if on_tensor and t.gen == 2 and dtypes.is_float(data.dtype):
            store(dst, _identity_matmul_transpose(f32(data)))
        else:
            store(dst, np.ascontiguousarray(raw(data).T))
    emit(ctx, "tensor" if on_tensor else "vector", op, _TRANSPOSE_OPERANDS, (dst, data), 1, 0, attrs.copy())


# nc_transpose's rules are on what its operands are (layouts, dtypes) and the engine: checked once per (dst layout,
# data layout, engine) and target
_TRANSPOSE_PLANS: dict[tuple, tuple] = {}


def _transpose_plan(op: str, dst: NkiTensor, data: NkiTensor, engine, t) -> tuple:
    """Check nc_transpose's rules past the per-operand ones, in order; returns (target, on TensorE?, trace attrs)."""
    on_tensor = engine == Engine.tensor or (engine == Engine.unknown and data.buffer == "sbuf" and dst.buffer == "psum")
    limit = t.pmax if on_tensor else 32
    if on_tensor:
        validate.buffer(op, "data", data, ("sbuf",), t)
        validate.buffer(op, "dst", dst, ("psum",), t)
    p, f = data.shape[0], data.free_size
    if p > limit or f > limit:
        raise NkiValidationError(op, "data", f"at most [{limit}, {limit}] on {'TensorE' if on_tensor else 'VectorE'}",
                                 f"[{p}, {f}]", t.name)
    # S-ISA: "dst must have the same data type as data". Where docs and hardware disagree, the hardware decides:
    # a NeuronCore-v2 TensorE transpose *is* a matmul with an identity (no transpose mode before v3), and a v2
    # matmul writes fp32 to PSUM, so an fp32 PSUM dst from a float input is what the hardware natively produces
    # (AWS kernels use it); it is accepted on v2 next to the documented same-dtype dst. v3+ transposes in the
    # bit-accurate transpose mode, which writes the input dtype: same dtype only.
    identity_f32 = on_tensor and t.gen == 2 and dtypes.is_float(data.dtype) and dst.dtype == dtypes.float32
    if dst.dtype != data.dtype and not identity_f32:
        raise NkiValidationError(op, "dst", f"dtype == data dtype {dtypes.name(data.dtype)} (or float32 from a float "
                                 "input on a NeuronCore-v2 TensorE)", dtypes.name(dst.dtype), t.name)
    if dst.shape[0] != f or dst.free_size != p:
        raise NkiValidationError(op, "dst", f"[{f}, {p}]", f"{dst.shape[0]} x {dst.free_size}", t.name)
    attrs = ({"k": p, "m": f, "n": p, "in_dtype": data.storage.dtype_name, "transpose": True} if on_tensor
             else layout_attrs(dst, data))
    return t, on_tensor, attrs


_TRANSPOSE_OPERANDS = ("dst", "data")


def _identity_matmul_transpose(x: np.ndarray) -> np.ndarray:
    """x.T [F, P] as the NeuronCore-v2 TensorE computes it, x @ I in float32 (x: [P, F]): out[f, p] gains a NaN
    from every non-finite x[k, f] with k != p (inf * 0 = NaN); x[p, f] itself passes through (x * 1)."""
    out = np.ascontiguousarray(x.T)
    bad = ~np.isfinite(x)
    poisoned = (bad.sum(axis=0)[:, None] - bad.T) > 0  # [F, P]: a non-finite element in column f off row p
    out[poisoned] = np.nan
    return out
