"""The measured path of the cost of a token: per-call records measured on a GPU, composed into a `kind: "measured"`
step (`nkilab cost --measured FILE`), and the recorder that measures exactly a step's calls (`--record-calls FILE`).

A measured record is a results.jsonl line (`nkilab.harness.report.records`) of the Triton backend with
`perf.kind == "measured"` (CUDA events, p50 of repeats: `measure.device.measure_cuda`), `perf.device` the GPU's name
and `energy` the NVML total-energy counter over a window of repeated calls (`energy.kind == "measured"`,
`energy.method` "nvml:…"): what `nkilab run`'s measured pass and `--record-calls` write. A step's call is matched
to the record of the same kernel, activation dtype, weight scheme and shape parameters (the problem's name, phase
and model are labels, not the work).

Composition: step latency = sum over calls (launches x the call's measured latency: the CUDA-event time of one
call, so its launch and dispatch are inside it, and no modeled launch cost is added); joules per step = sum of
launches x measured joules per call (the board's energy, static power included). Nothing modeled is mixed in: a
call the file lacks, a call without NVML joules, a deployment with TP collectives (tp > 1: not measured), the naive
kernels (the records are nkilab's) or a file from another GPU than the target is refused with a ValueError naming
it. Measured records of a Neuron device carry no joules (its power file gives %·s only), so they are refused too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from nkilab.harness.chips import Target
from nkilab.harness.cost.estimate import CallCost
from nkilab.harness.profile import Task, measure_task
from nkilab.harness.report.records import read_jsonl, write_jsonl
from nkilab.kernels.ops._problem import Problem

KIND = "measured"
ENERGY_KIND = "measured (NVML)"
ENERGY_METHOD = "sum over calls of launches x measured joules per call (NVML total-energy counter, GPU board)"
METHOD = "sum of per-call measured latencies (CUDA events, p50; launch included) from the records file"
LABELS = ("name", "phase", "model")  # problem fields that name a call but do not change its work


def identity(kernel: str, problem: dict) -> str:
    """What a call is, as canonical JSON: the kernel and its problem record without the `LABELS`."""
    work = {k: v for k, v in problem.items() if k not in LABELS}
    return json.dumps({"kernel": kernel, **work}, sort_keys=True, default=list)


def problem_identity(problem: Problem) -> str:
    """`identity` of a call to be made, its record as it reads back from JSON (tuples as lists)."""
    return identity(problem.op, json.loads(json.dumps(problem.record())))


@dataclass(frozen=True)
class MeasuredCalls:
    """The measured records of one file, by `identity`; `device` the GPU they were measured on."""

    path: str
    device: str
    records: dict[str, dict]

    def call_cost(self, problem: Problem) -> CallCost | None:
        """One launch of `problem` as measured (None when the file lacks it; ValueError without NVML joules)."""
        rec = self.records.get(problem_identity(problem))
        if rec is None:
            return None
        energy = rec.get("energy") or {}
        joules = energy.get("joules_per_call")
        if energy.get("kind") != "measured" or not str(energy.get("method", "")).startswith("nvml") or joules is None:
            why = energy.get("reason") or f"energy {energy.get('kind')!r} by {energy.get('method')!r}"
            raise ValueError(f"measured: {self.path}'s record of {problem.op} {problem.name} has no NVML joules "
                             f"({why}); a measured row needs measured energy for every call")
        return CallCost(rec["perf"]["latency_s"], 0.0, None, f"measured: {rec['perf']['method']}", kind=KIND,
                        joules=float(joules))


def load(path: str, target: Target) -> MeasuredCalls:
    """The measured Triton records of `path` (JSON lines) for `target` (a GPU whose name the records' device
    names, e.g. "h100" in "NVIDIA H100 80GB HBM3"); ValueError naming the file when it has none or another GPU's."""
    try:
        lines = read_jsonl(path)
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"measured: cannot read {path!r} as JSON lines: {exc}") from None
    kept = [r for r in lines if r.get("backend") == "triton" and r.get("status", "ok") == "ok"
            and (r.get("perf") or {}).get("kind") == KIND]
    if not kept:
        raise ValueError(f"measured: {path!r} holds no measured Triton records (perf.kind 'measured', status ok) "
                         f"of its {len(lines)} lines")
    devices = {str(r["perf"].get("device")) for r in kept}
    if len(devices) != 1 or target.name.lower() not in next(iter(devices)).lower():
        raise ValueError(f"measured: {path!r} was measured on {sorted(devices)}, not on target {target.name!r}; "
                         "pass the --target the records were measured on")
    return MeasuredCalls(path, devices.pop(), {identity(r["kernel"], r["problem"]): r for r in kept})


def check_deployment(measured: MeasuredCalls, kernels: str, tp: int) -> None:
    """ValueError when the composition would need a modeled part: TP collectives, or the naive kernels."""
    if kernels != "nkilab":
        raise ValueError(f"kernels: a measured row composes nkilab's kernels' records; got kernels={kernels!r}")
    if tp != 1:
        raise ValueError(f"tp: a measured row has no measured TP collectives; it needs tp=1, got tp={tp} "
                         f"({measured.path})")


def missing_error(measured: MeasuredCalls, missing: list[Problem]) -> ValueError:
    """The refusal when the file lacks some of the step's calls (each named by kernel and problem)."""
    names = "; ".join(f"{p.op} {p.name}" for p in missing)
    return ValueError(f"measured: {measured.path} lacks {len(missing)} of the step's calls: {names}. Record them "
                      "on the GPU with the same `nkilab cost ...` arguments plus --record-calls FILE")


def step_joules(costs: list[tuple[CallCost, int]]) -> float:
    """Measured joules of one step: launches x joules per call."""
    return sum(count * cost.joules for cost, count in costs)


def record_calls(problems: list[Problem], path: str, measure=None) -> int:
    """Measure each distinct problem once on the CUDA device (`profile.measure_task`, the run's measured pass) and
    write the records as JSON lines to `path`; returns how many. `measure` replaces the measurement (tests)."""
    measure = measure or measure_task
    seen: dict[str, Problem] = {}
    for p in problems:
        seen.setdefault(problem_identity(p), p)
    records = [measure(Task("measure", p.op, "triton", "cuda", p)) for p in seen.values()]
    write_jsonl(records, path)
    return len(records)
