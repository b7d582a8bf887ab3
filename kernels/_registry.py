"""Backend table: which implementation runs an op, whether it can run here, and what `backend="auto"` picks.

Backends and the array kind their functions take and return:
  "reference"  nkilab.reference (float64 NumPy; result cast to the op's output dtype)   NumPy
  "nki"        nkilab.kernels.nki (real SDK when it imports, else the NumPy emulator)   NumPy (ml_dtypes)
  "triton"     nkilab.kernels.triton (CUDA, or Triton's CPU interpreter)               torch

A backend package is imported lazily, on first use. A package that does not import, or that does not define
the op yet, is "not available": an explicit request raises BackendUnavailableError, `backend="auto"` falls
back to the reference. Each backend package also defines `unsupported(op, **problem) -> str | None`; besides the
op's shape, dtype and option keys, every problem carries `empty` (True when an input has a zero-length dimension, e.g.
M = 0 or Skv = 0: a backend may decline such a problem, and "auto" then uses the reference).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import types

from nkilab import reference

OPS = ("qmatmul", "attention", "write_kv_cache", "paged_attention")
BACKENDS = ("reference", "nki", "triton")
BACKEND_CHOICES = BACKENDS + ("auto",)
ARRAY_KIND = {"reference": "numpy", "nki": "numpy", "triton": "torch"}


class BackendUnavailableError(NotImplementedError):
    """An explicitly requested backend cannot run this op here (package missing, op not written yet, ...)."""


def resolve_backend(op: str, *, has_neuron: bool, has_cuda: bool) -> str:
    """The backend `backend="auto"` tries first for `op` (a pure function, so it is testable without devices).

    | has_neuron | has_cuda | result      |
    |------------|----------|-------------|
    | True       | any      | "nki"       |
    | False      | True     | "triton"    |
    | False      | False    | "reference" |

    The API falls back to "reference" when the chosen backend is not available or does not support the problem.
    """
    if op not in OPS:
        raise ValueError(f"op: must be one of {OPS}, got {op!r}")
    if has_neuron:
        return "nki"
    if has_cuda:
        return "triton"
    return "reference"


def has_neuron_device() -> bool:
    """The real Neuron SDK is importable (not the PyPI placeholder) and a Neuron device node exists."""
    if not os.path.exists("/dev/neuron0") or importlib.util.find_spec("nki") is None:
        return False
    try:
        importlib.import_module("nki")
    except ImportError:  # the PyPI placeholder raises ImportError on import
        return False
    return True


def has_cuda_device() -> bool:
    """torch is installed and sees a CUDA device."""
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return torch.cuda.is_available()


def _reference_qmatmul(x, qw, *, out_dtype):
    return reference.qmatmul(x, qw, out_dtype=out_dtype)


def _reference_attention(q, k, v, **options):
    return reference.attention(q, k, v, **options).astype(q.dtype)


def _reference_paged_attention(q, key_cache, value_cache, block_tables, seq_lens, query_start_loc, **options):
    out = reference.paged_attention(q, key_cache, value_cache, block_tables, seq_lens, query_start_loc, **options)
    return out.astype(q.dtype)


_REFERENCE_BACKEND = types.SimpleNamespace(
    qmatmul=_reference_qmatmul,
    attention=_reference_attention,
    write_kv_cache=reference.write_kv_cache,
    paged_attention=_reference_paged_attention,
    unsupported=lambda op, **problem: None,  # the reference defines every op for every problem
)


def _import_backend(backend: str):
    """The backend's module (tests monkeypatch this to simulate missing or partial packages)."""
    if backend == "reference":
        return _REFERENCE_BACKEND
    return importlib.import_module(f"nkilab.kernels.{backend}")


def load(op: str, backend: str):
    """(implementation, unsupported) for `op` on `backend`; raises BackendUnavailableError when it cannot run."""
    try:
        module = _import_backend(backend)
    except ImportError as e:
        raise BackendUnavailableError(f"{op}: backend={backend!r} is not available here: {e}") from e
    impl = getattr(module, op, None)
    if impl is None:
        raise BackendUnavailableError(
            f"{op}: backend={backend!r} is not available yet (nkilab.kernels.{backend} does not define {op}); "
            f"use backend='reference'"
        )
    unsupported = getattr(module, "unsupported", None) or (lambda op, **problem: None)
    return impl, unsupported


def available_backends(op: str) -> list[str]:
    """The backends that can run `op` here, in BACKENDS order ("reference" always)."""
    if op not in OPS:
        raise ValueError(f"op: must be one of {OPS}, got {op!r}")
    result = []
    for backend in BACKENDS:
        try:
            load(op, backend)
        except BackendUnavailableError:
            continue
        result.append(backend)
    return result


def supporting_backends(op: str, problem: dict) -> list[str]:
    """The available backends whose `unsupported(op, **problem)` returns None."""
    return [b for b in available_backends(op) if load(op, b)[1](op, **problem) is None]

