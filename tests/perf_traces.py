"""Hand-made traces for the performance-model tests: one helper per instruction kind, footprints explicit."""

import itertools

from nkilab.harness.emulator.trace import Access, Operand, Trace
from nkilab.reference.dtypes import itemsize

_storage_ids = itertools.count(1)


def new_storage() -> int:
    """A fresh allocation id."""
    return next(_storage_ids)


def tile(storage: int, buffer: str, shape: tuple[int, int], dtype: str, *, is_write: bool, name: str,
         p_start: int = 0, start: int = 0) -> Operand:
    """An on-chip [P, F] operand at partitions [p_start, p_start+P), free elements [start, start+F)."""
    p, f = shape
    access = Access(storage, buffer, p_start, p_start + p, start, start + f, p * f * itemsize(dtype))
    return Operand(name, shape, dtype, buffer, access, is_write)


def hbm(storage: int, shape: tuple[int, ...], dtype: str, *, is_write: bool, name: str, offset: int = 0) -> Operand:
    """An HBM operand covering flat elements [offset, offset + prod(shape))."""
    n = 1
    for s in shape:
        n *= s
    access = Access(storage, "hbm", 0, 1, offset, offset + n, n * itemsize(dtype))
    return Operand(name, shape, dtype, "hbm", access, is_write)


def dma(trace: Trace, dst: Operand, src: Operand, *, chunks: int, program_id: int = 0, dge_mode: str = "unknown",
        opcode: str = "dma_copy", indirect: bool = False):
    """A DMA instruction moving src -> dst in `chunks` contiguous runs (descriptors as `dge_mode` asks)."""
    nbytes = dst.access.nbytes
    dge = {"unknown": "swdge" if indirect else "none"}.get(dge_mode, dge_mode)
    return trace.append("dma", opcode, [dst, src], program_id=program_id,
                        attrs={"bytes": nbytes, "chunks": chunks, "chunk_bytes": nbytes / chunks,
                               "indirect": indirect, "dge": dge, "queue": 0, "dge_mode": dge_mode})


def matmul(trace: Trace, dst: Operand, stationary: Operand, moving: Operand, *, program_id: int = 0):
    """nc_matmul: stationary [K, M], moving [K, N] -> dst [M, N] fp32 PSUM."""
    k, m = stationary.shape
    _, n = moving.shape
    return trace.append("tensor", "nc_matmul", [dst, stationary, moving], flops=2 * k * m * n,
                        program_id=program_id,
                        attrs={"k": k, "m": m, "n": n, "in_dtype": stationary.dtype, "transpose": False})


def elementwise(trace: Trace, engine: str, dst: Operand, *srcs: Operand, opcode: str = "tensor_tensor",
                program_id: int = 0):
    """A Vector/Scalar/GpSimd op writing dst from srcs, one FLOP per output element."""
    p, f = dst.shape
    return trace.append(engine, opcode, [dst, *srcs], flops=p * f, program_id=program_id,
                        attrs={"partitions": p, "free_elems": f})


def load_stream(count: int, rows: int, row_bytes: int, *, dge_mode: str = "unknown", target: str = "trn2",
                dst_buffer: str = "sbuf", src_on_chip: bool = False) -> Trace:
    """`count` independent loads of [rows, row_bytes/4] fp32 into fresh tiles, each row one contiguous run."""
    trace = Trace("loads", target)
    src = new_storage()
    f = row_bytes // 4
    for i in range(count):
        source = (tile(src, "sbuf", (rows, f), "float32", is_write=False, name="src") if src_on_chip else
                  hbm(src, (rows, f), "float32", is_write=False, name="src", offset=i * rows * f))
        dma(trace, tile(new_storage(), dst_buffer, (rows, f), "float32", is_write=True, name="dst"), source,
            chunks=rows, dge_mode=dge_mode)
    return trace
