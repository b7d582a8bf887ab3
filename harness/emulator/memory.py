"""Allocating tensors: new on-chip/HBM tensors (sentinel-filled, with a lifetime for the capacity check) and
HBM tensors over caller arrays.

New allocations hold NaN (floats) or 4 (integers), the official simulator's sentinels (S-SIM), so a
read before a write shows up. In trace mode only integer storages get values (they may feed
addresses). Every on-chip allocation gets a `liveness.Lifetime` that the instructions touching it
extend; capacity is checked against those live ranges when the run ends (`liveness.py`). A tile can
never fit if it alone exceeds its buffer, which raises at once.

`address=(partition, byte_offset)` places an SBUF/PSUM tile in its program's physical memory: its
values are a view of those bytes (tiles at overlapping addresses see each other's writes), its
partitions start at `partition` (engine rules on start partitions apply to the absolute partition),
and PSUM tiles start on a 2 KiB bank boundary (S-MIG 0.1→0.2).
"""

from __future__ import annotations

import math

import numpy as np

from . import context, dtypes
from .errors import NkiValidationError
from .liveness import Lifetime, allocation_path, allocation_site
from .storage import BUFFERS, ON_CHIP, Storage, c_strides
from .tensor import NkiTensor
from .trace import Allocation

INT_SENTINEL = 4  # what the official simulator puts in new integer allocations (S-SIM)
_NKI_DTYPES = frozenset(dtypes.DTYPES.values())  # storage dtypes taken as they are (the allocation fast path)


def allocate(shape, dtype, buffer: str, name: str = "", op: str = "ndarray", address=None) -> NkiTensor:
    """A new tensor in `buffer` (sentinel-filled), optionally placed at `address` (on-chip only).

    Raises:
        NkiValidationError: partition dim over the target's pmax, a tile larger than its buffer, or a bad address.
        ValueError / TypeError: bad shape, buffer or address.
    """
    ctx = context.active() or context.current()  # (current() raises outside a run)
    if not (isinstance(dtype, np.dtype) and dtype in _NKI_DTYPES):  # a name, type or torch dtype; or not NKI's
        dtype = dtypes.to_dtype(dtype)
    if type(buffer) is not str:
        buffer = getattr(buffer, "value", buffer)  # nl.MemoryRegion members: their values are buffer names
    buffer = buffer or "sbuf"
    if buffer not in BUFFERS:
        raise ValueError(f"buffer: {buffer!r} is not one of {BUFFERS}")
    try:
        shape = tuple(map(int, shape))
    except TypeError:
        raise TypeError(f"shape: {shape!r} must be a tuple of ints") from None
    if not shape or not all(map((0).__lt__, shape)):
        raise ValueError(f"shape: {list(shape)} must be non-empty with positive sizes")
    if buffer not in ON_CHIP:
        if address is not None:
            raise NkiValidationError(op, "address", "an SBUF/PSUM placement (HBM tensors take no address)", address)
        if buffer == "shared_hbm" and ctx.program_id > 0:
            return _shared(ctx, shape, dtype, name)
    target = ctx.target
    if buffer in ON_CHIP and shape[0] > target.pmax:
        raise NkiValidationError(op, "shape", f"partition dim <= {target.pmax}", shape[0], target.name)
    data = None
    if ctx.full or dtype.kind in "iub":
        data = np.empty(math.prod(shape), dtype)
        data.fill(np.nan if dtypes.is_float(dtype) else INT_SENTINEL)  # (np.full's Python wrapper costs more)
    st = Storage(ctx.storage_id(), buffer, dtype, shape, data)
    if buffer in ON_CHIP:
        _on_chip(ctx, st, name, op, address)
    elif buffer == "shared_hbm" and ctx.lnc > 1:
        ctx.shared_hbm.append(st)
    return NkiTensor(st, shape, c_strides(shape), 0, name)


def _on_chip(ctx, st: Storage, name: str, op: str, address) -> None:
    """Give an SBUF/PSUM storage its lifetime (and its place in physical memory with `address`)."""
    t, buffer = ctx.target, st.buffer
    nbytes = st.free * st.dtype.itemsize
    capacity = t.sbuf_bytes if buffer == "sbuf" else t.psum_bytes
    if nbytes > capacity:
        what = "SBUF bytes per partition" if buffer == "sbuf" else "PSUM bytes per partition"
        raise NkiValidationError(op, f"{buffer} allocation", f"{what} <= {capacity}", nbytes, t.name)
    p0, byte0 = 0, None
    if address is not None:
        p0, byte0 = _address(op, address, st, nbytes, capacity, t)
        mem_id, mem = ctx.memory(buffer)
        st.placement, st.mapped = (mem_id, p0, byte0), True
        if st.data is not None:
            rows = mem[p0:p0 + st.shape[0], byte0:byte0 + nbytes].view(st.dtype)
            rows[...] = st.data.reshape(rows.shape)  # the sentinel fill lands in the shared bytes
            st.data = rows
    st.life = Lifetime(buffer, ctx.program_id, nbytes, (p0, p0 + st.shape[0]), byte0, (name, st.shape, st.dtype_name),
                       allocation_site())
    ctx.run.lifetimes.append(st.life)
    if address is None:  # the performance model's record of where loop-local tiles come from (placed ones are mapped)
        ctx.trace.allocations[st.id] = Allocation(allocation_path(), buffer, st.shape[0], nbytes, st.dtype_name,
                                                  ctx.program_id)


def _address(op: str, address, st: Storage, nbytes: int, capacity: int, t) -> tuple[int, int]:
    """Validate `address=(partition, byte_offset)`; returns it as ints."""
    try:
        p0, byte0 = (int(a) for a in address)
    except (TypeError, ValueError):
        raise TypeError(f"address: {address!r} must be a (partition, byte offset) pair of ints") from None
    if p0 < 0 or p0 + st.shape[0] > t.pmax:
        raise NkiValidationError(op, "address", f"partitions within [0, {t.pmax})",
                                 f"partition {p0} + {st.shape[0]} partitions", t.name)
    if byte0 < 0 or byte0 + nbytes > capacity:
        raise NkiValidationError(op, "address", f"bytes within the {capacity}-byte {st.buffer.upper()} partition",
                                 f"bytes [{byte0}, {byte0 + nbytes})", t.name)
    if byte0 % st.dtype.itemsize:
        raise NkiValidationError(op, "address", f"a byte offset aligned to the {st.dtype.itemsize}-byte dtype",
                                 byte0, t.name)
    if st.buffer == "psum" and byte0 % t.psum_bank_bytes:
        raise NkiValidationError(op, "address", f"a PSUM bank boundary (a multiple of {t.psum_bank_bytes} bytes)",
                                 byte0, t.name)
    return p0, byte0


def _shared(ctx, shape, dtype, name) -> NkiTensor:
    """Program instances > 0 get program 0's shared_hbm tensor made by the same allocation call."""
    k = ctx.shared_seen
    ctx.shared_seen += 1
    if k >= len(ctx.shared_hbm) or ctx.shared_hbm[k].shape != shape or ctx.shared_hbm[k].dtype != dtype:
        raise NkiValidationError("ndarray", "shared_hbm", "the same shared_hbm allocations in every program instance",
                                 f"allocation #{k} {list(shape)} {dtype}")
    st = ctx.shared_hbm[k]
    return NkiTensor(st, shape, c_strides(shape), 0, name)


def wrap(array: np.ndarray, buffer: str) -> NkiTensor:
    """An HBM tensor over a caller's array (no copy when it is contiguous; the caller writes back otherwise)."""
    ctx = context.current()
    dtype = dtypes.to_dtype(array.dtype)
    flat = array.reshape(-1)
    st = Storage(ctx.storage_id(), buffer, dtype, tuple(array.shape) or (1,), flat)
    shape = tuple(array.shape) or (1,)
    return NkiTensor(st, shape, c_strides(shape), 0)
