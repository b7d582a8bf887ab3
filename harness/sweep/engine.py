"""Where sweep tasks run: Ray (a local cluster by default, a remote one by address) or this process.

    execute(tasks, fn, workers=N, address=None, on_result=cb, on_lost=lost)

calls `on_result(task, fn(task))` as each task finishes, in completion order. In-process (`workers == 1`, or
$NKILAB_NO_RAY=1, with no address) `fn` runs here in plan order — the same function, the same records. On Ray each
task is a remote call of `fn` with `max_retries` (a worker process that dies, e.g. killed or out of memory, is
restarted and the task rerun); a task lost even so becomes `on_result(task, on_lost(task, exc))`, never a gap.
`fn` must catch its own exceptions (a task that raises is a record, not a lost task).
"""

from __future__ import annotations

import os
from typing import Callable, Sequence

NO_RAY_ENV = "NKILAB_NO_RAY"
MAX_RETRIES = 3  # reruns of a task whose worker died before Ray gives up on it


def in_process(workers: int, address: str | None) -> bool:
    """True when the sweep runs here: one worker or $NKILAB_NO_RAY=1, and no cluster address."""
    if address:
        return False
    return workers == 1 or os.environ.get(NO_RAY_ENV) == "1"


def execute(tasks: Sequence, fn: Callable, *, workers: int, address: str | None,
            on_result: Callable[[object, dict], None], on_lost: Callable[[object, BaseException], dict]) -> None:
    """Run `fn` on every task (see the module docstring); `workers` >= 1 (ValueError otherwise)."""
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers: must be an integer >= 1, got {workers!r}")
    if not tasks:
        return  # nothing to run: no cluster to start or join
    if in_process(workers, address):
        for task in tasks:
            on_result(task, fn(task))
        return
    import ray  # heavy optional-at-import dependency (seconds): imported only when a sweep runs on Ray

    started = connect(workers, address)
    try:
        remote = ray.remote(num_cpus=1, max_retries=MAX_RETRIES)(fn)
        pending = {remote.remote(task): task for task in tasks}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                task = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except Exception as exc:  # the worker died more than MAX_RETRIES times: an error record
                    result = on_lost(task, exc)
                on_result(task, result)
    finally:
        if started:
            ray.shutdown()


def connect(workers: int, address: str | None) -> bool:
    """Join Ray: the cluster at `address` (or $RAY_ADDRESS), else a local one with `workers` CPUs. Returns True
    when this call started the connection (the caller shuts it down), False when Ray was already initialised."""
    import ray  # heavy dependency, see execute

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    return True
