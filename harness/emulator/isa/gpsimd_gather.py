"""GpSimd gathers, index and selection instructions (S-ISA): `local_gather`, `nc_n_gather`, `nonzero_with_count`,
`sequence_bounds`, `topk`. GpSimd works on SBUF only; each of its 8 cores serves 16 contiguous partitions.

Readings chosen where S-ISA is loose (each stated at its op): local_gather's indices are element offsets into the
flattened free dim of every partition of the core's 16-partition slice (as its NumPy example takes them:
`np.take(src[core], indices_1d, axis=1)`, indices flattened partition-first); topk's output placement.
"""

from __future__ import annotations

import math

import numpy as np

from .. import dtypes, validate
from ..errors import NkiValidationError
from .issue import computes, current, f32, layout_attrs, raw, record, store

CORE_PARTITIONS = 16  # SBUF partitions per GpSimd core — S-ISA local_gather
LOCAL_GATHER_MAX_INDICES = 4096  # indices per core — S-ISA local_gather
LOCAL_GATHER_ELEMS = (1, 2, 4, 8, 16, 32)  # num_elem_per_idx — S-ISA local_gather
TOPK_N = (8, 65535)  # n, the active elements of a topk snake — S-ISA topk


def _sbuf(opc: str, t, **tensors) -> None:
    for name, x in tensors.items():
        validate.tile(opc, name, x, t)
        validate.gpsimd_no_psum(opc, {name: x}, t)


def _dtype(opc: str, name: str, x, allowed: tuple, t) -> None:
    if dtypes.name(x.dtype) not in allowed:
        raise NkiValidationError(opc, name, f"dtype in {allowed}", dtypes.name(x.dtype), t.name)


def local_gather(dst, src_buffer, index, num_elem_per_idx=1, num_valid_indices=None, name=None):
    """Per GpSimd core (16 partitions): indices_1d = index[core rows] flattened partition-first, first
    num_valid_indices of them; every partition p of the core gets dst[p, i, :] = src_flat[p, idx_i : idx_i +
    num_elem_per_idx]. uint16 indices, no casting (dst.dtype == src_buffer.dtype), out-of-range indices raise (the
    hardware's result is undefined). dst holds num_valid_indices * num_elem_per_idx elements per partition (S-RN
    0.6 known issue: other dst sizes ignore num_elem_per_idx, so the emulator requires this size)."""
    opc = "local_gather"
    ctx = current()
    t = ctx.target
    _sbuf(opc, t, dst=dst, src_buffer=src_buffer, index=index)
    p = src_buffer.shape[0]
    if index.shape[0] != p or p % CORE_PARTITIONS or dst.shape[0] != p:
        raise NkiValidationError(opc, "index", f"src_buffer's partitions, a multiple of {CORE_PARTITIONS}",
                                 f"src {p}, index {index.shape[0]}, dst {dst.shape[0]}", t.name)
    _dtype(opc, "index", index, ("uint16",), t)
    if dst.dtype != src_buffer.dtype:
        raise NkiValidationError(opc, "dst", f"dtype == src_buffer's {dtypes.name(src_buffer.dtype)}",
                                 dtypes.name(dst.dtype), t.name)
    if num_elem_per_idx not in LOCAL_GATHER_ELEMS:
        raise NkiValidationError(opc, "num_elem_per_idx", f"one of {LOCAL_GATHER_ELEMS}", num_elem_per_idx, t.name)
    per_core = CORE_PARTITIONS * index.free_size
    valid = per_core if num_valid_indices is None else int(num_valid_indices)
    if not 0 < valid <= min(per_core, LOCAL_GATHER_MAX_INDICES):
        raise NkiValidationError(opc, "num_valid_indices", f"1..{min(per_core, LOCAL_GATHER_MAX_INDICES)} per core",
                                 valid, t.name)
    if dst.free_size != valid * num_elem_per_idx:
        raise NkiValidationError(opc, "dst", f"num_valid_indices * num_elem_per_idx = {valid * num_elem_per_idx} "
                                 "elements per partition", dst.free_size, t.name)
    if computes(ctx, (dst,), (src_buffer, index)):
        src, idx = raw(src_buffer), raw(index).astype(np.int64)
        out = np.empty((p, valid, num_elem_per_idx), src.dtype)
        span = np.arange(num_elem_per_idx)
        for core in range(p // CORE_PARTITIONS):
            rows = slice(core * CORE_PARTITIONS, (core + 1) * CORE_PARTITIONS)
            flat = idx[rows].reshape(-1, order="F")[:valid]
            cols = flat[:, None] + span[None, :]
            if cols.min() < 0 or cols.max() >= src.shape[1]:
                raise NkiValidationError(opc, "index", f"offsets + num_elem_per_idx within {src.shape[1]} elements",
                                         int(cols.max()), t.name)
            out[rows] = src[rows][:, cols]
        store(dst, out.reshape(p, -1))
    record(ctx, "gpsimd", opc, {"dst": dst}, {"src_buffer": src_buffer, "index": index},
           attrs=layout_attrs(dst, src_buffer))


def nc_n_gather(dst, data, indices, name=None):
    """dst[p, j] = data[p, flat indices[p, j]] per partition (free dims of data flattened); uint32 indices in
    [0, elements per partition of data), dst.dtype == data.dtype, dst has indices' elements per partition."""
    opc = "nc_n_gather"
    ctx = current()
    t = ctx.target
    _sbuf(opc, t, dst=dst, data=data, indices=indices)
    if not data.shape[0] == indices.shape[0] == dst.shape[0] or dst.free_size != indices.free_size:
        raise NkiValidationError(opc, "dst", f"{data.shape[0]} partitions x {indices.free_size} elements (indices')",
                                 f"{dst.shape[0]} x {dst.free_size}", t.name)
    _dtype(opc, "indices", indices, ("uint32",), t)
    if dst.dtype != data.dtype:
        raise NkiValidationError(opc, "dst", f"dtype == data's {dtypes.name(data.dtype)}", dtypes.name(dst.dtype),
                                 t.name)
    if computes(ctx, (dst,), (data, indices)):
        idx = raw(indices).astype(np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= data.free_size):
            raise NkiValidationError(opc, "indices", f"values in [0, {data.free_size})", int(idx.max()), t.name)
        store(dst, np.take_along_axis(raw(data), idx, axis=1))
    record(ctx, "gpsimd", opc, {"dst": dst}, {"data": data, "indices": indices},
           attrs=layout_attrs(dst, data) | {"groups": math.ceil(dst.free_size / 512)})


def nonzero_with_count(dst, src, index_offset=0, padding_val=-1, name=None):
    """On the first partition of each GpSimd core (absolute partitions 0, 16, ..., 112) only: dst row = the
    positions of src's nonzero elements + index_offset, then padding_val, then the count (dst has one more element
    per partition). Other dst partitions keep their values. src float32/int32, dst int32, SBUF. NeuronCore-v3+."""
    opc = "nonzero_with_count"
    ctx = current()
    t = ctx.target
    validate.feature(opc, "op", t.gen >= 3, "nonzero_with_count needs NeuronCore-v3+", opc, t)
    _sbuf(opc, t, dst=dst, src=src)
    _dtype(opc, "src", src, ("float32", "int32"), t)
    _dtype(opc, "dst", dst, ("int32",), t)
    if dst.shape[0] != src.shape[0] or dst.free_size != src.free_size + 1:
        raise NkiValidationError(opc, "dst", f"{src.shape[0]} partitions x {src.free_size + 1} elements",
                                 f"{dst.shape[0]} x {dst.free_size}", t.name)
    for pname, v in (("index_offset", index_offset), ("padding_val", padding_val)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or not -2 ** 31 <= int(v) < 2 ** 31:
            raise NkiValidationError(opc, pname, "an int32", v, t.name)
    if computes(ctx, (dst,), (src, dst)):
        out = raw(dst).astype(np.int64).copy()
        start = src.offset // src.storage.free
        vals = raw(src)
        for r in range(src.shape[0]):
            if (start + r) % CORE_PARTITIONS:
                continue
            nz = np.flatnonzero(vals[r] != 0)
            row = np.full(src.free_size + 1, int(padding_val), np.int64)
            row[:nz.size] = nz + int(index_offset)
            row[-1] = nz.size
            out[r] = row
        store(dst, out)
    record(ctx, "gpsimd", opc, {"dst": dst}, {"src": src}, attrs=layout_attrs(dst, src))


def sequence_bounds(dst, segment_ids, name=None):
    """dst[0, 0, i] / dst[0, 1, i] = start / end (exclusive) index of the run of equal segment ids element i is in;
    padding elements (id 0) get start n and end -1 (n = elements). segment_ids [1, n], dst [1, 2, n] (same element
    order), both float32 or int32, SBUF."""
    opc = "sequence_bounds"
    ctx = current()
    t = ctx.target
    _sbuf(opc, t, dst=dst, segment_ids=segment_ids)
    for pname, x in (("segment_ids", segment_ids), ("dst", dst)):
        _dtype(opc, pname, x, ("float32", "int32"), t)
    n = segment_ids.free_size
    if segment_ids.shape[0] != 1 or dst.shape[0] != 1 or dst.free_size != 2 * n:
        raise NkiValidationError(opc, "dst", f"[1, 2, {n}] for segment_ids [1, {n}] (partition dim 1)",
                                 f"{list(dst.shape)} for {list(segment_ids.shape)}", t.name)
    if computes(ctx, (dst,), (segment_ids,)):
        ids = f32(segment_ids).reshape(-1)
        start, end = np.empty(n, np.int64), np.empty(n, np.int64)
        for i in range(n):
            start[i] = n if ids[i] == 0 else (start[i - 1] if i and ids[i] == ids[i - 1] else i)
        for i in range(n - 1, -1, -1):
            end[i] = -1 if ids[i] == 0 else (end[i + 1] if i < n - 1 and ids[i] == ids[i + 1] else i + 1)
        store(dst, np.stack([start, end]).reshape(1, -1).astype(np.float32 if dst.dtype == dtypes.float32
                                                                  else np.int64))
    record(ctx, "gpsimd", opc, {"dst": dst}, {"segment_ids": segment_ids}, attrs=layout_attrs(dst, segment_ids))


def topk(val_dst, idx_dst, src, n, name=None):
    """Top-K of each 16-partition group's snake (element i at partition i % 16, column i // 16 of src; the first
    n are active): the K = val_dst elements-per-partition largest values, ascending, bf16, and their 0-based snake
    positions (uint32). S-ISA leaves the output placement open ("each partition operates independently" next to a
    16-partition snake and [par_dim, k] outputs); the emulator writes the group's K results to every partition of
    the group. Ties go to the lower position. src bf16 SBUF, partitions a multiple of 16."""
    opc = "topk"
    ctx = current()
    t = ctx.target
    _sbuf(opc, t, val_dst=val_dst, idx_dst=idx_dst, src=src)
    _dtype(opc, "src", src, ("bfloat16",), t)
    _dtype(opc, "val_dst", val_dst, ("bfloat16",), t)
    _dtype(opc, "idx_dst", idx_dst, ("uint32",), t)
    p, k = src.shape[0], val_dst.free_size
    if p % CORE_PARTITIONS or val_dst.shape[0] != p or idx_dst.shape[0] != p or idx_dst.free_size != k:
        raise NkiValidationError(opc, "val_dst/idx_dst", f"[{p}, K] each, partitions a multiple of 16",
                                 f"{list(val_dst.shape)}, {list(idx_dst.shape)}", t.name)
    if not isinstance(n, (int, np.integer)) or not TOPK_N[0] <= n <= TOPK_N[1]:
        raise NkiValidationError(opc, "n", f"an int in [{TOPK_N[0]}, {TOPK_N[1]}]", n, t.name)
    if not 1 <= k < 32768 or k > n:
        raise NkiValidationError(opc, "val_dst", f"K (elements per partition) in [1, min(32767, n={n})]", k, t.name)
    if src.free_size < math.ceil(n / CORE_PARTITIONS):
        raise NkiValidationError(opc, "src", f"at least ceil(n / 16) = {math.ceil(n / 16)} columns", src.free_size,
                                 t.name)
    if computes(ctx, (val_dst, idx_dst), (src,)):
        x = f32(src)
        vals, idxs = np.empty((p, k), np.float32), np.empty((p, k), np.int64)
        for g in range(p // CORE_PARTITIONS):
            rows = slice(g * CORE_PARTITIONS, (g + 1) * CORE_PARTITIONS)
            snake = x[rows].reshape(CORE_PARTITIONS, -1).T.reshape(-1)[:n]
            order = np.argsort(-snake, kind="stable")[:k][::-1]
            vals[rows], idxs[rows] = snake[order], order
        store(val_dst, vals)
        store(idx_dst, idxs)
    record(ctx, "gpsimd", opc, {"val_dst": val_dst, "idx_dst": idx_dst}, {"src": src},
           flops=4 * n + k, attrs=layout_attrs(val_dst, src))
