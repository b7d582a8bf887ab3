"""Backends: which implementation runs an op, whether it can run here, what `backend="auto"` picks, and the
array conversion around a backend call.

Backends and the array kind their functions take and return:
  "reference"  the op's float64 reference (nkilab.reference), result cast to the op's output dtype   NumPy
  "nki"        nkilab.kernels.nki (real SDK when it imports, else the NumPy emulator)              NumPy (ml_dtypes)
  "triton"     nkilab.kernels.triton (CUDA, or Triton's CPU interpreter)                          torch

An op names each backend's launcher module (`Op.backends`); the module is imported on first use. A module that does
not import, or an op that names no launcher (or whose launcher lacks the function), is "not available": an explicit
request raises BackendUnavailableError, `backend="auto"` falls back to the reference. Every launcher module also
defines `unsupported(**problem) -> str | None`; besides the op's shape, dtype and option keys (`Op.spec`), every
problem carries `empty` (True when an input has a zero-length dimension, e.g. M = 0 or Skv = 0: a backend may
decline such a problem, and "auto" then uses the reference).

Every choice is recorded: `last_backend(op)` names the backend that ran the calling thread's latest call of an op
(what `backend="auto"` chose), and the logger "nkilab.kernels" says it at DEBUG level, with the reason when "auto"
fell back to the reference. `target=` (a Neuron target name) goes to the NKI launcher only.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import logging
import math
import os
import threading

from nkilab.kernels._adapter import copy_into, is_torch, like, numpy_dtype, same_memory, to_numpy, to_torch, torch_dtype
from nkilab.kernels.ops._op import Op

BACKENDS = ("reference", "nki", "triton")
BACKEND_CHOICES = BACKENDS + ("auto",)
ARRAY_KIND = {"reference": "numpy", "nki": "numpy", "triton": "torch"}
LOG = logging.getLogger("nkilab.kernels")
_LAST = threading.local()  # .by_op: {op name: backend that ran the thread's latest call}


class BackendUnavailableError(NotImplementedError):
    """An explicitly requested backend cannot run this op here (package missing, op not written yet, ...)."""


def resolve_backend(*, has_neuron: bool, has_cuda: bool) -> str:
    """The backend `backend="auto"` tries first (a pure function, so it is testable without devices).

    | has_neuron | has_cuda | result      |
    |------------|----------|-------------|
    | True       | any      | "nki"       |
    | False      | True     | "triton"    |
    | False      | False    | "reference" |

    The API falls back to "reference" when the chosen backend is not available or does not support the problem.
    """
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
    import torch  # optional heavy dependency, imported only when asked about CUDA

    return torch.cuda.is_available()


def _import_backend(backend: str, module: str):
    """The launcher module `module` of `backend` (tests monkeypatch this to simulate missing or partial packages)."""
    return importlib.import_module(module)


def _no_reason(**problem) -> None:
    """The reference runs every problem."""
    return None


def backend_module(op: Op, backend: str):
    """The module holding `op`'s launcher on an accelerator backend; raises BackendUnavailableError."""
    launcher = op.backends.get(backend)
    if launcher is None:
        raise BackendUnavailableError(
            f"{op.name}: backend={backend!r} is not available yet (op {op.name!r} names no {backend} launcher); "
            f"use backend='reference'")
    try:
        return _import_backend(backend, launcher.module)
    except ImportError as e:
        raise BackendUnavailableError(f"{op.name}: backend={backend!r} is not available here: {e}") from e


def load(op: Op, backend: str):
    """(implementation, unsupported) for `op` on `backend`; raises BackendUnavailableError when it cannot run."""
    if backend == "reference":
        return op.run_reference, _no_reason
    module = backend_module(op, backend)
    impl = getattr(module, op.backends[backend].function, None)
    if impl is None:
        raise BackendUnavailableError(
            f"{op.name}: backend={backend!r} is not available yet ({op.backends[backend].module} does not define "
            f"{op.backends[backend].function}); use backend='reference'")
    return impl, getattr(module, "unsupported", None) or _no_reason


def available_backends(op: Op) -> list[str]:
    """The backends that can run `op` here, in BACKENDS order ("reference" always)."""
    result = []
    for backend in BACKENDS:
        try:
            load(op, backend)
        except BackendUnavailableError:
            continue
        result.append(backend)
    return result


def supporting_backends(op: Op, problem: dict) -> list[str]:
    """The available backends whose `unsupported(**problem)` returns None."""
    return [b for b in available_backends(op) if load(op, b)[1](**problem) is None]


def choose(op: Op, backend: str, problem: dict, *, target: str | None = None):
    """(backend name, implementation) for this problem, following the rules in `nkilab.kernels.api`.

    `target` (a Neuron target name, None = the NKI launcher's default) is bound into the NKI implementation; an
    explicit other backend refuses it (ValueError), and "auto" ignores it when it picks another backend. The choice is
    recorded for `last_backend` and logged at DEBUG level.
    """
    if backend not in BACKEND_CHOICES:
        raise ValueError(f"backend: must be one of {BACKEND_CHOICES}, got {backend!r}")
    if target is not None and not isinstance(target, str):
        raise TypeError(f"target: must be None or a Neuron target name such as 'trn2', got {target!r}")
    if target is not None and backend not in ("nki", "auto"):
        raise ValueError(f"target: selects the Neuron target of backend='nki'; backend={backend!r} takes none, "
                         f"got target={target!r}")
    name, impl, why = _pick(op, backend, problem)
    _LAST.__dict__.setdefault("by_op", {})[op.name] = name
    LOG.debug("%s: backend=%r ran on %r%s", op.name, backend, name, why)
    return name, (functools.partial(impl, target=target) if target is not None and name == "nki" else impl)


def _pick(op: Op, backend: str, problem: dict):
    """(backend name, implementation, why "auto" fell back, or "") for a valid `backend`."""
    if backend == "auto":
        preferred = resolve_backend(has_neuron=has_neuron_device(), has_cuda=has_cuda_device())
        why = " (auto: no Neuron or CUDA device)"
        if preferred != "reference":
            try:
                impl, unsupported = load(op, preferred)
            except BackendUnavailableError as e:
                why = f" (auto: {preferred} unavailable: {e})"
            else:
                reason = unsupported(**problem)
                if reason is None:
                    return preferred, impl, ""
                why = f" (auto: {preferred} does not support this problem: {reason})"
        return "reference", op.run_reference, why
    impl, unsupported = load(op, backend)
    reason = unsupported(**problem)
    if reason is not None:
        raise ValueError(
            f"{op.name}: backend={backend!r} does not support this problem: {reason}; "
            f"backends that do: {supporting_backends(op, problem)}"
        )
    return backend, impl, ""


def last_backend(op: Op) -> str | None:
    """The backend that ran the calling thread's latest call of `op` (None before its first call)."""
    return getattr(_LAST, "by_op", {}).get(op.name)


def empty(*arrays) -> bool:
    """True when some array has a zero-length dimension: the problem has no work (problem key `empty`)."""
    return any(math.prod(a.shape) == 0 for a in arrays)


def to_backend(backend: str, a):
    """An array in the kind the backend takes (NumPy for reference/nki, torch for triton)."""
    if ARRAY_KIND[backend] == "torch":
        if is_torch(a):
            return a
        device = kernel_device(backend)
        return to_torch(a, device=None if device == "cpu" else device)
    return to_numpy(a)


def kernel_device(backend: str) -> str:
    """The device type the backend computes on: "cuda" for Triton on a CUDA machine, else "cpu"."""
    return "cuda" if ARRAY_KIND[backend] == "torch" and has_cuda_device() else "cpu"


def in_place(backend: str, a):
    """`a` as the backend's array kind sharing `a`'s memory (a write into it is a write into `a`), or None when that
    would take a copy: another device, a non-contiguous layout, a read-only array or a dtype torch lacks. Decided
    before converting, so a cache is never copied just to find out."""
    device = kernel_device(backend)
    if is_torch(a):
        if a.device.type != device or not a.is_contiguous():
            return None
        view = a if ARRAY_KIND[backend] == "torch" else to_numpy(a)
    else:
        if device != "cpu" or not (a.flags.c_contiguous and a.flags.writeable):
            return None
        if ARRAY_KIND[backend] == "numpy":
            return a
        try:
            view = to_torch(a)
        except TypeError:  # a dtype torch has no name for
            return None
    return view if same_memory(view, a) else None


def out_dtype_for(backend: str, name: str):
    """The dtype object the backend takes for the output dtype `name` (torch for triton, NumPy otherwise)."""
    return torch_dtype(name) if ARRAY_KIND[backend] == "torch" else numpy_dtype(name)


def back(out, template, into=None):
    """A backend's result in the kind (and torch device) of `template`; None = NumPy. With `into` (the caller's
    validated `out=` array) the result is written there and `into` is returned."""
    if into is not None:
        copy_into(into, out)
        return into
    if is_torch(out) and is_torch(template):
        return out.to(template.device)
    return like(to_numpy(out), template)
