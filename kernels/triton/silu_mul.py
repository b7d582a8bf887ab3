"""SwiGLU's gate on the GPU: out = silu(a) * b for gate_up = [a | b] along the last axis.

One program computes BLOCK_I columns of BLOCK_M rows: loads a and b, silu(a) = a / (1 + exp(-a)) and the product
in fp32, one rounding into the input dtype. Any strides; the output is a new contiguous tensor.
Reference: nkilab.reference.activation.silu_mul
"""

import torch
import triton
import triton.language as tl

from ._launch import block, to_kernel_device
from ._support import dtype_reason


@triton.jit
def _silu_mul_kernel(
    # Pointers
    x_ptr, out_ptr,
    # Sizes
    n_rows, inter,
    # Strides, in elements: gate_up [N, 2I], out [N, I]
    stride_xm, stride_xi, stride_om, stride_oi,
    # Meta-parameters
    BLOCK_M: tl.constexpr, BLOCK_I: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.program_id(1) * BLOCK_I + tl.arange(0, BLOCK_I)
    mask = (rows < n_rows)[:, None] & (cols < inter)[None, :]
    a_ptr = x_ptr + rows[:, None].to(tl.int64) * stride_xm + cols[None, :] * stride_xi
    a = tl.load(a_ptr, mask=mask, other=0.0).to(tl.float32)
    b = tl.load(a_ptr + inter * stride_xi, mask=mask, other=0.0).to(tl.float32)
    out = a / (1.0 + tl.exp(-a)) * b
    tl.store(out_ptr + rows[:, None].to(tl.int64) * stride_om + cols[None, :] * stride_oi,
             out.to(out_ptr.dtype.element_ty), mask=mask)


def silu_mul(gate_up: torch.Tensor) -> torch.Tensor:
    """silu(a) * b of the rows of gate_up on the GPU (or the Triton interpreter).

    Dimensions:  N rows; I intermediate.
    Args:        gate_up: [N, 2I] float16|bfloat16|float32 torch tensor, any strides.
    Returns:     out [N, I], gate_up's dtype, on the kernel device.
    Tiling:      grid (ceil(N / BLOCK_M), ceil(I / BLOCK_I)).
    """
    (gate_up,) = to_kernel_device(gate_up)
    n_rows, width = gate_up.shape
    inter = width // 2
    out = torch.empty((n_rows, inter), dtype=gate_up.dtype, device=gate_up.device)
    if n_rows and inter:
        block_m = block(4, 16)
        block_i = min(triton.next_power_of_2(inter), block(1024, 1024))
        _silu_mul_kernel[(triton.cdiv(n_rows, block_m), triton.cdiv(inter, block_i))](
            gate_up, out, n_rows, inter, *gate_up.stride(), *out.stride(), BLOCK_M=block_m, BLOCK_I=block_i,
        )
    return out


def unsupported(**problem) -> str | None:
    """Why the kernel cannot run `problem` here (keys: dtype, intermediate, empty): every size runs; the compute
    dtype is limited (`_support`)."""
    return dtype_reason(problem["dtype"])
