"""Problems: each registered op's workload at a model's shapes (decode, prefill) or at smoke shapes.

Per layer and per rank, each model yields the problems its op families declare (`Op.model_problems`), e.g.
  decode   qmatmul (QKV, O, gate_up, down) at M = batch; paged_attention with one query per sequence over its
           context; write_kv_cache of one token per sequence.        tokens = batch
  prefill  qmatmul at M = sequence length; causal attention over the sequence; write_kv_cache of the sequence.
           tokens = sequence length (batch 1)
  smoke    small shapes that every backend runs in seconds, for correctness.
"""

from __future__ import annotations

import numpy as np

from nkilab.harness.workloads.grids import GRIDS
from nkilab.harness.workloads.models import DEFAULT_MODEL, MODELS
from nkilab.kernels._registry import get, ops_list
from nkilab.kernels.ops._problem import DEFAULT_QUANT, Problem, Quant

PHASES = ("decode", "prefill")


def _families(ops):
    """The registered ops named in `ops` (None = all), in OPS order; ValueError for a name not registered."""
    if ops is None:
        return ops_list()
    for name in ops:
        get(name)
    return [op for op in ops_list() if op.name in ops]


def model_problems(model: str = DEFAULT_MODEL, *, phase: str = "decode", grid: str = "default",
                   quant: Quant = DEFAULT_QUANT, dtype: str = "bfloat16", ops=None) -> list[Problem]:
    """Problems of one model and phase over a grid ("quick" | "default" | "full", see GRIDS) of the ops named in
    `ops` (None = every registered op), in OPS order."""
    if model not in MODELS:
        raise ValueError(f"model: unknown {model!r}; choose one of {', '.join(MODELS)}")
    if phase not in PHASES:
        raise ValueError(f"phase: must be one of {PHASES}, got {phase!r}")
    if grid not in GRIDS:
        raise ValueError(f"grid: must be one of {tuple(GRIDS)}, got {grid!r}")
    return [p for op in _families(ops) for p in op.model_problems(MODELS[model], phase, GRIDS[grid], quant, dtype)]


def smoke_problems(dtype: str = "float16", *, ops=None) -> list[Problem]:
    """Small shapes for correctness on every backend (odd sizes, GQA, window + softcap, a mixed paged batch, ...) of
    the ops named in `ops` (None = every registered op)."""
    return [p for op in _families(ops) for p in op.smoke_problems(dtype)]


def make_inputs(problem: Problem, rng: np.random.Generator | None = None, *, zeros: bool = False):
    """NumPy arguments of the public op for `problem`: (args tuple, kwargs dict), as the op's family builds them
    (e.g. NaN-poisoned unused cache slots, permuted physical blocks, a -1 padding slot). `zeros=True` fills the
    float data with zeros (trace mode only needs shapes)."""
    return problem.family.make_inputs(problem, rng or np.random.default_rng(0), zeros)
