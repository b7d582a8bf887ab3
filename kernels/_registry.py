"""The op registry: every op family declared in `nkilab.kernels.ops`, found by scanning that package.

An op module is any public module `nkilab.kernels.ops.<name>` defining `OP` (an `Op` whose name is <name>); adding a
family adds a module, never an entry here. Everything that lists ops derives from `OPS`: the public API, the CLI
choices, the workloads, the harness walk and plots, and the backend packages' `unsupported` / `traceable`.

Name-keyed entry points (`load`, `available_backends`, `resolve_backend`, ...) validate the op name and hand the
`Op` to `nkilab.kernels._backends`, which holds the backend rules.
"""

from __future__ import annotations

import importlib
import pkgutil

from nkilab.kernels import _backends, ops
from nkilab.kernels._backends import (  # noqa: F401  (re-exported: the registry is where callers look them up)
    ARRAY_KIND,
    BACKEND_CHOICES,
    BACKENDS,
    BackendUnavailableError,
    has_cuda_device,
    has_neuron_device,
)
from nkilab.kernels.ops._op import Op


def _discover() -> dict[str, Op]:
    """{name: Op} of every public module of `nkilab.kernels.ops`, in `Op.order`."""
    found = []
    for info in pkgutil.iter_modules(ops.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{ops.__name__}.{info.name}")
        op = getattr(module, "OP", None)
        if not isinstance(op, Op) or op.name != info.name:
            raise ImportError(f"{module.__name__}: an op module must define OP = Op(name={info.name!r}, ...)")
        found.append(op)
    return {op.name: op for op in sorted(found, key=lambda op: (op.order, op.name))}


_OPS = _discover()
OPS: tuple[str, ...] = tuple(_OPS)


def get(op: str) -> Op:
    """The declaration of `op`; ValueError naming the registered ops otherwise."""
    if op not in _OPS:
        raise ValueError(f"op: unknown op {op!r}; must be one of {OPS}")
    return _OPS[op]


def ops_list() -> list[Op]:
    """Every registered Op, in OPS order."""
    return list(_OPS.values())


def resolve_backend(op: str, *, has_neuron: bool, has_cuda: bool) -> str:
    """The backend `backend="auto"` tries first for `op` (see `nkilab.kernels._backends.resolve_backend`)."""
    get(op)
    return _backends.resolve_backend(has_neuron=has_neuron, has_cuda=has_cuda)


def load(op: str, backend: str):
    """(implementation, unsupported) for `op` on `backend`; raises BackendUnavailableError when it cannot run."""
    return _backends.load(get(op), backend)


def backend_module(op: str, backend: str):
    """The launcher module of `op` on an accelerator backend ("nki" | "triton"); BackendUnavailableError if none."""
    return _backends.backend_module(get(op), backend)


def available_backends(op: str) -> list[str]:
    """The backends that can run `op` here, in BACKENDS order ("reference" always)."""
    return _backends.available_backends(get(op))


def supporting_backends(op: str, problem: dict) -> list[str]:
    """The available backends whose `unsupported(**problem)` returns None."""
    return _backends.supporting_backends(get(op), problem)


def last_backend(op: str) -> str | None:
    """The backend that ran the calling thread's latest call of `op` ("reference" | "nki" | "triton"; None before
    the first): what `backend="auto"` chose. The logger "nkilab.kernels" says the same at DEBUG level, with the
    reason when "auto" fell back to the reference."""
    return _backends.last_backend(get(op))


def unsupported(op: str, backend: str, **problem) -> str | None:
    """Why `backend` cannot run `op` on `problem` (None when it can); BackendUnavailableError if it has no `op`."""
    return load(op, backend)[1](**problem)
