"""RMSNorm over the last axis, optionally fused with the residual add: y = h / sqrt(mean(h²) + eps) · weight with
h = x (+ residual, rounded to x's dtype and stored).

One program per block of BLOCK_M rows walks the hidden axis twice in BLOCK_H chunks: first the fp32 sum of squares
(and the h store), then y = h · rstd · weight (h recomputed from x and the residual rather than re-read, so no
program reads what it just stored). Statistics and products in fp32; y rounded once into x's dtype.
Reference: nkilab.reference.norm.rms_norm
"""

import torch
import triton
import triton.language as tl

from ._interpret import INTERPRET
from ._launch import block, to_kernel_device
from ._support import dtype_reason


@triton.jit
def _rows_of_h(x_ptr, r_ptr, rows, cols, mask, stride_xm, stride_xh, stride_rm, stride_rh,
               HAS_RESIDUAL: tl.constexpr):
    """h for a [BLOCK_M, BLOCK_H] chunk: x, or x + residual rounded to x's dtype; returned in x's dtype."""
    h = tl.load(x_ptr + rows[:, None] * stride_xm + cols[None, :] * stride_xh, mask=mask, other=0.0)
    if HAS_RESIDUAL:
        r = tl.load(r_ptr + rows[:, None] * stride_rm + cols[None, :] * stride_rh, mask=mask, other=0.0)
        h = (h.to(tl.float32) + r.to(tl.float32)).to(x_ptr.dtype.element_ty)
    return h


@triton.jit
def _rms_norm_kernel(
    # Pointers
    x_ptr, w_ptr, r_ptr, y_ptr, h_ptr,
    # Sizes and eps
    n_rows, hidden, eps,
    # Strides, in elements: x, residual [N, H]; weight [H]; y, h [N, H]
    stride_xm, stride_xh, stride_rm, stride_rh, stride_w, stride_ym, stride_yh, stride_hm, stride_hh,
    # Meta-parameters
    HAS_RESIDUAL: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_H: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < n_rows
    sum_sq = tl.zeros([BLOCK_M], tl.float32)
    for h0 in range(0, hidden, BLOCK_H):
        cols = h0 + tl.arange(0, BLOCK_H)
        mask = row_ok[:, None] & (cols[None, :] < hidden)
        h = _rows_of_h(x_ptr, r_ptr, rows, cols, mask, stride_xm, stride_xh, stride_rm, stride_rh, HAS_RESIDUAL)
        if HAS_RESIDUAL:
            tl.store(h_ptr + rows[:, None] * stride_hm + cols[None, :] * stride_hh, h, mask=mask)
        hf = h.to(tl.float32)
        sum_sq += tl.sum(hf * hf, axis=1)
    rstd = 1.0 / tl.sqrt(sum_sq / hidden + eps)
    for h0 in range(0, hidden, BLOCK_H):
        cols = h0 + tl.arange(0, BLOCK_H)
        mask = row_ok[:, None] & (cols[None, :] < hidden)
        h = _rows_of_h(x_ptr, r_ptr, rows, cols, mask, stride_xm, stride_xh, stride_rm, stride_rh, HAS_RESIDUAL)
        w = tl.load(w_ptr + cols * stride_w, mask=cols < hidden, other=0.0).to(tl.float32)
        y = h.to(tl.float32) * rstd[:, None] * w[None, :]
        tl.store(y_ptr + rows[:, None] * stride_ym + cols[None, :] * stride_yh, y.to(y_ptr.dtype.element_ty),
                 mask=mask)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, *, eps: float, residual: torch.Tensor | None = None):
    """RMSNorm of the rows of x on the GPU (or the Triton interpreter).

    Dimensions:  N rows; H hidden.
    Args:        x: [N, H] float16|bfloat16|float32 torch tensor, any strides; weight: [H], x's dtype;
                 eps: > 0; residual: None or [N, H] like x.
    Returns:     y [N, H] (x's dtype, on the kernel device); with a residual, (y, h) with h = x + residual.
    Tiling:      grid ceil(N / BLOCK_M); each program walks H in BLOCK_H chunks twice.
    """
    x, weight = to_kernel_device(x, weight)
    n_rows, hidden = x.shape
    y = torch.empty((n_rows, hidden), dtype=x.dtype, device=x.device)
    h = torch.empty_like(y) if residual is not None else y  # h_ptr is never written without a residual
    r = to_kernel_device(residual)[0] if residual is not None else x  # r_ptr is never read without a residual
    if n_rows and hidden:
        block_m = block(4, 32)
        block_h = min(triton.next_power_of_2(hidden), 1024 if INTERPRET else 2048)
        _rms_norm_kernel[(triton.cdiv(n_rows, block_m),)](
            x, weight, r, y, h, n_rows, hidden, float(eps),
            *x.stride(), *r.stride(), weight.stride(0), *y.stride(), *h.stride(),
            HAS_RESIDUAL=residual is not None, BLOCK_M=block_m, BLOCK_H=block_h,
        )
    return y if residual is None else (y, h)


def unsupported(**problem) -> str | None:
    """Why the kernel cannot run `problem` here (keys: dtype, hidden, residual, empty): every size runs; the
    compute dtype is limited (`_support`)."""
    return dtype_reason(problem["dtype"])
