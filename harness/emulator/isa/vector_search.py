"""VectorE search and cross-partition instructions (S-ISA): `nc_find_index8`, `nc_match_replace8`,
`nc_stream_shuffle`. Values compare in float32 (inputs upcast from their storage dtypes)."""

from __future__ import annotations

import numpy as np

from .. import dtypes, validate
from ..errors import NkiValidationError
from .issue import computes, current, f32, layout_attrs, raw, record, store
from .vector_scan import MAX8_RANGE

SLOTS = 8  # values searched per partition — S-ISA nc_find_index8 / nc_match_replace8
QUADRANT = 32  # partitions a stream-shuffle mask covers — S-ISA nc_stream_shuffle
KEEP = 255  # shuffle_mask entry that leaves the output partition unmodified — S-ISA nc_stream_shuffle


def _search_operands(opc: str, t, data, vals) -> None:
    validate.tile(opc, "data", data, t)
    validate.tile(opc, "vals", vals, t)
    lo, hi = MAX8_RANGE
    if not lo <= data.free_size <= hi:
        raise NkiValidationError(opc, "data", f"{lo} to {hi} elements per partition", data.free_size, t.name)
    if vals.shape[0] != data.shape[0] or vals.free_size != SLOTS:
        raise NkiValidationError(opc, "vals", f"[{data.shape[0]}, {SLOTS}]", f"{vals.shape[0]} x {vals.free_size}",
                                 t.name)


def _matches(data: np.ndarray, vals: np.ndarray, order) -> np.ndarray:
    """int64 [P, 8] positions: for slot i (visited in `order`), the first position equal to vals[:, i] that no
    earlier-visited slot took; -1 where none is left."""
    p = data.shape[0]
    taken = np.zeros(data.shape, bool)
    out = np.full((p, SLOTS), -1, np.int64)
    for i in order:
        hit = (data == vals[:, i:i + 1]) & ~taken
        found = hit.any(axis=1)
        pos = np.argmax(hit, axis=1)
        out[found, i] = pos[found]
        taken[np.flatnonzero(found), pos[found]] = True
    return out


def _ones(dst) -> int:
    return np.iinfo(dst.dtype).max


def nc_find_index8(dst, data, vals, name=None):
    """dst[p, i] = position of the first occurrence of vals[p, i] in data's partition p (free dims flattened);
    duplicate vals take successive occurrences in slot order; not found → all ones. dst [P, 8] uint16/uint32."""
    opc = "nc_find_index8"
    ctx = current()
    t = ctx.target
    _search_operands(opc, t, data, vals)
    validate.tile(opc, "dst", dst, t)
    if dtypes.name(dst.dtype) not in ("uint16", "uint32") or dst.shape[0] != data.shape[0] or dst.free_size != SLOTS:
        raise NkiValidationError(opc, "dst", f"[{data.shape[0]}, {SLOTS}] uint16/uint32",
                                 f"{list(dst.shape)} {dtypes.name(dst.dtype)}", t.name)
    if computes(ctx, (dst,), (data, vals)):
        pos = _matches(f32(data), f32(vals), range(SLOTS))
        store(dst, np.where(pos < 0, _ones(dst), pos))
    record(ctx, "vector", opc, {"dst": dst}, {"data": data, "vals": vals}, flops=data.size * SLOTS,
           attrs=layout_attrs(data))


def nc_match_replace8(dst, data, vals, imm, dst_idx=None, name=None):
    """dst = data with the first occurrence of each of the 8 vals replaced by imm; vals are visited in reverse
    (slot 7 first, S-ISA), so duplicates pair with positions in descending slot order. dst_idx [P, 8] (optional,
    uint16/uint32) gets the matched positions; S-ISA does not say what an unmatched slot holds: the emulator writes
    all ones, as nc_find_index8 does."""
    opc = "nc_match_replace8"
    ctx = current()
    t = ctx.target
    _search_operands(opc, t, data, vals)
    validate.tiles(opc, t, data=data, dst=dst)
    if not isinstance(imm, (int, float, np.integer, np.floating)) or isinstance(imm, bool):
        raise NkiValidationError(opc, "imm", "a float scalar", imm, t.name)
    if dst_idx is not None:
        validate.tile(opc, "dst_idx", dst_idx, t)
        if dtypes.name(dst_idx.dtype) not in ("uint16", "uint32") or dst_idx.free_size != SLOTS \
                or dst_idx.shape[0] != data.shape[0]:
            raise NkiValidationError(opc, "dst_idx", f"[{data.shape[0]}, {SLOTS}] uint16/uint32",
                                     f"{list(dst_idx.shape)} {dtypes.name(dst_idx.dtype)}", t.name)
    dsts = (dst,) + ((dst_idx,) if dst_idx is not None else ())
    if computes(ctx, dsts, (data, vals)):
        x = f32(data).copy()
        pos = _matches(x, f32(vals), range(SLOTS - 1, -1, -1))
        rows, slots = np.nonzero(pos >= 0)
        x[rows, pos[rows, slots]] = np.float32(imm)
        store(dst, x)
        if dst_idx is not None:
            store(dst_idx, np.where(pos < 0, _ones(dst_idx), pos))
    record(ctx, "vector", opc, {"dst": dst, "dst_idx": dst_idx}, {"data": data, "vals": vals},
           flops=data.size * SLOTS, attrs=layout_attrs(dst, data))


def _quadrant_starts(opc: str, t, active: int, **tensors) -> None:
    """S-ISA nc_stream_shuffle start partitions by active partitions: 96/128 → 0, 64 → 0/64, 32 → quadrants."""
    allowed = (0,) if active > 64 else (0, 64) if active > 32 else (0, 32, 64, 96)
    for name, x in tensors.items():
        start = x.offset // x.storage.free
        if start not in allowed:
            raise NkiValidationError(opc, name, f"start partition in {allowed} with {active} active partitions",
                                     start, t.name)


def nc_stream_shuffle(dst, src, shuffle_mask, name=None):
    """Within each 32-partition quadrant: dst partition i = src partition shuffle_mask[i] (the same 32-entry mask
    for every quadrant; 255 leaves dst partition i unmodified). src may have fewer partitions than dst (a
    broadcast). dst.dtype == src.dtype, same elements per partition, SBUF or PSUM, in place allowed; bit-exact."""
    opc = "nc_stream_shuffle"
    ctx = current()
    t = ctx.target
    validate.tile(opc, "dst", dst, t)
    validate.tile(opc, "src", src, t)
    mask = [int(m) for m in shuffle_mask]
    if len(mask) != QUADRANT or any(not (0 <= m < QUADRANT or m == KEEP) for m in mask):
        raise NkiValidationError(opc, "shuffle_mask", f"{QUADRANT} entries in [0, {QUADRANT}) or {KEEP}",
                                 shuffle_mask, t.name)
    if dst.dtype != src.dtype or dst.free_size != src.free_size:
        raise NkiValidationError(opc, "dst", f"src's dtype and elements per partition ({dtypes.name(src.dtype)}, "
                                 f"{src.free_size})", f"{dtypes.name(dst.dtype)}, {dst.free_size}", t.name)
    active = -(-max(src.shape[0], dst.shape[0]) // QUADRANT) * QUADRANT
    _quadrant_starts(opc, t, active, dst=dst, src=src)
    if computes(ctx, (dst,), (src, dst)):
        s, out = raw(src).copy(), raw(dst).copy()
        for row in range(dst.shape[0]):
            q, i = divmod(row, QUADRANT)
            if mask[i] == KEEP:
                continue
            source = q * QUADRANT + mask[i]
            if source >= s.shape[0]:
                raise NkiValidationError(opc, "shuffle_mask", f"source partitions within src's {s.shape[0]}",
                                         f"partition {source} for dst partition {row}", t.name)
            out[row] = s[source]
        store(dst, out)
    record(ctx, "vector", opc, {"dst": dst}, {"src": src, "dst_old": dst}, attrs=layout_attrs(dst, src))
