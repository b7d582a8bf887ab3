"""Shared hypothesis strategies: shapes, head counts, quant configs, page tables, slot mappings, whole problems.

Reused by the reference, NKI and Triton tests. Every function returns a strategy; bounds are keyword-only with
small defaults sized for a 2-core CI, so a kernel test narrows them (`head_dims(choices=(64,))`,
`dtypes(allowed=("float32", "float16"))`). Whole problems are frozen dataclasses with a short repr (a shrunk
failure reads like a bug report); their `inputs()` build NumPy arrays (bf16 as ml_dtypes) from a drawn seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

from nkilab.reference.dtypes import numpy_dtype
from nkilab.reference.quant import FP8_SCHEMES, SCHEMES, QuantizedWeight, quantize_activation, quantize_weight

FLOAT_DTYPES = ("float32", "float16", "bfloat16")
INTERPRETER_DTYPES = ("float32", "float16")  # the Triton CPU interpreter has no bfloat16 arithmetic (triton-lang/triton#11584)
HEAD_DIMS = (64, 80, 128)
QWEN_HEADS = (28, 4)  # Qwen2.5-7B: 28 query heads over 4 kv heads, a non-power-of-two GQA group of 7
BLOCK_SIZES = (1, 4, 16)
GROUP_SIZES = (None, 32, 64, 128)
TABLE_LAYOUTS = ("identity", "permuted", "gaps", "shared")
SEQUENCE_KINDS = ("decode", "prefill", "chunked", "idle")  # idle: cached keys, no new token this step (q_len 0)
PADDINGS = ("-1", "junk")


def _normal(rng: np.random.Generator, shape, dtype: str) -> np.ndarray:
    return rng.standard_normal(shape).astype(numpy_dtype(dtype))


def dtypes(*, allowed=FLOAT_DTYPES):
    """A float dtype name from `allowed`."""
    return st.sampled_from(tuple(allowed))


def head_counts(*, max_q_heads: int = 8, pinned=(QWEN_HEADS,)):
    """(Hq, Hkv) with Hq % Hkv == 0 and Hq <= max_q_heads, plus the `pinned` pairs (28/4 by default)."""

    @st.composite
    def _drawn(draw):
        hkv = draw(st.integers(1, max_q_heads))
        group = draw(st.integers(1, max_q_heads // hkv))
        return (hkv * group, hkv)

    return st.one_of(st.sampled_from(tuple(pinned)), _drawn()) if pinned else _drawn()


def head_dims(*, choices=HEAD_DIMS, max_head_dim: int = 128):
    """A head dim D from `choices` (64/80/128 by default), at most max_head_dim."""
    return st.sampled_from(tuple(d for d in choices if d <= max_head_dim))


def block_sizes(*, choices=BLOCK_SIZES):
    """A paged-cache block size."""
    return st.sampled_from(tuple(choices))


# --- quantized matmul -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuantConfig:
    """How a weight is quantized: scheme, group_size (None = per channel), symmetric, w8a8 (fp8 activations)."""

    scheme: str
    group_size: int | None
    symmetric: bool = True
    w8a8: bool = False

    def __repr__(self) -> str:
        parts = [self.scheme, "sym" if self.symmetric else "asym", f"g{self.group_size}" if self.group_size else "per-ch"]
        return "/".join(parts + (["w8a8"] if self.w8a8 else []))


@st.composite
def quant_configs(draw, *, schemes=SCHEMES, group_sizes=GROUP_SIZES, allow_asymmetric=True, allow_w8a8=True):
    """A QuantConfig; asymmetric only for int4, w8a8 only for fp8 per channel."""
    scheme = draw(st.sampled_from(tuple(schemes)))
    group_size = draw(st.sampled_from(tuple(group_sizes)))
    symmetric = not (scheme == "int4" and allow_asymmetric and draw(st.booleans()))
    w8a8 = scheme in FP8_SCHEMES and group_size is None and allow_w8a8 and draw(st.booleans())
    return QuantConfig(scheme, group_size, symmetric, w8a8)


@dataclass(frozen=True)
class MatmulProblem:
    """x[M, K] @ W[K, N] with W quantized by `quant`; x in `dtype`."""

    m: int
    k: int
    n: int
    quant: QuantConfig
    dtype: str
    seed: int

    def inputs(self):
        """(x, qw): x [M, K] NumPy `dtype` (a QuantizedActivation for w8a8), qw a QuantizedWeight of a random W."""
        rng = np.random.default_rng(self.seed)
        x = _normal(rng, (self.m, self.k), self.dtype)
        w = rng.standard_normal((self.k, self.n)) * 0.1
        qw: QuantizedWeight = quantize_weight(w, self.quant.scheme, self.quant.group_size, self.quant.symmetric)
        if self.quant.w8a8:
            return quantize_activation(x.astype(np.float64), self.quant.scheme), qw
        return x, qw


@st.composite
def matmul_problems(draw, *, max_m: int = 9, max_n: int = 24, max_k_groups: int = 2, quant=None, dtypes=dtypes()):
    """A MatmulProblem: K = a multiple (<= max_k_groups) of the group size (32 per channel), odd M and N allowed."""
    config = draw(quant if quant is not None else quant_configs())
    unit = config.group_size or 32
    k = unit * draw(st.integers(1, max_k_groups))
    return MatmulProblem(
        m=draw(st.integers(1, max_m)), k=k, n=draw(st.integers(1, max_n)), quant=config, dtype=draw(dtypes),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


# --- dense attention ------------------------------------------------------------------------------------------


def attention_options(*, causal=None, max_window: int = 8, softcaps=(None, 5.0, 30.0)):
    """(causal, sliding_window, softcap): causal fixed when given, else drawn; window None or 1..max_window."""
    return st.tuples(
        st.just(causal) if causal is not None else st.booleans(),
        st.one_of(st.none(), st.integers(1, max_window)),
        st.sampled_from(tuple(softcaps)),
    )


@dataclass(frozen=True)
class AttentionProblem:
    """Dense attention q [B, Sq, Hq, D], k/v [B, Skv, Hkv, D] with its options."""

    batch: int
    sq: int
    skv: int
    hq: int
    hkv: int
    d: int
    causal: bool
    sliding_window: int | None
    softcap: float | None
    dtype: str
    seed: int

    def inputs(self):
        """(q, k, v) NumPy arrays of `dtype` with standard-normal values."""
        rng = np.random.default_rng(self.seed)
        q = _normal(rng, (self.batch, self.sq, self.hq, self.d), self.dtype)
        k = _normal(rng, (self.batch, self.skv, self.hkv, self.d), self.dtype)
        v = _normal(rng, (self.batch, self.skv, self.hkv, self.d), self.dtype)
        return q, k, v

    def options(self) -> dict:
        return dict(causal=self.causal, sliding_window=self.sliding_window, softcap=self.softcap)


@st.composite
def attention_problems(
    draw, *, max_batch: int = 2, max_seq: int = 17, heads=None, dims=None, dtypes=dtypes(), options=None
):
    """An AttentionProblem; Sq and Skv drawn independently in 1..max_seq (so Sq > Skv happens: masked rows)."""
    hq, hkv = draw(heads if heads is not None else head_counts())
    causal, window, softcap = draw(options if options is not None else attention_options())
    return AttentionProblem(
        batch=draw(st.integers(1, max_batch)), sq=draw(st.integers(1, max_seq)), skv=draw(st.integers(1, max_seq)),
        hq=hq, hkv=hkv, d=draw(dims if dims is not None else head_dims()), causal=causal, sliding_window=window,
        softcap=softcap, dtype=draw(dtypes), seed=draw(st.integers(0, 2**32 - 1)),
    )


# --- paging ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PageTable:
    """A block table for sequences of lengths `seq_lens`: rows[i][j] = physical block of logical block j.

    Entries past a sequence's ceil(seq_len / block_size) live blocks are padding (-1 or junk, possibly out of
    range). layout: identity | permuted | gaps (unused blocks in between) | shared (blocks repeat across sequences).
    """

    seq_lens: tuple[int, ...]
    block_size: int
    num_blocks: int
    rows: tuple[tuple[int, ...], ...]
    layout: str

    def array(self) -> np.ndarray:
        """int32 [num_seqs, max_blocks]."""
        return np.array(self.rows, dtype=np.int32).reshape(len(self.rows), -1)

    def live_blocks(self, i: int) -> int:
        return -(-self.seq_lens[i] // self.block_size)

    def live_slots(self) -> set[int]:
        """Every slot some sequence reads."""
        return {
            self.rows[i][pos // self.block_size] * self.block_size + pos % self.block_size
            for i, length in enumerate(self.seq_lens)
            for pos in range(length)
        }


@st.composite
def block_tables(
    draw, seq_lens, *, block_size: int, layouts=TABLE_LAYOUTS, paddings=PADDINGS, max_spare_blocks: int = 3,
    max_extra_columns: int = 2,
):
    """A PageTable for the given seq_lens: live entries by `layout`, then padding columns of -1 or junk."""
    layout = draw(st.sampled_from(tuple(layouts)))
    needed = [-(-length // block_size) for length in seq_lens]
    total = sum(needed)
    spare = 0 if layout == "identity" else draw(st.integers(0 if layout != "gaps" else 1, max_spare_blocks))
    num_blocks = max(total + spare, 1)
    if layout == "shared":
        num_blocks = max(max(needed, default=0) + spare, 1)
        live = [draw(st.permutations(range(num_blocks)))[:n] for n in needed]
    else:
        order = list(range(num_blocks)) if layout == "identity" else draw(st.permutations(range(num_blocks)))
        live, start = [], 0
        for n in needed:
            live.append(order[start : start + n])
            start += n
    max_blocks = max(needed, default=0) + draw(st.integers(0 if max(needed, default=0) else 1, max_extra_columns))
    padding = draw(st.sampled_from(tuple(paddings)))
    pad_values = st.just(-1) if padding == "-1" else st.integers(-(10**6), 10**6)
    rows = tuple(
        tuple(live[i]) + tuple(draw(st.lists(pad_values, min_size=max_blocks - n, max_size=max_blocks - n)))
        for i, n in enumerate(needed)
    )
    return PageTable(tuple(seq_lens), block_size, num_blocks, rows, layout)


@st.composite
def slot_mappings(draw, *, num_tokens: int, num_slots: int, max_padding: int | None = None):
    """tuple[int] of length num_tokens: unique live slots in [0, num_slots), the rest -1 (padding)."""
    max_pad = num_tokens if max_padding is None else min(max_padding, num_tokens)
    n_pad = draw(st.integers(max(0, num_tokens - num_slots), max_pad))
    live = draw(st.permutations(range(num_slots)))[: num_tokens - n_pad]
    padded_at = set(draw(st.permutations(range(num_tokens)))[:n_pad])
    it = iter(live)
    return tuple(-1 if t in padded_at else next(it) for t in range(num_tokens))


@dataclass(frozen=True)
class WriteProblem:
    """write_kv_cache of T tokens into a [num_blocks, block_size, Hkv, D] cache through `slots`."""

    hkv: int
    d: int
    block_size: int
    num_blocks: int
    slots: tuple[int, ...]
    dtype: str
    seed: int

    def inputs(self):
        """(key, value, key_cache, value_cache, slot_mapping int32); caches hold random old contents."""
        rng = np.random.default_rng(self.seed)
        t = len(self.slots)
        key = _normal(rng, (t, self.hkv, self.d), self.dtype)
        value = _normal(rng, (t, self.hkv, self.d), self.dtype)
        cache_shape = (self.num_blocks, self.block_size, self.hkv, self.d)
        return key, value, _normal(rng, cache_shape, self.dtype), _normal(rng, cache_shape, self.dtype), np.array(
            self.slots, dtype=np.int32
        )


@st.composite
def write_problems(draw, *, max_tokens: int = 12, max_kv_heads: int = 4, dims=None, sizes=None, dtypes=dtypes()):
    """A WriteProblem with -1 padding in the slot mapping and a cache at least as large as the live tokens."""
    t = draw(st.integers(1, max_tokens))
    block_size = draw(sizes if sizes is not None else block_sizes())
    num_blocks = draw(st.integers(1, -(-t // block_size) + 2))
    slots = draw(slot_mappings(num_tokens=t, num_slots=num_blocks * block_size))
    return WriteProblem(
        hkv=draw(st.integers(1, max_kv_heads)), d=draw(dims if dims is not None else head_dims()), block_size=block_size,
        num_blocks=num_blocks, slots=slots, dtype=draw(dtypes), seed=draw(st.integers(0, 2**32 - 1)),
    )


@dataclass(frozen=True, repr=False)
class PagedProblem:
    """paged_attention over a mixed batch: sequence i has seq_lens[i] keys, its last q_lens[i] are queries."""

    q_lens: tuple[int, ...]
    hq: int
    hkv: int
    d: int
    table: PageTable
    causal: bool
    sliding_window: int | None
    softcap: float | None
    dtype: str
    seed: int

    @property
    def seq_lens(self) -> tuple[int, ...]:
        return self.table.seq_lens

    def query_start_loc(self) -> np.ndarray:
        """int32 [num_seqs + 1]: 0, then the running sum of q_lens."""
        return np.concatenate([[0], np.cumsum(self.q_lens)]).astype(np.int32)

    def inputs(self):
        """(q, key_cache, value_cache, block_tables, seq_lens, query_start_loc) as NumPy; every cache slot that
        no sequence reads is NaN, so a kernel that reads one shows it."""
        rng = np.random.default_rng(self.seed)
        q = _normal(rng, (sum(self.q_lens), self.hq, self.d), self.dtype)
        shape = (self.table.num_blocks, self.table.block_size, self.hkv, self.d)
        key_cache, value_cache = _normal(rng, shape, self.dtype), _normal(rng, shape, self.dtype)
        dead = np.ones(self.table.num_blocks * self.table.block_size, dtype=bool)
        dead[list(self.table.live_slots())] = False
        dead = dead.reshape(shape[:2])
        key_cache[dead] = np.nan
        value_cache[dead] = np.nan
        seq_lens = np.array(self.seq_lens, dtype=np.int32)
        return q, key_cache, value_cache, self.table.array(), seq_lens, self.query_start_loc()

    def options(self) -> dict:
        return dict(causal=self.causal, sliding_window=self.sliding_window, softcap=self.softcap)

    def __repr__(self) -> str:
        seqs = ", ".join(f"{length}/{q}" for length, q in zip(self.seq_lens, self.q_lens))
        opts = [f"causal={self.causal}"] + [f"window={self.sliding_window}"] * (self.sliding_window is not None)
        opts += [f"softcap={self.softcap}"] * (self.softcap is not None)
        return (
            f"PagedProblem(seq_len/q_len=[{seqs}], heads={self.hq}/{self.hkv}, d={self.d}, "
            f"block_size={self.table.block_size}, num_blocks={self.table.num_blocks}, layout={self.table.layout}, "
            f"rows={self.table.rows}, {', '.join(opts)}, {self.dtype}, seed={self.seed})"
        )


def pinned_paged_problem(seq_lens, q_lens, hq, hkv, d, block_size, *, dtype, causal=True, window=None,
                         softcap=None, pad=-1, seed=0) -> PagedProblem:
    """A hand-picked paged problem for readable pinned cases: blocks laid out in reverse physical order
    (never the identity) and `pad` (-1, or junk such as 10**6) in every table entry past a sequence's live blocks."""
    needed = [-(-length // block_size) for length in seq_lens]
    num_blocks = sum(needed) + 2
    order = list(range(num_blocks))[::-1]
    rows, start = [], 0
    width = max(needed) + 1
    for n in needed:
        rows.append(tuple(order[start:start + n]) + (pad,) * (width - n))
        start += n
    table = PageTable(tuple(seq_lens), block_size, num_blocks, tuple(rows), "reversed")
    return PagedProblem(tuple(q_lens), hq, hkv, d, table, causal, window, softcap, dtype, seed)


@st.composite
def sequence_shapes(draw, *, max_seqs: int = 4, max_seq_len: int = 40, kinds=SEQUENCE_KINDS):
    """(seq_lens, q_lens) of a mixed batch: decode q_len 1, prefill q_len = seq_len, chunked 1 < q_len < seq_len,
    idle q_len 0 (an empty query range in query_start_loc, which paged_attention's docstring allows)."""
    seq_lens, q_lens = [], []
    for kind in draw(st.lists(st.sampled_from(tuple(kinds)), min_size=1, max_size=max_seqs)):
        if kind == "chunked" and max_seq_len >= 3:
            length = draw(st.integers(3, max_seq_len))
            q_len = draw(st.integers(2, length - 1))
        else:
            length = draw(st.integers(1, max_seq_len))
            q_len = {"decode": 1, "idle": 0}.get(kind, length)
        seq_lens.append(length)
        q_lens.append(q_len)
    return tuple(seq_lens), tuple(q_lens)


@st.composite
def paged_problems(
    draw, *, max_seqs: int = 4, max_seq_len: int = 40, kinds=SEQUENCE_KINDS, heads=None, dims=None, sizes=None,
    layouts=TABLE_LAYOUTS, dtypes=dtypes(), options=None,
):
    """A PagedProblem: a mixed decode / prefill / chunked batch over a NaN-poisoned paged cache."""
    seq_lens, q_lens = draw(sequence_shapes(max_seqs=max_seqs, max_seq_len=max_seq_len, kinds=kinds))
    block_size = draw(sizes if sizes is not None else block_sizes())
    table = draw(block_tables(seq_lens, block_size=block_size, layouts=layouts))
    hq, hkv = draw(heads if heads is not None else head_counts())
    causal, window, softcap = draw(options if options is not None else attention_options(causal=True))
    return PagedProblem(
        q_lens=q_lens, hq=hq, hkv=hkv, d=draw(dims if dims is not None else head_dims()), table=table, causal=causal,
        sliding_window=window, softcap=softcap, dtype=draw(dtypes), seed=draw(st.integers(0, 2**32 - 1)),
    )


# --- RMSNorm --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NormProblem:
    """RMSNorm of x [*lead, H] with weight [H] (near 1), eps, and a residual [*lead, H] when `residual`."""

    lead: tuple[int, ...]
    hidden: int
    residual: bool
    eps: float
    dtype: str
    seed: int

    def inputs(self):
        """((x, weight), dict(eps=, residual=)) NumPy arrays of `dtype`, the public op's arguments."""
        rng = np.random.default_rng(self.seed)
        x = _normal(rng, (*self.lead, self.hidden), self.dtype)
        weight = (1.0 + 0.1 * rng.standard_normal(self.hidden)).astype(numpy_dtype(self.dtype))
        residual = _normal(rng, x.shape, self.dtype) if self.residual else None
        return (x, weight), dict(eps=self.eps, residual=residual)


@st.composite
def norm_problems(draw, *, max_rows: int = 140, max_hidden: int = 300, residual=None, dtypes=dtypes()):
    """A NormProblem: 1-3 leading dims with up to max_rows rows in all (past one 128-row tile), any H (odd ones too),
    residual drawn unless fixed, eps from Llama's 1e-5 to 0.1."""
    rows = draw(st.integers(1, max_rows))
    lead = draw(st.sampled_from(((rows,), (1, rows), (rows, 1, 1)))) if rows > 1 else (1,)
    return NormProblem(
        lead=lead, hidden=draw(st.integers(1, max_hidden)),
        residual=draw(st.booleans()) if residual is None else residual,
        eps=draw(st.sampled_from((1e-6, 1e-5, 0.1))), dtype=draw(dtypes), seed=draw(st.integers(0, 2**32 - 1)),
    )


# --- rope -----------------------------------------------------------------------------------------------------


ROPE_STYLES = ("neox", "gptj")
LLAMA31_SCALING = dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                       original_max_position_embeddings=8192)


@dataclass(frozen=True)
class RopeProblem:
    """rope of q [T, Hq, D] and k [T, Hkv, D] at positions below max_position, with its options."""

    tokens: int
    q_heads: int
    kv_heads: int
    head_dim: int
    rotary_dim: int
    style: str
    theta: float
    llama3: bool
    max_position: int
    dtype: str
    seed: int

    def inputs(self):
        """((q, k, positions), dict(theta=, rotary_dim=, style=, scaling=)): NumPy arrays, positions int32 with
        repeats allowed (tokens of one sequence at one position never occur, but a batch may share positions)."""
        rng = np.random.default_rng(self.seed)
        q = _normal(rng, (self.tokens, self.q_heads, self.head_dim), self.dtype)
        k = _normal(rng, (self.tokens, self.kv_heads, self.head_dim), self.dtype)
        positions = rng.integers(0, self.max_position, self.tokens).astype(np.int32)
        options = dict(theta=self.theta, rotary_dim=self.rotary_dim, style=self.style,
                       scaling=LLAMA31_SCALING if self.llama3 else None)
        return (q, k, positions), options


@st.composite
def rope_problems(draw, *, max_tokens: int = 140, max_heads: int = 6, head_dims=(2, 8, 30, 64, 80, 128),
                  dtypes=dtypes()):
    """A RopeProblem: 1..max_tokens tokens (past one 128-row tile), Hq and Hkv up to max_heads (not necessarily
    GQA-divisible), a head dim from `head_dims`, full or partial (even) rotary dim, both styles, theta from 1 to
    Qwen's 1e6, Llama-3.1 scaling or none, positions below 1, 64, 8192 or 131072."""
    d = draw(st.sampled_from(tuple(head_dims)))
    rotary = draw(st.one_of(st.just(d), st.integers(1, d // 2).map(lambda h: 2 * h)))
    return RopeProblem(
        tokens=draw(st.integers(1, max_tokens)), q_heads=draw(st.integers(1, max_heads)),
        kv_heads=draw(st.integers(1, max_heads)), head_dim=d, rotary_dim=rotary,
        style=draw(st.sampled_from(ROPE_STYLES)), theta=draw(st.sampled_from((1.0, 10000.0, 500000.0, 1e6))),
        llama3=draw(st.booleans()), max_position=draw(st.sampled_from((1, 64, 8192, 131072))), dtype=draw(dtypes),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


# --- silu_mul -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SiluMulProblem:
    """silu_mul of gate_up [*lead, 2I], standard normal times `scale` (large scales reach silu's tails)."""

    lead: tuple[int, ...]
    inter: int
    scale: float
    dtype: str
    seed: int

    def inputs(self):
        """((gate_up,), {}): a NumPy array of `dtype`, the public op's arguments."""
        rng = np.random.default_rng(self.seed)
        return ((rng.standard_normal((*self.lead, 2 * self.inter)) * self.scale).astype(numpy_dtype(self.dtype)),), {}


@st.composite
def silu_mul_problems(draw, *, max_rows: int = 140, max_inter: int = 300, inters=(), dtypes=dtypes()):
    """A SiluMulProblem: 1-3 leading dims with up to max_rows rows in all, any I up to max_inter (odd and prime ones
    too) or one of `inters` (sizes with many divisors, which the NKI kernel cuts into pieces), scale 1 to 30."""
    rows = draw(st.integers(1, max_rows))
    lead = draw(st.sampled_from(((rows,), (1, rows), (rows, 1, 1)))) if rows > 1 else (1,)
    sizes = st.integers(1, max_inter)
    inter = draw(st.one_of(sizes, st.sampled_from(tuple(inters))) if inters else sizes)
    return SiluMulProblem(lead=lead, inter=inter, scale=draw(st.sampled_from((1.0, 4.0, 30.0))), dtype=draw(dtypes),
                          seed=draw(st.integers(0, 2**32 - 1)))
