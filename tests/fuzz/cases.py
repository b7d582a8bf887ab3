"""Fuzz cases of every registered op (issue 10): valid problems per backend, the public call each one makes,
malformed variants drawn from the documented argument rules, strided views, and one-element NaN poisoning.

One `OpCase` per op of the registry (`CASES`, keyed by op name; `test_every_registered_op_has_a_case` fails when an
op is added without one). A `Call` is the public function's arguments as NumPy (bfloat16 as ml_dtypes); `as_kind`
turns it into torch tensors. The malformed draws follow the rules the op modules document: a Python list, a 0-d
array, a wrong rank, a wrong dtype, a tensor requiring grad, a read-only cache, out-of-range / non-monotone index
arrays, bad options (scale, sliding_window, softcap, causal, eps, out_dtype), GQA heads that do not divide, and
hand-built QuantizedWeight / QuantizedActivation fields. Each one says which argument names its error may cite.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Callable

import ml_dtypes
import numpy as np
import torch
from hypothesis import strategies as st
from strategies import (
    INTERPRETER_DTYPES,
    AttentionProblem,
    MatmulProblem,
    NormProblem,
    QuantConfig,
    WriteProblem,
    attention_problems,
    head_counts,
    head_dims,
    matmul_problems,
    norm_problems,
    paged_problems,
    pinned_paged_problem,
    quant_configs,
    write_problems,
)

from nkilab.harness.checks import check_against_reference, check_output
from nkilab.kernels import _registry
from nkilab.kernels._adapter import dtype_name, to_torch
from nkilab.reference.quant import QuantizedActivation, QuantizedWeight

# (backend, target) pairs every valid draw runs on: the NKI emulator on both NeuronCore generations' targets
BACKEND_TARGETS = (("reference", None), ("nki", "inf2"), ("nki", "trn1"), ("nki", "trn2"), ("triton", None))
BACKENDS = _registry.BACKENDS
KINDS = ("numpy", "torch")
ERRORS = (TypeError, ValueError)


@dataclass(frozen=True)
class Call:
    """The public function's arguments: `args` positional (names in `names`), `kwargs` keywords (NumPy arrays)."""

    names: tuple[str, ...]
    args: tuple
    kwargs: dict = field(default_factory=dict)

    def replace(self, **named) -> "Call":
        """A copy with the named arguments (positional or keyword) replaced."""
        args = tuple(named.pop(n) if n in named else a for n, a in zip(self.names, self.args))
        return Call(self.names, args, {**self.kwargs, **named})

    def get(self, name: str):
        return self.args[self.names.index(name)] if name in self.names else self.kwargs[name]

    def arrays(self) -> dict:
        """{name: array} of every NumPy array argument (positional and keyword)."""
        items = list(zip(self.names, self.args)) + list(self.kwargs.items())
        return {n: a for n, a in items if isinstance(a, np.ndarray)}


class Malformed:
    """A call that breaks a documented rule; its error must name one of `names` (TypeError or ValueError). A plain
    class, so hypothesis reports a failing draw by its short repr rather than every array of the call."""

    def __init__(self, rule: str, call: Call, names: tuple[str, ...]):
        self.rule, self.call, self.names = rule, call, names

    def __repr__(self) -> str:
        return f"Malformed({self.rule!r}, names={self.names})"


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
        out.append(Malformed("query_start_loc decreasing", call.replace(
            query_start_loc=_set(starts, i + 1, starts[i] - 1) if i + 1 < num_seqs else _set(starts, i, starts[-1] + 1)),
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
)}


# One small problem per op (strategies.py's problem types): GQA, a causal mask, padding tokens, a mixed paged batch
PINNED = {
    "qmatmul": MatmulProblem(5, 64, 24, QuantConfig("int4", 32, symmetric=False), "float32", 0),
    "attention": AttentionProblem(2, 5, 7, 4, 2, 16, True, None, None, "float32", 0),
    "paged_attention": pinned_paged_problem((6, 1, 9), (6, 1, 3), 4, 2, 16, 4, dtype="float32"),
    "write_kv_cache": WriteProblem(2, 16, 4, 3, (5, -1, 0, 11, 2), "float32", 0),
    "rms_norm": NormProblem((3, 2), 40, True, 1e-5, "float32", 0),
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


def as_kind(call: Call, kind: str, requires_grad: str | None = None) -> Call:
    """The call with every NumPy array as a torch tensor (kind "torch"; `requires_grad` names one float argument to
    mark) or as is (kind "numpy"). Read-only arrays are copied by the conversion, so they stay NumPy."""
    if kind == "numpy":
        return call

    def conv(name, a):
        if not isinstance(a, np.ndarray) or not a.flags.writeable:
            return a
        try:
            t = to_torch(a.copy())
        except TypeError:  # a dtype torch lacks (float8_e4m3, e.g. a weight's data passed as `qw`): left NumPy
            return a
        return t.requires_grad_() if name == requires_grad else t

    return Call(call.names, tuple(conv(n, a) for n, a in zip(call.names, call.args)),
                {n: conv(n, a) for n, a in call.kwargs.items()})


# --- strided views --------------------------------------------------------------------------------------------------


VIEWS = ("transposed", "sliced", "expanded")


def view_of(a: np.ndarray, how: str, kind: str):
    """(view, values): a non-contiguous NumPy view or torch tensor and the NumPy values it holds.

    "transposed": `a`'s values with the axes stored in reverse order; "sliced": every other element of a buffer
    twice as long on the last axis; "expanded": `a[:1]` broadcast along axis 0 (stride 0; the values change to
    copies of the first row, so the reference runs on `values`). 0-d and empty arrays are returned as they are.
    """
    if a.ndim == 0 or a.size == 0:
        return (to_torch(a.copy()) if kind == "torch" else a), a
    if how == "expanded":
        values = np.ascontiguousarray(np.broadcast_to(a[:1], a.shape))
        base = a[:1].copy()
        view = to_torch(base).expand(*a.shape) if kind == "torch" else np.broadcast_to(base, a.shape)
        return view, values
    if how == "transposed" and a.ndim >= 2:
        axes = tuple(reversed(range(a.ndim)))
        stored = np.ascontiguousarray(a.transpose(axes))
        return (to_torch(stored).permute(*axes) if kind == "torch" else stored.transpose(axes)), a
    buf = np.zeros((*a.shape[:-1], 2 * a.shape[-1]), a.dtype)
    buf[..., ::2] = a
    return (to_torch(buf)[..., ::2] if kind == "torch" else buf[..., ::2]), a


def with_views(case: OpCase, call: Call, how: str, kind: str) -> tuple[Call, Call]:
    """(view call, values call): every array argument as a non-contiguous view (`view_of`), and the NumPy values
    those views hold (what the reference runs on). Index arrays and written caches are never expanded (that would
    change slots and block tables, or alias cache rows); they are sliced instead."""
    views, values = {}, {}
    for name, a in call.arrays().items():
        keep_values = how == "expanded" and (name not in case.floats or name in case.written)
        views[name], values[name] = view_of(a, "sliced" if keep_values else how, kind)
    return call.replace(**views), call.replace(**values)


def copied(call: Call) -> Call:
    """A deep copy of the call's NumPy arrays (a backend may write the caches; the reference needs the originals)."""
    def conv(a):
        return a.copy() if isinstance(a, np.ndarray) else a

    return Call(call.names, tuple(conv(a) for a in call.args), {n: conv(a) for n, a in call.kwargs.items()})


def run(case: OpCase, call: Call, backend: str, target: str | None):
    """The public function on `call` with `backend` (and the NKI `target`)."""
    extra = {} if target is None else {"target": target}
    return case.op.api(*call.args, **call.kwargs, backend=backend, **extra)


def assert_matches(case: OpCase, backend: str, out, values: Call) -> None:
    """`out` against the float64 reference on the NumPy `values` call, by the op's check rule (`Op.check`, the
    harness comparator), with one documented exception: NKI qmatmul rounds x to bfloat16 before TensorE (see its
    docstring), so its error budget is the naive bfloat16 run's."""
    if case.name == "qmatmul" and backend == "nki":
        x, qw = values.args
        result = check_against_reference(case.op.check.output(out), case.op.reference, x, qw,
                                         compute_dtype=ml_dtypes.bfloat16)
    else:
        result = check_output(case.op, out, values.args, values.kwargs)
    assert result.passed, str(result)


def snapshot(call: Call) -> dict:
    """{name: (dtype, shape, bytes)} of every array/tensor argument, to prove none was mutated (NaN-safe)."""
    out = {}
    items = list(zip(call.names, call.args)) + list(call.kwargs.items())
    for name, a in items:
        if isinstance(a, torch.Tensor):
            dense = torch.empty(a.shape, dtype=a.dtype).copy_(a.detach().cpu())  # standard strides, a copy
            out[name] = (str(a.dtype), tuple(a.shape), dense.reshape(-1).view(torch.uint8).numpy().tobytes() if a.numel() else b"")
        elif isinstance(a, np.ndarray):
            out[name] = (a.dtype.name, a.shape, np.ascontiguousarray(a).tobytes())
        elif isinstance(a, (QuantizedWeight, QuantizedActivation)):
            out[name] = tuple(np.ascontiguousarray(v).tobytes() if isinstance(v, np.ndarray) else repr(v)
                              for v in dataclasses.astuple(a))
    return out


def numel(a) -> int:
    return math.prod(a.shape)
