"""torch.ops.nkilab.<op>: every registered op family as a torch custom op, generated from the op registry.

    import nkilab.kernels.torch_ops  # registers the ops (importing nkilab.kernels alone never imports torch)
    y = torch.ops.nkilab.qmatmul(x, *torch_weight_args(qw), backend="nki")
    torch.ops.nkilab.write_kv_cache(key, value, key_cache, value_cache, slot_mapping)   # in place, returns None
    out = torch.ops.nkilab.paged_attention(q, key_cache, value_cache, block_tables, seq_lens, query_start_loc)
    torch.ops.nkilab.paged_attention.out(q, ..., out=buffer)                             # into a caller's buffer

Each op's `Op.torch` (`nkilab.kernels.ops._op.TorchOp`) holds its schema, its fake implementation and, where the
result differs from the public function's, its call; this module only registers them. The real implementation is
the public function (`nkilab.kernels.<op>`, with `backend=` and `target=` as keyword arguments), registered for
every device (CompositeExplicitAutograd); the fake one computes only the result's metadata, so torch.compile traces
a call as one opaque node (no graph break, nothing of the NumPy / emulator work traced) and `torch.library.opcheck`
passes. Caches written in place are declared mutated (`Tensor(a!)`). The ops have no backward: called under grad
mode with an input that requires grad they raise ValueError naming it, like the public functions.
"""

from __future__ import annotations

import torch

from nkilab.kernels import _registry

NAMESPACE = "nkilab"
_LIBRARY = torch.library.Library(NAMESPACE, "DEF")  # owns the definitions for the life of the process


def _out_call(call):
    """The `.out` overload's kernel: `call(..., out=out)` (the public function writes into `out`), returning None."""

    def kernel(*args, out, **kwargs):
        call(*args, out=out, **kwargs)

    return kernel


def _no_result(*args, **kwargs) -> None:
    """The `.out` overloads' fake: they return nothing."""
    return None


def register(op) -> list[str]:
    """Define `nkilab::<op.name>` (and `.out` when the op has one) from `op.torch`; returns the qualified names."""
    spec = op.torch
    call = spec.call or op.api
    names = [f"{NAMESPACE}::{op.name}"]
    _LIBRARY.define(op.name + spec.schema)
    _LIBRARY.impl(op.name, call, "CompositeExplicitAutograd")  # the public function runs the backend
    torch.library.register_fake(names[0], spec.fake, lib=_LIBRARY)
    if spec.out_schema is not None:
        names.append(f"{names[0]}.out")
        _LIBRARY.define(f"{op.name}.out{spec.out_schema}")
        _LIBRARY.impl(f"{op.name}.out", _out_call(call), "CompositeExplicitAutograd")
        torch.library.register_fake(names[1], _no_result, lib=_LIBRARY)
    return names


REGISTERED: tuple[str, ...] = tuple(name for op in _registry.ops_list() if op.torch is not None
                                     for name in register(op))  # qualified names, in OPS order
