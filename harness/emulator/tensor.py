"""`NkiTensor`: a typed, strided view of one allocation (storage) in HBM, SBUF or PSUM.

Layout (S-NL NkiTensor, S-LG): element address = `offset + Σ strides[k] * i_k` in the flat storage.
On-chip storages are `[partitions, free…]`: the flat address of (p, f) is `p * F + f` with
`F = prod(shape[1:])`, so dim 0 of an on-chip view is the partition dim (stride a multiple of F) and
its free dims stay inside one partition. HBM storages are flat.

Indexing follows the language (S-NL `__getitem__`): ints, slices with positive steps, `...`,
negative indices and `nl.ds(start, size)`; on-chip results stay ≥ 2-D (an int on dim 0 keeps a
size-1 partition dim; a dropped free dim that would leave < 2 dims is kept at 1), HBM ints drop the
dim. Out-of-range indices and slices raise `NkiValidationError` (no clamping). Every view shares
storage. `.ap()` addresses the storage directly (not composable with the view it is called on),
optionally with a runtime `scalar_offset` (register or 1x1 SBUF tensor) or a per-partition
`vector_offset` (SBUF (P, 1) row indices, `indirect_dim=0`): row `idx[p]` of the tensor `.ap()` was
called on, whose row size is `prod(shape[indirect_dim + 1:])` of that tensor.

In trace mode only integer storages hold values (they may feed addresses); a float storage's
`data` is None. Storages live in `storage.py`, index helpers in `indexing.py`, allocation in `memory.py`.
"""

from __future__ import annotations

import math

import numpy as np

from . import dtypes
from .errors import NkiTraceError, NkiValidationError
from .indexing import (Indirect, Place, cache_key, check_bounds, plain_geometry, rectangle, resolve_key,
                       scalar_value, view_geometry)
from .layout import Layout, layout_of
from .registers import VirtualRegister
from .rearrange import rearrange_plan
from .reinterpret import reinterpreted, whole_storage
from .storage import ON_CHIP, Storage, strided_view
from .trace import Access


class NkiTensor:
    """A view: storage + layout (shape, strides and their derived geometry, `layout.py`) + offset (elements) + dtype
    (+ runtime indirection)."""

    __slots__ = ("storage", "layout", "shape", "strides", "offset", "dtype", "name", "indirect", "size", "_access",
                 "_valid_for", "out_of_bounds", "_views")

    def __init__(self, storage: Storage, shape, strides, offset: int, name: str = "", indirect: Indirect | None = None):
        lay = layout_of(storage.buffer, storage.dtype, storage.dtype_name, storage.free, tuple(shape), tuple(strides))
        self.storage, self.layout, self.shape, self.strides, self.offset = storage, lay, lay.shape, lay.strides, offset
        self.dtype, self.name, self.indirect, self.size = storage.dtype, name, indirect, lay.size
        # caches: trace footprint, target whose operand rules it passed, views by index key (`__getitem__`)
        self._access = self._valid_for = self._views = None
        # an `.ap()` pattern outside its storage: a view is only an address pattern, so the error is raised
        # when an instruction uses the view (validate.tile), not when it is made (AWS's nki-library makes such
        # views on paths it then skips)
        self.out_of_bounds: NkiValidationError | None = None

    def _runtime(self, *_args):
        raise NkiTraceError(f"NkiTensor {self.name or ''}{list(self.shape)} holds runtime data: Python control flow, "
                            "int(), bool() or NumPy cannot read its values while the kernel is specialized; use nisa "
                            "ops, .ap(scalar_offset=/vector_offset=) or nl.fori_loop bounds instead")

    # A kernel whose Python code reads tensor values would not compile for a device; fail as the compiler would.
    __bool__ = __int__ = __index__ = __float__ = __array__ = __iter__ = _runtime

    # ---- attributes -------------------------------------------------------------------------------
    @property
    def buffer(self) -> str:
        return self.storage.buffer

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def itemsize(self) -> int:
        return self.dtype.itemsize

    @property
    def on_chip(self) -> bool:
        return self.storage.buffer in ON_CHIP

    @property
    def free_size(self) -> int:
        """Elements per partition (on-chip: product of the free dims)."""
        return self.size // self.shape[0]

    def __repr__(self) -> str:
        name = f", {self.name}" if self.name else ""
        return f"NkiTensor({list(self.shape)}, {dtypes.name(self.dtype)}, {self.buffer}{name})"

    def _view(self, shape, strides, offset, op: str) -> "NkiTensor":
        if self.indirect is not None:
            raise NkiValidationError(op, "tensor", "no views of an indirect (.ap with offsets) tensor", self)
        return view_of(self.storage, self.layout.child(tuple(shape), tuple(strides)), offset, self.name,
                       self.out_of_bounds)

    # ---- indexing ---------------------------------------------------------------------------------
    def __getitem__(self, key) -> "NkiTensor":
        """The view `self[key]` (module docstring). The hot path of every kernel: a 2-D view cut by two step-less
        slices or `nl.ds` (`indexing.rectangle`) is resolved inline; other keys of plain ints, slices and `nl.ds` in
        range are resolved without per-dim calls (`indexing.plain_geometry`), anything else by `indexing.resolve_key`
        (which raises for bad keys). A key seen before on this view gives the view made then (views are immutable;
        loops re-issue the same accesses). The new view's layout comes from this one's (`Layout.children`)."""
        if type(key) is tuple and len(key) == 2 and self.indirect is None and len(self.shape) == 2:
            ck = rectangle(key, self.shape)
            if ck is not None:
                views = self._views
                if views is not None:
                    view = views.get(ck)
                    if view is not None:
                        return view
                a0, b0, a1, b1 = ck
                lay = self.layout
                s0, s1 = strides = lay.strides
                shape = (b0 - a0, b1 - a1)
                view = view_of(self.storage, lay.children.get((shape, strides)) or lay.child(shape, strides),
                               self.offset + a0 * s0 + a1 * s1, self.name, self.out_of_bounds)
                return self._remember(ck, view)
        if type(key) is not tuple:
            key = (key,)
        ck = cache_key(key)
        views = self._views
        if views is not None and ck is not None:
            view = views.get(ck)
            if view is not None:
                return view
        lay = self.layout
        geometry = plain_geometry(key, lay.shape, lay.strides, lay.on_chip) if self.indirect is None else None
        if geometry is None:
            geometry = view_geometry(resolve_key(key, lay.shape, self), lay.shape, lay.strides, lay.on_chip)
        shape, strides, offset = geometry
        view = view_of(self.storage, lay.children.get((shape, strides)) or lay.child(shape, strides),
                       self.offset + offset, self.name, self.out_of_bounds)
        return view if ck is None else self._remember(ck, view)

    def _remember(self, key: tuple, view: "NkiTensor") -> "NkiTensor":
        """Keep `view` as the view of index key `key` (at most `_VIEWS_MAX` per view); returns it."""
        views = self._views
        if views is None:
            views = self._views = {}
        if len(views) < _VIEWS_MAX:
            views[key] = view
        return view

    # ---- view methods (S-NL) ------------------------------------------------------------------------
    def slice(self, dim: int, start: int, end: int, step: int = 1) -> "NkiTensor":
        key = [slice(None)] * self.ndim
        key[dim] = slice(start, end, step)
        return self[tuple(key)]

    def select(self, dim: int, index) -> "NkiTensor":
        """Index `dim` with an int (the dim is removed, keeping on-chip tensors ≥ 2-D)."""
        if not isinstance(index, (int, np.integer)):
            raise NkiTraceError("select: only int indices are emulated; use .ap(vector_offset=...) for tensor indices")
        if dim == 0 and self.on_chip:
            raise NkiValidationError("select", "dim", "dim != 0 for on-chip tensors", dim)
        key = [slice(None)] * self.ndim
        key[dim] = index
        return self[tuple(key)]

    def reshape(self, shape) -> "NkiTensor":
        """Same elements, new shape (a view; element count preserved; on-chip shape[0] preserved; rules and the
        reshape memo: `Layout.reshaped`)."""
        lay = self.layout.reshaped(shape)
        if self.indirect is not None:
            raise NkiValidationError("reshape", "tensor", "no views of an indirect (.ap with offsets) tensor", self)
        return view_of(self.storage, lay, self.offset, self.name, self.out_of_bounds)

    def permute(self, dims) -> "NkiTensor":
        dims = tuple(dims)
        if sorted(dims) != list(range(self.ndim)) or (self.on_chip and dims[0] != 0):
            raise NkiValidationError("permute", "dims", "a permutation keeping dim 0 first on-chip", dims)
        return self._view([self.shape[d] for d in dims], [self.strides[d] for d in dims], self.offset, "permute")

    def broadcast(self, dim: int, size: int) -> "NkiTensor":
        if self.shape[dim] != 1 or (self.on_chip and dim == 0):
            raise NkiValidationError("broadcast", "dim", "a size-1 dim (not dim 0 on-chip)", dim)
        shape, strides = list(self.shape), list(self.strides)
        shape[dim], strides[dim] = int(size), 0
        return self._view(shape, strides, self.offset, "broadcast")

    def expand_dim(self, dim: int) -> "NkiTensor":
        if self.on_chip and dim == 0:
            raise NkiValidationError("expand_dim", "dim", "not dim 0 on-chip", dim)
        shape, strides = list(self.shape), list(self.strides)
        shape.insert(dim, 1)
        strides.insert(dim, 0)
        return self._view(shape, strides, self.offset, "expand_dim")

    def squeeze_dim(self, dim: int) -> "NkiTensor":
        if self.shape[dim] != 1 or (self.on_chip and dim == 0):
            raise NkiValidationError("squeeze_dim", "dim", "a size-1 dim (not dim 0 on-chip)", dim)
        return self._view(self.shape[:dim] + self.shape[dim + 1:], self.strides[:dim] + self.strides[dim + 1:],
                          self.offset, "squeeze_dim")

    def flatten_dims(self, start: int, end: int) -> "NkiTensor":
        """Merge dims start..end (inclusive, contiguous dims; start > 0 on-chip) into one."""
        if self.on_chip and start == 0:
            raise NkiValidationError("flatten_dims", "start", "> 0 for on-chip tensors", start)
        merged = math.prod(self.shape[start:end + 1])
        return self.reshape(self.shape[:start] + (merged,) + self.shape[end + 1:])

    def reshape_dim(self, dim: int, shape) -> "NkiTensor":
        """Split dim `dim` into `shape` (its element count preserved)."""
        return self.reshape(self.shape[:dim] + tuple(shape) + self.shape[dim + 1:])

    def rearrange(self, src_pattern, dst_pattern, fixed_sizes=None) -> "NkiTensor":
        """einops-style view (S-NL; patterns and sizes as `rearrange.py` describes): a split, a permute and a merge
        of views, no data moves. Example: [128, 24].rearrange(('b', ('h', 'w')), ('b', 'w', 'h'), {'h': 4})."""
        split, order, merged = rearrange_plan(self.shape, src_pattern, dst_pattern, fixed_sizes)
        return self.reshape(split).permute(order).reshape(merged)

    def view(self, dtype) -> "NkiTensor":
        """The same bytes reinterpreted as `dtype` (S-NL `view`, alias `reinterpret_cast`): no data moves; the
        last dim scales by the itemsize ratio (uint8 [P, 8] -> uint32 [P, 2] -> float8_e4m3 [P, 8]). Rules:
        `reinterpret.reinterpreted`.

        Raises:
            NkiValidationError: a rule is broken, or the view is indirect.
        """
        if self.indirect is not None:
            raise NkiValidationError("view", "tensor", "no views of an indirect (.ap with offsets) tensor", self)
        storage, shape, strides, offset = reinterpreted(self.storage, self.shape, self.strides, self.offset,
                                                        dtypes.to_dtype(dtype))
        out = NkiTensor(storage, shape, strides, offset, self.name)
        out.out_of_bounds = self.out_of_bounds
        return out

    reinterpret_cast = view

    def is_indirect(self) -> bool:
        return self.indirect is not None

    def get_pattern(self) -> list[list[int]]:
        """The access pattern `[[stride, count], …]`, outer to inner."""
        return [[s, n] for s, n in zip(self.strides, self.shape)]

    def is_contiguous(self) -> bool:
        expect = 1
        for n, s in zip(reversed(self.shape), reversed(self.strides)):
            if n != 1 and s != expect:
                return False
            expect *= n
        return True

    def vector_select(self, dim: int, offsets: "NkiTensor") -> "NkiTensor":
        """Rows `offsets[p]` of an HBM tensor: `.ap()` over the whole rows with `vector_offset`."""
        if dim != 0:
            raise NkiValidationError("vector_select", "dim", "dim == 0", dim)
        rowsize = math.prod(self.shape[1:])
        pattern = [[rowsize, offsets.shape[0]]] + [[s, n] for s, n in zip(self.strides[1:], self.shape[1:])]
        return self.ap(pattern, vector_offset=offsets, indirect_dim=0)

    def ap(self, pattern, offset: int | None = None, scalar_offset=None, vector_offset=None, indirect_dim: int = 0,
           dtype=None) -> "NkiTensor":
        """Raw access pattern over the storage: `base + offset + Σ i_d * stride_d`, pattern outer→inner.

        Args:
            pattern: [[stride, count], …]; on-chip the first pair is the partition dim, stride = storage F.
            offset: start element; None inherits this view's offset.
            scalar_offset: VirtualRegister, int or 1x1 SBUF tensor; start += value * prod(shape[indirect_dim+1:]).
            vector_offset: SBUF (P, 1) integer tensor of row indices (indirect_dim must be 0).
            dtype: reinterpret the storage's bytes as this dtype first (S-NL); pattern counts, strides and
                `offset` are then in elements of it, and offset=None converts this view's offset (which must
                fall on a whole element of the new dtype).
        """
        if dtype is not None and dtypes.to_dtype(dtype) != self.dtype:
            return self._reinterpreted(dtypes.to_dtype(dtype)).ap(pattern, offset, scalar_offset, vector_offset,
                                                                   indirect_dim)
        if scalar_offset is not None and vector_offset is not None:
            raise NkiValidationError("ap", "scalar_offset/vector_offset", "at most one of them", "both")
        shape = tuple([int(n) for _, n in pattern])
        strides = tuple([int(s) for s, _ in pattern])
        if shape and min(shape) <= 0:
            raise NkiValidationError("ap", "pattern", "counts > 0", pattern)
        st = self.storage
        if self.on_chip and shape[0] > 1 and strides[0] != st.free:
            raise NkiValidationError("ap", "pattern",
                                     f"partition stride == free size {st.free} (no partition striding)",
                                     strides[0])
        start = self.offset if offset is None else int(offset)
        if vector_offset is not None:
            if indirect_dim != 0:
                raise NkiValidationError("ap", "indirect_dim", "0 with vector_offset", indirect_dim)
            if not isinstance(vector_offset, NkiTensor) or vector_offset.free_size != 1 or \
                    vector_offset.shape[0] != shape[0] or vector_offset.buffer != "sbuf" or \
                    not dtypes.is_int(vector_offset.dtype):
                raise NkiValidationError("ap", "vector_offset", f"an SBUF ({shape[0]}, 1) integer index tensor",
                                         vector_offset)
            ind = _new_tuple(Indirect, ("vector", vector_offset, math.prod(self.shape[1:])))
        elif scalar_offset is not None:
            legal = isinstance(scalar_offset, (VirtualRegister, int, np.integer)) or (
                isinstance(scalar_offset, NkiTensor) and scalar_offset.size == 1 and scalar_offset.buffer == "sbuf"
                and dtypes.is_int(scalar_offset.dtype))
            if not legal:
                raise NkiValidationError("ap", "scalar_offset", "a VirtualRegister, an int or a 1x1 SBUF integer "
                                         "tensor", scalar_offset)
            if not 0 <= indirect_dim < len(self.shape):
                raise NkiValidationError("ap", "indirect_dim", f"a dim of {list(self.shape)}", indirect_dim)
            ind = _new_tuple(Indirect, ("scalar", scalar_offset, math.prod(self.shape[indirect_dim + 1:])))
        else:
            ind = None
        out = NkiTensor(st, shape, strides, start, self.name, ind)
        if ind is None:
            try:
                check_bounds("ap", "pattern", st, out.layout, start)
            except NkiValidationError as e:
                out.out_of_bounds = e
        return out

    def _reinterpreted(self, new: np.dtype) -> "NkiTensor":
        """The whole storage seen as `new` (for `.ap(dtype=)`), this view's offset converted to its elements."""
        if self.indirect is not None:
            raise NkiValidationError("ap", "dtype", "no reinterpretation of an indirect view", self)
        return NkiTensor(*whole_storage(self.storage, self.offset, new), self.name)

    # ---- runtime addressing ---------------------------------------------------------------------------
    def locate(self, op: str, operand: str, skip_oob: bool = False) -> Place:
        """Resolve runtime offsets. OOB indices raise, or are skipped with `skip_oob` (oob_mode.skip).
        Unknown index values (trace mode) give an unknown place and no OOB check."""
        ind = self.indirect
        if ind is None:
            return _new_tuple(Place, (self.offset, None, None, False))
        st, lay = self.storage, self.layout
        if ind.kind == "scalar":
            value = scalar_value(ind.index)
            if value is None:
                return Place(None)
            start = self.offset + value * ind.rowsize
            lo, hi = lay.lo, lay.hi
            if start + lo < 0 or start + hi >= st.size:
                if skip_oob:
                    return Place(None, skip=True)
                raise NkiValidationError(op, operand, f"scalar_offset access within {st.size} elements",
                                         f"offset {value} -> elements [{start + lo}, {start + hi}]")
            return _new_tuple(Place, (start, None, None, False))
        lo, hi = lay.f_lo, lay.f_hi
        rows = ind.index.values()
        if rows is None:
            return Place(self.offset)
        rows = rows.reshape(-1).astype(np.int64)
        starts = self.offset + rows * ind.rowsize
        valid = (starts + lo >= 0) & (starts + hi < st.size)
        if not valid.all() and not skip_oob:
            bad = int(np.flatnonzero(~valid)[0])
            raise NkiValidationError(op, operand, f"vector_offset rows within {st.size // max(ind.rowsize, 1)} rows",
                                     f"index {int(rows[bad])} at partition {bad}")
        return Place(self.offset, rows, valid)

    def values(self, place: Place | None = None) -> np.ndarray | None:
        """The elements as an array of `self.shape` in storage dtype (a view when possible); None if unknown.
        Rows skipped as out of bounds read as zeros."""
        place = place or self.locate("read", "tensor")
        data = self.storage.data
        if data is None or place.skip or (place.offset is None):
            return None
        if place.rows is None:
            return strided_view(data, self.shape, self.strides, place.offset)
        out = np.zeros(self.shape, self.dtype)
        out[place.valid] = data[self._row_addresses(place, place.valid)]
        return out

    def write(self, values: np.ndarray, place: Place | None = None, rows_valid: np.ndarray | None = None) -> None:
        """Store `values` (already in self.dtype, self.size elements) here. `rows_valid` masks dim-0 rows."""
        place = place or self.locate("write", "tensor")
        st = self.storage
        if st.data is None or place.skip:
            return
        if place.offset is None:  # unknown runtime address: nothing the emulator can still vouch for
            st.data = None
            return
        values = values.reshape(self.shape)
        if place.rows is None:
            view = strided_view(st.data, self.shape, self.strides, place.offset)
            if rows_valid is None:
                view[...] = values
            else:
                view[rows_valid] = values[rows_valid]
            return
        valid = place.valid if rows_valid is None else place.valid & rows_valid
        st.data[self._row_addresses(place, valid)] = values[valid]

    def _row_addresses(self, place: Place, valid: np.ndarray) -> np.ndarray:
        """Flat element addresses [rows, *shape[1:]] of the valid rows of a vector-indirect view."""
        starts = place.offset + place.rows[valid] * self.indirect.rowsize
        inner = np.zeros(self.shape[1:], np.int64)
        for d, (n, s) in enumerate(zip(self.shape[1:], self.strides[1:])):
            inner += (np.arange(n, dtype=np.int64) * s).reshape([n if i == d else 1 for i in range(inner.ndim)])
        return starts.reshape((-1,) + (1,) * inner.ndim) + inner

    def trace_access(self) -> Access:
        """The trace footprint of this (direct) view at its own offset, moving all its bytes: `access` without
        runtime indirection, computed once per view (views are immutable) from its layout's geometry. The hot path
        of every instruction."""
        acc = self._access
        if acc is not None:
            return acc
        st, lay, offset = self.storage, self.layout, self.offset
        if lay.on_chip:
            free = st.free
            p0 = offset // free
            f0 = offset - p0 * free
            acc = _new_tuple(Access, (st.id, lay.buffer, p0, p0 + lay.span, f0 + lay.f_lo, f0 + lay.f_hi + 1,
                                      lay.nbytes))
        else:
            acc = _new_tuple(Access, (st.id, lay.buffer, 0, 1, offset + lay.lo, offset + lay.hi + 1, lay.nbytes))
        if st.mapped:
            acc = st.map_access(acc)
        self._access = acc
        return acc

    def access(self, place: Place, nbytes: int) -> Access:
        """Conservative footprint of this view for the trace, in elements of its allocation (also through a
        `view(dtype)` reinterpretation)."""
        footprint = self._footprint(place, nbytes)
        st = self.storage
        return st.map_access(footprint) if st.mapped else footprint

    def _footprint(self, place: Place, nbytes: int) -> Access:
        """Conservative footprint of this view, in elements of its storage's dtype."""
        st, lay, ind = self.storage, self.layout, self.indirect
        unknown_rows = ind is not None and ind.kind == "vector" and place.rows is None
        if ind is not None and (place.offset is None or unknown_rows):
            return Access(st.id, st.buffer, 0, st.shape[0] if lay.on_chip else 1, 0, st.free, nbytes)
        if place.rows is not None:
            rows = place.rows[place.valid] if place.valid is not None else place.rows
            if rows.size == 0:
                return Access(st.id, st.buffer, 0, 1, 0, 0, 0)
            lo = lay.f_lo + place.offset + int(rows.min()) * ind.rowsize
            hi = lay.f_hi + place.offset + int(rows.max()) * ind.rowsize
        else:
            lo, hi = lay.lo + place.offset, lay.hi + place.offset
        if not lay.on_chip:
            return _new_tuple(Access, (st.id, st.buffer, 0, 1, lo, hi + 1, nbytes))
        p0 = place.offset // st.free
        p_last = p0 + (self.shape[0] - 1) * (self.strides[0] // st.free if st.free else 0)
        f0 = place.offset - p0 * st.free
        return _new_tuple(Access, (st.id, st.buffer, p0, p_last + 1, f0 + lay.f_lo, f0 + lay.f_hi + 1, nbytes))

    # ---- legacy-style operators, lowered to nl ops (`LEGACY_OPERATORS`, filled in by `language`) -----------
    def __add__(self, other):
        return _legacy("add")(self, other)

    def __sub__(self, other):
        return _legacy("subtract")(self, other)

    def __mul__(self, other):
        return _legacy("multiply")(self, other)

    __radd__ = __add__
    __rmul__ = __mul__


# nl.add / nl.subtract / nl.multiply, registered by `language` when it loads: the tensor layer sits below the
# language and must not import it (that import closed a cycle through every isa module)
LEGACY_OPERATORS: dict = {}


def _legacy(name: str):
    if name not in LEGACY_OPERATORS:
        raise RuntimeError(f"NkiTensor operator {name}: nki.language is not loaded (import nkilab.harness.emulator)")
    return LEGACY_OPERATORS[name]


_VIEWS_MAX = 1024  # views remembered per view by index key (`__getitem__`)


_new_tuple = tuple.__new__  # NamedTuple records without their constructor's Python frame (trace_access)
_new_object = object.__new__


def view_of(storage: Storage, lay: Layout, offset: int, name: str = "", out_of_bounds=None) -> NkiTensor:
    """A direct view of `storage` with layout `lay` at `offset` (elements): `NkiTensor(...)` for a layout already at
    hand (allocation, indexing), without re-deriving it."""
    t = _new_object(NkiTensor)
    t.storage, t.layout, t.shape, t.strides, t.offset = storage, lay, lay.shape, lay.strides, offset
    t.dtype, t.name, t.indirect, t.size = storage.dtype, name, None, lay.size
    t._access = t._valid_for = t._views = None
    t.out_of_bounds = out_of_bounds
    return t
