"""Quantized KV caches in paged attention: per-row scale tiles (fp8) and int8 tile dequantization.

The formats are `nkilab.reference.kv_quant`'s; the kernel's compile-time `quant` (launch_paged.kernel_quant) is

    None                        "auto": the caches hold q's dtype
    ("fp8", k_scales, v_scales)  fp8 caches; tuples of Hkv float32 scales (per tensor: Hkv equal values)
    ("int8",)                   int8 caches with float32 scale caches [num_blocks, block_size, Hkv]

fp8: TensorE multiplies fp8 K / V tiles with bf16 / fp16 q and p directly (mixed-dtype matmuls). A per-tensor k
scale is folded into the score scale (one float: `PagedCall.scale`); per-head k scales multiply the fp32 score tile
by a [rows, 1] tile (rows of kv head h get k_scale[h]) as it leaves PSUM; v scales multiply 1 / run_sum per row
at the store (free). No dequantized copy of K or V exists anywhere.
int8: TensorE takes no int8, so every gathered int8 chunk is converted to q's dtype on chip anyway; the
per-(token, head) scales, gathered with the same slot indices, are folded into that conversion (one per-partition
multiply per kv head, the scale of a key being constant along its row). The converted chunk lives only in SBUF
for one score tile.
"""

from .._shim import nisa, nl


def per_head_k(quant):
    """True where the kernel's `quant` holds fp8 k scales that differ between kv heads: they scale the score rows
    (`row_scales`); equal ones fold into the score scale."""
    return quant is not None and quant[0] == "fp8" and len(set(quant[1])) > 1


def row_scales(scales, grp, head_rows):
    """fp8: [rows, 1] float32 SBUF tile of a group, rows of its i-th kv head (head_rows each) = scales[grp[i]]:
    a memset, then one GpSimd affine_select per further head (partition p >= i · head_rows takes the head's value;
    engine operands start at partition 0, so no per-head partition slices)."""
    rows = len(grp) * head_rows
    tile = nl.ndarray((rows, 1), nl.float32, buffer=nl.sbuf)
    nisa.memset(dst=tile, value=scales[grp[0]])
    for i in range(1, len(grp)):
        nisa.affine_select(dst=tile, pattern=[[0, 1]], channel_multiplier=1, on_true_tile=tile,
                           on_false_value=scales[grp[i]], cmp_op=nl.less, offset=-i * head_rows)
    return tile


def dequantize_int8(codes, scales, hkv, d, dtype):
    """int8: codes [nc, Hkv · D] int8 and their scales [nc, Hkv] float32 (SBUF) -> code · scale [nc, Hkv · D] in
    `dtype` (SBUF), one per-partition multiply per kv head, alternating VectorE / ScalarE (activation copy with a
    per-partition scale)."""
    nc = codes.shape[0]
    out = nl.ndarray((nc, hkv * d), dtype, buffer=nl.sbuf)
    for h in range(hkv):
        cols = slice(h * d, (h + 1) * d)
        if h % 2 == 0:
            nisa.tensor_scalar(dst=out[:, cols], data=codes[:, cols], op0=nl.multiply, operand0=scales[:, h : h + 1])
        else:
            nisa.activation(dst=out[:, cols], op=nl.copy, data=codes[:, cols], scale=scales[:, h : h + 1])
    return out
