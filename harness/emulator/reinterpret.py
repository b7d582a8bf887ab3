"""Reinterpreting a view's bytes as another dtype (`NkiTensor.view(dtype)`, S-NL `view` / `reinterpret_cast`).

Rules (the bytes must map onto whole elements of the new dtype): the last dim is contiguous (stride 1, or
size 1) and its bytes divide by the new itemsize; the offset and every other dim's stride, in bytes,
divide by it too; on-chip, a partition row's bytes divide by it (the partition dim never changes). PSUM
views keep the itemsize (matmul accumulation state is per element). The last dim scales by the itemsize
ratio; strides and offset are converted to elements of the new dtype.
"""

from __future__ import annotations

import numpy as np

from . import dtypes
from .errors import NkiValidationError
from .storage import ON_CHIP, ReinterpretedStorage, Storage, c_strides


def reinterpreted(storage: Storage, shape: tuple, strides: tuple, offset: int, new: np.dtype):
    """(storage, shape, strides, offset) of the view (`shape`, `strides`, `offset` in `storage`) seen as `new`.

    Raises:
        NkiValidationError: a rule of the module docstring is broken.
    """
    old_size, new_size = storage.dtype.itemsize, new.itemsize
    if shape[-1] != 1 and strides[-1] != 1:
        raise NkiValidationError("view", "tensor", "a contiguous last dim (stride 1)", list(strides))
    last_bytes = shape[-1] * old_size
    if last_bytes % new_size:
        raise NkiValidationError("view", "dtype", f"last dim bytes ({shape[-1]} x {old_size}) a multiple of the new "
                                 "itemsize", f"{dtypes.name(new)} ({new_size} bytes)")
    if storage.buffer in ON_CHIP and storage.free * old_size % new_size:
        raise NkiValidationError("view", "dtype", f"partition rows of {storage.free * old_size} bytes holding whole "
                                 "new elements (the partition dim is kept)", f"{dtypes.name(new)} ({new_size} bytes)")
    if any(s * old_size % new_size for s in strides[:-1]) or offset * old_size % new_size:
        raise NkiValidationError("view", "tensor", f"offset and strides in whole {new_size}-byte elements",
                                 f"offset {offset}, strides {list(strides)} x {old_size} bytes")
    if storage.buffer == "psum" and new_size != old_size:
        raise NkiValidationError("view", "dtype", f"the itemsize {old_size} kept in PSUM",
                                 f"{dtypes.name(new)} ({new_size} bytes)")
    new_shape = tuple(shape[:-1]) + (last_bytes // new_size,)
    new_strides = tuple(s * old_size // new_size for s in strides[:-1]) + (1,)
    return ReinterpretedStorage(storage, new), new_shape, new_strides, offset * old_size // new_size


def whole_storage(storage: Storage, offset: int, new: np.dtype):
    """(storage, shape, strides, offset) of the whole of `storage` seen as `new` (`.ap(dtype=)`), `offset` (in the
    old dtype's elements) converted to elements of `new`.

    Raises:
        NkiValidationError: the offset does not fall on a whole element of `new`.
    """
    old = storage.dtype.itemsize
    if offset * old % new.itemsize:
        raise NkiValidationError("ap", "dtype", f"a view offset on a whole {new.itemsize}-byte element",
                                 f"offset {offset} x {old} bytes")
    st = ReinterpretedStorage(storage, new)
    return st, st.shape, c_strides(st.shape), offset * old // new.itemsize
