"""Workloads: real-model shapes (`models`), sweeps (`grids`) and the kernel problems cut from them (`problems`).

Models and grids are data kept here; the problem builders, formulas (`Problem.flops()`, `hbm_bytes()`, `spec()`)
and inputs come from each op family's declaration (`nkilab.kernels.ops`).
"""

from nkilab.harness.workloads.grids import GRIDS, OVERRIDES, grid_sizes
from nkilab.harness.workloads.models import DEFAULT_MODEL, MODELS, ModelShape, model_from_config, resolve_model
from nkilab.harness.workloads.problems import (
    PHASES,
    make_inputs,
    matches,
    model_problems,
    select_problem,
    short_name,
    smoke_problems,
)
from nkilab.kernels.ops._problem import DEFAULT_QUANT, Problem, Quant

__all__ = ["DEFAULT_MODEL", "DEFAULT_QUANT", "GRIDS", "MODELS", "ModelShape", "OVERRIDES", "PHASES", "Problem",
           "Quant", "grid_sizes", "make_inputs", "matches", "model_from_config", "model_problems", "resolve_model",
           "select_problem", "short_name", "smoke_problems"]
