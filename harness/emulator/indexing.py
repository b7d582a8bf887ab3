"""Index and address helpers of `NkiTensor` views: `nl.ds` slices, runtime indirection, resolved places,
view extents and bounds checks (all in elements of the storage).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .errors import NkiValidationError
from .registers import VirtualRegister
from .storage import ON_CHIP, Storage


@dataclass(frozen=True)
class DynSlice:
    """`nl.ds(start, size)`: the slice `start : start + size`."""

    start: int
    size: int


@dataclass(frozen=True)
class Indirect:
    """Runtime addressing of an `.ap()` view: kind "vector" (per-row indices) or "scalar" (one offset)."""

    kind: str
    index: object  # NkiTensor (SBUF (P,1) or 1x1), VirtualRegister or int
    rowsize: int  # elements one index step moves


class Place(NamedTuple):
    """Where an access lands at run time: `offset` (None = unknown), for vector indirection the `rows`
    (None = unknown) and the `valid` mask of in-bounds rows; `skip` = scalar offset out of bounds, skipped.
    (A NamedTuple: one is made per operand of every instruction.)"""

    offset: int | None
    rows: np.ndarray | None = None
    valid: np.ndarray | None = None
    skip: bool = False


def extent(shape, strides, first: int = 0) -> tuple[int, int]:
    """(lo, hi): the lowest and highest element offset, relative to the start, that dims `first..` reach."""
    lo = hi = 0
    for d in range(first, len(shape)):
        s = strides[d]
        if s >= 0:
            hi += (shape[d] - 1) * s
        else:
            lo += (shape[d] - 1) * s
    return lo, hi


def slice_bounds(d: int, n: int, k: slice) -> tuple[int, int, int]:
    """(length, start, step) of slice `k` on dim `d` of size `n` (positive steps, non-empty, within bounds)."""
    step = 1 if k.step is None else int(k.step)
    if step <= 0:
        raise NkiValidationError("getitem", f"dim {d}", "slice step > 0", step)
    start = 0 if k.start is None else int(k.start)
    stop = n if k.stop is None else int(k.stop)
    if start < 0:
        start += n
    if stop < 0:
        stop += n
    if not (0 <= start < stop <= n):
        raise NkiValidationError("getitem", f"dim {d}", f"non-empty slice within [0, {n}]", f"{start}:{stop}")
    return -(-(stop - start) // step), start, step


def check_bounds(op: str, operand: str, st: Storage, shape, strides, start: int) -> None:
    lo, hi = extent(shape, strides)
    if start + lo < 0 or start + hi >= st.size:
        raise NkiValidationError(op, operand, f"access within the {st.size}-element storage {list(st.shape)}",
                                 f"elements [{start + lo}, {start + hi}]")
    if st.buffer in ON_CHIP and len(shape) > 1:
        f_lo, f_hi = extent(shape, strides, 1)
        f0 = start % st.free
        if f0 + f_lo < 0 or f0 + f_hi >= st.free:
            raise NkiValidationError(op, operand, f"free access within one partition of {st.free} elements",
                                     f"free elements [{f0 + f_lo}, {f0 + f_hi}]")


def scalar_value(index) -> int | None:
    """Runtime value of a scalar offset (int, VirtualRegister or 1-element tensor); None if unknown."""
    if isinstance(index, VirtualRegister):
        return index.value
    if isinstance(index, (int, np.integer)):
        return int(index)
    vals = index.values()  # a 1-element NkiTensor (checked by .ap() / register_load)
    return None if vals is None else int(vals.reshape(-1)[0])
