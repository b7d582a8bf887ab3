"""Sweep tasks: one per (kernel, problem, target, config), and what one task computes.

A config is a mapping of tunable values (e.g. {"rows_per_tile": 64}); it travels in the problem's params as
`tunables` (the key a launcher's `traceable(problem, target)` reads its overrides from), so the traced kernel, the
record's `problem` field and the cache key all carry it. The empty config adds nothing: the kernel's defaults
(its tuning table).

Each record gets `sweep_key`: SHA-256 of {kernel, target, problem record, config} as canonical JSON — what
`--resume` matches done work by.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, replace

from nkilab.harness.cache import Cache, key_of
from nkilab.harness.profile import RunConfig, Task, cached_model_task, model_cache_entry
from nkilab.harness.record_cache import stored_record
from nkilab.harness.report.records import make_record
from nkilab.harness.workloads import Quant, model_problems


@dataclass(frozen=True)
class SweepTask:
    """One unit of work: `task` (a profile Task of kind "model", its problem carrying `config`) under `run`
    (power overrides, cache)."""

    task: Task
    config: tuple[tuple[str, object], ...]
    run: RunConfig

    @property
    def key(self) -> str:
        return key_of({"kernel": self.task.op, "target": self.task.target, "problem": self.task.problem.record(),
                       "config": dict(self.config)})


def with_config(task: Task, config: dict) -> Task:
    """`task` with `config` as its problem's `tunables` (the task itself for the empty config)."""
    if not config:
        return task
    return replace(task, problem=replace(task.problem, params={**task.problem.params, "tunables": dict(config)}))


def plan(*, model: str, grid: str, phases, targets, ops, quants: tuple[Quant, ...], run: RunConfig,
         configs: tuple[dict, ...] = ({},)) -> list[SweepTask]:
    """Every sweep task, in a fixed order: target, phase, quant, problem (OPS order), config. A problem that does
    not depend on the quant (every op but qmatmul) is planned once, with the first quant."""
    tasks, seen = [], set()
    for target in targets:
        for phase in phases:
            for quant in quants:
                for problem in model_problems(model, phase=phase, grid=grid, quant=quant, ops=ops):
                    if (target, problem) in seen:
                        continue
                    seen.add((target, problem))
                    for config in configs:
                        task = with_config(Task("model", problem.op, "nki", target, problem), config)
                        tasks.append(SweepTask(task, tuple(sorted(config.items())), run))
    return tasks


def run_task(sweep_task: SweepTask) -> dict:
    """The task's modeled record (through `run.cache`), or an error record when it raises; `sweep_key` set."""
    task = sweep_task.task
    try:
        rec = cached_model_task(task, sweep_task.run)
    except Exception as exc:  # a sweep records every failure and goes on
        rec = error_record(sweep_task, exc, traceback.format_exc(limit=4))
    return {**rec, "config": dict(sweep_task.config), "sweep_key": sweep_task.key}


def cache_hit(sweep_task: SweepTask) -> dict | None:
    """`run_task`'s record when the cache already holds it (read here, nothing traced), else None: the sweep serves
    hits in the driver and sends only the misses to the workers."""
    if sweep_task.run.cache is None:
        return None
    rec = stored_record(sweep_task.run.cache, *model_cache_entry(sweep_task.task, sweep_task.run))
    return None if rec is None else {**rec, "config": dict(sweep_task.config), "sweep_key": sweep_task.key}


def error_record(sweep_task: SweepTask, exc: BaseException, trace: str | None = None) -> dict:
    """The status "error" record of a task that raised `exc` (or whose worker died): error {kind, message}."""
    task = sweep_task.task
    return make_record(kernel=task.op, backend=task.backend, target=task.target, problem=task.problem.record(),
                       status="error", note=f"{type(exc).__name__}: {exc}", stage="model",
                       error={"kind": type(exc).__name__, "message": str(exc)}, trace=trace,
                       config=dict(sweep_task.config), sweep_key=sweep_task.key)


def sweep_run_config(power_w: dict[str, float], cache_dir: str | None, *, use_cache: bool = True) -> RunConfig:
    """The RunConfig a sweep's tasks carry: power overrides and the cache (None when `use_cache` is False)."""
    return RunConfig(power_w=dict(power_w), cache=Cache(cache_dir) if use_cache else None)
