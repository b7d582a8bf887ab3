"""nkilab.kernels: the public kernel API, one function per registered op family (`OPS`: qmatmul, attention,
write_kv_cache, paged_attention, ...).

See `nkilab.kernels.api` for the backend rules (`backend="auto"` value by value) and `nkilab.kernels.ops` for the
op declarations.
"""

from nkilab.kernels import api
from nkilab.kernels._registry import OPS, BackendUnavailableError, available_backends, last_backend, resolve_backend
from nkilab.kernels.ops.qmatmul import PreparedWeight, prepare_weight

globals().update({name: getattr(api, name) for name in OPS})  # nkilab.kernels.<op> for every registered op

__all__ = ["BackendUnavailableError", "OPS", "PreparedWeight", "available_backends", "last_backend", "prepare_weight",
           "resolve_backend", *OPS]
