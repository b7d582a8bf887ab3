"""Allocations: `Storage` (one allocation's flat element array in HBM, SBUF or PSUM) and
`ReinterpretedStorage` (the same bytes seen as another dtype), plus `strided_view`, the strided NumPy view
every read and write of a tensor goes through.

On-chip storages are `[partitions, free…]` flattened: the flat address of (p, f) is `p * F + f` with
`F = prod(shape[1:])` (`Storage.free`). HBM storages are flat. In trace mode a float storage's `data` is None.
"""

from __future__ import annotations

import math

import numpy as np

from . import dtypes
from .trace import Access

ON_CHIP = ("sbuf", "psum")
BUFFERS = ("sbuf", "psum", "hbm", "private_hbm", "shared_hbm")


class Storage:
    """One allocation. `data` is the flat element array (None when values are unknown in trace mode), or for a
    tile placed with `address=` a [partitions, free] view of its program's physical memory (so tiles placed at
    overlapping addresses share bytes); `flags` marks PSUM elements written by a matmul (for `accumulate=None`);
    `life` is the on-chip allocation's `liveness.Lifetime` (None in HBM). `placement` (placed tiles only) maps
    trace footprints to the physical memory: (memory id, start partition, byte offset)."""

    __slots__ = ("id", "buffer", "dtype", "dtype_name", "shape", "size", "free", "data", "flags", "life", "placement",
                 "mapped")

    def __init__(self, sid: int, buffer: str, dtype: np.dtype, shape: tuple, data: np.ndarray | None):
        self.id, self.buffer, self.dtype, self.shape, self.data = sid, buffer, dtype, shape, data
        self.dtype_name = dtypes.name(dtype)
        self.size = size = math.prod(shape)
        self.free = size // shape[0] if buffer in ON_CHIP else size
        self.flags = np.zeros(self.size, bool) if buffer == "psum" and data is not None else None
        self.life = self.placement = None
        self.mapped = False  # footprints need `map_access` (placed or reinterpreted storages)

    @property
    def start_partition(self) -> int:
        """The absolute partition of this storage's row 0 (nonzero only for tiles placed with `address=`)."""
        return self.placement[1] if self.placement is not None else 0

    @property
    def byte_offset(self) -> int:
        """Byte offset of this storage's rows in their partitions (nonzero only for placed tiles)."""
        return self.placement[2] if self.placement is not None else 0

    def map_access(self, access: Access) -> Access:
        """A footprint in this storage's elements as the trace records it: placed tiles in bytes of their
        program's physical memory (absolute partitions), so tiles sharing bytes conflict where they share them."""
        mem, p0, byte0 = self.placement
        isz = self.dtype.itemsize
        return Access(mem, access.buffer, p0 + access.p_start, p0 + access.p_stop, byte0 + access.start * isz,
                      byte0 + access.stop * isz, access.nbytes)


class ReinterpretedStorage(Storage):
    """The bytes of an allocation seen as another dtype (`NkiTensor.view(dtype)`): same id, buffer and lifetime,
    `data` a NumPy view of the same memory (writes through either are seen by both), sizes in elements of the new
    dtype (on-chip: each partition row holds the same bytes). `root` is the allocation itself; trace footprints
    are converted back to its elements (`map_access`), so accesses through either dtype conflict exactly where
    their bytes do."""

    __slots__ = ("root",)

    def __init__(self, base: Storage, dtype: np.dtype):
        root = base.root if isinstance(base, ReinterpretedStorage) else base
        nbytes = base.size * base.dtype.itemsize
        shape = ((base.shape[0], base.free * base.dtype.itemsize // dtype.itemsize) if base.buffer in ON_CHIP
                 else (nbytes // dtype.itemsize,))
        data = None
        if base.data is not None:
            raw = base.data.view(np.uint8)
            data = raw.view(dtype) if raw.ndim == 2 else raw[:nbytes - nbytes % dtype.itemsize].view(dtype)
        super().__init__(base.id, base.buffer, dtype, shape, data)
        self.flags = base.flags  # PSUM only with an unchanged itemsize (NkiTensor.view), so elements match
        self.life, self.placement, self.mapped = root.life, root.placement, True
        self.root = root

    def map_access(self, access: Access) -> Access:
        """`access` (free or flat element range in this dtype) in elements of the allocation, widened to whole
        elements of it (then mapped as the allocation maps its own)."""
        num, den = self.dtype.itemsize, self.root.dtype.itemsize
        access = Access(access.storage, access.buffer, access.p_start, access.p_stop, access.start * num // den,
                        -(-access.stop * num // den), access.nbytes)
        return self.root.map_access(access) if self.root.placement is not None else access


_CARRIERS = {1: np.uint8, 2: np.uint16, 4: np.uint32}

_STRIDES: dict[tuple, tuple] = {}  # shape -> row-major strides (kernels use few distinct shapes, many times)


def c_strides(shape: tuple) -> tuple[int, ...]:
    """Row-major element strides of `shape`."""
    strides = _STRIDES.get(shape)
    if strides is None:
        out, acc = [], 1
        for n in reversed(shape):
            out.append(acc)
            acc *= n
        strides = _STRIDES[shape] = tuple(reversed(out))
    return strides


def strided_view(data: np.ndarray, shape, strides, offset: int) -> np.ndarray:
    """A strided view (element `strides`, `offset`) of a storage's data: a flat array, or the [partitions, free]
    view of physical memory of a placed tile, whose partition rows are `data.strides[0]` bytes apart (through an
    unsigned carrier: as_strided cannot rebuild some ml_dtypes)."""
    isz = data.itemsize
    if data.ndim == 1:
        size = math.prod(shape)
        if strides[-1] == 1 and tuple(strides) == c_strides(tuple(shape)):  # contiguous: a reshape (as_strided is slow)
            return data[offset:offset + size].reshape(shape)
        carrier = data[offset:].view(_CARRIERS[isz])
        return np.lib.stride_tricks.as_strided(carrier, shape, tuple(s * isz for s in strides)).view(data.dtype)
    free, pitch = data.shape[1], data.strides[0]
    p, f = divmod(offset, free)
    carrier = data[p:, f:].view(_CARRIERS[isz])
    rows, within = divmod(strides[0], free)
    byte_strides = (rows * pitch + within * isz,) + tuple(s * isz for s in strides[1:])
    return np.lib.stride_tricks.as_strided(carrier, shape, byte_strides).view(data.dtype)
