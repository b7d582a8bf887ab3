"""Weight-only and W8A8 quantized matmul: y[M, N] = x[M, K] @ W[K, N], W = (q − z) · s dequantized in registers.

Schemes (formats in nkilab.reference.quant): int8 (per channel or per group of G rows along K); int4 symmetric
(−8..7) or asymmetric (0..15 with zero points), two per byte along K, unpacked in-kernel; fp8 e4m3fn (max 448) and
fp8 e4m3 (max 240) per channel or per group; W8A8: fp8 activations with per-token scales × fp8 per-channel weights.

Algorithm: a program owns a [BLOCK_M, BLOCK_N] output tile and walks K in BLOCK_K steps (tutorial 03 blocking):

    for each K step:  part = x_tile @ q_tile      (q − z exact in fp16/bf16/fp32; fp8 × fp8 on the tensor cores)
                      acc += part · s[group]      (per group: BLOCK_K divides G, so one scale row per step)
    y = acc · s (per channel) [· x_scale per token]

Each step's product starts from a fresh accumulator and is added into the fp32 `acc`: the group scale then costs one
multiply per output element per step (cheaper than scaling every weight), and on Hopper the fp8 MMA's reduced-
precision accumulator never spans more than BLOCK_K products.
W8A8 precision: Hopper's fp8 MMA keeps ~14 bits of each aligned product (DeepSeek-V3 report §3.5.2), below the
rounding of a bfloat16/float16 output but far above float32's; so the native fp8 MMA (FP8_MMA) serves 16-bit
outputs, and for a float32 output the fp8 operands are widened to fp16 (exactly) and accumulated in full fp32.
int4: the packed [BLOCK_K / 2, BLOCK_N] bytes are read once and split into low nibbles (even k) and high nibbles
(odd k); x is read as its even and odd columns, so the step is two dots with no interleave.
Decode (M <= 16, few output tiles): split-K over a second grid axis into an fp32 [SPLIT_K, M, N] buffer, summed
after the launch (deterministic, no atomics).
fp8 weights travel as uint8 and are bit-cast to float8e4nv in-kernel: e4m3 (max 240) and e4m3fn share every
encoding with |v| <= 240 (same bias 7), and the quantizer clamps e4m3 to 240, so one decode serves both.
Reference: nkilab.reference.matmul.qmatmul
"""

from dataclasses import dataclass

import numpy as np
import torch
import triton
import triton.language as tl

from nkilab.reference.quant import QuantizedActivation, QuantizedWeight

from ._interpret import INTERPRET
from ._launch import MIN_DOT, dot_precision, kernel_device, to_kernel_device
from ._support import FP8_CAPABILITY, capability_below, dtype_reason

# The WEIGHT constexpr: how the kernel decodes a weight tile (constexpr, as compiled kernels read only those).
WEIGHT_INT8, WEIGHT_INT4, WEIGHT_FP8 = tl.constexpr(0), tl.constexpr(1), tl.constexpr(2)
_WEIGHT_KIND = {"int8": WEIGHT_INT8.value, "int4": WEIGHT_INT4.value, "fp8_e4m3": WEIGHT_FP8.value,
                "fp8_e4m3fn": WEIGHT_FP8.value}
_COMPUTE = {torch.float16: tl.float16, torch.bfloat16: tl.bfloat16, torch.float32: tl.float32}
SMALL_M = 16  # decode: one BLOCK_M covers the batch, so split-K is what fills the GPU
GPU_MIN_GROUP = {"int4": 32, "int8": 16, "fp8_e4m3": 16, "fp8_e4m3fn": 16}  # BLOCK_K | G and tl.dot needs K >= 16


@triton.jit
def _qmatmul_kernel(
    # Pointers
    x_ptr, x_scale_ptr, w_ptr, w_scale_ptr, w_zero_ptr, out_ptr,
    # Sizes: K rows per scale row (K itself per channel), K range of one split
    m, n, k, group_size, k_per_split,
    # Strides, in elements (out: [SPLIT_K, M, N])
    stride_xm, stride_xk, stride_wk, stride_wn, stride_sg, stride_sn, stride_zg, stride_zn,
    stride_os, stride_om, stride_on,
    # Meta-parameters
    WEIGHT: tl.constexpr, SIGNED: tl.constexpr, HAS_ZEROS: tl.constexpr, PER_GROUP: tl.constexpr,
    X_FP8: tl.constexpr, FP8_MMA: tl.constexpr, COMPUTE: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    pid = tl.program_id(0)
    pid_k = tl.program_id(1)
    num_pid_m = tl.cdiv(m, BLOCK_M)
    # Neighbouring programs take neighbouring M tiles of one N tile, so a weight tile is read from HBM once.
    pid_m = pid % num_pid_m
    pid_n = pid // num_pid_m

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    m_ok = offs_m < m
    n_ok = offs_n < n
    x_rows = x_ptr + offs_m.to(tl.int64)[:, None] * stride_xm
    w_cols = w_ptr + offs_n.to(tl.int64)[None, :] * stride_wn

    k_start = pid_k * k_per_split
    k_end = tl.minimum(k, k_start + k_per_split)
    acc = tl.zeros([BLOCK_M, BLOCK_N], tl.float32)
    for k0 in range(k_start, k_end, BLOCK_K):
        if WEIGHT == WEIGHT_INT4:  # two nibbles per byte along K
            half = k0 // 2 + tl.arange(0, BLOCK_K // 2)
            half_ok = half < k_end // 2
            packed = tl.load(w_cols + half.to(tl.int64)[:, None] * stride_wk,
                             mask=half_ok[:, None] & n_ok[None, :], other=0).to(tl.int32)
            lo = packed & 0xF
            hi = (packed >> 4) & 0xF
            if SIGNED:
                lo = tl.where(lo >= 8, lo - 16, lo)
                hi = tl.where(hi >= 8, hi - 16, hi)
            if HAS_ZEROS:
                z = tl.load(w_zero_ptr + (k0 // group_size) * stride_zg + offs_n * stride_zn, mask=n_ok,
                            other=0).to(tl.int32)
                lo = lo - z[None, :]
                hi = hi - z[None, :]
            even = 2 * half
            x_even = tl.load(x_rows + even[None, :] * stride_xk, mask=m_ok[:, None] & half_ok[None, :], other=0.0)
            x_odd = tl.load(x_rows + (even + 1)[None, :] * stride_xk, mask=m_ok[:, None] & half_ok[None, :],
                            other=0.0)
            part = tl.dot(x_even.to(COMPUTE), lo.to(COMPUTE), input_precision=DOT_PRECISION)
            part = tl.dot(x_odd.to(COMPUTE), hi.to(COMPUTE), part, input_precision=DOT_PRECISION)
        else:
            offs_k = k0 + tl.arange(0, BLOCK_K)
            k_ok = offs_k < k_end
            xt = tl.load(x_rows + offs_k[None, :] * stride_xk, mask=m_ok[:, None] & k_ok[None, :], other=0)
            wt = tl.load(w_cols + offs_k.to(tl.int64)[:, None] * stride_wk, mask=k_ok[:, None] & n_ok[None, :],
                         other=0)
            if WEIGHT == WEIGHT_FP8:
                wt = wt.to(tl.float8e4nv, bitcast=True)
            if X_FP8 and FP8_MMA:
                part = tl.dot(xt.to(tl.float8e4nv, bitcast=True), wt)
            elif X_FP8:  # fp8 values are exact in fp16, whose MMA accumulates in full fp32
                part = tl.dot(xt.to(tl.float8e4nv, bitcast=True).to(tl.float16), wt.to(tl.float16))
            else:
                part = tl.dot(xt.to(COMPUTE), wt.to(COMPUTE), input_precision=DOT_PRECISION)
        if PER_GROUP:
            s = tl.load(w_scale_ptr + (k0 // group_size) * stride_sg + offs_n * stride_sn, mask=n_ok, other=0.0)
            part = part * s[None, :]
        acc += part

    if not PER_GROUP:
        s = tl.load(w_scale_ptr + offs_n * stride_sn, mask=n_ok, other=0.0)
        acc = acc * s[None, :]
    if X_FP8:
        xs = tl.load(x_scale_ptr + offs_m, mask=m_ok, other=0.0)
        acc = acc * xs[:, None]
    out_rows = out_ptr + pid_k.to(tl.int64) * stride_os + offs_m.to(tl.int64)[:, None] * stride_om
    tl.store(out_rows + offs_n[None, :] * stride_on, acc.to(out_ptr.dtype.element_ty),
             mask=m_ok[:, None] & n_ok[None, :])


@dataclass(frozen=True)
class PreparedWeight:
    """A QuantizedWeight's arrays as torch tensors on one device, ready for the kernel (convert once, call often).

    Args:
        data: int8 [K, N] | uint8 [K // 2, N] (int4 packed) | uint8 [K, N] (fp8 bits).
        scales: float32 [K // G, N] or [1, N].
        zeros: uint8 like scales (int4 asymmetric) or None.
        source: the QuantizedWeight these came from (scheme, group_size, shape, symmetric).
    """

    data: torch.Tensor
    scales: torch.Tensor
    zeros: torch.Tensor | None
    source: QuantizedWeight


def prepare_weight(qw: QuantizedWeight, device: torch.device | str | None = None) -> PreparedWeight:
    """Move `qw` to `device` (default: the kernel device) in the layout `qmatmul` reads; fp8 as raw bits."""
    device = kernel_device() if device is None else device
    data = np.ascontiguousarray(qw.data)
    if qw.scheme in ("fp8_e4m3", "fp8_e4m3fn"):
        data = data.view(np.uint8)
    zeros = None if qw.zeros is None else torch.from_numpy(np.ascontiguousarray(qw.zeros)).to(device)
    return PreparedWeight(torch.from_numpy(data).to(device),
                          torch.from_numpy(np.ascontiguousarray(qw.scales, dtype=np.float32)).to(device), zeros, qw)


@dataclass(frozen=True)
class PreparedActivation:
    """A QuantizedActivation on one device: fp8 bits uint8 [M, K] and per-token scales float32 [M]."""

    data: torch.Tensor
    scales: torch.Tensor


def prepare_activation(qa: QuantizedActivation, device: torch.device | str | None = None) -> PreparedActivation:
    """Move W8A8 activations to `device` (default: the kernel device), fp8 as raw bits."""
    device = kernel_device() if device is None else device
    bits = np.ascontiguousarray(np.asarray(qa.data)).view(np.uint8)
    scales = np.ascontiguousarray(np.asarray(qa.scales, dtype=np.float32)).reshape(-1)
    return PreparedActivation(torch.from_numpy(bits).to(device), torch.from_numpy(scales).to(device))


def _activation(x) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(x, per-token scales or None) as the kernel reads them, on the kernel device."""
    if isinstance(x, QuantizedActivation):
        x = prepare_activation(x)
    if isinstance(x, PreparedActivation):
        data, scales = to_kernel_device(x.data, x.scales)
        return data, scales
    return to_kernel_device(x)[0], None


def _weight(qw) -> PreparedWeight:
    """`qw` prepared on the kernel device (a PreparedWeight held elsewhere is copied there)."""
    if not isinstance(qw, PreparedWeight):
        return prepare_weight(qw)
    if qw.data.device == kernel_device():
        return qw
    zeros = None if qw.zeros is None else to_kernel_device(qw.zeros)[0]
    data, scales = to_kernel_device(qw.data, qw.scales)
    return PreparedWeight(data, scales, zeros, qw.source)


def _config(m: int, k: int, scheme: str, group_size: int | None, w8a8: bool) -> tuple[int, int, int, int, int]:
    """(BLOCK_M, BLOCK_N, BLOCK_K, num_warps, num_stages): one heuristic config per size class (no autotuning)."""
    if INTERPRET:
        block_m, block_n, block_k, warps, stages = 16, 32, 32, 4, 1
    elif m <= SMALL_M:
        block_m, block_n, block_k, warps, stages = 16, 64, 128, 4, 4
    elif m <= 64:
        block_m, block_n, block_k, warps, stages = 64, 128, 64, 4, 4
    else:
        block_m, block_n, block_k, warps, stages = 128, 128, 64, 8, 3
    # tl.dot needs K >= 16 on a GPU (each int4 nibble plane is BLOCK_K / 2 deep); masked loads cover a short K.
    least = 1 if INTERPRET else MIN_DOT
    least = 2 * least if scheme == "int4" else least
    block_k = min(block_k, max(least, triton.next_power_of_2(k)))
    if group_size is not None:
        block_k = min(block_k, group_size & -group_size)  # largest power of two dividing G: one group per step
    if w8a8 and not INTERPRET:
        block_m = max(block_m, 64)  # fp8 operands take Hopper's warpgroup MMA, whose tiles are 64 rows
    return block_m, block_n, block_k, warps, stages


def _split_k(m: int, n: int, k: int, block_n: int, block_k: int) -> int:
    """Split-K factor for decode: enough programs for ~2 waves of the GPU's SMs, each split >= 4 K steps."""
    if m > SMALL_M or INTERPRET:
        return 1
    tiles = triton.cdiv(n, block_n)
    sms = torch.cuda.get_device_properties(torch.cuda.current_device()).multi_processor_count
    return max(1, min(triton.cdiv(2 * sms, tiles), k // (4 * block_k)))


def qmatmul(x, qw, *, out_dtype: torch.dtype | None = None, split_k: int | None = None) -> torch.Tensor:
    """y[M, N] = x[M, K] @ dequantize(qw)[K, N] on the GPU (or the Triton interpreter).

    Dimensions:  M tokens; K in_features; N out_features; G rows per scale (group_size).
    Args:        x: [M, K] float16|bfloat16|float32 torch tensor, or a QuantizedActivation / PreparedActivation (fp8
                 [M, K] + float32 per-token scales; qw must be fp8 per channel).
                 qw: QuantizedWeight (converted here, every call) or PreparedWeight (from `prepare_weight`).
                 out_dtype: result dtype; None = x's dtype (float32 for W8A8).
                 split_k: K splits (None = heuristic: > 1 only for M <= 16 on a GPU); each split is rounded to whole
                 BLOCK_K steps, so it keeps whole groups.
    Returns:     y: [M, N] out_dtype, on the kernel device (CUDA; CPU when interpreting).
    Tiling:      grid (ceil(M / BLOCK_M)·ceil(N / BLOCK_N), split_k); BLOCK_K divides G.
    """
    prepared = _weight(qw)
    source = prepared.source
    x, x_scales = _activation(x)
    device = x.device
    m, k = x.shape
    n = source.shape[1]
    if out_dtype is None:
        out_dtype = torch.float32 if x_scales is not None else x.dtype
    compute = torch.float32 if x_scales is not None else x.dtype
    block_m, block_n, block_k, warps, stages = _config(m, k, source.scheme, source.group_size, x_scales is not None)
    splits = split_k or _split_k(m, n, k, block_n, block_k)
    # Each split covers a whole number of K steps (hence of groups, since BLOCK_K divides G).
    k_per_split = triton.cdiv(triton.cdiv(k, splits), block_k) * block_k
    splits = triton.cdiv(k, k_per_split) if k else 1
    out = torch.empty((splits, m, n), dtype=torch.float32 if splits > 1 else out_dtype, device=device)
    if m and n:
        zeros = prepared.zeros if prepared.zeros is not None else prepared.scales  # unread unless HAS_ZEROS
        grid = (triton.cdiv(m, block_m) * triton.cdiv(n, block_n), splits)
        _qmatmul_kernel[grid](
            x, x_scales if x_scales is not None else prepared.scales, prepared.data, prepared.scales, zeros, out,
            m, n, k, source.group_size or max(k, 1), k_per_split,
            *x.stride(), *prepared.data.stride(), *prepared.scales.stride(), *zeros.stride(), *out.stride(),
            WEIGHT=_WEIGHT_KIND[source.scheme], SIGNED=source.symmetric, HAS_ZEROS=prepared.zeros is not None,
            PER_GROUP=source.group_size is not None, X_FP8=x_scales is not None,
            FP8_MMA=x_scales is not None and out_dtype in (torch.float16, torch.bfloat16), COMPUTE=_COMPUTE[compute],
            DOT_PRECISION=dot_precision(compute), BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k,
            num_warps=warps, num_stages=stages,
        )
    return out[0] if splits == 1 else out.sum(0).to(out_dtype)


def unsupported(**problem) -> str | None:
    """Why the kernel cannot run `problem` here (keys: scheme, group_size, symmetric, w8a8, m, k, n, dtype, empty)."""
    scheme, group_size = problem["scheme"], problem["group_size"]
    if scheme.startswith("fp8") and capability_below(FP8_CAPABILITY):
        return f"{scheme} weights need fp8 (e4m3fn) support: compute capability >= {FP8_CAPABILITY}"
    if not problem["w8a8"]:
        reason = dtype_reason(problem["dtype"])
        if reason:
            return reason
    if group_size is not None:
        # One K step never straddles two groups: BLOCK_K is the largest power of two dividing G.
        least = (2 if scheme == "int4" else 1) if INTERPRET else GPU_MIN_GROUP[scheme]
        if group_size & -group_size < least:
            where = "" if INTERPRET else " on a GPU"
            return f"group_size {group_size} must be a multiple of {least} for {scheme}{where}"
    return None
