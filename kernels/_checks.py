"""Generic argument validation for the public kernel API: run once, before any backend is touched.

Each op module (`nkilab.kernels.ops.<op>`) holds its op's rules and builds them from these helpers. Every failure
raises TypeError (wrong kind or dtype) or ValueError (wrong shape or value) whose message starts
with the argument's name, states the rule and shows the value, e.g.
`block_tables: entry [1, 2] = 17 must be in [0, num_blocks=8) ...`.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from nkilab.kernels._adapter import FLOAT_DTYPE_NAMES, dtype_name, is_torch, kind, to_numpy

SIGNED_INT_DTYPE_NAMES = ("int8", "int16", "int32", "int64")
INT_DTYPE_NAMES = SIGNED_INT_DTYPE_NAMES + ("uint8", "uint16", "uint32", "uint64")


def arrays(**named) -> str:
    """Each argument a NumPy array or a torch tensor, all of one kind (torch: all on one device, none requiring grad
    while grad mode is on: see `no_grad`); returns that kind."""
    kinds = {}
    for name, a in named.items():
        k = kind(a)
        if k == "other":
            raise TypeError(f"{name}: must be a numpy.ndarray or torch.Tensor, got {type(a).__name__}")
        kinds[name] = k
    if len(set(kinds.values())) > 1:
        raise TypeError(f"{', '.join(named)}: must all be NumPy arrays or all torch tensors, got {kinds}")
    if "torch" in kinds.values():
        devices = {name: str(a.device) for name, a in named.items()}
        if len(set(devices.values())) > 1:
            raise ValueError(f"{', '.join(named)}: must all be on one device; move them with .to(device), got {devices}")
        no_grad(**named)
    return next(iter(kinds.values()))


def no_grad(**named) -> None:
    """No torch tensor requires grad while grad mode is on: the ops are inference kernels with no backward, so a
    result would silently carry no graph (ValueError naming the first such argument)."""
    import torch  # noqa: F401  optional heavy dependency: only reached with torch tensors, so already imported

    if not torch.is_grad_enabled():
        return
    for name, a in named.items():
        if is_torch(a) and a.requires_grad:
            raise ValueError(
                f"{name}: requires grad while grad mode is on, but nkilab ops are inference kernels with no backward "
                f"(the result would carry no graph); call under torch.no_grad() or torch.inference_mode(), or pass "
                f"{name}.detach()")


def writable(name: str, a) -> None:
    """An output written in place must accept writes (a read-only NumPy view would fail half-way, or worse; torch
    refuses in-place writes to a leaf tensor that requires grad, after a backend may already have written)."""
    if isinstance(a, np.ndarray) and not a.flags.writeable:
        raise ValueError(f"{name}: is written in place but the NumPy array is read-only; pass a writable copy (np.array(...))")
    if is_torch(a) and a.requires_grad:
        raise ValueError(f"{name}: is written in place but requires grad; pass {name}.detach() (a cache holds no gradient)")


def out_array(out, like, like_name: str) -> None:
    """An `out=` array: None, or `like`'s kind, shape, dtype (and torch device), writable."""
    if out is None:
        return
    if kind(out) != kind(like):
        raise TypeError(f"out: must be a {kind(like)} array like {like_name}, got {type(out).__name__}")
    if tuple(out.shape) != tuple(like.shape):
        raise ValueError(f"out: shape must be {like_name}'s {tuple(like.shape)}, got {tuple(out.shape)}")
    if dtype_name(out) != dtype_name(like):
        raise TypeError(f"out: dtype must be {like_name}'s {dtype_name(like)}, got {dtype_name(out)}")
    if is_torch(out) and out.device != like.device:
        raise ValueError(f"out: must be on {like_name}'s device {like.device}, got {out.device}")
    writable("out", out)


def ndim(name: str, a, rank: int, layout: str) -> None:
    if a.ndim != rank:
        raise ValueError(f"{name}: must be {rank}-D {layout}, got shape {tuple(a.shape)}")


def float_dtype(name: str, a) -> str:
    dt = dtype_name(a)
    if dt not in FLOAT_DTYPE_NAMES:
        raise TypeError(f"{name}: dtype must be one of {FLOAT_DTYPE_NAMES}, got {dt}")
    return dt


def int_dtype(name: str, a, *, signed: bool = False) -> None:
    """Integer dtype; `signed` for index arrays that use -1 (uint64 would wrap past int64 in the checks)."""
    dt = dtype_name(a)
    if signed and dt not in SIGNED_INT_DTYPE_NAMES:
        raise TypeError(f"{name}: dtype must be a signed integer type (int32 recommended; -1 marks padding), got {dt}")
    if dt not in INT_DTYPE_NAMES:
        raise TypeError(f"{name}: dtype must be an integer type (int32 recommended), got {dt}")


def same_dtype(names: str, *values) -> None:
    dts = [dtype_name(a) for a in values]
    if len(set(dts)) > 1:
        raise TypeError(f"{names}: must share one dtype, got {dts}")


def heads(hq: int, hkv: int, q_name: str, kv_name: str) -> None:
    if hq == 0 or hkv == 0 or hq % hkv:
        raise ValueError(
            f"{q_name}: Hq={hq} query heads must be a positive multiple of {kv_name} Hkv={hkv} kv heads (GQA), Hkv >= 1"
        )


def head_dim(name: str, d: int) -> None:
    if d == 0:
        raise ValueError(f"{name}: head_dim D must be >= 1, got 0")


def positive_number(name: str, x) -> float:
    if isinstance(x, bool) or not isinstance(x, numbers.Real) or not math.isfinite(x) or x <= 0:
        raise ValueError(f"{name}: must be a finite number > 0, got {x!r}")
    return float(x)


def attention_options(causal, scale, sliding_window, softcap, d: int) -> dict:
    """Validate the attention options shared by dense and paged attention (head dim `d`); returns them normalized to
    Python types, scale resolved (None -> D ** -0.5).

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
        scale=d**-0.5 if scale is None else positive_number("scale", scale),
        sliding_window=None if sliding_window is None else int(sliding_window),
        softcap=None if softcap is None else positive_number("softcap", softcap),
    )


def paged_cache(key_cache, value_cache) -> None:
    """Paged caches [num_blocks, block_size, Hkv, D]: same shape, one float dtype, no zero-length dimension (the
    write and the attention over the cache share this layout)."""
    ndim("key_cache", key_cache, 4, "[num_blocks, block_size, Hkv, D]")
    if tuple(value_cache.shape) != tuple(key_cache.shape):
        raise ValueError(f"value_cache: shape must equal key_cache's {tuple(key_cache.shape)}, got {tuple(value_cache.shape)}")
    float_dtype("key_cache", key_cache)
    same_dtype("key_cache, value_cache", key_cache, value_cache)
    if 0 in tuple(key_cache.shape):
        raise ValueError(
            f"key_cache: num_blocks, block_size, Hkv and D must all be >= 1, got shape {tuple(key_cache.shape)}"
        )
