"""The public kernel API: one function per registered op (`nkilab.kernels.ops.<op>`), each validating its
arguments once and then dispatching to a backend.

Every op takes NumPy arrays or torch tensors (all arguments of one kind; torch tensors all on one device) and
returns the same kind.

`backend=`, value by value:
  "reference"  the float64 NumPy reference (nkilab.reference), result cast to the op's output dtype. Always runs.
  "nki"        the NKI kernel: the real Neuron SDK when it imports, else nkilab's NumPy emulator of NKI.
               Raises BackendUnavailableError while the op names no NKI launcher.
  "triton"     the Triton kernel: on a CUDA device, or Triton's CPU interpreter (TRITON_INTERPRET=1).
               Raises BackendUnavailableError while the op names no Triton launcher.
  "auto"       `resolve_backend(op, has_neuron=..., has_cuda=...)`: "nki" on a Neuron device (real SDK and
               /dev/neuron0), else "triton" on a CUDA device, else "reference". When the chosen backend is not
               available or does not support the problem, "auto" falls back to "reference"; `last_backend(op)`
               names the backend that ran, and the logger "nkilab.kernels" says it (and why) at DEBUG level.
An explicit backend that does not support the problem (e.g. a head_dim it cannot tile) raises ValueError naming
the op, the backend, its reason and the backends that would run it.

`target=` (every op): the Neuron target the NKI backend runs for ("inf2" | "trn1" | "trn2" | "trn3"); None = the
environment's NEURON_PLATFORM_TARGET_OVERRIDE, else "trn2". An explicit reference/triton backend refuses it; "auto"
ignores it when it picks another backend.

These functions are plain Python over NumPy; inside torch.compile'd code call `torch.ops.nkilab.<op>`
(`nkilab.kernels.torch_ops`), which the compiler captures as one node each.
"""

from __future__ import annotations

from nkilab.kernels._registry import OPS, get

globals().update({name: get(name).api for name in OPS})  # nkilab.kernels.api.<op> for every registered op

__all__ = list(OPS)
