"""Allocations: `Storage` (one allocation's flat element array in HBM, SBUF or PSUM) and
`ReinterpretedStorage` (the same bytes seen as another dtype), plus `strided_view`, the strided NumPy view
every read and write of a tensor goes through.

On-chip storages are `[partitions, free…]` flattened: the flat address of (p, f) is `p * F + f` with
`F = prod(shape[1:])` (`Storage.free`). HBM storages are flat. In trace mode a float storage's `data` is None.
"""

from __future__ import annotations

import math

import numpy as np

from .trace import Access

ON_CHIP = ("sbuf", "psum")
BUFFERS = ("sbuf", "psum", "hbm", "private_hbm", "shared_hbm")


class Storage:
    """One allocation. `data` is the flat element array (None when values are unknown in trace mode);
    `flags` marks PSUM elements written by a matmul (for `accumulate=None`)."""

    __slots__ = ("id", "buffer", "dtype", "shape", "size", "free", "data", "flags", "release")

    def __init__(self, sid: int, buffer: str, dtype: np.dtype, shape: tuple, data: np.ndarray | None):
        self.id, self.buffer, self.dtype, self.shape, self.data = sid, buffer, dtype, shape, data
        self.size = math.prod(shape)
        self.free = math.prod(shape[1:]) if buffer in ON_CHIP else self.size
        self.flags = np.zeros(self.size, bool) if buffer == "psum" and data is not None else None
        self.release = None  # called once when the storage is garbage-collected (on-chip capacity accounting)

    def __del__(self):
        if self.release is not None:
            self.release()


class ReinterpretedStorage(Storage):
    """The bytes of an allocation seen as another dtype (`NkiTensor.view(dtype)`): same id and buffer, `data` a
    NumPy view of the same memory (writes through either are seen by both), sizes in elements of the new dtype
    (on-chip: each partition row holds the same bytes). `root` is the allocation itself (kept alive: its
    capacity stays reserved while a reinterpretation is in use); trace footprints are converted back to its
    elements (`NkiTensor.access`), so accesses through either dtype conflict exactly where their bytes do."""

    __slots__ = ("root",)

    def __init__(self, base: Storage, dtype: np.dtype):
        root = base.root if isinstance(base, ReinterpretedStorage) else base
        nbytes = base.size * base.dtype.itemsize
        shape = ((base.shape[0], base.free * base.dtype.itemsize // dtype.itemsize) if base.buffer in ON_CHIP
                 else (nbytes // dtype.itemsize,))
        data = None
        if base.data is not None:
            raw = base.data.view(np.uint8)
            data = raw[:nbytes - nbytes % dtype.itemsize].view(dtype)
        super().__init__(base.id, base.buffer, dtype, shape, data)
        self.flags = base.flags  # PSUM only with an unchanged itemsize (NkiTensor.view), so elements match
        self.root = root

    def to_root(self, access: Access) -> Access:
        """`access` (free or flat element range in this dtype) in elements of the allocation, widened to whole
        elements of it."""
        num, den = self.dtype.itemsize, self.root.dtype.itemsize
        return Access(access.storage, access.buffer, access.p_start, access.p_stop, access.start * num // den,
                      -(-access.stop * num // den), access.nbytes)


_CARRIERS = {1: np.uint8, 2: np.uint16, 4: np.uint32}


def strided_view(data: np.ndarray, shape, strides, offset: int) -> np.ndarray:
    """A strided view of a flat array (through an unsigned carrier: as_strided cannot rebuild some ml_dtypes)."""
    isz = data.itemsize
    carrier = data[offset:].view(_CARRIERS[isz])
    return np.lib.stride_tricks.as_strided(carrier, shape, tuple(s * isz for s in strides)).view(data.dtype)
