"""Allocating tensors: new on-chip/HBM tensors (sentinel-filled, capacity-accounted) and HBM tensors over
caller arrays.

New allocations hold NaN (floats) or 4 (integers), the official simulator's sentinels (S-SIM), so a
read before a write shows up. In trace mode only integer storages get values (they may feed
addresses). On-chip allocations are accounted against the target's SBUF/PSUM capacity and released
when their storage is garbage-collected (see `context.py`).
"""

from __future__ import annotations

import functools
import math
import os
import sys

import numpy as np

from . import context, dtypes
from .errors import NkiValidationError
from .tensor import BUFFERS, ON_CHIP, NkiTensor, Storage
from .trace import Allocation

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_MAX_SITE_FRAMES = 8  # kernel frames kept in an allocation's call path (helpers nest a few deep)

INT_SENTINEL = 4  # what the official simulator puts in new integer allocations (S-SIM)


def allocate(shape, dtype, buffer: str, name: str = "", op: str = "ndarray") -> NkiTensor:
    """A new tensor in `buffer` (sentinel-filled), accounted against on-chip capacity.

    Raises:
        NkiValidationError: partition dim over the target's pmax, or capacity exceeded.
        ValueError: bad shape or buffer.
    """
    ctx = context.current()
    dtype = dtypes.to_dtype(dtype)
    buffer = getattr(buffer, "value", buffer) or "sbuf"
    if buffer not in BUFFERS:
        raise ValueError(f"buffer: {buffer!r} is not one of {BUFFERS}")
    try:
        shape = tuple(int(s) for s in shape)
    except TypeError:
        raise TypeError(f"shape: {shape!r} must be a tuple of ints") from None
    if not shape or any(s <= 0 for s in shape):
        raise ValueError(f"shape: {list(shape)} must be non-empty with positive sizes")
    if buffer == "shared_hbm" and ctx.program_id > 0:
        return _shared(ctx, shape, dtype, name)
    target = ctx.target
    if buffer in ON_CHIP and shape[0] > target.pmax:
        raise NkiValidationError(op, "shape", f"partition dim <= {target.pmax}", shape[0], target.name)
    size = math.prod(shape)
    data = None
    if ctx.full or dtypes.is_int(dtype):
        data = np.full(size, np.nan if dtypes.is_float(dtype) else INT_SENTINEL, dtype)
    st = Storage(ctx.storage_id(), buffer, dtype, shape, data)
    if buffer in ON_CHIP:
        amount = ctx.reserve(buffer, st.free * dtype.itemsize, op)
        st.release = functools.partial(ctx.release, ctx.program_id, buffer, amount)
        ctx.trace.allocations[st.id] = Allocation(kernel_call_path(), buffer, shape[0], st.free * dtype.itemsize,
                                                  dtypes.name(dtype), ctx.program_id)
    if buffer == "shared_hbm" and ctx.lnc > 1:
        ctx.shared_hbm.append(st)
    return NkiTensor(st, shape, _c_strides(shape), 0, name)


def kernel_call_path() -> tuple:
    """((file, line), ...) of the kernel frames that led to this allocation, innermost first: the frames outside
    the emulator package up to the one the emulator called (the performance model's allocation site)."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back
    path = []
    while frame is not None and not frame.f_code.co_filename.startswith(_PACKAGE_DIR) and len(path) < _MAX_SITE_FRAMES:
        path.append((frame.f_code.co_filename, frame.f_lineno))
        frame = frame.f_back
    return tuple(path)


def _shared(ctx, shape, dtype, name) -> NkiTensor:
    """Program instances > 0 get program 0's shared_hbm tensor made by the same allocation call."""
    k = ctx.shared_seen
    ctx.shared_seen += 1
    if k >= len(ctx.shared_hbm) or ctx.shared_hbm[k].shape != shape or ctx.shared_hbm[k].dtype != dtype:
        raise NkiValidationError("ndarray", "shared_hbm", "the same shared_hbm allocations in every program instance",
                                 f"allocation #{k} {list(shape)} {dtype}")
    st = ctx.shared_hbm[k]
    return NkiTensor(st, shape, _c_strides(shape), 0, name)


def wrap(array: np.ndarray, buffer: str) -> NkiTensor:
    """An HBM tensor over a caller's array (no copy when it is contiguous; the caller writes back otherwise)."""
    ctx = context.current()
    dtype = dtypes.to_dtype(array.dtype)
    flat = array.reshape(-1)
    st = Storage(ctx.storage_id(), buffer, dtype, tuple(array.shape) or (1,), flat)
    shape = tuple(array.shape) or (1,)
    return NkiTensor(st, shape, _c_strides(shape), 0)


def _c_strides(shape) -> tuple[int, ...]:
    strides, acc = [], 1
    for n in reversed(shape):
        strides.append(acc)
        acc *= n
    return tuple(reversed(strides))
