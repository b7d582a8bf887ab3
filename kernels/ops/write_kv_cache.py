"""write_kv_cache: scatter new tokens' keys and values into a paged KV cache, in place — the op family, declared
once (public function, rules, reference, workload, exact-copy check, plot axes, GPU-bench baseline).

Per rank, a decode step writes one token per sequence; a prefill writes the whole sequence.
"""

from __future__ import annotations

import math

import numpy as np

from nkilab import reference
from nkilab.kernels import _backends, _checks
from nkilab.kernels._adapter import dtype_name, is_torch, numpy_dtype, to_numpy, to_torch
from nkilab.kernels.ops import _kv_quant
from nkilab.kernels.ops._op import Check, Launcher, Op, Plot, TorchOp
from nkilab.kernels.ops._problem import Problem
from nkilab.reference.dtypes import itemsize
from nkilab.reference.kv_quant import dequantize_rows


def write_kv_cache(key, value, key_cache, value_cache, slot_mapping, *, kv_cache_dtype="auto", k_scale=None,
                   v_scale=None, k_scale_cache=None, v_scale_cache=None, backend="auto", target=None):
    """Write each token's key/value into its cache slot, in place on the caller's arrays (quantized on the way when
    kv_cache_dtype is not "auto").

    Args:
        key, value: [T, Hkv, D], the caches' dtype ("auto"), else float16|bfloat16|float32|float64 (finite).
        key_cache, value_cache: [num_blocks, block_size, Hkv, D] float16|bfloat16|float32|float64 ("auto"), or
            float8_e4m3 / float8_e4m3fn / int8 for the quantized kv_cache_dtype of that name; writable.
        slot_mapping: [T] signed integer; token t -> block slot // block_size, offset slot % block_size; -1 = skip.
            Live slots must be unique and in [0, num_blocks * block_size).
        kv_cache_dtype, k_scale, v_scale, k_scale_cache, v_scale_cache: the cache format and its scales
            (`nkilab.kernels.ops._kv_quant`); int8 writes each token's per-head scales into the scale caches.
        backend: "reference" | "nki" | "triton" | "auto" (see nkilab.kernels.api).
        target: Neuron target of the NKI backend ("inf2" | "trn1" | "trn2" | "trn3"); None = its default.

    Returns:
        (key_cache, value_cache): the caller's own arrays/tensors, updated.

    Cost: O(T) on every backend, whatever the cache size: the caches are never copied whole (see `write`).

    Example:
        >>> import numpy as np
        >>> kc, vc = np.zeros((2, 2, 1, 1)), np.zeros((2, 2, 1, 1))
        >>> kc, vc = write_kv_cache(np.ones((1, 1, 1)), np.ones((1, 1, 1)), kc, vc, np.array([2]), backend="reference")
        >>> kc.ravel().tolist()
        [0.0, 0.0, 1.0, 0.0]
    """
    quant = check(key, value, key_cache, value_cache, slot_mapping, kv_cache_dtype=kv_cache_dtype, k_scale=k_scale,
                  v_scale=v_scale, k_scale_cache=k_scale_cache, v_scale_cache=v_scale_cache)
    problem = dict(head_dim=int(key_cache.shape[3]), block_size=int(key_cache.shape[1]), dtype=dtype_name(key),
                   kv_cache_dtype=kv_cache_dtype, empty=_backends.empty(key))
    name, impl = _backends.choose(OP, backend, problem, target=target)
    write(name, impl, key, value, key_cache, value_cache, slot_mapping, **quant)
    return key_cache, value_cache


def write(name: str, impl, key, value, key_cache, value_cache, slot_mapping, **quant) -> None:
    """Run backend `name`'s write (`impl`) on validated arguments at a cost of O(new tokens), never O(cache).

    Caches the backend can take as views of the caller's memory (`_backends.in_place`: same device, contiguous) are
    written there directly. Others (another device, a non-contiguous cache) are not converted whole: the backend
    writes the live tokens into a compact staging cache of one slot per token (block_size 1), whose rows are then
    scattered into the caller's caches at their slots. `quant`: the backend keywords of `_kv_quant.check_scales`
    (int8 scale caches are caches too: written in place or staged like the data caches).
    """
    scale_names = [n for n in ("k_scale_cache", "v_scale_cache") if n in quant]
    caches = [key_cache, value_cache] + [quant[n] for n in scale_names]
    views = [_backends.in_place(name, c) for c in caches]
    small = [_backends.to_backend(name, a) for a in (key, value)]
    if all(v is not None for v in views):
        impl(*small, *views[:2], _backends.to_backend(name, slot_mapping),
             **{**quant, **dict(zip(scale_names, views[2:]))})  # in place, on the caller's memory
        return
    slots = to_numpy(slot_mapping).astype(np.int64)
    live = np.flatnonzero(slots >= 0)
    if live.size == 0:
        return
    compact = np.full(slots.shape, -1, np.int64)
    compact[live] = np.arange(live.size)
    stages = [_backends.to_backend(name, np.zeros((live.size, 1, *c.shape[2:]), numpy_dtype(dtype_name(c))))
              for c in caches]
    impl(*small, *stages[:2], _backends.to_backend(name, compact), **{**quant, **dict(zip(scale_names, stages[2:]))})
    blocks, offsets = np.divmod(slots[live], key_cache.shape[1])
    for mine, stage in zip(caches, stages):
        scatter_rows(mine, blocks, offsets, stage[:, 0])


def scatter_rows(cache, blocks: np.ndarray, offsets: np.ndarray, rows) -> None:
    """cache[blocks[i], offsets[i]] = rows[i] on the caller's cache (NumPy or torch, any device or strides)."""
    if is_torch(cache):
        import torch  # optional heavy dependency: `cache` is a tensor, so torch is already imported

        rows = rows if is_torch(rows) else to_torch(np.ascontiguousarray(rows))
        index = [torch.as_tensor(i, device=cache.device) for i in (blocks, offsets)]
        cache[index[0], index[1]] = rows.to(cache.device)
    else:
        cache[blocks, offsets] = to_numpy(rows)


def check(key, value, key_cache, value_cache, slot_mapping, *, kv_cache_dtype="auto", k_scale=None, v_scale=None,
          k_scale_cache=None, v_scale_cache=None) -> dict:
    """Validate a cache write: shapes, dtypes, writable caches, signed slots in [-1, num_blocks * block_size), live
    slots unique, the quantization arguments (`_kv_quant`); returns the backend keywords of the quantization."""
    _checks.arrays(key=key, value=value, key_cache=key_cache, value_cache=value_cache, slot_mapping=slot_mapping)
    _checks.ndim("key", key, 3, "[T, Hkv, D]")
    if tuple(value.shape) != tuple(key.shape):
        raise ValueError(f"value: shape must equal key's {tuple(key.shape)}, got {tuple(value.shape)}")
    storage = _kv_quant.storage(_kv_quant.check_dtype(kv_cache_dtype))
    _checks.paged_cache(key_cache, value_cache, storage)
    _checks.writable("key_cache", key_cache)
    _checks.writable("value_cache", value_cache)
    if storage is None:
        _checks.same_dtype("key, value, key_cache, value_cache", key, value, key_cache, value_cache)
    else:
        _checks.float_dtype("key", key)
        _checks.same_dtype("key, value", key, value)
        _checks.same_dtype("key_cache, value_cache", key_cache, value_cache)
    num_blocks, block_size, hkv, d = key_cache.shape
    if tuple(key.shape[1:]) != (hkv, d):
        raise ValueError(f"key: [Hkv, D]={tuple(key.shape[1:])} must match key_cache's {(hkv, d)}")
    _checks.ndim("slot_mapping", slot_mapping, 1, "[T]")
    _checks.int_dtype("slot_mapping", slot_mapping, signed=True)
    if slot_mapping.shape[0] != key.shape[0]:
        raise ValueError(f"slot_mapping: length {slot_mapping.shape[0]} must equal key's T={key.shape[0]}")
    slots = to_numpy(slot_mapping).astype(np.int64)
    num_slots = num_blocks * block_size
    bad = np.flatnonzero((slots < -1) | (slots >= num_slots))
    if bad.size:
        t = int(bad[0])
        raise ValueError(
            f"slot_mapping: slot_mapping[{t}] = {slots[t]} is outside [-1, num_blocks * block_size = {num_slots}); "
            "use -1 for padding tokens"
        )
    live = slots[slots >= 0]
    uniq, counts = np.unique(live, return_counts=True)
    if np.any(counts > 1):
        raise ValueError(f"slot_mapping: live slots must be unique (the write order is undefined), slot {uniq[counts > 1][0]} repeats")
    quant = _kv_quant.check_scales(kv_cache_dtype, key_cache, k_scale=k_scale, v_scale=v_scale,
                                   k_scale_cache=k_scale_cache, v_scale_cache=v_scale_cache, writing=True)
    _kv_quant.check_finite(kv_cache_dtype, key=key, value=value)
    return quant


# --- the check: an exact copy -------------------------------------------------------------------------------------


def stacked_caches(out) -> np.ndarray:
    """The two caches a write returns, as one float64 array [2, num_blocks, block_size, Hkv, D] (NumPy or torch in)."""
    return np.stack([to_numpy(out[0]).astype(np.float64), to_numpy(out[1]).astype(np.float64)])


def expected_caches(key, value, key_cache, value_cache, slot_mapping, *, compute_dtype=None, **quant) -> np.ndarray:
    """The reference write on copies of the caches (and of int8 scale caches), stacked like `stacked_caches` (a copy
    or a float32-exact quantization has no working precision, so `compute_dtype` is ignored); `quant`: the call's
    kv_cache_dtype and scale keywords. The harness compares the data caches; tests/kernels/test_kv_quant.py also the
    int8 scale caches, bit for bit."""
    quant = {k: (v.copy() if k.endswith("_cache") else v) for k, v in quant.items()}
    return stacked_caches(reference.write_kv_cache(key, value, key_cache.copy(), value_cache.copy(), slot_mapping,
                                                   **quant))


def dequantized_caches(key, value, key_cache, value_cache, slot_mapping, *, compute_dtype=None,
                       kv_cache_dtype="auto", k_scale=None, v_scale=None, k_scale_cache=None, v_scale_cache=None):
    """The reference write on copies of the caches, its codes dequantized (`reference.kv_quant.dequantize_rows`:
    code * scale in float64), stacked like `stacked_caches`: the written values as the cache will give them back,
    for the quantization error against the unquantized write (`compute_dtype` ignored, as in `expected_caches`)."""
    scale_caches = [None if c is None else c.copy() for c in (k_scale_cache, v_scale_cache)]
    caches = reference.write_kv_cache(key, value, key_cache.copy(), value_cache.copy(), slot_mapping,
                                      kv_cache_dtype=kv_cache_dtype, k_scale=k_scale, v_scale=v_scale,
                                      k_scale_cache=scale_caches[0], v_scale_cache=scale_caches[1])
    nb, bs, hkv, d = key_cache.shape
    return np.stack([
        dequantize_rows(codes.reshape(nb * bs, hkv, d), kv_cache_dtype, scale=1.0 if scale is None else scale,
                        scales=None if scales is None else scales.reshape(nb * bs, hkv)).reshape(codes.shape)
        for codes, scale, scales in zip(caches, (k_scale, v_scale), scale_caches)])


# --- workload -----------------------------------------------------------------------------------------------------


def spec(problem: Problem) -> dict:
    p = problem.params
    return dict(head_dim=p["head_dim"], block_size=p["block_size"], dtype=problem.dtype,
                kv_cache_dtype=p.get("kv_cache_dtype", "auto"))


def flops(problem: Problem) -> float:
    """A copy: no FLOPs."""
    return 0.0


def hbm_bytes(problem: Problem) -> float:
    """key and value read, both caches written (T rows of Hkv·D each, in the cache's storage dtype; int8 also its
    float32 scale per token and head), the int64 slots read."""
    p = problem.params
    kv_dtype = p.get("kv_cache_dtype", "auto")
    elements = 2 * p["t"] * p["hkv"] * p["head_dim"]
    stored = elements * _kv_quant.storage_dtype(kv_dtype, problem.dtype).itemsize
    return itemsize(problem.dtype) * elements + stored + _kv_quant.scale_bytes(kv_dtype, p["t"], p["hkv"]) + 8 * p["t"]


def make_inputs(problem: Problem, rng: np.random.Generator, zeros: bool):
    """(key, value, key_cache, value_cache, slot_mapping): NaN-filled caches of ceil(T / block_size) + 2 blocks,
    distinct random slots and one -1 padding token (T > 2); zeros everywhere in trace mode. A quantized
    kv_cache_dtype: caches of its storage dtype (NaN / random old codes, NaN old int8 scales) and its scale keywords
    (`_kv_quant.quantized_caches` with no live slot: nothing is written before the call)."""
    p, dt = problem.params, numpy_dtype(problem.dtype)
    t, hkv, d, bs = p["t"], p["hkv"], p["head_dim"], p["block_size"]
    num_blocks = math.ceil(t / bs) + 2
    slots = rng.permutation(num_blocks * bs)[:t].astype(np.int64)
    if t > 2 and not zeros:
        slots[t // 2] = -1  # one padding token
    new = [np.zeros((t, hkv, d), dt) if zeros else rng.standard_normal((t, hkv, d)).astype(dt) for _ in range(2)]
    fill = 0.0 if zeros else np.nan
    caches = [np.full((num_blocks, bs, hkv, d), fill, dt) for _ in range(2)]
    kv_dtype = p.get("kv_cache_dtype", "auto")
    if kv_dtype == "auto":
        return (*new, *caches, slots), {}
    *caches, extra = _kv_quant.quantized_caches(kv_dtype, *caches, (), zeros)
    if kv_dtype.startswith("fp8") and not zeros:  # scales of the new rows: amax / max, per tensor or per kv head
        extra = _kv_quant.quantized_caches(kv_dtype, new[0][:, None], new[1][:, None], range(t), False,
                                           per_head=p.get("fp8_scales") == "head")[2]
    return (*new, *caches, slots), dict(kv_cache_dtype=kv_dtype, **extra)


def smoke_problems(dtype: str) -> list[Problem]:
    """Seven tokens, one of them padding, into a model-dtype cache and into each quantized cache of
    `_kv_quant.SMOKE_FORMATS` (see paged_attention's smoke problems)."""
    auto = Problem(OP, "smoke/write_kv_cache/t7-bs16", "smoke", dict(t=7, hkv=2, head_dim=64, block_size=16), dtype,
                   7, "smoke")
    return [auto] + _kv_quant.smoke_variants(auto)


def model_problems(model, phase: str, grid: dict, quant, dtype: str) -> list[Problem]:
    """Decode: one token per sequence at every batch and block size; prefill: the sequence, first block size."""
    hkv, d = model.kv_heads_per_rank, model.head_dim
    if phase == "decode":
        rows = [(b, bs) for bs in grid["block_sizes"] for b in grid["batches"]]
    else:
        rows = [(s, grid["block_sizes"][0]) for s in grid["prefill"]]
    auto = [Problem(OP, f"{model.name}/{phase}/write_kv_cache/t{t}-bs{bs}", phase,
                    dict(t=t, hkv=hkv, head_dim=d, block_size=bs), dtype, t, model.name) for t, bs in rows]
    return auto + _kv_quant.workload_variants(auto, rows[0][1] if rows else None)


# --- GPU bench ----------------------------------------------------------------------------------------------------


def bench(problem: Problem, device, cache: dict):
    """(cases, truth) of the GPU bench: Triton and torch `index_copy_` of the live tokens (padding pre-filtered)."""
    import torch  # optional heavy dependency: only the GPU bench calls this

    triton_write = _backends.load(OP, "triton")[0]
    args, _ = make_inputs(problem, np.random.default_rng(0), False)
    key, value, kc, vc, slots = (to_torch(a, device=device) for a in args)
    live = slots >= 0
    live_slots, live_key, live_value = slots[live], key[live], value[live]
    flat_k, flat_v = kc.view(-1, *kc.shape[2:]), vc.view(-1, *vc.shape[2:])
    cases = [("triton", lambda: triton_write(key, value, kc, vc, slots)),
             ("torch index_copy_ (padding pre-filtered)",
              lambda: (flat_k.index_copy_(0, live_slots, live_key), flat_v.index_copy_(0, live_slots, live_value)))]

    def truth():
        expected = [torch.full_like(c, float("nan")).view(-1, *c.shape[2:]).index_copy_(0, live_slots, new).view_as(c)
                    for c, new in ((kc, live_key), (vc, live_value))]
        ref = stacked_caches(expected)
        return ref, ref

    return cases, truth


def _torch_call(*args, **kwargs) -> None:
    """The torch op writes the caches in place and returns nothing (a custom op may not return its inputs)."""
    write_kv_cache(*args, **kwargs)


def _fake(*args, **kwargs) -> None:
    return None


TORCH = TorchOp(
    # fp8 scales are tensors here (0-d: per tensor, [Hkv]: per head); the int8 scale caches are written in place
    schema="(Tensor key, Tensor value, Tensor(a!) key_cache, Tensor(b!) value_cache, Tensor slot_mapping, *, "
           "str kv_cache_dtype='auto', Tensor? k_scale=None, Tensor? v_scale=None, Tensor(c!)? k_scale_cache=None, "
           "Tensor(d!)? v_scale_cache=None, str backend='auto', str? target=None) -> ()",
    fake=_fake,
    call=_torch_call,
)


OP = Op(
    name="write_kv_cache",
    order=30,
    api=write_kv_cache,
    reference=reference.write_kv_cache,
    run_reference=reference.write_kv_cache,
    backends={"nki": Launcher("nkilab.kernels.nki.launch_kv_cache", "write_kv_cache"),
              "triton": Launcher("nkilab.kernels.triton.kv_cache", "write_kv_cache")},
    spec=spec,
    flops=flops,
    hbm_bytes=hbm_bytes,
    make_inputs=make_inputs,
    smoke_problems=smoke_problems,
    model_problems=model_problems,
    check=Check(output=stacked_caches, reference=expected_caches, naive=False, floor=0.0,  # a copy must be exact
                dequantized=dequantized_caches),
    plot=Plot(size="t"),
    bench=bench,
    bench_variants=lambda problem: [] if problem.params.get("kv_cache_dtype", "auto") != "auto" else [problem],
    torch=TORCH,
)
