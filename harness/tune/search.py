"""The tuner: every candidate config of a kernel's tunables on every problem of a model, modeled; the best per
(target, shape class) into the kernel's tuning table.

The kernel's NKI launcher declares `TUNING_CHOICES` ({name: values}) and `shape_class(problem)` (see
`nkilab.kernels.nki.launch_tuning`). Each (problem, target, config) is one sweep task (`harness.sweep.tasks`), so the
cache, Ray and the error records are the sweep's. A config whose trace the emulator refuses (capacity, ISA rules:
the task raises) or that the launcher declines is rejected for its shape class, with the reason kept. Among the
configs that ran on every problem of a class, the one with the smallest summed modeled latency wins; "before" is
the config the table gave that class when the search started. All latencies are modeled, not measured.
"""

from __future__ import annotations

import itertools
import json
import os
import random
from dataclasses import dataclass, field

from nkilab.harness.profile import RunConfig, Task
from nkilab.harness.sweep.runner import sweep
from nkilab.harness.sweep.tasks import SweepTask, with_config
from nkilab.harness.workloads import model_problems
from nkilab.kernels import _registry
from nkilab.kernels.nki import launch_tuning as tuning


@dataclass
class ClassResult:
    """The search's outcome for one (target, shape class).

    Attributes:
        before, after: the table's config at the start, and the best one found ({name: value}).
        rows: per problem (name, before latency s, after latency s), modeled.
        rejected: {config as JSON text: the first reason a problem of the class refused it}.
    """

    target: str
    shape_class: str
    before: dict
    after: dict
    rows: list[tuple[str, float, float]] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)


def tuning_hooks(op: str):
    """(TUNING_CHOICES, shape_class, TUNING_TABLE) of `op`'s NKI launcher; ValueError naming `kernel` when it
    declares none."""
    module = _registry.backend_module(op, "nki")
    if not hasattr(module, "TUNING_CHOICES"):
        raise ValueError(f"kernel: {op} declares no tunables (TUNING_CHOICES in its NKI launcher {module.__name__})")
    return module.TUNING_CHOICES, module.shape_class, module.TUNING_TABLE


def candidates(choices: dict, *, budget: int | None = None, seed: int = 0) -> list[dict]:
    """Every combination of `choices` ({name: values}); with `budget`, a random sample of that many (seeded)."""
    names = sorted(choices)
    grid = [dict(zip(names, values)) for values in itertools.product(*(choices[n] for n in names))]
    if budget is not None and budget < 1:
        raise ValueError(f"budget: must be >= 1 or None, got {budget}")
    if budget is None or budget >= len(grid):
        return grid
    return random.Random(seed).sample(grid, budget)


def plan_tuning(op: str, *, model: str, grid: str, phases, targets, table: dict, run: RunConfig,
                budget: int | None = None, seed: int = 0) -> tuple[list[SweepTask], dict]:
    """The tasks (every problem x target x candidate, plus each class's current config) and
    {(target, class): [problems]}."""
    choices, shape_class, _ = tuning_hooks(op)
    configs = candidates(choices, budget=budget, seed=seed)
    tasks, classes = [], {}
    for target in targets:
        for phase in phases:
            for problem in model_problems(model, phase=phase, grid=grid, ops=(op,)):
                cls = shape_class({**problem.params, **problem.spec()})
                classes.setdefault((target, cls), []).append(problem)
                current = tuning.settings(table, target, cls)
                for config in [current] + [c for c in configs if c != current]:
                    task = with_config(Task("model", op, "nki", target, problem), config)
                    tasks.append(SweepTask(task, tuple(sorted(config.items())), run))
    return tasks, classes


def tune(op: str, results_path: str, *, model: str, grid: str, phases, targets, table: dict, run: RunConfig,
         workers: int, address: str | None = None, budget: int | None = None, seed: int = 0,
         on_record=None) -> list[ClassResult]:
    """Search (see the module docstring); records stream into `results_path` (a resumable sweep file)."""
    tasks, classes = plan_tuning(op, model=model, grid=grid, phases=phases, targets=targets, table=table, run=run,
                                 budget=budget, seed=seed)
    records = sweep(tasks, results_path, workers=workers, address=address, on_record=on_record)
    keys = {t.key for t in tasks}
    by = {}  # (target, problem name) -> {config JSON: record}
    for rec in records:
        if rec["sweep_key"] in keys:
            by.setdefault((rec["target"], rec["problem"]["name"]), {})[_text(rec["config"])] = rec
    return [_best(target, cls, problems, by, table) for (target, cls), problems in classes.items()]


def _best(target, cls, problems, by, table) -> ClassResult:
    before = tuning.settings(table, target, cls)
    totals, rejected = {}, {}
    for config in {c for p in problems for c in by[(target, p.name)]}:
        total = 0.0
        for p in problems:
            rec = by[(target, p.name)].get(config)
            if rec is None or rec["status"] != "ok":
                rejected.setdefault(config, f"{p.name}: {rec['status'] if rec else 'not run'}: "
                                            f"{(rec or {}).get('note')}")
                break
            total += rec["perf"]["latency_s"]
        else:
            totals[config] = total
    if _text(before) not in totals:
        raise RuntimeError(f"tune: the current config {before} of {target}/{cls} did not run: "
                           f"{rejected.get(_text(before))}")
    best = min(totals, key=lambda c: (totals[c], c))
    if totals[best] >= totals[_text(before)]:
        best = _text(before)  # ties keep the table's config
    rows = [(p.name, by[(target, p.name)][_text(before)]["perf"]["latency_s"],
             by[(target, p.name)][best]["perf"]["latency_s"]) for p in problems]
    return ClassResult(target, cls, before, json.loads(best), rows, rejected)


def _text(config: dict) -> str:
    return json.dumps(config, sort_keys=True)


def updated_table(table: dict, results: list[ClassResult]) -> dict:
    """`table` with each class's best config as its (target, class) row."""
    out = json.loads(json.dumps(table))
    for r in results:
        out.setdefault("targets", {}).setdefault(r.target, {})[r.shape_class] = r.after
    return out


def write_table(table: dict, path: str | os.PathLike) -> None:
    """Write a tuning table as indented JSON (atomically: a launcher never reads half a table)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        json.dump(table, fh, indent=2, sort_keys=True)
        fh.write("\n")
    os.replace(tmp, path)
