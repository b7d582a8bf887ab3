"""Fuzz cases of every registered op (issue 10): valid problems per backend, the public call each one makes,
malformed variants drawn from the documented argument rules, and the arguments the NaN-isolation checks poison.

One `OpCase` per op of the registry (`CASES`, keyed by op name; `test_every_registered_op_has_a_case` fails when an
op is added without one), built from `fuzz.calls.Call`s (the public function's arguments as NumPy, bfloat16 as
ml_dtypes), and one small pinned problem per op (`PINNED`). The malformed draws follow the rules the op modules
document: a Python list, a 0-d array, a wrong rank, a wrong dtype, a tensor requiring grad, a read-only cache,
out-of-range / non-monotone index arrays, bad options (scale, sliding_window, softcap, causal, eps, out_dtype, theta,
rotary_dim, style, scaling), GQA heads that do not divide, and hand-built QuantizedWeight / QuantizedActivation
fields. Each one says which argument names its error may cite.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from fuzz.calls import Call, Malformed
from hypothesis import strategies as st
from strategies import (
    INTERPRETER_DTYPES,
    AttentionProblem,
    MatmulProblem,
    NormProblem,
    QuantConfig,
    RopeProblem,
    SiluMulProblem,
    WriteProblem,
    attention_problems,
    head_counts,
    head_dims,
    matmul_problems,
    norm_problems,
    paged_problems,
    pinned_paged_problem,
    quant_configs,
    rope_problems,
    silu_mul_problems,
    write_problems,
)

from nkilab.kernels import _registry
from nkilab.kernels._adapter import dtype_name
from nkilab.reference.quant import QuantizedActivation, QuantizedWeight

# (backend, target) pairs every valid draw runs on: the NKI emulator on both NeuronCore generations' targets
BACKEND_TARGETS = (("reference", None), ("nki", "inf2"), ("nki", "trn1"), ("nki", "trn2"), ("triton", None))
BACKEND_IDS = [f"{b}-{t}" if t else b for b, t in BACKEND_TARGETS]  # pytest ids of BACKEND_TARGETS
BACKENDS = _registry.BACKENDS
KINDS = ("numpy", "torch")
ERRORS = (TypeError, ValueError)


@dataclass(frozen=True)
class OpCase:
    """How the fuzz suite drives one op.

    Attributes:
        name: the op's registry name.
        problems: backend -> strategy of valid problems (tests/strategies.py) that backend runs here.
        call: problem -> the public Call.
        floats / indices: float data / integer index arguments (names), the targets of dtype and view mutations.
        written: arguments written in place (caches): read-only and requires_grad variants must be refused.
        free_rank: arguments whose rank is free (leading dims), skipped by the rank mutations.
        options: keyword -> values its rule refuses.
        relational: strategy over a valid Call -> list of op-specific Malformed variants.
        poison: arguments whose single elements the NaN-isolation checks poison.
    """

    name: str
    problems: Callable[[str], st.SearchStrategy]
    call: Callable
    floats: tuple[str, ...]
    indices: tuple[str, ...] = ()
    written: tuple[str, ...] = ()
    free_rank: tuple[str, ...] = ()
    options: dict = field(default_factory=dict)
    relational: Callable[[Call], list] = lambda call: []
    poison: tuple[str, ...] = ()

    def __post_init__(self):
        # one strategy object per backend, built once: a fresh one per example costs hypothesis its validation and
        # cached properties again (about a third of a cheap example's generation time)
        object.__setattr__(self, "problems", functools.cache(self.problems))

    @property
    def op(self):
        return _registry.get(self.name)


def _dtypes(backend: str, allowed=("float32", "float16", "bfloat16")):
    """Float dtypes the backend computes here (the Triton interpreter has no bfloat16 arithmetic)."""
    if backend == "triton" and _triton_interprets():
        allowed = tuple(d for d in allowed if d in INTERPRETER_DTYPES)
    return st.sampled_from(allowed)


def _triton_interprets() -> bool:
    return not torch.cuda.is_available()


BAD_POSITIVE = (0, 0.0, -1.0, float("nan"), float("inf"), "1", True)  # positive_number refuses each
BAD_WINDOW = (0, -2, 2.5, True, "3")
BAD_CAUSAL = (1, "yes", None, 0.5)


# --- qmatmul ----------------------------------------------------------------------------------------------------


def _qmatmul_call(p) -> Call:
    x, qw = p.inputs()
    return Call(("x", "qw"), (x, qw))


def _hand_built(qw: QuantizedWeight) -> list[tuple[str, QuantizedWeight, tuple[str, ...]]]:
    """Hand-built QuantizedWeights breaking one field rule each: (rule, weight, names its error may cite)."""
    k, n = qw.shape
    rep = dataclasses.replace
    bad = [
        ("group_size 0", rep(qw, group_size=0), ("qw.group_size",)),
        ("group_size negative", rep(qw, group_size=-32), ("qw.group_size",)),
        ("group_size str", rep(qw, group_size="32"), ("qw.group_size",)),
        ("group_size float", rep(qw, group_size=32.0), ("qw.group_size",)),
        ("group_size bool", rep(qw, group_size=True), ("qw.group_size",)),
        ("group_size not dividing K", rep(qw, group_size=k + 1), ("qw.group_size",)),
        ("shape not a pair", rep(qw, shape=(k,)), ("qw.shape",)),
        ("shape of floats", rep(qw, shape=(float(k), n)), ("qw.shape",)),
        ("shape disagrees with data", rep(qw, shape=(k, n + 1)), ("qw.shape", "qw.data", "qw.scales")),
        ("unknown scheme", rep(qw, scheme="int3"), ("qw.scheme",)),
        ("scales float64", rep(qw, scales=qw.scales.astype(np.float64)), ("qw.scales",)),
        ("scales NaN", rep(qw, scales=np.where(np.arange(qw.scales.size).reshape(qw.scales.shape) == 0, np.nan,
                                                qw.scales).astype(np.float32)), ("qw.scales",)),
        ("scales wrong shape", rep(qw, scales=qw.scales[:, :-1] if n > 1 else qw.scales[:0]), ("qw.scales",)),
        ("scales a list", rep(qw, scales=qw.scales.tolist()), ("qw.scales",)),
        ("data a list", rep(qw, data=qw.data.tolist()), ("qw.data",)),
        ("data wrong dtype", rep(qw, data=qw.data.astype(np.int16)), ("qw.data",)),
    ]
    if qw.scheme == "int4":
        data = qw.data[: (k - 1) // 2]
        bad.append(("int4 odd K", rep(qw, shape=(k - 1, n), data=data, group_size=None,
                                      scales=qw.scales[:1], zeros=None if qw.zeros is None else qw.zeros[:1]),
                    ("qw.shape",)))
    if qw.zeros is not None:
        bad.append(("zero point > 15", rep(qw, zeros=np.full_like(qw.zeros, 16)), ("qw.zeros",)))
        bad.append(("symmetric with zeros", rep(qw, symmetric=True), ("qw.zeros",)))
    return bad


def _qmatmul_relational(call: Call) -> list[Malformed]:
    x, qw = call.args
    out = [Malformed(rule, call.replace(qw=w), names) for rule, w, names in _hand_built(qw)]
    out.append(Malformed("qw not a QuantizedWeight", call.replace(qw=qw.data), ("qw",)))
    if isinstance(x, QuantizedActivation):
        out.append(Malformed("activation scales [M]", call.replace(x=dataclasses.replace(x, scales=x.scales[:, 0])),
                             ("x.scales",)))
        out.append(Malformed("activation scheme", call.replace(x=dataclasses.replace(x, scheme="int8")),
                             ("x.scheme", "qw")))
    else:
        out.append(Malformed("x K mismatch", call.replace(x=np.concatenate([x, x[:, :1]], 1)), ("x",)))
        for bad in ("int8", "nope", 3):
            out.append(Malformed(f"out_dtype {bad!r}", call.replace(out_dtype=bad), ("out_dtype",)))
    return out


def _qmatmul_problems(backend: str):
    return matmul_problems(max_m=6, max_n=20, quant=quant_configs(group_sizes=(None, 32, 64)),
                           dtypes=_dtypes(backend))


# --- attention ----------------------------------------------------------------------------------------------------


def _attention_call(p) -> Call:
    q, k, v = p.inputs()
    return Call(("q", "k", "v"), (q, k, v), p.options())


def _attention_relational(call: Call) -> list[Malformed]:
    q, k, v = call.args
    b, skv, hkv, d = k.shape
    hq = q.shape[2]
    out = []
    if hq > 1:  # hq + 1 kv heads: more kv heads than query heads never divides
        wide = np.concatenate([k] + [k[:, :, :1]] * (hq + 1 - hkv), 2)
        out.append(Malformed("GQA: Hkv does not divide Hq", call.replace(k=wide, v=wide.copy()), ("q", "k")))
    out.append(Malformed("k head_dim mismatch", call.replace(k=k[..., :-1], v=v[..., :-1]), ("k",)))
    out.append(Malformed("v shape mismatch", call.replace(v=v[:, :, :, :-1]), ("v",)))
    out.append(Malformed("head_dim 0", call.replace(q=q[..., :0], k=k[..., :0], v=v[..., :0]), ("q",)))
    if b > 1:
        out.append(Malformed("k batch mismatch", call.replace(k=k[:1], v=v[:1]), ("k",)))
    return out


def _attention_problems(backend: str):
    return attention_problems(max_batch=2, max_seq=12, heads=head_counts(max_q_heads=4, pinned=((6, 2),)),
                              dims=head_dims(choices=(16, 64)), dtypes=_dtypes(backend))


# --- paged attention ------------------------------------------------------------------------------------------------


PAGED_NAMES = ("q", "key_cache", "value_cache", "block_tables", "seq_lens", "query_start_loc")


def _paged_call(p) -> Call:
    return Call(PAGED_NAMES, p.inputs(), p.options())


def _paged_relational(call: Call) -> list[Malformed]:
    q, kc, vc, table, lens, starts = call.args
    num_seqs = len(lens)
    bs = kc.shape[1]
    out = [
        Malformed("seq_lens negative", call.replace(seq_lens=_set(lens, 0, -1)), ("seq_lens",)),
        Malformed("seq_lens past the table", call.replace(seq_lens=_set(lens, 0, table.shape[1] * bs + 1)),
                  ("seq_lens", "block_tables")),
        Malformed("query_start_loc not from 0", call.replace(query_start_loc=starts + 1), ("query_start_loc",)),
        Malformed("query_start_loc not ending at T", call.replace(query_start_loc=_set(starts, -1, starts[-1] + 1)),
                  ("query_start_loc", "q")),
        Malformed("query_start_loc length", call.replace(query_start_loc=starts[:-1]), ("query_start_loc",)),
        Malformed("seq_lens length", call.replace(seq_lens=np.concatenate([lens, lens[:1]])), ("seq_lens",)),
        Malformed("block_tables 1-D", call.replace(block_tables=table.reshape(-1)), ("block_tables",)),
        Malformed("key_cache head_dim mismatch", call.replace(key_cache=kc[..., :-1], value_cache=vc[..., :-1]),
                  ("q", "key_cache")),
        Malformed("value_cache shape", call.replace(value_cache=vc[:, :, :, :-1]), ("value_cache",)),
    ]
    q_lens = np.diff(starts)
    if num_seqs > 1 and q_lens.max() > 0:  # a decreasing step
        i = int(np.argmax(q_lens))
        step_down = _set(starts, i + 1, starts[i] - 1) if i + 1 < num_seqs else _set(starts, i, starts[-1] + 1)
        out.append(Malformed("query_start_loc decreasing", call.replace(query_start_loc=step_down),
                             ("query_start_loc",)))
    if q_lens.max() > 0:
        i = int(np.argmax(q_lens))
        out.append(Malformed("seq_len < q_len", call.replace(seq_lens=_set(lens, i, q_lens[i] - 1)), ("seq_lens",)))
    live = np.flatnonzero(lens > 0)
    if live.size:
        i = int(live[0])
        for value in (kc.shape[0], -1):
            out.append(Malformed(f"live block entry {value}", call.replace(block_tables=_set2(table, i, 0, value)),
                                 ("block_tables",)))
    if q.shape[1] > 1:
        out.append(Malformed("GQA: Hkv does not divide Hq", call.replace(q=q[:, :-1] if q.shape[1] % 2 == 0 else q,
                                                                         key_cache=_more_heads(kc, q.shape[1]),
                                                                         value_cache=_more_heads(vc, q.shape[1])),
                             ("q", "key_cache")))
    return out


def _more_heads(cache: np.ndarray, hq: int) -> np.ndarray:
    """The cache with hq + 1 kv heads (never a divisor of <= hq query heads)."""
    return np.concatenate([cache] + [cache[:, :, :1]] * (hq + 1 - cache.shape[2]), 2)


def _paged_problems(backend: str):
    sizes = st.sampled_from((1, 4, 16))
    return paged_problems(max_seqs=3, max_seq_len=12, heads=head_counts(max_q_heads=4, pinned=((6, 2),)),
                          dims=head_dims(choices=(16, 64)), sizes=sizes, dtypes=_dtypes(backend))


# --- write_kv_cache -------------------------------------------------------------------------------------------------


WRITE_NAMES = ("key", "value", "key_cache", "value_cache", "slot_mapping")


def _write_call(p) -> Call:
    return Call(WRITE_NAMES, p.inputs())


def _write_relational(call: Call) -> list[Malformed]:
    key, value, kc, vc, slots = call.args
    num_slots = kc.shape[0] * kc.shape[1]
    out = [
        Malformed("slot past the cache", call.replace(slot_mapping=_set(slots, 0, num_slots)), ("slot_mapping",)),
        Malformed("slot < -1", call.replace(slot_mapping=_set(slots, 0, -2)), ("slot_mapping",)),
        Malformed("slot_mapping length", call.replace(slot_mapping=np.concatenate([slots, [-1]]).astype(slots.dtype)),
                  ("slot_mapping",)),
        Malformed("slot_mapping unsigned", call.replace(slot_mapping=np.abs(slots).astype(np.uint32)),
                  ("slot_mapping",)),
        Malformed("value shape", call.replace(value=value[:, :, :-1]), ("value",)),
        Malformed("key head_dim mismatch", call.replace(key=key[..., :-1], value=value[..., :-1]), ("key",)),
        Malformed("value_cache shape", call.replace(value_cache=vc[:, :, :, :-1]), ("value_cache",)),
    ]
    live = np.flatnonzero(slots >= 0)
    if live.size > 1:
        out.append(Malformed("duplicate live slot", call.replace(slot_mapping=_set(slots, live[1], slots[live[0]])),
                             ("slot_mapping",)))
    return out


def _write_problems(backend: str):
    return write_problems(max_tokens=8, max_kv_heads=3, dims=head_dims(choices=(8, 64)), dtypes=_dtypes(backend))


# --- rms_norm -------------------------------------------------------------------------------------------------------


def _norm_call(p) -> Call:
    (x, weight), kwargs = p.inputs()
    return Call(("x", "weight"), (x, weight), kwargs)


def _norm_relational(call: Call) -> list[Malformed]:
    x, weight = call.args
    out = [Malformed("weight length", call.replace(weight=np.concatenate([weight, weight[:1]])), ("weight",)),
           Malformed("weight 2-D", call.replace(weight=weight[None]), ("weight",)),
           Malformed("H = 0", call.replace(x=x[..., :0], weight=weight[:0]), ("x",))]
    residual = call.kwargs.get("residual")
    if residual is not None:
        out.append(Malformed("residual shape", call.replace(residual=residual[..., :-1] if x.shape[-1] > 1
                                                            else residual[..., None]), ("residual",)))
    else:
        out.append(Malformed("residual a list", call.replace(residual=x.tolist()), ("residual",)))
    return out


def _norm_problems(backend: str):
    return norm_problems(max_rows=20, max_hidden=70, dtypes=_dtypes(backend))


# --- rope -----------------------------------------------------------------------------------------------------------


def _rope_call(p) -> Call:
    (q, k, positions), options = p.inputs()
    return Call(("q", "k", "positions"), (q, k, positions), options)


def _rope_relational(call: Call) -> list[Malformed]:
    q, k, positions = call.args
    d = q.shape[2]
    out = [
        Malformed("position -1", call.replace(positions=_set(positions, 0, -1)), ("positions",)),
        Malformed("position 2**24", call.replace(positions=_set(positions.astype(np.int64), 0, 2**24)),
                  ("positions",)),
        Malformed("positions length", call.replace(positions=np.concatenate([positions, positions[:1]])),
                  ("positions",)),
        Malformed("k head_dim mismatch", call.replace(k=np.concatenate([k, k[..., :1]], 2)), ("k",)),
        Malformed("k tokens mismatch", call.replace(k=np.concatenate([k, k[:1]], 0)), ("k",)),
        Malformed("no kv head", call.replace(k=k[:, :0]), ("k",)),
        Malformed("unknown scaling", call.replace(scaling=dict(rope_type="yarn", factor=2.0)), ("scaling",)),
        Malformed("scaling a list", call.replace(scaling=[8.0]), ("scaling",)),
    ]
    out += [Malformed(f"rotary_dim={r!r}", call.replace(rotary_dim=r), ("rotary_dim",))
            for r in (0, d + 2, d - 1 if d % 2 == 0 else d, 2.0, True, "2")]
    return out


def _rope_problems(backend: str):
    return rope_problems(max_tokens=12, max_heads=3, head_dims=(2, 8, 30, 64), dtypes=_dtypes(backend))


# --- silu_mul -------------------------------------------------------------------------------------------------------


def _silu_call(p) -> Call:
    (gate_up,), _ = p.inputs()
    return Call(("gate_up",), (gate_up,))


def _silu_relational(call: Call) -> list[Malformed]:
    (gate_up,) = call.args
    return [Malformed("odd last axis", call.replace(gate_up=np.concatenate([gate_up, gate_up[..., :1]], -1)),
                      ("gate_up",)),
            Malformed("empty last axis", call.replace(gate_up=gate_up[..., :0]), ("gate_up",))]


def _silu_problems(backend: str):
    return silu_mul_problems(max_rows=20, max_inter=40, dtypes=_dtypes(backend))


# --- helpers --------------------------------------------------------------------------------------------------------


def _set(a: np.ndarray, i: int, value) -> np.ndarray:
    b = a.copy()
    b[i] = value
    return b


def _set2(a: np.ndarray, i: int, j: int, value) -> np.ndarray:
    b = a.copy()
    b[i, j] = value
    return b


CASES: dict[str, OpCase] = {case.name: case for case in (
    OpCase("qmatmul", _qmatmul_problems, _qmatmul_call, floats=("x",), relational=_qmatmul_relational,
           poison=("x",)),
    OpCase("attention", _attention_problems, _attention_call, floats=("q", "k", "v"),
           options=dict(causal=BAD_CAUSAL, scale=BAD_POSITIVE, sliding_window=BAD_WINDOW, softcap=BAD_POSITIVE),
           relational=_attention_relational, poison=("q", "k")),
    OpCase("paged_attention", _paged_problems, _paged_call, floats=("q", "key_cache", "value_cache"),
           indices=("block_tables", "seq_lens", "query_start_loc"),
           options=dict(causal=BAD_CAUSAL, scale=BAD_POSITIVE, sliding_window=BAD_WINDOW, softcap=BAD_POSITIVE),
           relational=_paged_relational, poison=("q", "key_cache")),
    OpCase("write_kv_cache", _write_problems, _write_call, floats=("key", "value", "key_cache", "value_cache"),
           indices=("slot_mapping",), written=("key_cache", "value_cache"), relational=_write_relational,
           poison=("key", "value")),
    OpCase("rms_norm", _norm_problems, _norm_call, floats=("x", "weight"), free_rank=("x",),
           options=dict(eps=BAD_POSITIVE + (None,)), relational=_norm_relational, poison=("x",)),
    OpCase("rope", _rope_problems, _rope_call, floats=("q", "k"), indices=("positions",),
           options=dict(theta=BAD_POSITIVE, style=("rope", 3, None)), relational=_rope_relational, poison=("q", "k")),
    OpCase("silu_mul", _silu_problems, _silu_call, floats=("gate_up",), free_rank=("gate_up",),
           relational=_silu_relational, poison=("gate_up",)),
)}


# One small problem per op (strategies.py's problem types): GQA, a causal mask, padding tokens, a mixed paged batch
PINNED = {
    "qmatmul": MatmulProblem(5, 64, 24, QuantConfig("int4", 32, symmetric=False), "float32", 0),
    "attention": AttentionProblem(2, 5, 7, 4, 2, 16, True, None, None, "float32", 0),
    "paged_attention": pinned_paged_problem((6, 1, 9), (6, 1, 3), 4, 2, 16, 4, dtype="float32"),
    "write_kv_cache": WriteProblem(2, 16, 4, 3, (5, -1, 0, 11, 2), "float32", 0),
    "rms_norm": NormProblem((3, 2), 40, True, 1e-5, "float32", 0),
    "rope": RopeProblem(5, 3, 2, 8, 6, "neox", 10000.0, True, 8192, "float32", 0),
    "silu_mul": SiluMulProblem((3, 2), 9, 4.0, "float32", 0),
}


# --- generic mutations ------------------------------------------------------------------------------------------------


def _other_float(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float64 if dtype_name(a) != "float64" else np.float32)


def generic_malformed(case: OpCase, call: Call) -> list[Malformed]:
    """Rule breaks every op shares: each array argument as a Python list, 0-d, of another rank, of a wrong dtype."""
    out = []
    for name, a in call.arrays().items():
        if name not in case.floats + case.indices:
            continue
        out.append(Malformed(f"{name} a list", call.replace(**{name: a.tolist()}), (name,)))
        scalar = np.zeros((), a.dtype) if a.size == 0 else np.asarray(a.reshape(-1)[0])
        out.append(Malformed(f"{name} 0-d", call.replace(**{name: scalar}), (name,)))
        if name not in case.free_rank:
            out.append(Malformed(f"{name} rank + 1", call.replace(**{name: a[None]}), (name,)))
        if name in case.floats:
            out.append(Malformed(f"{name} int32", call.replace(**{name: np.zeros(a.shape, np.int32)}), (name,)))
            if len(case.floats) > 1:  # the float arguments share one dtype
                out.append(Malformed(f"{name} other float dtype", call.replace(**{name: _other_float(a)}), (name,)))
        else:
            out.append(Malformed(f"{name} float32", call.replace(**{name: a.astype(np.float32)}), (name,)))
    for name in case.written:
        frozen = call.get(name).copy()
        frozen.flags.writeable = False
        out.append(Malformed(f"{name} read-only", call.replace(**{name: frozen}), (name,)))
    for name, values in case.options.items():
        out += [Malformed(f"{name}={v!r}", call.replace(**{name: v}), (name,)) for v in values]
    return out


def torch_only_malformed(case: OpCase, call: Call) -> list[tuple[Malformed, str]]:
    """(variant, argument to mark): float tensors requiring grad (grad mode on), refused by every op."""
    return [(Malformed(f"{name} requires grad", call, (name,)), name) for name in case.floats
            if name in call.arrays()]
