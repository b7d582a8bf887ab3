"""`Layout`: the offset-independent geometry of a view, computed once per distinct view shape and shared.

A view (`NkiTensor`) is a storage, a layout and an offset. Kernels make the same views again and again: a fresh
tile of one shape in every loop iteration, the same slice of an HBM tensor at the next offset. Everything that
depends only on (buffer, dtype, the storage's partition row, shape, strides) is therefore a `Layout`, interned in
`layout_of` and reached from a parent layout through `child` without re-deriving it: element count and bytes,
extents, the partition span and free-element range of a trace footprint, the innermost contiguous run a DMA moves,
and which target's layout rules the view already passed. Only what depends on the offset (start partition,
element ranges, bounds) is computed per view.

Units: elements of the storage's dtype. On-chip storages are [partitions, free] with `free` elements per partition
row (a view's dim 0 is the partition dim); for HBM storages `free` is 0 in the key (the row plays no part).
"""

from __future__ import annotations

import math

import numpy as np

from .errors import NkiValidationError
from .indexing import extent
from .storage import ON_CHIP

_INTERNED_MAX = 100_000  # distinct layouts kept before the table starts afresh (layouts are values: nothing breaks)


def _run(shape: tuple, strides: tuple, stop: int) -> int:
    """Elements in the innermost contiguous run over dims `stop..` (size-1 dims never break a run)."""
    run = 1
    for d in range(len(shape) - 1, stop - 1, -1):
        n = shape[d]
        if n != 1:
            if strides[d] != run:
                break
            run *= n
    return run


class Layout:
    """The geometry of views with one (buffer, dtype, storage row, shape, strides); immutable but for its caches.

    Attributes:
        buffer, dtype, dtype_name, itemsize: of the storage the views are over.
        row: elements per partition row of an on-chip storage (0 for HBM).
        shape, strides, size, nbytes: the view's dims, element strides, element count and bytes.
        lo, hi: lowest and highest element offset of the view relative to its offset; f_lo, f_hi: the same over dims
            1.. (the free dims on-chip).
        span: partitions an on-chip view spans from its start partition (1 for HBM).
        run, run_rows: elements in the innermost contiguous run, over all dims (HBM) or within dim 0's rows
            (on-chip), and within rows always (a vector-indirect DMA's rows).
        engine_ok, dma_ok: the last target whose offset-independent operand rules (validate.tile) the layout passed,
            for compute engines and for DMA.
        children: views of views, (shape, strides) -> Layout (see `child`).
        reshapes: `reshaped` results by the shape as a kernel passed it.
    """

    __slots__ = ("buffer", "dtype", "dtype_name", "itemsize", "row", "shape", "strides", "size", "nbytes", "lo", "hi",
                 "f_lo", "f_hi", "span", "run", "run_rows", "on_chip", "engine_ok", "dma_ok", "children",
                 "reshapes")

    def __init__(self, buffer: str, dtype: np.dtype, dtype_name: str, row: int, shape: tuple, strides: tuple):
        self.buffer, self.dtype, self.dtype_name, self.itemsize = buffer, dtype, dtype_name, dtype.itemsize
        self.row, self.shape, self.strides = row, shape, strides
        self.size = math.prod(shape)
        self.nbytes = self.size * self.itemsize
        self.lo, self.hi = extent(shape, strides)
        self.f_lo, self.f_hi = extent(shape, strides, 1)
        self.on_chip = buffer in ON_CHIP
        self.span = (shape[0] - 1) * (strides[0] // row) + 1 if self.on_chip and row else 1
        self.run_rows = _run(shape, strides, 1)
        self.run = self.run_rows if self.on_chip else _run(shape, strides, 0)
        self.engine_ok = self.dma_ok = None
        self.children: dict = {}
        self.reshapes: dict = {}

    def child(self, shape: tuple, strides: tuple) -> "Layout":
        """The layout of a view with `shape` / `strides` over the same storage."""
        key = (shape, strides)
        lay = self.children.get(key)
        if lay is None:
            lay = self.children[key] = layout_of(self.buffer, self.dtype, self.dtype_name, self.row, shape, strides)
        return lay

    def reshaped(self, shape) -> "Layout":
        """The layout of these views reshaped to `shape` (ints, at most one -1): the same elements (count
        preserved; on-chip, the partition dim too), strides as NumPy's reshape without a copy gives them.
        Remembered per `shape` tuple as passed (`reshapes`): kernels reshape the same tile shape in every loop
        iteration, and NumPy's stride probe costs ~14 us a call (measured).

        Raises:
            NkiValidationError: the count or partition dim would change, or the strides allow no such view.
        """
        if type(shape) is not tuple:  # a list, a generator, ...: resolved, not remembered
            return self._reshaped(shape)
        try:
            lay = self.reshapes.get(shape)
        except TypeError:  # a tuple holding something unhashable: the same
            return self._reshaped(shape)
        if lay is None:
            lay = self.reshapes[shape] = self._reshaped(shape)
        return lay

    def _reshaped(self, shape) -> "Layout":
        """`reshaped` without the memo."""
        shape = tuple(int(s) for s in shape)
        if -1 in shape:
            known = math.prod(s for s in shape if s != -1)
            shape = tuple(self.size // known if s == -1 else s for s in shape)
        if math.prod(shape) != self.size:
            raise NkiValidationError("reshape", "shape", f"element count {self.size} preserved", list(shape))
        if self.on_chip and shape[0] != self.shape[0]:
            raise NkiValidationError("reshape", "shape", f"partition dim {self.shape[0]} preserved on-chip",
                                     list(shape))
        probe = np.lib.stride_tricks.as_strided(np.empty(1, np.uint8), self.shape, self.strides)
        try:
            strides = probe.reshape(shape, copy=False).strides
        except ValueError:
            raise NkiValidationError("reshape", "tensor", "a view whose strides allow the new shape",
                                     f"shape {list(self.shape)} strides {list(self.strides)}") from None
        return self.child(shape, tuple(strides))


_INTERNED: dict[tuple, Layout] = {}


def layout_of(buffer: str, dtype: np.dtype, dtype_name: str, row: int, shape: tuple, strides: tuple) -> Layout:
    """The interned layout of views `shape` / `strides` (tuples of ints) over a storage of `buffer` / `dtype` with
    `row` elements per partition (on-chip; any value for HBM, where it is ignored)."""
    row = row if buffer in ON_CHIP else 0
    key = (buffer, dtype_name, row, shape, strides)
    lay = _INTERNED.get(key)
    if lay is None:
        if len(_INTERNED) >= _INTERNED_MAX:
            _INTERNED.clear()
        lay = _INTERNED[key] = Layout(buffer, dtype, dtype_name, row, shape, strides)
    return lay
