"""`nki.language` data APIs of NKI 0.6 beyond `language.py`: memory regions and their predicates, constants
(shared_constant, shared_identity_matrix), random tensors (rand, random_seed), views and broadcasts (expand_dims,
broadcast_to), load_transpose2d, gather_flattened and the runtime while_loop.

Lowerings the docs do not give are the emulator's choice (stated per function), built from documented
instructions that are legal on every generation they name, so they validate, compute and record themselves.
"""

from __future__ import annotations

import os
from enum import Enum

import numpy as np

from . import context, dtypes
from .errors import NkiTraceError, NkiValidationError
from .isa import dma_copy, iota, nc_n_gather, rand2, rng, set_rng_seed, tensor_copy, tensor_scalar
from .language_lowering import result_dtype
from .memory import allocate
from .registers import VirtualRegister
from .tensor import NkiTensor

DType = np.dtype  # every nl dtype is a NumPy / ml_dtypes dtype object; also `nki.dtype` in annotations


class MemoryRegion(str, Enum):
    """Memory region constants (S-NL). Values are the emulator's buffer names, so members compare equal to a
    tensor's `.buffer`: `private_hbm` is "hbm" (S-NL: `hbm` is the alias of private_hbm), the region kernel
    arguments arrive in, so `arg.buffer == nl.hbm` holds as on a device."""

    sbuf = "sbuf"
    psum = "psum"
    private_hbm = "hbm"
    shared_hbm = "shared_hbm"


_HBM = ("hbm", "private_hbm", "shared_hbm")


def _buffer_name(buffer) -> str:
    if isinstance(buffer, NkiTensor):
        return buffer.buffer
    name = getattr(buffer, "value", buffer)
    if name not in _HBM + ("sbuf", "psum"):
        raise ValueError(f"buffer: {buffer!r} is not a memory region (sbuf, psum, hbm, private_hbm, shared_hbm)")
    return name


def is_hbm(buffer) -> bool:
    """Whether `buffer` (a memory region, its name or a tensor) is any HBM region."""
    return _buffer_name(buffer) in _HBM


def is_on_chip(buffer) -> bool:
    """Whether `buffer` is SBUF or PSUM."""
    return _buffer_name(buffer) in ("sbuf", "psum")


def is_psum(buffer) -> bool:
    return _buffer_name(buffer) == "psum"


def is_sbuf(buffer) -> bool:
    return _buffer_name(buffer) == "sbuf"


def shared_constant(constant) -> NkiTensor:
    """A shared_hbm tensor holding `constant` (a NumPy array or a .npy path), "loaded to HBM at model load time":
    no instruction. float64 / int64 arrays have no NKI dtype (TypeError)."""
    if isinstance(constant, (str, os.PathLike)):
        constant = np.load(constant)
    if not isinstance(constant, np.ndarray):
        raise TypeError(f"constant: {type(constant).__name__} is not a NumPy array or a .npy path")
    t = allocate(constant.shape or (1,), dtypes.to_dtype(constant.dtype), "shared_hbm", op="shared_constant")
    if t.storage.data is not None:
        t.storage.data[...] = np.ascontiguousarray(constant).reshape(-1)
    return t


def shared_identity_matrix(n: int, dtype=dtypes.DTYPES["uint8"], dst: NkiTensor | None = None) -> NkiTensor:
    """An [n, n] identity matrix in SBUF (or written into dst): GpSimd iota of p - f (int32), then a VectorE
    compare with 0 into the dtype (lowering chosen by the emulator; the compiler shares one per dtype)."""
    out = dst if dst is not None else allocate((n, n), dtype, "sbuf", op="shared_identity_matrix")
    if out.shape[0] != n or out.free_size != n:
        raise NkiValidationError("shared_identity_matrix", "dst", f"[{n}, {n}]", list(out.shape))
    diff = allocate((n, n), dtypes.DTYPES["int32"], "sbuf", op="shared_identity_matrix")
    iota(dst=diff, pattern=[[-1, n]], offset=0, channel_multiplier=1)
    tensor_scalar(dst=out, data=diff, op0="equal", operand0=0.0)
    return out


def random_seed(seed: NkiTensor) -> None:
    """Seed the generator `nl.rand` draws from with the 32-bit value in a [1, 1] SBUF/PSUM tensor
    (nisa.set_rng_seed)."""
    set_rng_seed(src_seeds=seed)


RAND_BITS = 16  # NeuronCore-v2/v3 rand: 16 random bits per element (uint16 rng) scaled by 2^-16


def rand(shape, dtype, buffer="sbuf", name: str = "") -> NkiTensor:
    """A new tensor of uniform values in [0, 1). On NeuronCore-v4: VectorE rand2(0, 1); before it (no rand2):
    VectorE rng into uint16, times 2^-16 (values k / 65536) — the lowering the docs suggest for rng. An HBM buffer
    gets the tile through one DMA. Deterministic given the seed, not bit-matching hardware (see isa/rng.py)."""
    region = _buffer_name(getattr(buffer, "value", buffer) or "sbuf")
    tile_buffer = region if region in ("sbuf", "psum") else "sbuf"
    out_dtype = dtypes.to_dtype(dtype)
    tile = allocate(shape, out_dtype, tile_buffer, name, op="rand")
    if context.current().target.gen >= 4:
        rand2(dst=tile, min=0.0, max=1.0)
    else:
        bits = allocate(shape, dtypes.DTYPES["uint16"], tile_buffer, op="rand")
        rng(dst=bits)
        tensor_scalar(dst=tile, data=bits, op0="multiply", operand0=2.0 ** -RAND_BITS)
    if tile_buffer == region:
        return tile
    out = allocate(shape, out_dtype, region, name, op="rand")
    dma_copy(dst=out, src=tile)
    return out


def expand_dims(x: NkiTensor, axis: int) -> NkiTensor:
    """A view of x with a size-1 axis inserted at `axis` (NkiTensor.expand_dim; not the partition axis on-chip)."""
    return x.expand_dim(axis % (x.ndim + 1))


def broadcast_to(x: NkiTensor, shape, dtype=None) -> NkiTensor:
    """A new tile of `shape` (same rank; each dim equal or broadcast from 1) holding x broadcast NumPy-style; x
    itself when nothing changes. Free dims: one VectorE tensor_copy of a stride-0 view. The partition dim (1 -> P):
    SBUF-to-SBUF DMA copies doubling the filled rows (log2 P of them), legal on every generation and bit-exact
    (lowering chosen by the emulator)."""
    shape = tuple(int(s) for s in shape)
    if len(shape) != x.ndim or any(a != b and a != 1 for a, b in zip(x.shape, shape)):
        raise NkiValidationError("broadcast_to", "shape", f"rank {x.ndim}, each dim == x's or broadcast from 1",
                                 f"{list(x.shape)} -> {list(shape)}")
    out_dtype = result_dtype(dtype, x)
    if shape == x.shape and out_dtype == x.dtype:
        return x
    view = x
    for d in range(1, x.ndim):
        if x.shape[d] != shape[d]:
            view = view.broadcast(d, shape[d])
    out = allocate(shape, out_dtype, "sbuf", op="broadcast_to")
    rows = x.shape[0]
    tensor_copy(dst=out[0:rows], src=view)
    while rows < shape[0]:
        n = min(rows, shape[0] - rows)
        dma_copy(dst=out[rows:rows + n], src=out[0:n])
        rows += n
    return out


def load_transpose2d(src: NkiTensor, dtype=None) -> NkiTensor:
    """A new SBUF tile [B, A] = src[A, B].T from a 2-D HBM tensor (B <= 128): one dma_copy through the transposed
    (element-strided) HBM view — legal on every generation, unlike dma_transpose (v3+, 2-byte dtypes; lowering
    chosen by the emulator). A dtype change converts through fp32 in the DMA."""
    if src.on_chip or src.ndim != 2:
        raise NkiValidationError("load_transpose2d", "src", "a 2-D HBM tensor", f"{list(src.shape)} in {src.buffer}")
    out = allocate((src.shape[1], src.shape[0]), result_dtype(dtype, src), "sbuf", op="load_transpose2d")
    dma_copy(dst=out, src=src.permute((1, 0)))
    return out


def gather_flattened(data: NkiTensor, indices: NkiTensor, axis=0, dtype=None) -> NkiTensor:
    """out[p, j] = data[p, flat index indices[p, j]] per partition (free dims of data flattened): GpSimd
    nc_n_gather, with integer indices first copied to uint32 when they are another dtype. `axis` must be 0 (the
    only value the docs show; any other raises)."""
    if axis != 0:
        raise NkiValidationError("gather_flattened", "axis", "0", axis)
    idx = indices
    if indices.dtype != dtypes.DTYPES["uint32"]:
        idx = allocate(indices.shape, dtypes.DTYPES["uint32"], "sbuf", op="gather_flattened")
        tensor_copy(dst=idx, src=indices)
    out = allocate(indices.shape, data.dtype, "sbuf", op="gather_flattened")
    nc_n_gather(dst=out, data=data, indices=idx)
    if dtype is None or dtypes.to_dtype(dtype) == data.dtype:
        return out
    cast = allocate(indices.shape, dtypes.to_dtype(dtype), "sbuf", op="gather_flattened")
    tensor_copy(dst=cast, src=out)
    return cast


def while_loop(init: VirtualRegister, body_fun) -> None:
    """Runtime while loop: r = init; while r != 0: r = body_fun(r) (checked before each iteration). body_fun gets
    the condition register by value and returns the next condition register."""
    if not isinstance(init, VirtualRegister):
        raise TypeError(f"init: {init!r} is not a VirtualRegister (nisa.register_alloc())")
    reg = init
    while True:
        if reg.value is None:
            raise NkiTraceError("while_loop condition register holds a value unknown in trace mode; run in "
                                "mode='full'")
        if reg.value == 0:
            return
        reg = body_fun(VirtualRegister(reg.value))
        if not isinstance(reg, VirtualRegister):
            raise TypeError(f"body_fun: must return the next condition VirtualRegister, got {reg!r}")


__all__ = ["DType", "MemoryRegion", "broadcast_to", "expand_dims", "gather_flattened", "is_hbm", "is_on_chip",
           "is_psum", "is_sbuf", "load_transpose2d", "rand", "random_seed", "shared_constant",
           "shared_identity_matrix", "while_loop"]
