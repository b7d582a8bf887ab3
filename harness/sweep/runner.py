"""One sweep into a run folder's results.jsonl: the tasks not yet done, each record written as it arrives."""

from __future__ import annotations

from typing import Callable, Sequence

from nkilab.harness.sweep.engine import execute
from nkilab.harness.sweep.stream import ResultsFile
from nkilab.harness.sweep.tasks import SweepTask, cache_hit, error_record, run_task


def sweep(tasks: Sequence[SweepTask], results_path: str, *, workers: int, address: str | None = None,
          on_start: Callable[[int, int], None] | None = None,
          on_record: Callable[[SweepTask, dict], None] | None = None) -> list[dict]:
    """Run every task whose `sweep_key` is not in `results_path` yet (a resume) and append its record there.
    Records the cache holds are read here first; only the misses go to `execute` (a warm sweep starts no Ray).

    Args:
        tasks: the plan (`tasks.plan`); workers: Ray CPUs (1 = in-process); address: a Ray cluster, or None.
        on_start: called with (tasks already done, total) before any task runs (a progress bar's start).
        on_record: called after each record is written.

    Returns:
        Every record of the file: those already there, then the new ones in completion order.
    """
    with ResultsFile(results_path) as results:
        todo = [t for t in tasks if t.key not in results.done]
        if on_start is not None:
            on_start(len(tasks) - len(todo), len(tasks))

        def on_result(task: SweepTask, rec: dict) -> None:
            results.append(rec)
            if on_record is not None:
                on_record(task, rec)

        misses = []
        for task in todo:
            rec = cache_hit(task)
            if rec is None:
                misses.append(task)
            else:
                on_result(task, rec)
        execute(misses, run_task, workers=workers, address=address, on_result=on_result, on_lost=error_record)
        return list(results.records)
