"""Bit-exact TensorE transposes on every NeuronCore generation, for the transposes that would otherwise mix rows.

A NeuronCore-v2 TensorE transposes by a matmul with the identity, out[f, p] = Σ_k data[k, f] · I[k, p], so one
NaN/±inf at data[k, f] turns every out[f, p], p != k, into NaN (inf · 0): a NaN in one token of x would reach
every token of the tile (issue 10). v3+ TensorE transposes in a bit-accurate mode. On v2 the kernel transposes
the *bytes* instead: each byte of a tile becomes a bf16 value 0..255 (finite and exact), the identity matmul moves
finite values exactly, and one copy back to uint8 reassembles the original bit patterns, NaN and inf included,
each on the element it belongs to. Cost: `width` one-pass transposes per tile (a 4-pass fp32 transpose costs the
same TensorE time as the 4 byte planes of it), one conversion of the source to byte values (reused by every
transpose of that source) and the PSUM -> SBUF copy the plain transpose needs anyway. See DESIGN.md, "NaN
isolation on NeuronCore-v2".
"""

from .._shim import nisa, nl


def byte_values(t, width, dma=False):
    """The bytes of an SBUF tile t [P, ..., F] of a `width`-byte dtype as bf16 values 0..255: SBUF
    [P, ..., F * width] (byte b of element f at column f * width + b, little-endian). One VectorE copy, or (dma)
    one SBUF -> SBUF DMA that casts while it moves (for large tiles whose conversion would hold up VectorE)."""
    out = nl.ndarray(tuple(t.shape[:-1]) + (t.shape[-1] * width,), dtype=nl.bfloat16, buffer=nl.sbuf)
    if dma:
        nisa.dma_copy(dst=out, src=t.view(nl.uint8))
    else:
        nisa.tensor_copy(dst=out, src=t.view(nl.uint8))
    return out


def transpose_planes(ps, planes, p, cols, width):
    """ps[f, q, b] = byte b of the element at column cols[f] of row q (as a bf16 value): `width` TensorE transposes
    of rows 0..p of `planes` (`byte_values` [P, F0 * width]) into the PSUM view ps [f, p, width].
    cols: (c0, c1, cs), the element columns c0, c0+cs, .. < c1."""
    c0, c1, cs = cols
    last = c0 + (len(range(c0, c1, cs)) - 1) * cs
    for b in range(width):
        nisa.nc_transpose(dst=ps[:, :, b], data=planes[0:p, width * c0 + b:width * last + b + 1:width * cs])


def assemble(dst, ps, on_scalar=False):
    """dst (uint8 SBUF [f, p * width]) = the byte values in ps (PSUM [f, p, width] bf16): one copy, on VectorE
    or (on_scalar) ScalarE. The caller views dst as the element dtype."""
    if on_scalar:
        nisa.activation(dst=dst, op=nl.copy, data=ps.flatten_dims(1, 2))
    else:
        nisa.tensor_copy(dst=dst, src=ps.flatten_dims(1, 2))


def transpose_bytes(planes, p, cols, width, dtype, dst=None):
    """The bit-exact transpose [f, p] (as `dtype`, `width` bytes) of columns cols = (c0, c1, cs) of rows 0..p of
    the tile whose `byte_values` are `planes`: `transpose_planes` into one PSUM tile, then `assemble`.

    dst: a uint8 SBUF view [f, p * width] to write the bytes into, or None for a new tile. Returns dst's bytes
    viewed as `dtype` [f, p]."""
    f = len(range(*cols))
    ps = nl.ndarray((f, p, width), dtype=nl.bfloat16, buffer=nl.psum)
    transpose_planes(ps, planes, p, cols, width)
    if dst is None:
        dst = nl.ndarray((f, p * width), dtype=nl.uint8, buffer=nl.sbuf)
    assemble(dst, ps)
    return dst.view(dtype)
