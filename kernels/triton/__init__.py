"""Triton backend of nkilab.kernels: the ops on torch tensors, on a CUDA GPU or under Triton's CPU interpreter.

Each op names its launcher module here (see `nkilab.kernels.ops`); a launcher takes the public signature minus
`backend` (inputs already validated by nkilab.kernels; torch tensors in and out) and defines
`unsupported(**problem)`. Without a CUDA device, importing this package sets TRITON_INTERPRET=1 first (see
`_interpret.py`). `unsupported(op, **problem)` says, before any work, why a problem cannot run here (None when it
can), for any registered op.
"""

from ._interpret import INTERPRET  # noqa: I001  (first: fixes TRITON_INTERPRET before triton is imported)

from nkilab.kernels import _registry

from .qmatmul import PreparedActivation, PreparedWeight, prepare_activation, prepare_weight

__all__ = ["INTERPRET", "PreparedActivation", "PreparedWeight", "prepare_activation", "prepare_weight",
           "unsupported"]


def unsupported(op: str, **problem) -> str | None:
    """None when this backend runs `op` on `problem` here, else the reason (keys: the op's `spec`, plus `empty`).

    Example:
        >>> unsupported("attention", head_dim=320, dtype="float16", causal=True, sliding_window=None, softcap=None)
        'head_dim 320 > 256'
    """
    return _registry.unsupported(op, "triton", **problem)
