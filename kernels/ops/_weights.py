"""Prepared weights: a QuantizedWeight converted once into the form one backend's qmatmul launcher reads.

A backend's launcher module may define `prepare_weight(qw, device=None)` (the Triton one moves the arrays to the
GPU as torch tensors, fp8 as raw bits); a backend without one reads the QuantizedWeight as it is (the reference
dequantizes it in float64 per call; the NKI kernel reads its NumPy arrays in their HBM layout), so preparing for it
only validates once. `nkilab.kernels.qmatmul` takes a QuantizedWeight, a `PreparedWeight`, or a backend's own
prepared object (e.g. `nkilab.kernels.triton.PreparedWeight`) and hands each backend the form it reads.
"""

from __future__ import annotations

from dataclasses import dataclass

from nkilab.kernels import _backends
from nkilab.kernels.ops._op import Op
from nkilab.reference.quant import QuantizedWeight


@dataclass(frozen=True, repr=False)
class PreparedWeight:
    """A validated QuantizedWeight and its form for one backend (convert once, call often).

    Attributes:
        source: the QuantizedWeight (K, N) it was made from.
        backend: "reference" | "nki" | "triton": whose form `prepared` is.
        prepared: what that backend's launcher reads (its `prepare_weight(source)`, or `source` itself).
    """

    source: QuantizedWeight
    backend: str
    prepared: object

    def __repr__(self) -> str:
        return f"PreparedWeight({self.source!r}, backend={self.backend!r})"

    def for_backend(self, backend: str):
        """The weight as `backend`'s launcher takes it: the prepared form for its own backend, else the source."""
        return self.prepared if backend == self.backend else self.source


def prepare(op: Op, qw: QuantizedWeight, backend: str, device=None) -> PreparedWeight:
    """`qw` (already validated) in `backend`'s form; "auto" resolves as `backend="auto"` does for a call (an
    unavailable preferred backend falls back to the reference). `device`: where a torch backend keeps the tensors
    (None = its kernel device); a NumPy backend takes none."""
    if backend not in _backends.BACKEND_CHOICES:
        raise ValueError(f"backend: must be one of {_backends.BACKEND_CHOICES}, got {backend!r}")
    if backend == "auto":
        backend = _backends.resolve_backend(has_neuron=_backends.has_neuron_device(),
                                            has_cuda=_backends.has_cuda_device())
        if backend not in _backends.available_backends(op):
            backend = "reference"
    if backend == "reference":
        convert = None
    else:
        _backends.load(op, backend)  # BackendUnavailableError when it cannot run here
        convert = getattr(_backends.backend_module(op, backend), "prepare_weight", None)
    if convert is None:
        if device is not None:
            raise ValueError(f"device: backend {backend!r} reads NumPy weights and takes no device, got {device!r}")
        return PreparedWeight(qw, backend, qw)
    return PreparedWeight(qw, backend, convert(qw, device))


def as_prepared(op: Op, qw) -> PreparedWeight | None:
    """`qw` as a PreparedWeight: itself, or a backend's own prepared object (an object with a QuantizedWeight
    `source`, whose type a launcher module of `op` defines) wrapped; None for anything else."""
    if isinstance(qw, PreparedWeight):
        return qw
    source = getattr(qw, "source", None)
    if isinstance(source, QuantizedWeight):
        for backend, launcher in op.backends.items():
            if type(qw).__module__ == launcher.module:
                return PreparedWeight(source, backend, qw)
    return None
