"""Problems: each registered op's workload at a model's shapes (decode, prefill, chunked, mixed) or at smoke shapes.

Per layer and per rank, each model yields the problems its op families declare (`Op.model_problems`, for the phases
in `Op.phases`), e.g.
  decode   qmatmul (QKV, O, gate_up, down) at M = batch; paged_attention with one query per sequence over its
           context; write_kv_cache of one token per sequence.        tokens = batch
  prefill  qmatmul at M = sequence length; causal attention over the sequence (dense, and paged_attention through
           the paged cache); write_kv_cache of the sequence.         tokens = sequence length (batch 1)
  chunked  paged_attention of one chunked-prefill chunk: its new tokens over the sequence's whole context.
                                                                     tokens = chunk length
  mixed    paged_attention of one scheduler step: decode sequences and a prefill chunk in one call.
                                                                     tokens = decode sequences + chunk length
  smoke    small shapes that every backend runs in seconds, for correctness.

Names: "<model>/<phase>/<op>/<shape>", e.g. "llama-3.1-8b/decode/qmatmul/qkv-m8". `select_problem` finds a problem
by its full name or any tail of it ("qmatmul/qkv-m8", "qkv-m8"), as `nkilab bench --problem` does; `short_name`
is the tail every report prints ("decode/qmatmul/qkv-m8").
"""

from __future__ import annotations

import numpy as np

from nkilab.harness.workloads.grids import grid_sizes
from nkilab.harness.workloads.models import DEFAULT_MODEL, ModelShape, resolve_model
from nkilab.kernels._registry import get, ops_list
from nkilab.kernels.ops._problem import DEFAULT_QUANT, Problem, Quant

PHASES = ("decode", "prefill", "chunked", "mixed")
MAX_LISTED = 40  # valid names listed when a lookup misses


def _families(ops):
    """The registered ops named in `ops` (None = all), in OPS order; ValueError for a name not registered."""
    if ops is None:
        return ops_list()
    for name in ops:
        get(name)
    return [op for op in ops_list() if op.name in ops]


def model_problems(model: str | ModelShape = DEFAULT_MODEL, *, phase: str = "decode", grid: str | dict = "default",
                   quant: Quant = DEFAULT_QUANT, dtype: str = "bfloat16", ops=None) -> list[Problem]:
    """Problems of one model (a key of MODELS or a ModelShape) and phase (one of PHASES) over a grid ("quick" |
    "default" | "full", see GRIDS, or a dict of sizes from `grid_sizes`) of the ops named in `ops` (None = every
    registered op) that model the phase (`Op.phases`), in OPS order."""
    shape = resolve_model(model)
    if phase not in PHASES:
        raise ValueError(f"phase: must be one of {PHASES}, got {phase!r}")
    sizes = grid_sizes(grid)
    return [p for op in _families(ops) if phase in op.phases
            for p in op.model_problems(shape, phase, sizes, quant, dtype)]


def smoke_problems(dtype: str = "float16", *, ops=None) -> list[Problem]:
    """Small shapes for correctness on every backend (odd sizes, GQA, window + softcap, a mixed paged batch, ...) of
    the ops named in `ops` (None = every registered op)."""
    return [p for op in _families(ops) for p in op.smoke_problems(dtype)]


def short_name(name: str) -> str:
    """A problem's name without its model: "<phase>/<op>/<shape>" (unique within one model's problems)."""
    return name.split("/", 1)[-1]


def matches(name: str, query: str) -> bool:
    """Whether `query` is `name` or a tail of it made of whole "/"-separated parts."""
    return name == query or name.endswith("/" + query)


def select_problem(problems: list[Problem], query: str) -> Problem:
    """The one problem whose name `matches` `query`.

    Raises:
        ValueError: no problem matches (the message lists the valid names, `<phase>/<op>/<shape>`, up to MAX_LISTED)
            or several do (the message lists their full names).
    """
    hits = [p for p in problems if matches(p.name, query)]
    if len(hits) == 1:
        return hits[0]
    if hits:
        raise ValueError(f"problem: {query!r} matches {len(hits)} problems ({', '.join(p.name for p in hits)}); "
                         "give more of the name, e.g. with its phase")
    names = [short_name(p.name) for p in problems]
    more = f", … ({len(names) - MAX_LISTED} more)" if len(names) > MAX_LISTED else ""
    listed = ", ".join(names[:MAX_LISTED]) + more
    raise ValueError(f"problem: no problem named {query!r}; valid names: {listed or '(none in this selection)'}")


def make_inputs(problem: Problem, rng: np.random.Generator | None = None, *, zeros: bool = False):
    """NumPy arguments of the public op for `problem`: (args tuple, kwargs dict), as the op's family builds them
    (e.g. NaN-poisoned unused cache slots, permuted physical blocks, a -1 padding slot). `zeros=True` fills the
    float data with zeros (trace mode only needs shapes)."""
    return problem.family.make_inputs(problem, rng or np.random.default_rng(0), zeros)
