"""paged_attention: attention over a paged KV cache for decode, prefill, chunked prefill and mixed batches — the op
family, declared once (public function, rules, reference, workload, check, plot axes, GPU-bench baselines).

Per rank, a decode step is one call: one query per sequence over its context.
"""

from __future__ import annotations

import math

import numpy as np

from nkilab import reference
from nkilab.kernels import _backends, _checks
from nkilab.kernels._adapter import dtype_name, numpy_dtype, to_numpy, to_torch
from nkilab.kernels.ops import _kv_quant
from nkilab.kernels.ops._op import Launcher, Op, Plot, TorchOp
from nkilab.kernels.ops._problem import Problem
from nkilab.kernels.ops.attention import attention_torch, sdpa, visible_pairs
from nkilab.reference.dtypes import itemsize


def paged_attention(q, key_cache, value_cache, block_tables, seq_lens, query_start_loc, *, scale=None, causal=True,
                    sliding_window=None, softcap=None, kv_cache_dtype="auto", k_scale=None, v_scale=None,
                    k_scale_cache=None, v_scale_cache=None, backend="auto", out=None, target=None):
    """Attention over a paged KV cache for decode, prefill, chunked prefill and mixed batches.

    Dimensions: T_total query tokens of num_seqs sequences; Hq = g * Hkv; D head dim.

    Args:
        q: [T_total, Hq, D] float16|bfloat16|float32|float64; sequence i owns rows
            query_start_loc[i] : query_start_loc[i + 1], which are its last q_len_i positions.
        key_cache, value_cache: [num_blocks, block_size, Hkv, D], q's dtype (layout: nkilab.reference.paged), or
            float8_e4m3 / float8_e4m3fn / int8 for the quantized kv_cache_dtype of that name.
        block_tables: [num_seqs, max_blocks] integer (int32); the first ceil(seq_lens[i] / block_size) entries
            of row i must be in [0, num_blocks); later entries are ignored (-1 or anything).
        seq_lens: [num_seqs] integer, KV length of each sequence including its new tokens (>= q_len_i).
        query_start_loc: [num_seqs + 1] integer (int32), 0 first, non-decreasing, T_total last.
        scale, causal, sliding_window, softcap: as in `attention` (causal defaults to True here).
        kv_cache_dtype, k_scale, v_scale, k_scale_cache, v_scale_cache: the caches' format and scales, as written by
            `write_kv_cache` (`nkilab.kernels.ops._kv_quant`); the kernels dequantize on the fly.
        backend: "reference" | "nki" | "triton" | "auto" (see nkilab.kernels.api).
        out: None, or an array like q (kind, shape, dtype, device) that receives the result (returned).
        target: Neuron target of the NKI backend ("inf2" | "trn1" | "trn2" | "trn3"); None = its default.

    Returns:
        out: [T_total, Hq, D], q's dtype and kind (the caller's `out` when given).

    See Also:
        nkilab.reference.paged.paged_attention (gather each sequence, then dense attention).
    """
    options = check(q, key_cache, value_cache, block_tables, seq_lens, query_start_loc, causal=causal, scale=scale,
                    sliding_window=sliding_window, softcap=softcap, kv_cache_dtype=kv_cache_dtype, k_scale=k_scale,
                    v_scale=v_scale, k_scale_cache=k_scale_cache, v_scale_cache=v_scale_cache)
    _checks.out_array(out, q, "q")
    problem = dict(head_dim=int(q.shape[2]), block_size=int(key_cache.shape[1]), dtype=dtype_name(q),
                   sliding_window=options["sliding_window"], softcap=options["softcap"], kv_cache_dtype=kv_cache_dtype,
                   empty=_backends.empty(q))
    name, impl = _backends.choose(OP, backend, problem, target=target)
    arrays = (q, key_cache, value_cache, block_tables, seq_lens, query_start_loc)
    for key in ("k_scale_cache", "v_scale_cache"):
        if key in options:
            options[key] = _backends.to_backend(name, options[key])
    result = impl(*(_backends.to_backend(name, a) for a in arrays), **options)
    return _backends.back(result, q, out)


def check(q, key_cache, value_cache, block_tables, seq_lens, query_start_loc, *, causal, scale, sliding_window,
          softcap, kv_cache_dtype="auto", k_scale=None, v_scale=None, k_scale_cache=None, v_scale_cache=None) -> dict:
    """Validate paged attention inputs; returns the normalized options (`_checks.attention_options`) and the
    quantization's backend keywords (`_kv_quant.check_scales`; none for "auto")."""
    _checks.arrays(q=q, key_cache=key_cache, value_cache=value_cache, block_tables=block_tables, seq_lens=seq_lens,
                   query_start_loc=query_start_loc)
    _checks.ndim("q", q, 3, "[T_total, Hq, D]")
    _checks.float_dtype("q", q)
    storage = _kv_quant.storage(_kv_quant.check_dtype(kv_cache_dtype))
    _checks.paged_cache(key_cache, value_cache, storage)
    if storage is None:
        _checks.same_dtype("q, key_cache, value_cache", q, key_cache, value_cache)
    else:
        _checks.same_dtype("key_cache, value_cache", key_cache, value_cache)
    num_blocks, block_size, hkv, d = key_cache.shape
    t_total, hq, qd = q.shape
    if qd != d:
        raise ValueError(f"q: head_dim D={qd} must equal key_cache's D={d}")
    _checks.heads(hq, hkv, "q", "key_cache")
    for name, a, rank, layout in (("block_tables", block_tables, 2, "[num_seqs, max_blocks]"),
                                  ("seq_lens", seq_lens, 1, "[num_seqs]"),
                                  ("query_start_loc", query_start_loc, 1, "[num_seqs + 1]")):
        _checks.ndim(name, a, rank, layout)
        _checks.int_dtype(name, a)
    num_seqs = block_tables.shape[0]
    if seq_lens.shape[0] != num_seqs:
        raise ValueError(f"seq_lens: length {seq_lens.shape[0]} must equal block_tables' num_seqs={num_seqs}")
    if query_start_loc.shape[0] != num_seqs + 1:
        raise ValueError(f"query_start_loc: length {query_start_loc.shape[0]} must be num_seqs + 1 = {num_seqs + 1}")
    starts = to_numpy(query_start_loc).astype(np.int64)
    lens = to_numpy(seq_lens).astype(np.int64)
    _check_metadata(starts, lens, t_total)
    _check_block_tables(to_numpy(block_tables).astype(np.int64), lens, num_blocks, block_size)
    quant = _kv_quant.check_scales(kv_cache_dtype, key_cache, k_scale=k_scale, v_scale=v_scale,
                                   k_scale_cache=k_scale_cache, v_scale_cache=v_scale_cache, writing=False)
    return {**_checks.attention_options(causal, scale, sliding_window, softcap, d), **quant}


def _check_metadata(starts: np.ndarray, lens: np.ndarray, t_total: int) -> None:
    """query_start_loc runs 0 .. T_total without decreasing; each seq_len >= 0 counts its q_len new tokens."""
    if starts[0] != 0:
        raise ValueError(f"query_start_loc: must start at 0, got query_start_loc[0] = {starts[0]}")
    if starts[-1] != t_total:
        raise ValueError(f"query_start_loc: must end at q's T_total={t_total}, got query_start_loc[-1] = {starts[-1]}")
    q_lens = np.diff(starts)
    if np.any(q_lens < 0):
        i = int(np.flatnonzero(q_lens < 0)[0])
        raise ValueError(f"query_start_loc: must be non-decreasing, got [{i}] = {starts[i]} > [{i + 1}] = {starts[i + 1]}")
    if np.any(lens < 0):
        i = int(np.flatnonzero(lens < 0)[0])
        raise ValueError(f"seq_lens: must be >= 0, got seq_lens[{i}] = {lens[i]}")
    if np.any(q_lens > lens):
        i = int(np.flatnonzero(q_lens > lens)[0])
        raise ValueError(
            f"seq_lens: sequence {i} has q_len={q_lens[i]} query tokens (from query_start_loc) but seq_lens[{i}] = "
            f"{lens[i]}; seq_lens counts the new tokens too, so q_len <= seq_len"
        )


def _check_block_tables(table: np.ndarray, lens: np.ndarray, num_blocks: int, block_size: int) -> None:
    """Every sequence's live blocks fit the table and name blocks of the cache (entries past them are ignored)."""
    blocks_needed = -(-lens // block_size)
    max_blocks = table.shape[1]
    if np.any(blocks_needed > max_blocks):
        i = int(np.flatnonzero(blocks_needed > max_blocks)[0])
        raise ValueError(
            f"block_tables: sequence {i} needs {blocks_needed[i]} blocks (seq_lens[{i}] = {lens[i]}, "
            f"block_size={block_size}) but block_tables has max_blocks={max_blocks} columns"
        )
    used = np.arange(max_blocks)[None, :] < blocks_needed[:, None]
    bad = used & ((table < 0) | (table >= num_blocks))
    if np.any(bad):
        i, j = (int(x) for x in np.argwhere(bad)[0])
        raise ValueError(
            f"block_tables: used entry [{i}, {j}] = {table[i, j]} must be in [0, num_blocks={num_blocks}) "
            f"(sequence {i} uses its first {blocks_needed[i]} entries; entries past those may be -1)"
        )


def _run_reference(q, key_cache, value_cache, block_tables, seq_lens, query_start_loc, **options):
    out = reference.paged_attention(q, key_cache, value_cache, block_tables, seq_lens, query_start_loc, **options)
    return out.astype(q.dtype)


# --- workload -----------------------------------------------------------------------------------------------------


def contexts(problem: Problem) -> list[int]:
    """Each sequence's KV length (`seq_lens`, or `context` for every one of `num_seqs`)."""
    p = problem.params
    return list(p["seq_lens"]) if "seq_lens" in p else [p["context"]] * p["num_seqs"]


def q_lens(problem: Problem) -> list[int]:
    """Each sequence's query count (`q_lens`, or `q_len` for every one of `num_seqs`)."""
    p = problem.params
    return list(p["q_lens"]) if "q_lens" in p else [p["q_len"]] * p["num_seqs"]


def spec(problem: Problem) -> dict:
    p = problem.params
    return dict(head_dim=p["head_dim"], block_size=p["block_size"], dtype=problem.dtype,
                sliding_window=p.get("sliding_window"), softcap=p.get("softcap"),
                kv_cache_dtype=p.get("kv_cache_dtype", "auto"))


def flops(problem: Problem) -> float:
    """4·D per visible (query, key) pair per query head (causal, bottom-right, the window)."""
    p = problem.params
    pairs = sum(visible_pairs(q, ctx, True, p.get("sliding_window")) for q, ctx in zip(q_lens(problem),
                                                                                        contexts(problem)))
    return 4.0 * p["hq"] * pairs * p["head_dim"]


def hbm_bytes(problem: Problem) -> float:
    """q read and out written, the live (windowed) K and V positions read once (in the cache's storage dtype, int8
    with its float32 scale per token and head), the int32 metadata read."""
    p = problem.params
    d = p["head_dim"]
    kv_dtype = p.get("kv_cache_dtype", "auto")
    tokens_q = sum(q_lens(problem))
    rows = sum(min(ctx, p.get("sliding_window") or ctx) for ctx in contexts(problem))
    kv = 2 * rows * p["hkv"] * d * _kv_quant.storage_dtype(kv_dtype, problem.dtype).itemsize
    kv += _kv_quant.scale_bytes(kv_dtype, rows, p["hkv"])
    max_blocks = math.ceil(max(contexts(problem)) / p["block_size"])
    return itemsize(problem.dtype) * 2 * tokens_q * p["hq"] * d + kv + 4 * p["num_seqs"] * (max_blocks + 2)


def make_inputs(problem: Problem, rng: np.random.Generator, zeros: bool):
    """(q, key_cache, value_cache, block_tables, seq_lens, query_start_loc): permuted physical blocks, NaN in every
    slot no sequence owns (zeros everywhere in trace mode); causal / window / softcap as keywords. A quantized
    kv_cache_dtype quantizes the live slots the way write_kv_cache stores them (`_kv_quant.quantized_caches`) and adds
    its scale keywords: the check compares each backend with the reference on those same caches."""
    p, dt = problem.params, numpy_dtype(problem.dtype)
    hq, hkv, d, bs = p["hq"], p["hkv"], p["head_dim"], p["block_size"]

    def normal(shape):
        # zeros straight in the target dtype: calloc'd pages stay untouched for big trace-mode caches
        return np.zeros(shape, dt) if zeros else rng.standard_normal(shape).astype(dt)

    seq_lens = np.asarray(contexts(problem), dtype=np.int32)
    starts = np.concatenate([[0], np.cumsum(q_lens(problem))]).astype(np.int32)
    blocks_needed = [math.ceil(int(s) / bs) for s in seq_lens]
    num_blocks = sum(blocks_needed) + 1
    physical = rng.permutation(num_blocks)
    tables = np.full((len(seq_lens), max(blocks_needed)), -1, dtype=np.int32)
    used = 0
    for i, need in enumerate(blocks_needed):
        tables[i, :need] = physical[used:used + need]
        used += need
    if zeros:
        key_cache, value_cache = normal((num_blocks, bs, hkv, d)), normal((num_blocks, bs, hkv, d))
    else:
        keys = [normal((int(s), hkv, d)) for s in seq_lens]
        values = [normal((int(s), hkv, d)) for s in seq_lens]
        key_cache, value_cache = reference.build_paged_cache(keys, values, tables, num_blocks=num_blocks, block_size=bs)
    q = normal((int(starts[-1]), hq, d))
    options = dict(causal=True, sliding_window=p.get("sliding_window"), softcap=p.get("softcap"))
    kv_dtype = p.get("kv_cache_dtype", "auto")
    if kv_dtype != "auto":
        live = None if zeros else {int(tables[i, pos // bs]) * bs + pos % bs for i, s in enumerate(seq_lens)
                                   for pos in range(int(s))}
        key_cache, value_cache, extra = _kv_quant.quantized_caches(kv_dtype, key_cache, value_cache, live, zeros,
                                                                   per_head=p.get("fp8_scales") == "head")
        options.update(kv_cache_dtype=kv_dtype, **extra)
    return (q, key_cache, value_cache, tables, seq_lens, starts), options


def smoke_problems(dtype: str) -> list[Problem]:
    """A mixed batch: two decode sequences and a 4-token chunk, over the model-dtype cache and over each quantized
    cache of `_kv_quant.SMOKE_FORMATS` (the check compares with the reference on the same quantized cache; the GPU
    bench runs model problems only, and declines quantized ones in `bench_variants`)."""
    auto = Problem(OP, "smoke/paged_attention/mixed", "smoke",
                   dict(num_seqs=3, q_lens=(1, 1, 4), seq_lens=(17, 40, 9), q_len=1, hq=4, hkv=2, head_dim=64,
                        block_size=16, sliding_window=None, softcap=None), dtype, 6, "smoke")
    return [auto] + _kv_quant.smoke_variants(auto)


def model_problems(model, phase: str, grid: dict, quant, dtype: str) -> list[Problem]:
    """decode: one query per sequence, batch x context x block size (at most `grid["max_kv_tokens"]` cached tokens
    per call), then the quantized caches at the first block size (`_kv_quant.workload_variants`). The other phases
    use the first block size and the model-dtype cache:
      prefill  one sequence of each `paged_prefill` length written through the paged cache and attended causally;
      chunked  one chunked-prefill chunk of each `chunks` length, the last tokens of a sequence of each
               `chunk_contexts` length;
      mixed    one scheduler step: `mixed_batches` decode sequences and one chunk (the first `chunks` length), every
               sequence `chunk_contexts` long — the one call the kernel serves them all with.
    A grid without those keys (the cost composer's one-point grids, whose prefill layer attends densely) has no
    problems in these phases."""
    if phase == "decode":
        auto = _decode_problems(model, grid, dtype)
        return auto + _kv_quant.workload_variants(auto, grid["block_sizes"][0])
    bs = grid["block_sizes"][0]
    if phase == "prefill":
        steps = [(f"s{s}", (s,), (s,)) for s in grid.get("paged_prefill", ())]
    elif phase == "chunked":
        steps = [(f"chunk{c}-ctx{ctx}", (c,), (ctx,)) for c in grid.get("chunks", ())
                 for ctx in grid.get("chunk_contexts", ()) if ctx >= c]
    elif not grid.get("chunks"):
        steps = []
    else:
        c = grid["chunks"][0]
        steps = [(f"b{b}-ctx{ctx}+chunk{c}", (1,) * b + (c,), (ctx,) * (b + 1)) for b in grid["mixed_batches"]
                 for ctx in grid["chunk_contexts"] if ctx >= c]
    return [_paged_problem(model, phase, f"{shape}-bs{bs}", dict(num_seqs=len(lens), q_lens=q, seq_lens=lens), bs,
                           dtype, sum(q))
            for shape, q, lens in steps]


def _paged_problem(model, phase: str, shape: str, sequences: dict, block_size: int, dtype: str,
                   tokens: int) -> Problem:
    params = dict(sequences, hq=model.q_heads_per_rank, hkv=model.kv_heads_per_rank, head_dim=model.head_dim,
                  block_size=block_size, sliding_window=model.sliding_window, softcap=None)
    return Problem(OP, f"{model.name}/{phase}/paged_attention/{shape}", phase, params, dtype, tokens, model.name)


def _decode_problems(model, grid: dict, dtype: str) -> list[Problem]:
    """The decode grid over the model-dtype cache ("auto")."""
    return [_paged_problem(model, "decode", f"b{b}-ctx{ctx}-bs{bs}", dict(num_seqs=b, q_len=1, context=ctx), bs,
                           dtype, b)
            for bs in grid["block_sizes"] for b in grid["batches"] for ctx in grid["contexts"]
            if b * ctx <= grid.get("max_kv_tokens", b * ctx)]  # bounds the default grid's trace-mode caches


def _series(problem: dict) -> tuple[tuple, str]:
    context = problem.get("context", 0)
    kv = problem.get("kv_cache_dtype", "auto")
    return (context, kv), f"paged_attention ctx {context}" + ("" if kv == "auto" else f" {kv}")


# --- GPU bench ----------------------------------------------------------------------------------------------------


def paged_attention_torch(q, key_cache, value_cache, block_tables, seq_lens, query_start_loc, *, scale, dtype,
                          causal=True, sliding_window=None, softcap=None):
    """The reference's paged attention in torch: gather each sequence's live keys through its block table, then
    `attention_torch` (float64 = the truth on the GPU)."""
    import torch  # optional heavy dependency: only the GPU bench calls this

    block_size = key_cache.shape[1]
    outs = []
    for i, length in enumerate(seq_lens.tolist()):
        pos = torch.arange(length, device=q.device)
        blocks = block_tables[i].long()[pos // block_size]
        rows = slice(int(query_start_loc[i]), int(query_start_loc[i + 1]))
        outs.append(attention_torch(q[rows], key_cache[blocks, pos % block_size], value_cache[blocks, pos % block_size],
                                    causal=causal, scale=scale, sliding_window=sliding_window, softcap=softcap,
                                    dtype=dtype))
    return torch.cat(outs)


def bench(problem: Problem, device, cache: dict):
    """(cases, truth) of the GPU bench: Triton and, for a uniform decode batch without a window, torch SDPA over the
    same keys stored densely (no paging). Quantized-cache rows have no bench variant (`OP.bench_variants`): torch has
    no float8_e4m3 and its baselines no int8 cache; they are modeled on the Neuron targets."""
    import torch  # optional heavy dependency: only the GPU bench calls this

    triton_paged = _backends.load(OP, "triton")[0]
    args, opts = make_inputs(problem, np.random.default_rng(0), False)
    q, kc, vc, bt, sl, qsl = (to_torch(a, device=device) for a in args)
    scale = q.shape[-1] ** -0.5
    cases = [("triton", lambda: triton_paged(q, kc, vc, bt, sl, qsl, scale=scale, **opts))]
    ctxs = contexts(problem)
    if set(q_lens(problem)) == {1} and len(set(ctxs)) == 1 and opts["sliding_window"] is None:
        # The same keys stored densely: [B, Hkv, ctx, D], one query per sequence (decode sees every key).
        pos = torch.arange(ctxs[0], device=device)
        blocks = bt.long()[:, pos // kc.shape[1]]
        dense_k = kc[blocks, pos % kc.shape[1]].transpose(1, 2).contiguous()
        dense_v = vc[blocks, pos % kc.shape[1]].transpose(1, 2).contiguous()
        q4 = q[:, :, None, :]
        cases.append(("torch SDPA (dense KV, no paging)", lambda: sdpa(q4, dense_k, dense_v, causal=False)))

    def truth():
        def run(dtype):
            return paged_attention_torch(q, kc, vc, bt, sl, qsl, scale=scale, dtype=dtype, **opts)

        return run(torch.float64), run(q.dtype)

    return cases, truth


# torch.ops.nkilab.<op> (nkilab.kernels.torch_ops): the public function's arguments as a torch.library schema
# (fp8 k_scale / v_scale as tensors: 0-d per tensor, [Hkv] per head)
_TORCH_ARGS = ("Tensor q, Tensor key_cache, Tensor value_cache, Tensor block_tables, Tensor seq_lens, "
               "Tensor query_start_loc, *, float? scale=None, bool causal=True, int? sliding_window=None, "
               "float? softcap=None, str kv_cache_dtype='auto', Tensor? k_scale=None, Tensor? v_scale=None, "
               "Tensor? k_scale_cache=None, Tensor? v_scale_cache=None, str backend='auto', str? target=None")
TORCH = TorchOp.like_first(_TORCH_ARGS)


OP = Op(
    name="paged_attention",
    order=40,
    api=paged_attention,
    reference=reference.paged_attention,
    run_reference=_run_reference,
    backends={"nki": Launcher("nkilab.kernels.nki.launch_paged", "paged_attention"),
              "triton": Launcher("nkilab.kernels.triton.paged_attention", "paged_attention")},
    spec=spec,
    flops=flops,
    hbm_bytes=hbm_bytes,
    make_inputs=make_inputs,
    smoke_problems=smoke_problems,
    model_problems=model_problems,
    plot=Plot(size="num_seqs", series=_series, context="context"),
    bench=bench,
    bench_variants=lambda problem: [] if problem.params.get("kv_cache_dtype", "auto") != "auto" else [problem],
    phases=("decode", "prefill", "chunked", "mixed"),
    torch=TORCH,
)
