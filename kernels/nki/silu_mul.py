"""SwiGLU's gate: out = silu(a) * b for gate_up = [a | b] along the last axis (vLLM's SiluAndMul layout).

    out[n, j] = silu(gate_up[n, j]) * gate_up[n, I + j],  silu(a) = a * sigmoid(a),  j < I

Algorithm: partition rows are pieces of tokens. Each token's I columns are cut into C equal pieces of F = I / C
(`layout`: prefill tokens already fill the 128 partitions and are cut only to bound a partition's SBUF, a decode
step of 1-32 tokens is cut into enough pieces to fill them: the intermediate dim on partitions). A tile holds the
pieces of whole tokens: rows (token, piece), F columns each, every row one contiguous HBM run of a and one of b.
Per tile (the next tile's loads are issued before this tile's work):
  1. DMA a and b rows ([tokens, C, F] access patterns over gate_up's rows);
  2. ScalarE: s = silu(a) in fp32 (`activation`, the hardware's silu);
  3. VectorE: a = s * b, fp32 math, one rounding into the input dtype;
  4. DMA the rows out ([tokens, C, F] over out's rows).
Only NeuronCore-v2 instructions, so the same program runs on inf2, trn1, trn2 and trn3. Tokens never mix: a
non-finite value reaches only its own output column of its own token.

Numerics: silu and the product in fp32 whatever the input dtype (bf16/fp16/fp32); out is rounded once.
Reference: nkilab.reference.activation.silu_mul.
"""

from ._shim import nisa, nki, nl
from ._split import pieces_per_row
from ._tiling import PMAX, tiles

MAX_PIECE = 4096  # columns of one partition row: a, b (input dtype) and s (fp32) of two tiles fit any SBUF
MIN_PIECE = 128  # columns below which a piece's DMA run (< 256 bytes) costs as much as a longer one
MIN_TILES = 2  # tiles a problem is cut into when it can be: the next tile's loads overlap this tile's work


def layout(tokens, inter):
    """(pieces C per token, columns F per piece), C * F = inter."""
    pieces = pieces_per_row(tokens, inter, MAX_PIECE, MIN_PIECE, MIN_TILES)
    return pieces, inter // pieces


def sbuf_bytes(inter, itemsize):
    """SBUF bytes per partition the kernel holds at most for intermediate size `inter`: a, b and s of two tiles at
    the widest pieces (many tokens)."""
    return 2 * layout(PMAX, inter)[1] * (2 * itemsize + 4)


@nki.jit
def silu_mul_kernel(gate_up):
    """silu(a) * b of every row of gate_up = [a | b].

    Dimensions:  N rows (tokens); I intermediate.
    Args:        gate_up: [N, 2I] bfloat16|float16|float32, HBM.
    Returns:     out: [N, I] gate_up's dtype, shared HBM.
    Tiling:      rows of F columns (`layout`), whole tokens per tile of <= PMAX rows; with LNC 2 the two cores take
                 alternate tiles. SBUF per partition: `sbuf_bytes`.
    Numerics:    fp32 silu and product; one rounding into gate_up's dtype.
    """
    n_tok, width = gate_up.shape
    inter = width // 2
    out = nl.ndarray((n_tok, inter), dtype=gate_up.dtype, buffer=nl.shared_hbm)
    pieces, cols = layout(n_tok, inter)
    # LNC: each program instance takes every num_programs-th token tile (identical control flow on both cores)
    token_tiles = tiles(n_tok, PMAX // pieces)[nl.program_id(0)::nl.num_programs(0)]
    if not token_tiles:
        return out
    loaded = [_load(gate_up, token_tiles[0], pieces, cols)]
    for t, (t0, nt) in enumerate(token_tiles):
        if t + 1 < len(token_tiles):  # the next tile's loads go first, ahead of this tile's store in the DMA queues
            loaded.append(_load(gate_up, token_tiles[t + 1], pieces, cols))
        a, b = loaded.pop(0)
        s = nl.ndarray(a.shape, dtype=nl.float32, buffer=nl.sbuf)
        nisa.activation(dst=s, op=nl.silu, data=a)
        nisa.tensor_tensor(dst=a, data1=s, data2=b, op=nl.multiply, engine=nisa.engine.vector)
        nisa.dma_copy(dst=out.ap([[inter, nt], [cols, pieces], [1, cols]], offset=t0 * inter), src=a)
    return out


def _load(gate_up, token_tile, pieces, cols):
    """(a rows, b rows): SBUF [nt * C, F] tiles of the tokens t0..t0+nt, row (token, piece)."""
    t0, nt = token_tile
    width = gate_up.shape[1]
    halves = []
    for half in (0, width // 2):
        rows = nl.ndarray((nt * pieces, cols), dtype=gate_up.dtype, buffer=nl.sbuf)
        nisa.dma_copy(dst=rows, src=gate_up.ap([[width, nt], [cols, pieces], [1, cols]], offset=t0 * width + half))
        halves.append(rows)
    return halves[0], halves[1]
