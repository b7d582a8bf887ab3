"""Index and address helpers of `NkiTensor` views: `nl.ds` slices, runtime indirection, resolved places,
view extents and bounds checks (all in elements of the storage).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import NkiValidationError
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


@dataclass(frozen=True)
class Place:
    """Where an access lands at run time: `offset` (None = unknown), for vector indirection the `rows`
    (None = unknown) and the `valid` mask of in-bounds rows; `skip` = scalar offset out of bounds, skipped."""

    offset: int | None
    rows: np.ndarray | None = None
    valid: np.ndarray | None = None
    skip: bool = False


def extent(shape, strides) -> tuple[int, int]:
    lo = hi = 0
    for n, s in zip(shape, strides):
        if s >= 0:
            hi += (n - 1) * s
        else:
            lo += (n - 1) * s
    return lo, hi


def check_bounds(op: str, operand: str, st: Storage, shape, strides, start: int) -> None:
    lo, hi = extent(shape, strides)
    if start + lo < 0 or start + hi >= st.size:
        raise NkiValidationError(op, operand, f"access within the {st.size}-element storage {list(st.shape)}",
                                 f"elements [{start + lo}, {start + hi}]")
    if st.buffer in ON_CHIP and len(shape) > 1:
        f_lo, f_hi = extent(shape[1:], strides[1:])
        f0 = start % st.free
        if f0 + f_lo < 0 or f0 + f_hi >= st.free:
            raise NkiValidationError(op, operand, f"free access within one partition of {st.free} elements",
                                     f"free elements [{f0 + f_lo}, {f0 + f_hi}]")
