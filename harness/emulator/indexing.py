"""Index and address helpers of `NkiTensor` views: `nl.ds` slices, runtime indirection, resolved places,
view extents and bounds checks (all in elements of the storage).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .errors import NkiTraceError, NkiValidationError
from .registers import VirtualRegister
from .storage import ON_CHIP, Storage


@dataclass(frozen=True)
class DynSlice:
    """`nl.ds(start, size)`: the slice `start : start + size`."""

    start: int
    size: int


class Indirect(NamedTuple):
    """Runtime addressing of an `.ap()` view: kind "vector" (per-row indices) or "scalar" (one offset). (A NamedTuple:
    one is made per indirect DMA operand.)"""

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


def rectangle(key: tuple, shape: tuple) -> tuple[int, int, int, int] | None:
    """(start0, stop0, start1, stop1) of a 2-D key of two step-less slices (or `nl.ds`) within the 2-D `shape`, their
    bounds plain ints or None; None for any other key. The commonest key of all, and its own cache key: four ints
    (never equal to a `cache_key`, whose int entries follow a marker and slices give three entries each). The two
    dims are unrolled on purpose: a per-dim helper call costs more than the rest of this function on CPython 3.11."""
    k0, k1 = key
    t0, t1 = type(k0), type(k1)
    if t0 is slice and k0.step is None:
        a0, b0 = k0.start, k0.stop
    elif t0 is DynSlice:
        a0, b0 = k0.start, k0.start + k0.size
    else:
        return None
    if t1 is slice and k1.step is None:
        a1, b1 = k1.start, k1.stop
    elif t1 is DynSlice:
        a1, b1 = k1.start, k1.start + k1.size
    else:
        return None
    n0, n1 = shape
    a0 = 0 if a0 is None else a0
    b0 = n0 if b0 is None else b0
    a1 = 0 if a1 is None else a1
    b1 = n1 if b1 is None else b1
    if type(a0) is int and type(b0) is int and type(a1) is int and type(b1) is int and 0 <= a0 < b0 <= n0 and \
            0 <= a1 < b1 <= n1:
        return a0, b0, a1, b1
    return None


_INT_KEY = object()  # marks an int index in `cache_key` (a slice contributes its start, stop and step)


def cache_key(key: tuple) -> tuple | None:
    """A hashable form of an index key of plain ints, slices with int / None bounds and `nl.ds` (as the slice it
    stands for), equal for keys that select the same view; None for any other key."""
    out = []
    for k in key:
        tk = type(k)
        if tk is slice:
            start, stop, step = k.start, k.stop, k.step
            if (start is None or type(start) is int) and (stop is None or type(stop) is int) and \
                    (step is None or type(step) is int):
                out.append(start)
                out.append(stop)
                out.append(step)
                continue
            return None
        if tk is int:
            out.append(_INT_KEY)
            out.append(k)
            continue
        if tk is DynSlice and type(k.start) is int and type(k.size) is int:
            out.append(k.start)
            out.append(k.start + k.size)
            out.append(None)
            continue
        return None
    return tuple(out)


def plain_geometry(key: tuple, shape: tuple, strides: tuple, on_chip: bool) -> tuple[tuple, tuple, int] | None:
    """`view_geometry` of an index key of plain ints, step-less slices with int / None bounds and `nl.ds`, all
    within `shape`, in one pass without per-dim calls (the hot path of indexing); None for any other key (then
    `resolve_key` resolves it, or raises)."""
    if len(key) > len(shape):
        return None
    offset = 0
    out_shape, out_strides = [], []
    d = 0
    for k in key:
        n = shape[d]
        tk = type(k)
        if tk is slice:
            a, b = k.start, k.stop
            if a is None:
                a = 0
            if b is None:
                b = n
            if type(a) is not int or type(b) is not int or k.step is not None or not 0 <= a < b <= n:
                return None
        elif tk is int:
            if not 0 <= k < n:
                return None
            offset += k * strides[d]
            if d == 0 and on_chip:
                out_shape.append(1)
                out_strides.append(strides[0])
            d += 1
            continue
        elif tk is DynSlice:
            a = k.start
            b = a + k.size
            if type(a) is not int or type(b) is not int or not 0 <= a < b <= n:
                return None
        else:
            return None
        s = strides[d]
        offset += a * s
        out_shape.append(b - a)
        out_strides.append(s)
        d += 1
    return _completed(out_shape, out_strides, shape[d:], strides[d:], on_chip, offset)


def resolve_key(key: tuple, shape: tuple, tensor) -> tuple:
    """The normalized form (see `view_geometry`) of any index key of `tensor` (an NkiTensor of `shape`): ints
    (negative from the end), slices with positive steps, `...` and `nl.ds`.

    Raises:
        NkiValidationError: too many indices, an index or slice out of range, or a view of an indirect tensor.
        NkiTraceError: a VirtualRegister or a tensor as an index. TypeError: any other index.
    """
    ndim = len(shape)
    for k in key:
        if k is Ellipsis:
            at = key.index(Ellipsis)
            key = key[:at] + (slice(None),) * (ndim - len(key) + 1) + key[at + 1:]
            break
    if len(key) > ndim:
        raise NkiValidationError("getitem", "index", f"at most {ndim} indices for shape {list(shape)}", key)
    out = []
    for d, k in enumerate(key):
        n = shape[d]
        if type(k) is DynSlice:
            k = slice(k.start, k.start + k.size)
        if type(k) is slice:
            length, start, step = slice_bounds(d, n, k)
            out += (start, length, step)
        elif isinstance(k, (int, np.integer)):
            i = int(k) + (n if k < 0 else 0)
            if not 0 <= i < n:
                raise NkiValidationError("getitem", f"dim {d}", f"index in [0, {n})", int(k))
            out += (i, 0, 0)
        elif isinstance(k, VirtualRegister):
            raise NkiTraceError("a VirtualRegister cannot index a tensor; use t.ap(..., scalar_offset=reg)")
        elif isinstance(k, type(tensor)):
            raise NkiTraceError("a tensor cannot index a tensor; use t.ap(..., vector_offset=idx, indirect_dim=0)")
        else:
            raise TypeError(f"index: {k!r} is not an int, slice, nl.ds or Ellipsis")
    if tensor.indirect is not None:
        raise NkiValidationError("getitem", "tensor", "no views of an indirect (.ap with offsets) tensor", tensor)
    return tuple(out)


def view_geometry(norm: tuple, shape: tuple, strides: tuple, on_chip: bool) -> tuple[tuple, tuple, int]:
    """(shape, strides, offset relative to the indexed view's) of the view a normalized key selects.

    `norm` holds (start, length, step) per indexed dim, flattened; length 0 marks an int index, which drops its
    dim (on-chip, dim 0 stays as a size-1 partition dim). Dims past the key are kept whole; an on-chip view keeps at
    least 2 dims and an HBM view 1 (padding with size-1 dims of stride 1)."""
    offset = 0
    out_shape, out_strides = [], []
    it = iter(norm)
    d = 0
    for start, length, step in zip(it, it, it):
        s = strides[d]
        offset += start * s
        if length:
            out_shape.append(length)
            out_strides.append(s * step)
        elif d == 0 and on_chip:
            out_shape.append(1)
            out_strides.append(s)
        d += 1
    return _completed(out_shape, out_strides, shape[d:], strides[d:], on_chip, offset)


def _completed(out_shape: list, out_strides: list, rest: tuple, rest_strides: tuple, on_chip: bool,
               offset: int) -> tuple[tuple, tuple, int]:
    """(shape, strides, offset) of a view: the indexed dims' `out_shape` / `out_strides` followed by the dims past
    the key whole (`rest`), padded with size-1 dims of stride 1 to at least 2 dims on-chip and 1 in HBM."""
    out_shape += rest
    out_strides += rest_strides
    while len(out_shape) < (2 if on_chip else 1):
        out_shape.append(1)
        out_strides.append(1)
    return tuple(out_shape), tuple(out_strides), offset


def check_bounds(op: str, operand: str, st: Storage, lay, start: int) -> None:
    """A view of `st` with layout `lay` (`layout.Layout`: its extents) at element `start` lies within the storage
    (on-chip: its free dims within one partition)."""
    lo, hi = lay.lo, lay.hi
    if start + lo < 0 or start + hi >= st.size:
        raise NkiValidationError(op, operand, f"access within the {st.size}-element storage {list(st.shape)}",
                                 f"elements [{start + lo}, {start + hi}]")
    if st.buffer in ON_CHIP and len(lay.shape) > 1:
        f_lo, f_hi = lay.f_lo, lay.f_hi
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
    data = index.storage.data  # a 1-element NkiTensor (checked by .ap() / register_load)
    if data is not None and index.indirect is None:  # a direct view: its one element is at its offset
        return int(data[index.offset] if data.ndim == 1 else data[divmod(index.offset, data.shape[1])])
    vals = index.values()
    return None if vals is None else int(vals.reshape(-1)[0])
