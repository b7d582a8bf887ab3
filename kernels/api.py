"""The public kernel API: one function per op, validation once, then dispatch to a backend (DESIGN §3).

Every op takes NumPy arrays or torch tensors (all arguments of one kind; torch tensors all on one device) and
returns the same kind.

`backend=`, value by value:
  "reference"  the float64 NumPy reference (nkilab.reference), result cast to the op's output dtype. Always runs.
  "nki"        the NKI kernel: the real Neuron SDK when it imports, else nkilab's NumPy emulator of NKI.
               Raises BackendUnavailableError while nkilab.kernels.nki does not define the op.
  "triton"     the Triton kernel: on a CUDA device, or Triton's CPU interpreter (TRITON_INTERPRET=1).
               Raises BackendUnavailableError while nkilab.kernels.triton does not define the op.
  "auto"       `resolve_backend(op, has_neuron=..., has_cuda=...)`: "nki" on a Neuron device (real SDK and
               /dev/neuron0), else "triton" on a CUDA device, else "reference". When the chosen backend is not
               available or does not support the problem, "auto" silently falls back to "reference".
An explicit backend that does not support the problem (e.g. a head_dim it cannot tile) raises ValueError naming
the op, the backend, its reason and the backends that would run it.
"""

from __future__ import annotations

import math

from nkilab.kernels import _checks
from nkilab.kernels._adapter import copy_into, dtype_name, is_torch, like, numpy_dtype, to_numpy, to_torch, torch_dtype
from nkilab.kernels._registry import (
    ARRAY_KIND,
    BACKEND_CHOICES,
    BackendUnavailableError,
    has_cuda_device,
    has_neuron_device,
    load,
    resolve_backend,
    supporting_backends,
)
from nkilab.reference.quant import QuantizedActivation


def _choose(op: str, backend: str, problem: dict):
    """(backend name, implementation) for this problem, following the rules in the module docstring."""
    if backend not in BACKEND_CHOICES:
        raise ValueError(f"backend: must be one of {BACKEND_CHOICES}, got {backend!r}")
    if backend == "auto":
        preferred = resolve_backend(op, has_neuron=has_neuron_device(), has_cuda=has_cuda_device())
        if preferred != "reference":
            try:
                impl, unsupported = load(op, preferred)
            except BackendUnavailableError:
                pass
            else:
                if unsupported(op, **problem) is None:
                    return preferred, impl
        return "reference", load(op, "reference")[0]
    impl, unsupported = load(op, backend)
    reason = unsupported(op, **problem)
    if reason is not None:
        raise ValueError(
            f"{op}: backend={backend!r} does not support this problem: {reason}; "
            f"backends that do: {supporting_backends(op, problem)}"
        )
    return backend, impl


def _empty(*arrays) -> bool:
    """True when some array has a zero-length dimension: the problem has no work (problem key `empty`)."""
    return any(math.prod(a.shape) == 0 for a in arrays)


def _to_backend(backend: str, a):
    """An array in the kind the backend takes (NumPy for reference/nki, torch for triton)."""
    if ARRAY_KIND[backend] == "torch":
        if is_torch(a):
            return a
        return to_torch(a, device="cuda" if has_cuda_device() else None)
    return to_numpy(a)


def _out_dtype_for(backend: str, name: str):
    return torch_dtype(name) if ARRAY_KIND[backend] == "torch" else numpy_dtype(name)


def qmatmul(x, qw, *, out_dtype=None, backend="auto"):
    """y[M, N] = x[M, K] @ W[K, N], W the dequantized `qw` (DESIGN §3.1).

    Args:
        x: [M, K] float16|bfloat16|float32|float64 (NumPy or torch), or a QuantizedActivation (W8A8; qw must
            then be fp8 per channel).
        qw: QuantizedWeight from nkilab.reference.quant.quantize_weight, shape (K, N).
        out_dtype: result dtype (NumPy, ml_dtypes, torch dtype or name); None = x's dtype (float32 for W8A8).
        backend: "reference" | "nki" | "triton" | "auto" (see the module docstring).

    Returns:
        y: [M, N] out_dtype, NumPy or torch like x (NumPy for a QuantizedActivation).

    Raises:
        TypeError: qw not a QuantizedWeight, x not an array, non-float dtypes.
        ValueError: K mismatch, inconsistent qw, unknown backend, unsupported scheme for an explicit backend.

    Example:
        >>> import numpy as np
        >>> from nkilab.reference.quant import quantize_weight
        >>> qmatmul(np.ones((1, 2), np.float32), quantize_weight(np.full((2, 1), 2.0), "int8"), backend="reference")
        array([[4.]], dtype=float32)
    """
    out_name = _checks.check_qmatmul(x, qw, out_dtype)
    quantized_x = isinstance(x, QuantizedActivation)
    xdata = x.data if quantized_x else x
    problem = dict(
        scheme=qw.scheme, group_size=qw.group_size, symmetric=qw.symmetric, w8a8=quantized_x,
        m=int(xdata.shape[0]), k=int(qw.shape[0]), n=int(qw.shape[1]), dtype=dtype_name(xdata), empty=_empty(xdata),
    )
    name, impl = _choose("qmatmul", backend, problem)
    y = impl(x if quantized_x else _to_backend(name, x), qw, out_dtype=_out_dtype_for(name, out_name))
    return _back(y, None if quantized_x else x)


def attention(q, k, v, *, causal=False, scale=None, sliding_window=None, softcap=None, backend="auto"):
    """Dense (prefill) attention with GQA, bottom-right causal mask, sliding window and softcap (DESIGN §3.2).

    Dimensions: B batch; Sq queries; Skv keys; Hq = g * Hkv heads; D head dim.

    Args:
        q: [B, Sq, Hq, D] float16|bfloat16|float32|float64.
        k, v: [B, Skv, Hkv, D], q's dtype; Hq % Hkv == 0, query head h reads kv head h // (Hq // Hkv).
        causal: query i sees keys j <= i + Skv - Sq.
        scale: score multiplier > 0; None = D ** -0.5.
        sliding_window: int >= 1, also hides keys j < i + Skv - Sq - w + 1; None = no window.
        softcap: c > 0, scores -> c * tanh(s / c) before masking; None = off.
        backend: "reference" | "nki" | "triton" | "auto" (see the module docstring).

    Returns:
        out: [B, Sq, Hq, D], q's dtype and kind; a query that sees no key gets zeros.

    Raises:
        TypeError / ValueError: naming the argument, before any work (shapes, dtypes, GQA, options, backend).

    See Also:
        nkilab.reference.attention.attention (the semantics, in float64).
    """
    options = _checks.check_attention(q, k, v, causal=causal, scale=scale, sliding_window=sliding_window,
                                      softcap=softcap)
    problem = dict(head_dim=int(q.shape[3]), dtype=dtype_name(q), causal=options["causal"],
                   sliding_window=options["sliding_window"], softcap=options["softcap"], empty=_empty(q, k))
    name, impl = _choose("attention", backend, problem)
    out = impl(*(_to_backend(name, a) for a in (q, k, v)), **options)
    return _back(out, q)


def write_kv_cache(key, value, key_cache, value_cache, slot_mapping, *, backend="auto"):
    """Write each token's key/value into its cache slot, in place on the caller's arrays (DESIGN §3.3).

    Args:
        key, value: [T, Hkv, D], the caches' dtype.
        key_cache, value_cache: [num_blocks, block_size, Hkv, D] float16|bfloat16|float32|float64, writable.
        slot_mapping: [T] signed integer; token t -> block slot // block_size, offset slot % block_size; -1 = skip.
            Live slots must be unique and in [0, num_blocks * block_size).
        backend: "reference" | "nki" | "triton" | "auto" (see the module docstring).

    Returns:
        (key_cache, value_cache): the caller's own arrays/tensors, updated.

    Example:
        >>> import numpy as np
        >>> kc, vc = np.zeros((2, 2, 1, 1)), np.zeros((2, 2, 1, 1))
        >>> kc, vc = write_kv_cache(np.ones((1, 1, 1)), np.ones((1, 1, 1)), kc, vc, np.array([2]), backend="reference")
        >>> kc.ravel().tolist()
        [0.0, 0.0, 1.0, 0.0]
    """
    _checks.check_write_kv_cache(key, value, key_cache, value_cache, slot_mapping)
    problem = dict(head_dim=int(key_cache.shape[3]), block_size=int(key_cache.shape[1]), dtype=dtype_name(key_cache),
                   empty=_empty(key))
    name, impl = _choose("write_kv_cache", backend, problem)
    arrays = (key, value, key_cache, value_cache, slot_mapping)
    new_k, new_v = impl(*(_to_backend(name, a) for a in arrays))  # same objects when the kind already fits
    # A backend writes in place and returns its caches; when it worked on converted copies (another array kind
    # or device) or returned fresh arrays, write the result back into the caller's own arrays.
    for mine, theirs in ((key_cache, new_k), (value_cache, new_v)):
        if theirs is not mine:
            copy_into(mine, theirs)
    return key_cache, value_cache


def paged_attention(
    q,
    key_cache,
    value_cache,
    block_tables,
    seq_lens,
    query_start_loc,
    *,
    scale=None,
    causal=True,
    sliding_window=None,
    softcap=None,
    backend="auto",
):
    """Attention over a paged KV cache for decode, prefill, chunked prefill and mixed batches (DESIGN §3.3).

    Dimensions: T_total query tokens of num_seqs sequences; Hq = g * Hkv; D head dim.

    Args:
        q: [T_total, Hq, D] float16|bfloat16|float32|float64; sequence i owns rows
            query_start_loc[i] : query_start_loc[i + 1], which are its last q_len_i positions.
        key_cache, value_cache: [num_blocks, block_size, Hkv, D], q's dtype.
        block_tables: [num_seqs, max_blocks] integer (int32); the first ceil(seq_lens[i] / block_size) entries
            of row i must be in [0, num_blocks); later entries are ignored (-1 or anything).
        seq_lens: [num_seqs] integer, KV length of each sequence including its new tokens (>= q_len_i).
        query_start_loc: [num_seqs + 1] integer (int32), 0 first, non-decreasing, T_total last.
        scale, causal, sliding_window, softcap: as in `attention` (causal defaults to True here).
        backend: "reference" | "nki" | "triton" | "auto" (see the module docstring).

    Returns:
        out: [T_total, Hq, D], q's dtype and kind.

    See Also:
        nkilab.reference.paged.paged_attention (gather each sequence, then dense attention).
    """
    options = _checks.check_paged_attention(
        q, key_cache, value_cache, block_tables, seq_lens, query_start_loc,
        causal=causal, scale=scale, sliding_window=sliding_window, softcap=softcap,
    )
    problem = dict(head_dim=int(q.shape[2]), block_size=int(key_cache.shape[1]), dtype=dtype_name(q),
                   sliding_window=options["sliding_window"], softcap=options["softcap"], empty=_empty(q))
    name, impl = _choose("paged_attention", backend, problem)
    arrays = (q, key_cache, value_cache, block_tables, seq_lens, query_start_loc)
    out = impl(*(_to_backend(name, a) for a in arrays), **options)
    return _back(out, q)


def _back(out, template):
    """A backend's result in the kind (and torch device) of `template`; None = NumPy."""
    if is_torch(out) and is_torch(template):
        return out.to(template.device)
    return like(to_numpy(out), template)
