"""`nkilab sweep`: Ray (2 local workers) gives the in-process records; resume writes each record once; a killed
worker is retried; a task that raises is an error record; a second sweep reads the cache.

One local Ray cluster serves the whole test session (`ray_cluster`, conftest.py); the engine joins it.
"""

import json
import os

import pytest

from nkilab.harness import profile, record_cache
from nkilab.harness.cli import main
from nkilab.harness.report.records import PERF_FIELDS, read_jsonl, validate_record
from nkilab.harness.sweep import engine, runner
from nkilab.harness.sweep import tasks as sweep_tasks
from nkilab.harness.sweep.engine import NO_RAY_ENV, execute, in_process
from nkilab.harness.sweep.runner import sweep
from nkilab.harness.sweep.stream import ResultsFile
from nkilab.harness.sweep.tasks import error_record, plan, run_task, sweep_run_config
from nkilab.harness.workloads import Quant

# what legitimately differs between two runs of one task: when, where, how long, and whether the cache served it
VOLATILE = ("timestamp", "host", "git_commit", "nkilab_version", "python", "trace_wall_s", "cache")


def small_plan(cache_dir=None):
    """rms_norm and silu_mul decode problems of the quick grid on two targets (12 tasks, traces in milliseconds)."""
    run = sweep_run_config({}, str(cache_dir) if cache_dir else None, use_cache=cache_dir is not None)
    return plan(model="llama-3.1-8b", grid="quick", phases=("decode",), targets=("trn2", "inf2"),
                ops=("rms_norm", "silu_mul"), quants=(Quant(),), run=run)


def stable(records):
    """sweep_key -> record without its volatile fields, as JSON round-trips it."""
    out = {}
    for r in records:
        out[r["sweep_key"]] = json.loads(json.dumps({k: v for k, v in r.items() if k not in VOLATILE}))
    return out


def test_plan_is_one_task_per_kernel_problem_target_config():
    tasks = small_plan()
    assert len(tasks) == 12  # 2 targets x (rms_norm: 2 batches x with/without residual + silu_mul: 2 batches)
    assert len({t.key for t in tasks}) == len(tasks)
    schemes = plan(model="llama-3.1-8b", grid="quick", phases=("decode",), targets=("trn2",), ops=("qmatmul",),
                   quants=(Quant("int8"), Quant("int4")), run=sweep_run_config({}, None, use_cache=False))
    assert {t.task.problem.quant.scheme for t in schemes} == {"int8", "int4"}
    assert len({t.key for t in schemes}) == len(schemes)


def test_ray_with_two_workers_gives_the_in_process_records(tmp_path, ray_cluster):
    tasks = small_plan()
    local = sweep(tasks, str(tmp_path / "local.jsonl"), workers=1)
    remote = sweep(tasks, str(tmp_path / "ray.jsonl"), workers=2)
    assert len(local) == len(remote) == len(tasks)
    assert all(validate_record(r) == [] for r in local + remote)
    ok = [r for r in local if r["status"] == "ok"]
    assert len(ok) == len(tasks) and all(r["perf"]["latency_s"] > 0 for r in ok)
    assert stable(remote) == stable(local)  # same keys, same values
    assert stable(read_jsonl(str(tmp_path / "ray.jsonl"))) == stable(local)  # and the file holds them


def test_resume_after_an_interrupt_writes_every_record_once(tmp_path):
    tasks = small_plan()
    path = str(tmp_path / "results.jsonl")

    class Interrupt(Exception):
        pass

    def stop_after_three(task, rec):
        if len(read_jsonl(path)) == 3:
            raise Interrupt

    with pytest.raises(Interrupt):
        sweep(tasks, path, workers=1, on_record=stop_after_three)
    with open(path, "a") as fh:  # a kill in the middle of a write leaves a torn last line
        fh.write('{"kernel": "rms_no')
    started = []
    records = sweep(tasks, path, workers=1, on_start=lambda done, total: started.append((done, total)))
    assert started == [(3, len(tasks))]
    on_disk = read_jsonl(path)
    keys = [r["sweep_key"] for r in on_disk]
    assert len(keys) == len(set(keys)) == len(tasks)
    assert set(keys) == {t.key for t in tasks} and len(records) == len(tasks)
    assert sweep(tasks, path, workers=1) == records  # nothing left to do: nothing runs, nothing is added
    assert len(read_jsonl(path)) == len(tasks)


def test_results_file_refuses_a_duplicate_key(tmp_path):
    with ResultsFile(str(tmp_path / "r.jsonl")) as results:
        results.append({"sweep_key": "k", "status": "ok"})
        with pytest.raises(ValueError, match="sweep_key k"):
            results.append({"sweep_key": "k", "status": "ok"})


def test_a_killed_worker_is_retried_and_every_record_arrives_once(tmp_path, ray_cluster):
    tasks = small_plan()
    marker = tmp_path / "killed-once"
    victim = tasks[2].key

    def dies_once(task):  # the first attempt of one task kills its worker process outright
        if task.key == victim and not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(1)
        return run_task(task)

    results = {}
    execute(tasks, dies_once, workers=2, address=None, on_result=lambda t, r: results.setdefault(t.key, []).append(r),
            on_lost=error_record)
    assert marker.exists()  # the worker did die
    assert sorted(results) == sorted(t.key for t in tasks)
    assert all(len(v) == 1 and v[0]["status"] == "ok" for v in results.values())


def test_a_task_that_raises_is_an_error_record(tmp_path, monkeypatch):
    tasks = small_plan()

    def broken(task, config):
        if task.problem.params.get("residual"):
            raise RuntimeError("SBUF exhausted (test)")
        return real(task, config)

    real = sweep_tasks.cached_model_task
    monkeypatch.setattr(sweep_tasks, "cached_model_task", broken)
    records = sweep(tasks, str(tmp_path / "r.jsonl"), workers=1)
    errors = [r for r in records if r["status"] == "error"]
    assert errors and len(records) == len(tasks)
    assert all(r["error"] == {"kind": "RuntimeError", "message": "SBUF exhausted (test)"} for r in errors)
    assert all(r["problem"]["residual"] for r in errors) and all(validate_record(r) == [] for r in errors)


def test_a_second_sweep_reads_every_record_from_the_cache(tmp_path):
    cache = tmp_path / "cache"
    first = sweep(small_plan(cache), str(tmp_path / "a.jsonl"), workers=1)
    second = sweep(small_plan(cache), str(tmp_path / "b.jsonl"), workers=1)
    assert {r["cache"] for r in first} == {"miss"} and {r["cache"] for r in second} == {"hit"}
    assert stable(second) == stable(first)
    assert all(set(PERF_FIELDS) <= set(r["perf"]) for r in second)
    assert len(list(cache.rglob("*.json"))) == len(first)


def test_a_warm_sweep_reads_the_hits_in_the_driver_and_starts_no_ray(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    tasks = small_plan(cache)
    first = sweep(tasks[:8], str(tmp_path / "a.jsonl"), workers=1)  # 8 of the 12 records cached
    sent = []
    real = runner.execute
    monkeypatch.setattr(runner, "execute", lambda todo, *args, **kwargs: sent.extend(todo) or
                        real(todo, *args, **{**kwargs, "workers": 1}))
    monkeypatch.setattr(engine, "connect", lambda *args: pytest.fail("a sweep with nothing to run joined Ray"))
    second = sweep(small_plan(cache), str(tmp_path / "b.jsonl"), workers=2)
    assert [t.key for t in sent] == [t.key for t in tasks[8:]]  # only the misses went to the workers
    assert [r["cache"] for r in second] == ["hit"] * 8 + ["miss"] * 4
    assert stable(second[:8]) == stable(first)
    execute([], run_task, workers=2, address=None, on_result=print, on_lost=error_record)  # no tasks: no Ray


def test_no_ray_env_runs_in_process(monkeypatch):
    monkeypatch.setenv(NO_RAY_ENV, "1")
    assert in_process(4, None) and in_process(1, None)
    assert not in_process(4, "ray://head:10001")
    monkeypatch.delenv(NO_RAY_ENV)
    assert not in_process(2, None)
    with pytest.raises(ValueError, match="workers"):
        execute([], run_task, workers=0, address=None, on_result=print, on_lost=error_record)


def test_cli_sweep_streams_resumes_and_reports(tmp_path, capsys):
    out, cache = tmp_path / "run", tmp_path / "cache"
    args = ["sweep", "--model", "llama-3.1-8b", "--grid", "quick", "--ops", "rms_norm", "--targets", "trn2",
            "--phases", "decode", "--workers", "1", "--cache", str(cache), "--no-plots"]
    assert main(args + ["--out", str(out)]) == 0
    records = read_jsonl(str(out / "results.jsonl"))
    assert len(records) == 4 and (out / "report.md").exists()
    assert main(args + ["--out", str(out)]) == 2  # an existing sweep is never overwritten
    assert "--resume" in capsys.readouterr().out
    assert main(args + ["--resume", str(out)]) == 0
    assert read_jsonl(str(out / "results.jsonl")) == records


def test_the_cache_misses_when_the_modeled_sources_change(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    sweep(small_plan(cache), str(tmp_path / "a.jsonl"), workers=1)
    monkeypatch.setattr(record_cache, "model_source_hash", lambda: "an edited kernel or model constant")
    again = sweep(small_plan(cache), str(tmp_path / "b.jsonl"), workers=1)
    assert {r["cache"] for r in again} == {"miss"}


def test_bench_reads_a_modeled_record_back_from_the_cache(tmp_path, monkeypatch, capsys):
    args = ["bench", "--kernel", "silu_mul", "--model", "llama-3.1-8b", "--grid", "quick", "--cache", str(tmp_path)]
    assert main(args) == 0
    first = capsys.readouterr().out

    def no_trace(*a, **k):
        raise AssertionError("traced again despite the cache")

    monkeypatch.setattr(profile.nki, "trace", no_trace)
    assert main(args) == 0
    assert capsys.readouterr().out == first
