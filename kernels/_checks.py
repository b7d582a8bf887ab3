"""Argument validation for the public kernel API: run once, before any backend is touched.

Every failure raises TypeError (wrong kind or dtype) or ValueError (wrong shape or value) whose message starts
with the argument's name, states the rule and shows the value, e.g.
`block_tables: entry [1, 2] = 17 must be in [0, num_blocks=8) ...`.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from nkilab.kernels._adapter import FLOAT_DTYPE_NAMES, dtype_name, is_torch, kind, to_numpy
from nkilab.reference.quant import FP8_DTYPES, FP8_SCHEMES, SCHEMES, QuantizedActivation, QuantizedWeight

SIGNED_INT_DTYPE_NAMES = ("int8", "int16", "int32", "int64")
INT_DTYPE_NAMES = SIGNED_INT_DTYPE_NAMES + ("uint8", "uint16", "uint32", "uint64")
# dtype of QuantizedWeight.data / QuantizedActivation.data per scheme: a kernel reads the bits as the scheme says,
# so data of another format (e4m3fn bits under "fp8_e4m3") would be misread without an error.
DATA_DTYPE_NAMES = {"int8": "int8", "int4": "uint8", **{s: np.dtype(t).name for s, t in FP8_DTYPES.items()}}


def _arrays(**arrays) -> str:
    """Each argument a NumPy array or a torch tensor, all of one kind (torch: all on one device); returns that kind."""
    kinds = {}
    for name, a in arrays.items():
        k = kind(a)
        if k == "other":
            raise TypeError(f"{name}: must be a numpy.ndarray or torch.Tensor, got {type(a).__name__}")
        kinds[name] = k
    if len(set(kinds.values())) > 1:
        raise TypeError(f"{', '.join(arrays)}: must all be NumPy arrays or all torch tensors, got {kinds}")
    if "torch" in kinds.values():
        devices = {name: str(a.device) for name, a in arrays.items()}
        if len(set(devices.values())) > 1:
            raise ValueError(f"{', '.join(arrays)}: must all be on one device; move them with .to(device), got {devices}")
    return next(iter(kinds.values()))


def _writable(name: str, a) -> None:
    """An output written in place must accept writes (a read-only NumPy view would fail half-way, or worse; torch
    refuses in-place writes to a leaf tensor that requires grad, after a backend may already have written)."""
    if isinstance(a, np.ndarray) and not a.flags.writeable:
        raise ValueError(f"{name}: is written in place but the NumPy array is read-only; pass a writable copy (np.array(...))")
    if is_torch(a) and a.requires_grad:
        raise ValueError(f"{name}: is written in place but requires grad; pass {name}.detach() (a cache holds no gradient)")


def _ndim(name: str, a, ndim: int, layout: str) -> None:
    if a.ndim != ndim:
        raise ValueError(f"{name}: must be {ndim}-D {layout}, got shape {tuple(a.shape)}")


def _float_dtype(name: str, a) -> str:
    dt = dtype_name(a)
    if dt not in FLOAT_DTYPE_NAMES:
        raise TypeError(f"{name}: dtype must be one of {FLOAT_DTYPE_NAMES}, got {dt}")
    return dt


def _int_dtype(name: str, a, *, signed: bool = False) -> None:
    """Integer dtype; `signed` for index arrays that use -1 (uint64 would wrap past int64 in the checks)."""
    dt = dtype_name(a)
    if signed and dt not in SIGNED_INT_DTYPE_NAMES:
        raise TypeError(f"{name}: dtype must be a signed integer type (int32 recommended; -1 marks padding), got {dt}")
    if dt not in INT_DTYPE_NAMES:
        raise TypeError(f"{name}: dtype must be an integer type (int32 recommended), got {dt}")


def _same_dtype(names: str, *arrays) -> None:
    dts = [dtype_name(a) for a in arrays]
    if len(set(dts)) > 1:
        raise TypeError(f"{names}: must share one dtype, got {dts}")


def _heads(hq: int, hkv: int, q_name: str, kv_name: str) -> None:
    if hq == 0 or hkv == 0 or hq % hkv:
        raise ValueError(
            f"{q_name}: Hq={hq} query heads must be a positive multiple of {kv_name} Hkv={hkv} kv heads (GQA), Hkv >= 1"
        )


def _head_dim(name: str, d: int) -> None:
    if d == 0:
        raise ValueError(f"{name}: head_dim D must be >= 1, got 0")


def _positive_number(name: str, x) -> float:
    if isinstance(x, bool) or not isinstance(x, numbers.Real) or not math.isfinite(x) or x <= 0:
        raise ValueError(f"{name}: must be a finite number > 0, got {x!r}")
    return float(x)


def _features(causal, scale, sliding_window, softcap, head_dim: int) -> dict:
    """Validate the attention options; returns them normalized to Python types, scale resolved (None -> D ** -0.5).

    Returns:
        dict(causal: bool, scale: float, sliding_window: int | None, softcap: float | None), the keywords every
        backend receives.
    """
    if not isinstance(causal, (bool, np.bool_)):
        raise TypeError(f"causal: must be a bool, got {causal!r}")
    if sliding_window is not None and (
        isinstance(sliding_window, (bool, np.bool_))
        or not isinstance(sliding_window, numbers.Integral)
        or sliding_window < 1
    ):
        raise ValueError(f"sliding_window: must be None or an int >= 1, got {sliding_window!r}")
    return dict(
        causal=bool(causal),
        scale=head_dim**-0.5 if scale is None else _positive_number("scale", scale),
        sliding_window=None if sliding_window is None else int(sliding_window),
        softcap=None if softcap is None else _positive_number("softcap", softcap),
    )


def check_qmatmul(x, qw, out_dtype) -> str:
    """Validate qmatmul inputs; returns the resolved output dtype name (None -> x's dtype, float32 for W8A8)."""
    if not isinstance(qw, QuantizedWeight):
        raise TypeError(f"qw: must be a QuantizedWeight from nkilab.reference.quant.quantize_weight, got {type(qw).__name__}")
    _check_quantized_weight(qw)
    k, n = qw.shape
    if isinstance(x, QuantizedActivation):
        if qw.scheme not in FP8_SCHEMES or qw.group_size is not None:
            raise ValueError(f"qw: W8A8 (x is a QuantizedActivation) needs fp8 per-channel weights, got {qw!r}")
        _check_quantized_activation(x)
        xdata = x.data
        default = "float32"
    else:
        _arrays(x=x)
        _ndim("x", x, 2, "[M, K]")
        default = _float_dtype("x", x)
        xdata = x
    if xdata.shape[1] != k:
        raise ValueError(f"x: K={xdata.shape[1]} must equal qw.shape[0]={k} (x is [M, K], qw is [K, N])")
    if out_dtype is None:
        return default
    try:
        name = dtype_name(out_dtype)
    except TypeError as e:
        raise TypeError(f"out_dtype: not a dtype: {out_dtype!r}") from e
    if name not in FLOAT_DTYPE_NAMES:
        raise TypeError(f"out_dtype: must be one of {FLOAT_DTYPE_NAMES}, got {name}")
    return name


def _check_quantized_weight(qw: QuantizedWeight) -> None:
    """The fields of a QuantizedWeight agree with each other (it may have been built by hand)."""
    if qw.scheme not in SCHEMES:
        raise ValueError(f"qw.scheme: must be one of {SCHEMES}, got {qw.scheme!r}")
    for field in ("data", "scales", "zeros"):
        value = getattr(qw, field)
        if not isinstance(value, np.ndarray) and (field != "zeros" or value is not None):
            raise TypeError(f"qw.{field}: must be a NumPy array (as quantize_weight makes it), got {type(value).__name__}")
    k, n = qw.shape
    if k < 1 or n < 1:
        raise ValueError(f"qw.shape: K and N must be >= 1, got {qw.shape}")
    groups = 1 if qw.group_size is None else k // qw.group_size
    if qw.group_size is not None and (qw.group_size <= 0 or k % qw.group_size):
        raise ValueError(f"qw.group_size: K={k} must be a positive multiple of group_size={qw.group_size}")
    data_shape = (k // 2, n) if qw.scheme == "int4" else (k, n)
    if tuple(qw.data.shape) != data_shape:
        raise ValueError(f"qw.data: shape must be {data_shape} for {qw.scheme} with shape {qw.shape}, got {qw.data.shape}")
    data_dtype = DATA_DTYPE_NAMES[qw.scheme]
    if qw.data.dtype.name != data_dtype:
        raise TypeError(f"qw.data: dtype must be {data_dtype} for scheme {qw.scheme!r}, got {qw.data.dtype.name}")
    if tuple(qw.scales.shape) != (groups, n):
        raise ValueError(f"qw.scales: shape must be {(groups, n)}, got {qw.scales.shape}")
    if qw.scales.dtype != np.float32:
        raise TypeError(f"qw.scales: dtype must be float32, got {qw.scales.dtype}")
    if not np.all(np.isfinite(qw.scales)):
        raise ValueError("qw.scales: must be finite (no NaN/inf); re-quantize with quantize_weight")
    if qw.zeros is not None and (qw.scheme != "int4" or tuple(qw.zeros.shape) != (groups, n)):
        raise ValueError(f"qw.zeros: must be None or uint8 {(groups, n)} for int4 asymmetric, got {qw.zeros.shape}")
    if (qw.zeros is None) != qw.symmetric:
        raise ValueError(f"qw.zeros: symmetric={qw.symmetric} requires zeros {'None' if qw.symmetric else 'present'}")
    if qw.zeros is not None and (qw.zeros.dtype != np.uint8 or qw.zeros.max(initial=0) > 15):
        raise ValueError(
            f"qw.zeros: must be uint8 zero points in 0..15, got {qw.zeros.dtype} with max {qw.zeros.max(initial=0)}"
        )


def _check_quantized_activation(x: QuantizedActivation) -> None:
    """The fields of a QuantizedActivation agree with each other (it may have been built by hand)."""
    if x.scheme not in FP8_SCHEMES:
        raise ValueError(f"x.scheme: must be one of {FP8_SCHEMES}, got {x.scheme!r}")
    if not isinstance(x.data, np.ndarray) or not isinstance(x.scales, np.ndarray):
        raise TypeError("x.data, x.scales: must be NumPy arrays (as quantize_activation makes them)")
    data_dtype = DATA_DTYPE_NAMES[x.scheme]
    if x.data.ndim != 2 or x.data.dtype.name != data_dtype:
        raise ValueError(f"x.data: must be 2-D [M, K] {data_dtype} for {x.scheme!r}, got {x.data.dtype.name} {x.data.shape}")
    m = x.data.shape[0]
    if tuple(x.scales.shape) != (m, 1) or x.scales.dtype != np.float32:
        raise ValueError(f"x.scales: must be float32 [M, 1] = {(m, 1)}, got {x.scales.dtype} {x.scales.shape}")
    if not np.all(np.isfinite(x.scales)):
        raise ValueError("x.scales: must be finite (no NaN/inf); re-quantize with quantize_activation")


def check_attention(q, k, v, *, causal, scale, sliding_window, softcap) -> dict:
    """Validate dense attention inputs; returns the normalized options (see `_features`)."""
    _arrays(q=q, k=k, v=v)
    _ndim("q", q, 4, "[B, Sq, Hq, D]")
    _ndim("k", k, 4, "[B, Skv, Hkv, D]")
    _ndim("v", v, 4, "[B, Skv, Hkv, D]")
    _float_dtype("q", q)
    _same_dtype("q, k, v", q, k, v)
    if tuple(k.shape) != tuple(v.shape):
        raise ValueError(f"v: shape must equal k's {tuple(k.shape)}, got {tuple(v.shape)}")
    b, _, hq, d = q.shape
    if k.shape[0] != b:
        raise ValueError(f"k: batch B={k.shape[0]} must equal q's B={b}")
    if k.shape[3] != d:
        raise ValueError(f"k: head_dim D={k.shape[3]} must equal q's D={d}")
    _heads(hq, k.shape[2], "q", "k")
    _head_dim("q", d)
    return _features(causal, scale, sliding_window, softcap, d)


def _check_cache(key_cache, value_cache) -> None:
    _ndim("key_cache", key_cache, 4, "[num_blocks, block_size, Hkv, D]")
    if tuple(value_cache.shape) != tuple(key_cache.shape):
        raise ValueError(f"value_cache: shape must equal key_cache's {tuple(key_cache.shape)}, got {tuple(value_cache.shape)}")
    _float_dtype("key_cache", key_cache)
    _same_dtype("key_cache, value_cache", key_cache, value_cache)
    if 0 in tuple(key_cache.shape):
        raise ValueError(
            f"key_cache: num_blocks, block_size, Hkv and D must all be >= 1, got shape {tuple(key_cache.shape)}"
        )


def check_write_kv_cache(key, value, key_cache, value_cache, slot_mapping) -> None:
    """Validate a cache write: shapes, dtypes, writable caches, signed slots in [-1, num_blocks * block_size), live
    slots unique."""
    _arrays(key=key, value=value, key_cache=key_cache, value_cache=value_cache, slot_mapping=slot_mapping)
    _ndim("key", key, 3, "[T, Hkv, D]")
    if tuple(value.shape) != tuple(key.shape):
        raise ValueError(f"value: shape must equal key's {tuple(key.shape)}, got {tuple(value.shape)}")
    _check_cache(key_cache, value_cache)
    _writable("key_cache", key_cache)
    _writable("value_cache", value_cache)
    _same_dtype("key, value, key_cache, value_cache", key, value, key_cache, value_cache)
    num_blocks, block_size, hkv, d = key_cache.shape
    if tuple(key.shape[1:]) != (hkv, d):
        raise ValueError(f"key: [Hkv, D]={tuple(key.shape[1:])} must match key_cache's {(hkv, d)}")
    _ndim("slot_mapping", slot_mapping, 1, "[T]")
    _int_dtype("slot_mapping", slot_mapping, signed=True)
    if slot_mapping.shape[0] != key.shape[0]:
        raise ValueError(f"slot_mapping: length {slot_mapping.shape[0]} must equal key's T={key.shape[0]}")
    slots = to_numpy(slot_mapping).astype(np.int64)
    num_slots = num_blocks * block_size
    bad = np.flatnonzero((slots < -1) | (slots >= num_slots))
    if bad.size:
        t = int(bad[0])
        raise ValueError(
            f"slot_mapping: slot_mapping[{t}] = {slots[t]} is outside [-1, num_blocks * block_size = {num_slots}); "
            "use -1 for padding tokens"
        )
    live = slots[slots >= 0]
    uniq, counts = np.unique(live, return_counts=True)
    if np.any(counts > 1):
        raise ValueError(f"slot_mapping: live slots must be unique (the write order is undefined), slot {uniq[counts > 1][0]} repeats")


def check_paged_attention(
    q, key_cache, value_cache, block_tables, seq_lens, query_start_loc, *, causal, scale, sliding_window, softcap
) -> dict:
    """Validate paged attention inputs (DESIGN §3.3); returns the normalized options (see `_features`)."""
    _arrays(q=q, key_cache=key_cache, value_cache=value_cache, block_tables=block_tables, seq_lens=seq_lens,
            query_start_loc=query_start_loc)
    _ndim("q", q, 3, "[T_total, Hq, D]")
    _float_dtype("q", q)
    _check_cache(key_cache, value_cache)
    _same_dtype("q, key_cache, value_cache", q, key_cache, value_cache)
    num_blocks, block_size, hkv, d = key_cache.shape
    t_total, hq, qd = q.shape
    if qd != d:
        raise ValueError(f"q: head_dim D={qd} must equal key_cache's D={d}")
    _heads(hq, hkv, "q", "key_cache")
    _ndim("block_tables", block_tables, 2, "[num_seqs, max_blocks]")
    _int_dtype("block_tables", block_tables)
    _ndim("seq_lens", seq_lens, 1, "[num_seqs]")
    _int_dtype("seq_lens", seq_lens)
    _ndim("query_start_loc", query_start_loc, 1, "[num_seqs + 1]")
    _int_dtype("query_start_loc", query_start_loc)
    num_seqs = block_tables.shape[0]
    if seq_lens.shape[0] != num_seqs:
        raise ValueError(f"seq_lens: length {seq_lens.shape[0]} must equal block_tables' num_seqs={num_seqs}")
    if query_start_loc.shape[0] != num_seqs + 1:
        raise ValueError(f"query_start_loc: length {query_start_loc.shape[0]} must be num_seqs + 1 = {num_seqs + 1}")

    starts = to_numpy(query_start_loc).astype(np.int64)
    lens = to_numpy(seq_lens).astype(np.int64)
    table = to_numpy(block_tables).astype(np.int64)
    if starts[0] != 0:
        raise ValueError(f"query_start_loc: must start at 0, got query_start_loc[0] = {starts[0]}")
    if starts[-1] != t_total:
        raise ValueError(f"query_start_loc: must end at q's T_total={t_total}, got query_start_loc[-1] = {starts[-1]}")
    q_lens = np.diff(starts)
    if np.any(q_lens < 0):
        i = int(np.flatnonzero(q_lens < 0)[0])
        raise ValueError(f"query_start_loc: must be non-decreasing, got [{i}] = {starts[i]} > [{i + 1}] = {starts[i + 1]}")
    if np.any(lens < 0):
        i = int(np.flatnonzero(lens < 0)[0])
        raise ValueError(f"seq_lens: must be >= 0, got seq_lens[{i}] = {lens[i]}")
    if np.any(q_lens > lens):
        i = int(np.flatnonzero(q_lens > lens)[0])
        raise ValueError(
            f"seq_lens: sequence {i} has q_len={q_lens[i]} query tokens (from query_start_loc) but seq_lens[{i}] = "
            f"{lens[i]}; seq_lens counts the new tokens too, so q_len <= seq_len"
        )
    blocks_needed = -(-lens // block_size)
    max_blocks = table.shape[1]
    if np.any(blocks_needed > max_blocks):
        i = int(np.flatnonzero(blocks_needed > max_blocks)[0])
        raise ValueError(
            f"block_tables: sequence {i} needs {blocks_needed[i]} blocks (seq_lens[{i}] = {lens[i]}, "
            f"block_size={block_size}) but block_tables has max_blocks={max_blocks} columns"
        )
    used = np.arange(max_blocks)[None, :] < blocks_needed[:, None]
    bad = used & ((table < 0) | (table >= num_blocks))
    if np.any(bad):
        i, j = (int(x) for x in np.argwhere(bad)[0])
        raise ValueError(
            f"block_tables: used entry [{i}, {j}] = {table[i, j]} must be in [0, num_blocks={num_blocks}) "
            f"(sequence {i} uses its first {blocks_needed[i]} entries; entries past those may be -1)"
        )
    return _features(causal, scale, sliding_window, softcap, d)
