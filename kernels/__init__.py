"""nkilab.kernels: the public kernel API (qmatmul, attention, write_kv_cache, paged_attention).

See `nkilab.kernels.api` for the backend rules (`backend="auto"` value by value).
"""

from nkilab.kernels._registry import BackendUnavailableError, available_backends, resolve_backend
from nkilab.kernels.api import attention, paged_attention, qmatmul, write_kv_cache

__all__ = [
    "BackendUnavailableError",
    "attention",
    "available_backends",
    "paged_attention",
    "qmatmul",
    "resolve_backend",
    "write_kv_cache",
]
