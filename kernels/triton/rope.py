"""Rotary position embedding of q and k: each head's first r dims rotated by its token's angles, on the GPU.

One program rotates BLOCK_T tokens x BLOCK_H heads: it loads the tokens' positions, forms the r/2 angles
position * inv_freq and their cos/sin in float64 once (inv_freq from the host, `nkilab.reference.rotary.inv_freq`,
Llama-3.1 scaling included; the GPU's cos/sin reduce any argument), rounds cos/sin to fp32 and applies them to each
of its heads: (x1 cos - x2 sin, x2 cos + x1 sin) for every plane — pairs (x[i], x[i + r/2]) (neox) or
(x[2i], x[2i + 1]) (gptj) — and copies dims r..D. The angles are float64 because an fp32 angle (HF's and vLLM's
cache) is off by up to half an fp32 ulp of p * inv_freq, ~4e-3 rad at position 131072; float64 keeps cos/sin at
fp32 accuracy at any position, as the NKI kernel's host table does, for BLOCK_H heads' worth of work per
evaluation. Products and sums in fp32, one rounding into x's dtype; outputs are new tensors.
Reference: nkilab.reference.rotary.rope
"""

import torch
import triton
import triton.language as tl

from nkilab.reference import rotary

from ._interpret import INTERPRET
from ._launch import block, to_kernel_device
from ._support import dtype_reason


@triton.jit
def _rope_kernel(
    # Pointers: x, out [T, H, D]; positions [T]; inv_freq [r / 2] float64
    x_ptr, out_ptr, pos_ptr, freq_ptr,
    # Sizes
    n_tok, n_heads, head_dim,
    # Strides, in elements
    stride_xt, stride_xh, stride_xd, stride_ot, stride_oh, stride_od,
    # Meta-parameters: HALF = r / 2 planes (padded to HALF_PAD), PASS_PAD >= D - r pass-through dims (0 = none)
    HALF: tl.constexpr, HALF_PAD: tl.constexpr, PASS_PAD: tl.constexpr, INTERLEAVED: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_H: tl.constexpr,
):
    toks = tl.program_id(0).to(tl.int64) * BLOCK_T + tl.arange(0, BLOCK_T)
    tok_ok = toks < n_tok
    planes = tl.arange(0, HALF_PAD)
    plane_ok = planes < HALF
    pos = tl.load(pos_ptr + toks, mask=tok_ok, other=0).to(tl.float64)
    angle = pos[:, None] * tl.load(freq_ptr + planes, mask=plane_ok, other=0.0)[None, :]
    cos, sin = tl.cos(angle).to(tl.float32), tl.sin(angle).to(tl.float32)
    if INTERLEAVED:
        first, second = 2 * planes, 2 * planes + 1
    else:
        first, second = planes, planes + HALF
    dims = 2 * HALF + tl.arange(0, PASS_PAD if PASS_PAD > 0 else 1)
    ty = out_ptr.dtype.element_ty
    for hh in tl.static_range(BLOCK_H):
        head = tl.program_id(1) * BLOCK_H + hh
        # the head test is broadcast to a block first: the interpreter mis-types `block_bool & scalar_bool`
        row_ok = tok_ok & ((tl.zeros([BLOCK_T], tl.int32) + head) < n_heads)
        mask = row_ok[:, None] & plane_ok[None, :]
        x_row = (x_ptr + toks * stride_xt + head * stride_xh)[:, None]
        o_row = (out_ptr + toks * stride_ot + head * stride_oh)[:, None]
        x1 = tl.load(x_row + first[None, :] * stride_xd, mask=mask, other=0.0).to(tl.float32)
        x2 = tl.load(x_row + second[None, :] * stride_xd, mask=mask, other=0.0).to(tl.float32)
        tl.store(o_row + first[None, :] * stride_od, (x1 * cos - x2 * sin).to(ty), mask=mask)
        tl.store(o_row + second[None, :] * stride_od, (x2 * cos + x1 * sin).to(ty), mask=mask)
        if PASS_PAD > 0:
            keep = row_ok[:, None] & (dims < head_dim)[None, :]
            tl.store(o_row + dims[None, :] * stride_od, tl.load(x_row + dims[None, :] * stride_xd, mask=keep),
                     mask=keep)


def rope(q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor, *, theta: float, rotary_dim: int, style: str,
         scaling=None):
    """(q', k') on the GPU (or the Triton interpreter).

    Dimensions:  T tokens; Hq, Hkv heads of D; r = rotary_dim.
    Args:        q: [T, Hq, D], k: [T, Hkv, D] float16|bfloat16|float32 torch tensors, any strides;
                 positions: [T] integer, in [0, 2**24); theta, rotary_dim, style ("neox" | "gptj"), scaling: as
                 `nkilab.kernels.rope` (validated).
    Returns:     (q', k'): new contiguous tensors of q's and k's shapes and dtype, on the kernel device.
    Tiling:      per tensor, grid (ceil(T / BLOCK_T), ceil(H / BLOCK_H)); cos/sin once per program.
    """
    q, k, positions = to_kernel_device(q, k, positions)
    positions = positions.to(torch.int32)
    freq = torch.from_numpy(rotary.inv_freq(rotary_dim, theta, scaling)).to(q.device)  # float64
    d = q.shape[2]
    half = rotary_dim // 2
    outs = []
    for x in (q, k):
        out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
        t, heads = x.shape[0], x.shape[1]
        if t and heads:
            block_t = block(16, 128, t)
            block_h = min(heads, 32 if INTERPRET else 4)
            _rope_kernel[(triton.cdiv(t, block_t), triton.cdiv(heads, block_h))](
                x, out, positions, freq, t, heads, d, *x.stride(), *out.stride(),
                HALF=half, HALF_PAD=triton.next_power_of_2(half),
                PASS_PAD=triton.next_power_of_2(d - rotary_dim) if d > rotary_dim else 0,
                INTERLEAVED=style == "gptj", BLOCK_T=block_t, BLOCK_H=block_h,
            )
        outs.append(out)
    return outs[0], outs[1]


def unsupported(**problem) -> str | None:
    """Why the kernel cannot run `problem` here (keys: dtype, q_heads, kv_heads, head_dim, rotary_dim, style,
    empty): every shape runs; the compute dtype is limited (`_support`)."""
    return dtype_reason(problem["dtype"])

