"""Rotary position embedding of q and k: each head's first r dims rotated by its token's angles, on the GPU.

One program rotates BLOCK_R (token, head) rows: it loads each row's token position, forms the r/2 angles
position * inv_freq in fp32 (inv_freq from the host, `nkilab.reference.rotary.inv_freq`, Llama-3.1 scaling
included), takes cos/sin on chip (the GPU's sin/cos reduce any fp32 argument, so no table is read), and writes
(x1 cos - x2 sin, x2 cos + x1 sin) for every plane — pairs (x[i], x[i + r/2]) (neox) or (x[2i], x[2i + 1]) (gptj) —
and copies dims r..D. fp32 math, one rounding into x's dtype; outputs are new tensors. The angle is the fp32 product
HF and vLLM form, so its error grows with the position like theirs (the reference's naive fp32 run).
Reference: nkilab.reference.rotary.rope
"""

import torch
import triton
import triton.language as tl

from nkilab.reference import rotary

from ._launch import block, to_kernel_device
from ._support import dtype_reason


@triton.jit
def _rope_kernel(
    # Pointers
    x_ptr, out_ptr, pos_ptr, freq_ptr,
    # Sizes: rows = T * H (token, head) pairs
    n_rows, n_heads, head_dim,
    # Strides, in elements: x [T, H, D], out [T, H, D]
    stride_xt, stride_xh, stride_xd, stride_ot, stride_oh, stride_od,
    # Meta-parameters: HALF = r / 2 planes (padded to HALF_PAD), PASS_PAD >= D - r pass-through dims (0 = none)
    HALF: tl.constexpr, HALF_PAD: tl.constexpr, PASS_PAD: tl.constexpr, INTERLEAVED: tl.constexpr,
    BLOCK_R: tl.constexpr,
):
    rows = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    row_ok = rows < n_rows
    tok, head = rows // n_heads, rows % n_heads
    planes = tl.arange(0, HALF_PAD)
    plane_ok = planes < HALF
    pos = tl.load(pos_ptr + tok, mask=row_ok, other=0).to(tl.float32)
    angle = pos[:, None] * tl.load(freq_ptr + planes, mask=plane_ok, other=0.0)[None, :]
    cos, sin = tl.cos(angle), tl.sin(angle)
    if INTERLEAVED:
        first, second = 2 * planes, 2 * planes + 1
    else:
        first, second = planes, planes + HALF
    mask = row_ok[:, None] & plane_ok[None, :]
    x_row = (x_ptr + tok * stride_xt + head * stride_xh)[:, None]
    o_row = (out_ptr + tok * stride_ot + head * stride_oh)[:, None]
    x1 = tl.load(x_row + first[None, :] * stride_xd, mask=mask, other=0.0).to(tl.float32)
    x2 = tl.load(x_row + second[None, :] * stride_xd, mask=mask, other=0.0).to(tl.float32)
    ty = out_ptr.dtype.element_ty
    tl.store(o_row + first[None, :] * stride_od, (x1 * cos - x2 * sin).to(ty), mask=mask)
    tl.store(o_row + second[None, :] * stride_od, (x2 * cos + x1 * sin).to(ty), mask=mask)
    if PASS_PAD > 0:
        dims = 2 * HALF + tl.arange(0, PASS_PAD)
        keep = row_ok[:, None] & (dims < head_dim)[None, :]
        tl.store(o_row + dims[None, :] * stride_od, tl.load(x_row + dims[None, :] * stride_xd, mask=keep), mask=keep)


def rope(q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor, *, theta: float, rotary_dim: int, style: str,
         scaling=None):
    """(q', k') on the GPU (or the Triton interpreter).

    Dimensions:  T tokens; Hq, Hkv heads of D; r = rotary_dim.
    Args:        q: [T, Hq, D], k: [T, Hkv, D] float16|bfloat16|float32 torch tensors, any strides;
                 positions: [T] integer, in [0, 2**24); theta, rotary_dim, style ("neox" | "gptj"), scaling: as
                 `nkilab.kernels.rope` (validated).
    Returns:     (q', k'): new contiguous tensors of q's and k's shapes and dtype, on the kernel device.
    Tiling:      per tensor, grid ceil(T * H / BLOCK_R); each program rotates BLOCK_R (token, head) rows.
    """
    q, k, positions = to_kernel_device(q, k, positions)
    positions = positions.to(torch.int32)
    freq = torch.from_numpy(rotary.inv_freq(rotary_dim, theta, scaling)).to(q.device, torch.float32)
    d = q.shape[2]
    half = rotary_dim // 2
    outs = []
    for x in (q, k):
        out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
        n_rows = x.shape[0] * x.shape[1]
        if n_rows:
            block_r = block(16, 128, n_rows)
            _rope_kernel[(triton.cdiv(n_rows, block_r),)](
                x, out, positions, freq, n_rows, x.shape[1], d, *x.stride(), *out.stride(),
                HALF=half, HALF_PAD=triton.next_power_of_2(half),
                PASS_PAD=triton.next_power_of_2(d - rotary_dim) if d > rotary_dim else 0,
                INTERLEAVED=style == "gptj", BLOCK_R=block_r,
            )
        outs.append(out)
    return outs[0], outs[1]


def unsupported(**problem) -> str | None:
    """Why the kernel cannot run `problem` here (keys: dtype, q_heads, kv_heads, head_dim, rotary_dim, style,
    empty): every shape runs; the compute dtype is limited (`_support`)."""
    return dtype_reason(problem["dtype"])

