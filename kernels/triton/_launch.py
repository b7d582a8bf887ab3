"""Launch-side helpers shared by the Triton launchers: device, dot precision, head-dim padding, block-size choice."""

import torch
import triton

from ._interpret import INTERPRET

MIN_DOT = 16  # tl.dot needs every dimension >= 16 on NVIDIA GPUs


def kernel_device() -> torch.device:
    """Where the kernels run: the CPU under the interpreter, else the current CUDA device."""
    return torch.device("cpu") if INTERPRET else torch.device("cuda", torch.cuda.current_device())


def to_kernel_device(*tensors: torch.Tensor) -> list[torch.Tensor]:
    """The tensors on `kernel_device()` (CPU tensors on a GPU machine are copied there; others are returned as is)."""
    device = kernel_device()
    return [t if t.device == device else t.to(device) for t in tensors]


def dot_precision(dtype: torch.dtype) -> str:
    """`tl.dot` input precision: exact fp32 ("ieee") for float32 inputs, since the default tf32 keeps only 10 mantissa
    bits and would fail the check against a float32 computation; ignored by Triton for 16- and 8-bit inputs."""
    return "ieee" if dtype == torch.float32 else "tf32"


def padded_head_dim(d: int) -> int:
    """Head dim rounded up to a power of two (tl.arange needs one) and to at least MIN_DOT; pad lanes are masked."""
    return max(MIN_DOT, triton.next_power_of_2(d))


def block(gpu: int, interpret: int, size: int | None = None) -> int:
    """A tile length: `gpu` on a GPU, `interpret` under the interpreter (each program instance runs in Python, so the
    interpreter wants few, small tiles); shrunk to the problem `size` (as a power of two >= MIN_DOT) when given."""
    chosen = interpret if INTERPRET else gpu
    if size is not None:
        chosen = min(chosen, max(MIN_DOT, triton.next_power_of_2(size)))
    return chosen
