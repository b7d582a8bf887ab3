"""Weight tiles of both schedules: int8 / fp8 tiles loaded (and converted to bf16), int4 nibbles unpacked, and
scale rows replicated over partitions.

int4 data is packed two per byte along K (uint8 [K/2, N], low nibble = even k). The unpack runs on uint32 views:
with packed rows on partitions and N along the free dim, the 4 bytes of a word are 4 output channels of one packed
row, so `w32 & NIBBLE_MASK` is the even-k tile and `(w32 >> 4) & NIBBLE_MASK` the odd-k tile, each byte holding an
offset-binary nibble u = q + z_eff: asymmetric nibbles are stored that way (z_eff = 0), symmetric ones arrive in
the launcher's prepared copy, every byte xor 0x88 (z_eff = 8; `launch_qmatmul.kernel_inputs`). See DESIGN.md,
"int4 unpack".
"""

from .._shim import nisa, nl

INT4_SYM_OFFSET = 8  # symmetric int4: the kernel reads offset-binary nibbles u = q + 8 (0..15)
NIBBLE_MASK = 0x0F0F0F0F  # the low nibble of each byte of a uint32 word (4 packed bytes = 4 output channels)
FP8_NIBBLE = 2.0 ** 9  # a byte u in 0..15 read as float8_e4m3 is exactly u / FP8_NIBBLE (DESIGN.md, "Nibbles as fp8")


def load_weight_tile(w, step, nb0, nbw, geo, turn=None, split=False):
    """TensorE-ready weight tile [rows, nbw] of K step `step` (a KStep; int8, fp8 — int4 nibbles come from
    `load_nibbles`), in a one-element list: bf16 (int8, fp8e4m3fn), or the fp8 e4m3 tile as loaded.

    turn: None = the DMA casts int8 / fp8e4m3fn to bf16 while it moves them; an int = load the 1-byte values
    and convert them on engine turn % 3 (Vector, Scalar, GpSimd in rotation) — decode uses this, because a
    casting DMA writes 2 bytes per weight and its DMA queues, not HBM, would then bound the weight stream;
    split: convert in three column slices, one on each engine (`converted_split`)."""
    r0, rows = step.r0, step.rows
    src = w[r0:r0 + rows, nb0:nb0 + nbw]
    if geo.scheme == "fp8_e4m3" or turn is not None:
        raw = nl.ndarray((rows, nbw), dtype=w.dtype, buffer=nl.sbuf)
        nisa.dma_copy(dst=raw, src=src)
        if geo.scheme == "fp8_e4m3":
            return [raw]
        return [converted_split(raw) if split else converted(raw, turn)]
    wt = nl.ndarray((rows, nbw), dtype=nl.bfloat16, buffer=nl.sbuf)
    nisa.dma_copy(dst=wt, src=src)
    return [wt]


def converted(t, turn):
    """t as a new bf16 SBUF tile, converted on VectorE (turn % 3 == 0), ScalarE (1) or GpSimd (2)."""
    out = nl.ndarray(t.shape, dtype=nl.bfloat16, buffer=nl.sbuf)
    _convert(out, t, turn)
    return out


def converted_split(t):
    """t [P, F] as a new bf16 SBUF tile converted in three column slices, one each on VectorE, ScalarE and GpSimd,
    VectorE's the widest (it converts 1-byte values about 1.7x as fast as the other two): for a tile whose
    conversion is on the critical path (the last weight tiles of the decode stream)."""
    f = t.shape[-1]
    out = nl.ndarray(t.shape, dtype=nl.bfloat16, buffer=nl.sbuf)
    cut0 = -(-f * 2 // 5)
    cut1 = cut0 + (f - cut0) // 2
    for turn, (c0, c1) in enumerate(((0, cut0), (cut0, cut1), (cut1, f))):
        if c1 > c0:
            _convert(out[:, c0:c1], t[:, c0:c1], turn)
    return out


def _convert(dst, src, turn):
    """dst = src converted on VectorE (turn % 3 == 0), ScalarE (1) or GpSimd (2)."""
    if turn % 3 == 0:
        nisa.tensor_copy(dst=dst, src=src)
    elif turn % 3 == 1:
        nisa.activation(dst=dst, op=nl.copy, data=src)  # ScalarE: activation copy is valid on NeuronCore-v2 too
    else:
        nisa.tensor_copy(dst=dst, src=src, engine=nisa.engine.gpsimd)


def load_nibbles(src):
    """Packed offset-binary int4 HBM view [rows, ..., nbw] -> (low, high) nibbles u = q + z_eff, one per byte:
    uint8 SBUF tiles [rows, ..., nbw rounded up to 4] (pad columns are never read). Two VectorE instructions.

    The bit ops run on uint32 views, 4 packed bytes (4 channels of one row) per element, so VectorE handles
    nbw/4 elements per instruction; byte j of a word stays byte j (bytes never cross: masks keep each
    byte's own nibble, and the logical shift's carry-in from the next byte is masked off)."""
    nbw = src.shape[-1]
    shape = tuple(src.shape[:-1]) + (-(-nbw // 4) * 4,)
    packed = nl.ndarray(shape, dtype=nl.uint8, buffer=nl.sbuf)
    nisa.dma_copy(dst=packed[..., 0:nbw], src=src)
    words = packed.view(nl.uint32)
    lo = nl.ndarray(shape, dtype=nl.uint8, buffer=nl.sbuf)
    hi = nl.ndarray(shape, dtype=nl.uint8, buffer=nl.sbuf)
    lo_w, hi_w = lo.view(nl.uint32), hi.view(nl.uint32)
    nisa.tensor_scalar(dst=lo_w, data=words, op0=nl.bitwise_and, operand0=NIBBLE_MASK)
    nisa.tensor_scalar(dst=hi_w, data=words, op0=nl.right_shift, operand0=4, op1=nl.bitwise_and,
                       operand1=NIBBLE_MASK)
    return lo, hi


def replicated_row(t, g, nb0, nbw, dtype, rows):
    """Row g of a [groups, N] HBM tensor (columns nb0 .. nb0+nbw) on `rows` partitions: partition stride 0."""
    sb = nl.ndarray((rows, nbw), dtype=dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=sb, src=t.ap([[0, rows], [1, nbw]], offset=g * t.shape[1] + nb0))
    return sb
