"""Workloads: real-model shapes turned into kernel problems, each with its token count and quant scheme.

Models (anchors.md §6.1): Llama-3.1-8B, Llama-3.1-70B at TP 8 (per-rank shapes), Qwen2.5-7B (28/4 heads),
Mistral-7B (sliding window 4096). Per layer and per rank, each model yields:
  decode   qmatmul (QKV, O, gate_up, down) at M = batch; paged_attention with one query per sequence over its
           context; write_kv_cache of one token per sequence.        tokens = batch
  prefill  qmatmul at M = sequence length; causal attention over the sequence; write_kv_cache of the sequence.
           tokens = sequence length (batch 1)
  smoke    small shapes that every backend runs in seconds, for correctness.

A `Problem` holds the op, its shape parameters, dtype and quant scheme; `problem.spec()` is the dict the
backends' `unsupported(op, **problem)` take; `flops()` / `hbm_bytes()` are the roofline formulas (FlashInfer
`testing/utils.py` style); `make_inputs(problem, rng)` builds NumPy arguments for the public API.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import ml_dtypes
import numpy as np

OPS = ("qmatmul", "attention", "write_kv_cache", "paged_attention")
DECODE_BATCHES = (1, 8, 32, 128, 256)
DECODE_CONTEXTS = (512, 2048, 8192, 32768)
BLOCK_SIZES = (16, 32, 128)
PREFILL_LENGTHS = (512, 2048, 8192)
# grids: "full" = the anchors.md §6.3 matrix; "default" = what `nkilab run` models per target in a few minutes;
# "quick" = the CI smoke of the CLI
GRIDS = {
    "full": dict(batches=DECODE_BATCHES, contexts=DECODE_CONTEXTS, block_sizes=BLOCK_SIZES,
                 prefill=PREFILL_LENGTHS, prefill_qmatmul=PREFILL_LENGTHS),
    # prefill qmatmul traces grow with M x K x N: the default grid keeps one length so a run stays in minutes
    "default": dict(batches=(1, 8, 32), contexts=(512, 2048, 8192), block_sizes=(32,), prefill=(512, 2048),
                    prefill_qmatmul=(512,), max_kv_tokens=65536),
    "quick": dict(batches=(1, 8), contexts=(512,), block_sizes=(32,), prefill=(512,), prefill_qmatmul=(512,)),
}
_ITEMSIZE = {"float32": 4, "float16": 2, "bfloat16": 2, "float8_e4m3": 1, "float8_e4m3fn": 1}
_WEIGHT_BITS = {"int8": 8, "int4": 4, "fp8_e4m3": 8, "fp8_e4m3fn": 8}


@dataclass(frozen=True)
class ModelShape:
    """One transformer's per-layer dimensions (anchors.md §6.1), at tensor-parallel degree `tp`.

    Attributes:
        name: registry key; hidden: model width; layers; q_heads, kv_heads: attention heads (whole model);
        head_dim: D; intermediate: MLP width; vocab; sliding_window: None or the window in tokens; tp: TP degree.
    """

    name: str
    hidden: int
    layers: int
    q_heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    sliding_window: int | None = None
    tp: int = 1

    @property
    def q_heads_per_rank(self) -> int:
        return self.q_heads // self.tp

    @property
    def kv_heads_per_rank(self) -> int:
        return max(1, self.kv_heads // self.tp)

    def projections(self) -> dict[str, tuple[int, int]]:
        """Per-rank GEMM (K, N) of each projection: TP splits N of QKV/gate_up and K of O/down."""
        d = self.head_dim
        qkv_n = (self.q_heads_per_rank + 2 * self.kv_heads_per_rank) * d
        return {
            "qkv": (self.hidden, qkv_n),
            "o": (self.q_heads_per_rank * d, self.hidden),
            "gate_up": (self.hidden, 2 * self.intermediate // self.tp),
            "down": (self.intermediate // self.tp, self.hidden),
        }


MODELS: dict[str, ModelShape] = {
    "llama-3.1-8b": ModelShape("llama-3.1-8b", 4096, 32, 32, 8, 128, 14336, 128256),
    "llama-3.1-70b": ModelShape("llama-3.1-70b", 8192, 80, 64, 8, 128, 28672, 128256, tp=8),
    "qwen2.5-7b": ModelShape("qwen2.5-7b", 3584, 28, 28, 4, 128, 18944, 152064),
    "mistral-7b": ModelShape("mistral-7b", 4096, 32, 32, 8, 128, 14336, 32000, sliding_window=4096),
}
DEFAULT_MODEL = "llama-3.1-8b"


@dataclass(frozen=True)
class Quant:
    """A weight-quantization scheme for qmatmul problems (DESIGN §3.1)."""

    scheme: str = "int8"
    group_size: int | None = None
    symmetric: bool = True
    w8a8: bool = False

    @property
    def label(self) -> str:
        group = f"g{self.group_size}" if self.group_size else "per-channel"
        return f"{self.scheme}-{group}{'' if self.symmetric else '-asym'}{'-w8a8' if self.w8a8 else ''}"


DEFAULT_QUANT = Quant()


@dataclass(frozen=True)
class Problem:
    """One kernel call to check or profile.

    Attributes:
        op: "qmatmul" | "attention" | "write_kv_cache" | "paged_attention".
        name: readable id, e.g. "llama-3.1-8b/decode/paged_attention/b8-ctx2048-bs32".
        phase: "decode" | "prefill" | "smoke".
        params: shape parameters (see `make_inputs` for each op's keys).
        dtype: activation / KV dtype name.
        tokens: tokens this call serves (decode: one per sequence; prefill: the sequence).
        model: model key or "smoke".
        quant: qmatmul only: the weight scheme.
    """

    op: str
    name: str
    phase: str
    params: dict = field(hash=False)
    dtype: str
    tokens: int
    model: str
    quant: Quant | None = None

    def spec(self) -> dict:
        """The problem dict of the backend contract (`unsupported(op, **spec)`)."""
        p = self.params
        if self.op == "qmatmul":
            q = self.quant or DEFAULT_QUANT
            return dict(scheme=q.scheme, group_size=q.group_size, symmetric=q.symmetric, w8a8=q.w8a8,
                        m=p["m"], k=p["k"], n=p["n"], dtype=self.dtype)
        if self.op == "attention":
            return dict(head_dim=p["head_dim"], dtype=self.dtype, causal=p["causal"],
                        sliding_window=p.get("sliding_window"), softcap=p.get("softcap"))
        if self.op == "write_kv_cache":
            return dict(head_dim=p["head_dim"], block_size=p["block_size"], dtype=self.dtype)
        return dict(head_dim=p["head_dim"], block_size=p["block_size"], dtype=self.dtype,
                    sliding_window=p.get("sliding_window"), softcap=p.get("softcap"))

    def record(self) -> dict:
        """The `problem` field of a results.jsonl record: shape parameters, scheme, dtype, phase, model."""
        out = {"name": self.name, "op": self.op, "phase": self.phase, "model": self.model, "dtype": self.dtype,
               **self.params}
        out["scheme"] = self.quant.label if self.quant else None
        return out

    def with_dtype(self, dtype: str) -> "Problem":
        return replace(self, dtype=dtype)

    def flops(self) -> float:
        """FLOPs counted the roofline way: 2·M·K·N for matmuls; 4·D per visible (query, key) pair per head."""
        p = self.params
        if self.op == "qmatmul":
            return 2.0 * p["m"] * p["k"] * p["n"]
        if self.op == "attention":
            pairs = visible_pairs(p["sq"], p["skv"], p["causal"], p.get("sliding_window"))
            return 4.0 * p["b"] * p["hq"] * pairs * p["head_dim"]
        if self.op == "paged_attention":
            pairs = sum(visible_pairs(q, ctx, True, p.get("sliding_window"))
                        for q, ctx in zip(self.q_lens(), self.contexts()))
            return 4.0 * p["hq"] * pairs * p["head_dim"]
        return 0.0

    def hbm_bytes(self) -> float:
        """Minimum HBM bytes: every input read once, every output written once (KV: only live positions)."""
        p = self.params
        act = _ITEMSIZE.get(self.dtype, 2)
        if self.op == "qmatmul":
            q = self.quant or DEFAULT_QUANT
            groups = p["k"] // q.group_size if q.group_size else 1
            weights = p["k"] * p["n"] * _WEIGHT_BITS[q.scheme] / 8 + groups * p["n"] * 4
            return weights + (p["m"] * p["k"] + p["m"] * p["n"]) * act
        d = p["head_dim"]
        if self.op == "attention":
            return act * d * p["b"] * (2 * p["sq"] * p["hq"] + 2 * p["skv"] * p["hkv"])
        if self.op == "paged_attention":
            tokens_q = sum(self.q_lens())
            kv = 2 * sum(min(ctx, p.get("sliding_window") or ctx) for ctx in self.contexts()) * p["hkv"] * d
            return act * (2 * tokens_q * p["hq"] * d + kv) + 4 * p["num_seqs"] * (self.max_blocks() + 2)
        return act * 2 * 2 * p["t"] * p["hkv"] * d + 8 * p["t"]  # read k/v, write both caches, slots

    def contexts(self) -> list[int]:
        """paged_attention: each sequence's KV length."""
        p = self.params
        return list(p["seq_lens"]) if "seq_lens" in p else [p["context"]] * p["num_seqs"]

    def q_lens(self) -> list[int]:
        """paged_attention: each sequence's query count."""
        p = self.params
        return list(p["q_lens"]) if "q_lens" in p else [p["q_len"]] * p["num_seqs"]

    def max_blocks(self) -> int:
        return math.ceil(max(self.contexts()) / self.params["block_size"])


def visible_pairs(sq: int, skv: int, causal: bool, window: int | None) -> int:
    """(query, key) pairs that pass the bottom-right causal mask and the sliding window."""
    total = 0
    for i in range(sq):
        hi = i + skv - sq if causal else skv - 1
        lo = i + skv - sq - window + 1 if window else 0
        total += max(0, min(hi, skv - 1) - max(lo, 0) + 1)
    return total


def model_problems(model: str = DEFAULT_MODEL, *, phase: str = "decode", grid: str = "default",
                   quant: Quant = DEFAULT_QUANT, dtype: str = "bfloat16") -> list[Problem]:
    """Problems of one model and phase over a grid ("quick" | "default" | "full", see GRIDS)."""
    if model not in MODELS:
        raise ValueError(f"model: unknown {model!r}; choose one of {', '.join(MODELS)}")
    if phase not in ("decode", "prefill"):
        raise ValueError(f"phase: must be 'decode' or 'prefill', got {phase!r}")
    if grid not in GRIDS:
        raise ValueError(f"grid: must be one of {tuple(GRIDS)}, got {grid!r}")
    m, g = MODELS[model], GRIDS[grid]
    hq, hkv, d = m.q_heads_per_rank, m.kv_heads_per_rank, m.head_dim
    out: list[Problem] = []
    sizes = g["batches"] if phase == "decode" else g["prefill_qmatmul"]
    for proj, (k, n) in m.projections().items():
        for rows in sizes:
            out.append(Problem("qmatmul", f"{model}/{phase}/qmatmul/{proj}-m{rows}", phase,
                               dict(m=rows, k=k, n=n, projection=proj), dtype, rows, model, quant))
    if phase == "decode":
        for bs in g["block_sizes"]:
            for b in g["batches"]:
                for ctx in g["contexts"]:
                    if b * ctx > g.get("max_kv_tokens", b * ctx):
                        continue  # keeps the default grid's trace-mode caches (and run time) bounded
                    params = dict(num_seqs=b, q_len=1, context=ctx, hq=hq, hkv=hkv, head_dim=d, block_size=bs,
                                  sliding_window=m.sliding_window, softcap=None)
                    out.append(Problem("paged_attention", f"{model}/decode/paged_attention/b{b}-ctx{ctx}-bs{bs}",
                                       phase, params, dtype, b, model))
                out.append(Problem("write_kv_cache", f"{model}/decode/write_kv_cache/t{b}-bs{bs}", phase,
                                   dict(t=b, hkv=hkv, head_dim=d, block_size=bs), dtype, b, model))
    else:
        for s in g["prefill"]:
            params = dict(b=1, sq=s, skv=s, hq=hq, hkv=hkv, head_dim=d, causal=True,
                          sliding_window=m.sliding_window, softcap=None)
            out.append(Problem("attention", f"{model}/prefill/attention/s{s}", phase, params, dtype, s, model))
            out.append(Problem("write_kv_cache", f"{model}/prefill/write_kv_cache/t{s}-bs{g['block_sizes'][0]}",
                               phase, dict(t=s, hkv=hkv, head_dim=d, block_size=g["block_sizes"][0]), dtype, s,
                               model))
    return out


def smoke_problems(dtype: str = "float16") -> list[Problem]:
    """Small shapes for correctness on every backend: odd sizes, GQA, window + softcap, a mixed paged batch."""
    q8, q4, f8 = Quant("int8"), Quant("int4", 64, False), Quant("fp8_e4m3")
    return [
        Problem("qmatmul", "smoke/qmatmul/int8", "smoke", dict(m=5, k=256, n=96), dtype, 5, "smoke", q8),
        Problem("qmatmul", "smoke/qmatmul/int4-g64-asym", "smoke", dict(m=3, k=256, n=64), dtype, 3, "smoke", q4),
        Problem("qmatmul", "smoke/qmatmul/fp8", "smoke", dict(m=4, k=128, n=80), dtype, 4, "smoke", f8),
        Problem("attention", "smoke/attention/causal-gqa", "smoke",
                dict(b=1, sq=40, skv=72, hq=4, hkv=2, head_dim=64, causal=True, sliding_window=None,
                     softcap=None), dtype, 40, "smoke"),
        Problem("attention", "smoke/attention/window-softcap", "smoke",
                dict(b=2, sq=33, skv=33, hq=2, hkv=1, head_dim=64, causal=True, sliding_window=16, softcap=30.0),
                dtype, 66, "smoke"),
        Problem("write_kv_cache", "smoke/write_kv_cache/t7-bs16", "smoke",
                dict(t=7, hkv=2, head_dim=64, block_size=16), dtype, 7, "smoke"),
        Problem("paged_attention", "smoke/paged_attention/mixed", "smoke",
                dict(num_seqs=3, q_lens=(1, 1, 4), seq_lens=(17, 40, 9), q_len=1, hq=4, hkv=2, head_dim=64,
                     block_size=16, sliding_window=None, softcap=None), dtype, 6, "smoke"),
    ]


_ML_DTYPES = {"bfloat16": ml_dtypes.bfloat16, "float8_e4m3": ml_dtypes.float8_e4m3,
              "float8_e4m3fn": ml_dtypes.float8_e4m3fn}


def np_dtype(name: str) -> np.dtype:
    """NumPy dtype for a dtype name (bfloat16 / fp8 via ml_dtypes)."""
    return np.dtype(_ML_DTYPES.get(name, name))


def make_inputs(problem: Problem, rng: np.random.Generator | None = None, *, zeros: bool = False):
    """NumPy arguments of the public op for `problem`: (args tuple, kwargs dict).

    qmatmul: (x [M, K], qw) with qw = quantize_weight of a normal [K, N]; attention: (q, k, v), causal/window/
    softcap in kwargs; write_kv_cache: (key, value, key_cache, value_cache, slot_mapping) with a NaN-filled cache
    and a -1 padding slot; paged_attention: (q, key_cache, value_cache, block_tables, seq_lens,
    query_start_loc) with permuted physical blocks and NaN in every unused slot. `zeros=True` fills the float
    data with zeros (trace mode only needs shapes).
    """
    from nkilab.reference.quant import quantize_activation, quantize_weight

    rng = rng or np.random.default_rng(0)
    p, dt = problem.params, np_dtype(problem.dtype)

    def normal(shape, scale=1.0):
        # zeros straight in the target dtype: calloc'd pages stay untouched for big trace-mode caches
        return np.zeros(shape, dt) if zeros else (rng.standard_normal(shape) * scale).astype(dt)

    if problem.op == "qmatmul":
        q = problem.quant or DEFAULT_QUANT
        w = np.zeros((p["k"], p["n"])) if zeros else rng.standard_normal((p["k"], p["n"])) * 0.05
        qw = quantize_weight(w, q.scheme, q.group_size, q.symmetric)
        x = normal((p["m"], p["k"]))
        if q.w8a8:
            return (quantize_activation(x.astype(np.float32), q.scheme), qw), {}
        return (x, qw), {}
    if problem.op == "attention":
        b, sq, skv, hq, hkv, d = p["b"], p["sq"], p["skv"], p["hq"], p["hkv"], p["head_dim"]
        kwargs = dict(causal=p["causal"], sliding_window=p.get("sliding_window"), softcap=p.get("softcap"))
        return (normal((b, sq, hq, d)), normal((b, skv, hkv, d)), normal((b, skv, hkv, d))), kwargs
    if problem.op == "write_kv_cache":
        t, hkv, d, bs = p["t"], p["hkv"], p["head_dim"], p["block_size"]
        num_blocks = math.ceil(t / bs) + 2
        slots = rng.permutation(num_blocks * bs)[:t].astype(np.int64)
        if t > 2 and not zeros:
            slots[t // 2] = -1  # one padding token
        cache_shape = (num_blocks, bs, hkv, d)
        fill = 0.0 if zeros else np.nan
        return (normal((t, hkv, d)), normal((t, hkv, d)), np.full(cache_shape, fill, dt),
                np.full(cache_shape, fill, dt), slots), {}
    return _paged_inputs(problem, rng, normal, zeros)


def _paged_inputs(problem: Problem, rng, normal, zeros: bool):
    from nkilab.reference.paged import build_paged_cache

    p = problem.params
    hq, hkv, d, bs = p["hq"], p["hkv"], p["head_dim"], p["block_size"]
    seq_lens = np.asarray(problem.contexts(), dtype=np.int32)
    q_lens = np.asarray(problem.q_lens(), dtype=np.int32)
    blocks_needed = [math.ceil(int(s) / bs) for s in seq_lens]
    max_blocks = max(blocks_needed)
    num_blocks = sum(blocks_needed) + 1
    physical = rng.permutation(num_blocks)
    tables = np.full((len(seq_lens), max_blocks), -1, dtype=np.int32)
    used = 0
    for i, need in enumerate(blocks_needed):
        tables[i, :need] = physical[used:used + need]
        used += need
    if zeros:
        cache_shape = (num_blocks, bs, hkv, d)
        key_cache, value_cache = normal(cache_shape), normal(cache_shape)
    else:
        keys = [normal((int(s), hkv, d)) for s in seq_lens]
        values = [normal((int(s), hkv, d)) for s in seq_lens]
        key_cache, value_cache = build_paged_cache(keys, values, tables, num_blocks=num_blocks, block_size=bs)
    query_start_loc = np.concatenate([[0], np.cumsum(q_lens)]).astype(np.int32)
    q = normal((int(query_start_loc[-1]), hq, d))
    kwargs = dict(causal=True, sliding_window=p.get("sliding_window"), softcap=p.get("softcap"))
    return (q, key_cache, value_cache, tables, seq_lens, query_start_loc), kwargs
