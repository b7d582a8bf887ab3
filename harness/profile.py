"""Walk kernels x backends x targets x problems: correctness on small shapes, modeled and measured profiles.

Three passes, each producing `records` (see `report/records.py`), over every registered op (`nkilab.kernels.OPS`):
  check     every op on every available backend at the smoke workload, against the float64 reference by the op's
            check rule (`harness.checks.check_output`); the call's CPU wall time is kept as `emulation-wall` for
            the NKI emulator and the Triton interpreter — never as device speed.
  model     every op on each Neuron target at the real shapes of a model: the NKI backend traces the kernel for
            the target (`nkilab.kernels.nki.trace`, the emulator's trace mode) and the performance model costs the
            trace (`perf.model_trace`): kind "modeled", with a modeled energy per token.
  measure   on a CUDA device, Triton kernels timed with CUDA events and metered with NVML; on a Neuron device,
            NKI kernels timed on the host clock and metered with the sysfs power file (`measure.device`).
            Skipped where no device exists (the run says so).

An op without a launcher on a backend is reported as "unavailable", a problem a backend declines as "unsupported",
and the walk goes on.
"""

from __future__ import annotations

import copy
import time
import traceback
import zlib
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from nkilab.harness.cache import Cache
from nkilab.harness.checks import check_output, quantization_error
from nkilab.harness.chips import NEURON_TARGETS
from nkilab.harness.measure.device import measure_cuda, measure_neuron
from nkilab.harness.measure.energy import modeled_energy
from nkilab.harness.perf.model import METHOD, model_trace
from nkilab.harness.record_cache import cached_record, record_key
from nkilab.harness.report.records import check_field, energy_field, make_record, perf_field
from nkilab.harness.workloads import (
    DEFAULT_MODEL,
    DEFAULT_QUANT,
    PHASES,
    Problem,
    Quant,
    make_inputs,
    model_problems,
    smoke_problems,
)
from nkilab.kernels import _registry, nki
from nkilab.kernels._registry import OPS, BackendUnavailableError

EMULATION_METHOD = {
    "nki": "host CPU wall time of the NKI emulator (full mode) — emulation time, not device speed",
    "triton": "host CPU wall time of the Triton interpreter — emulation time, not device speed",
}
SMOKE_DTYPES = ("float16", "bfloat16", "float32")  # tried in order until a backend supports one


@dataclass
class RunConfig:
    """What `run` walks.

    Attributes:
        ops: ops to walk; backends: backends for the check pass (None = every available one).
        targets: Neuron targets for the modeled pass.
        model: model key of the real shapes; phases: "decode" and/or "prefill"; grid: "quick" | "default" | "full".
        quant: weight scheme of the qmatmul problems.
        check, modeled, measured: which passes run.
        power_w: per-target chip power overrides, W (modeled energy).
        seed: RNG seed of the smoke inputs.
        cache: the on-disk cache of modeled records (`harness.record_cache`); None = trace every time.
    """

    ops: tuple[str, ...] = OPS
    backends: tuple[str, ...] | None = None
    targets: tuple[str, ...] = NEURON_TARGETS
    model: str = DEFAULT_MODEL
    phases: tuple[str, ...] = PHASES
    grid: str = "default"
    quant: Quant = DEFAULT_QUANT
    check: bool = True
    modeled: bool = True
    measured: bool = True
    power_w: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    cache: Cache | None = None


@dataclass(frozen=True)
class Task:
    """One unit of work: `kind` "check" | "model" | "measure"."""

    kind: str
    op: str
    backend: str
    target: str
    problem: Problem


def plan(config: RunConfig) -> list[Task]:
    """Every task `run` will do, in order (the progress bar's total)."""
    tasks: list[Task] = []
    if config.check:
        for op in config.ops:
            for backend in config.backends or tuple(_registry.available_backends(op)):
                target = "emulator" if backend == "nki" else "cpu"
                tasks += [Task("check", op, backend, target, p) for p in smoke_problems(ops=(op,))]
    real = [p for phase in config.phases
            for p in model_problems(config.model, phase=phase, grid=config.grid, quant=config.quant, ops=config.ops)]
    if config.modeled:
        tasks += [Task("model", p.op, "nki", t, p) for t in config.targets for p in real]
    if config.measured:
        if _registry.has_cuda_device():
            tasks += [Task("measure", p.op, "triton", "cuda", p) for p in real]
        if _registry.has_neuron_device():
            tasks += [Task("measure", p.op, "nki", "neuron", p) for p in real]
    return tasks


def run(config: RunConfig, on_record: Callable[[Task, dict], None] | None = None) -> list[dict]:
    """Do every task of `plan(config)`; a failing task becomes a record with status "error", never a crash."""
    records = []
    for task in plan(config):
        try:
            if task.kind == "check":
                # inputs depend only on the seed and the problem, so `nkilab check` reproduces any record
                rng = np.random.default_rng((config.seed, zlib.crc32(task.problem.name.encode())))
                rec = check_task(task, rng)
            elif task.kind == "model":
                rec = cached_model_task(task, config)
            else:
                rec = measure_task(task)
        except Exception as exc:  # the walk must finish; the record keeps what went wrong
            rec = _status_record(task, "error", f"{type(exc).__name__}: {exc}",
                                 trace=traceback.format_exc(limit=4))
        records.append(rec)
        if on_record is not None:
            on_record(task, rec)
    return records


def _status_record(task: Task, status: str, note: str, **extra) -> dict:
    return make_record(kernel=task.op, backend=task.backend, target=task.target, problem=task.problem.record(),
                       status=status, note=note, stage=task.kind, **extra)


def _declined(task: Task, problem: Problem) -> dict | None:
    """The "unavailable" / "unsupported" record when `task.backend` cannot run `problem`, else None."""
    try:
        reason = _registry.unsupported(task.op, task.backend, **problem.spec())
    except BackendUnavailableError as exc:
        return _status_record(task, "unavailable", str(exc))
    return None if reason is None else _status_record(task, "unsupported", reason)


def _supported_variant(task: Task) -> tuple[Problem | None, str | None]:
    """The smoke problem in the first dtype the backend supports, else (None, first reason)."""
    first_reason = None
    for dtype in dict.fromkeys((task.problem.dtype,) + SMOKE_DTYPES):
        candidate = task.problem.with_dtype(dtype)
        reason = _registry.unsupported(task.op, task.backend, **candidate.spec())
        if reason is None:
            return candidate, None
        first_reason = first_reason or reason
    return None, first_reason


def check_task(task: Task, rng: np.random.Generator) -> dict:
    """Run one smoke problem on one backend and compare it with the float64 reference."""
    try:
        problem, reason = _supported_variant(task)
    except BackendUnavailableError as exc:
        return _status_record(task, "unavailable", str(exc))
    if problem is None:
        return _status_record(task, "unsupported", reason)
    plain_rng = copy.deepcopy(rng)  # the same draws again: the unquantized inputs of the quantization error
    args, kwargs = make_inputs(problem, rng)
    call_args = tuple(a.copy() if isinstance(a, np.ndarray) else a for a in args)
    t0 = time.perf_counter()
    out = problem.family.api(*call_args, **kwargs, backend=task.backend)
    wall = time.perf_counter() - t0
    result = check_output(problem.family, out, args, kwargs)
    perf = None
    if task.backend in EMULATION_METHOD:
        perf = perf_field("emulation-wall", latency_s=wall, method=EMULATION_METHOD[task.backend],
                          flops=problem.flops(), hbm_bytes=problem.hbm_bytes(), tokens=problem.tokens)
    return make_record(kernel=task.op, backend=task.backend, target=task.target, problem=problem.record(),
                       check=check_field(result, _quant_error(problem, args, kwargs, plain_rng)), perf=perf,
                       energy=None,
                       status="ok" if result.passed else "failed",
                       note=None if result.passed else result.message, wall_s=wall, stage="check",
                       command=f"nkilab check --ops {task.op} --backends {task.backend}")


def _quant_error(problem: Problem, args, kwargs, plain_rng: np.random.Generator) -> dict | None:
    """`checks.quantization_error` of a quantized-cache problem against the same draws over the model-dtype cache
    (make_inputs quantizes after drawing, so `plain_rng` gives the unquantized values); None for "auto"."""
    if kwargs.get("kv_cache_dtype", "auto") == "auto":
        return None
    plain = replace(problem, params={**problem.params, "kv_cache_dtype": "auto"})
    return quantization_error(problem.family, args, kwargs, *make_inputs(plain, plain_rng), problem.dtype)


def model_task(task: Task, config: RunConfig) -> dict:
    """Trace one NKI kernel at real shapes for one Neuron target and model the trace."""
    problem = task.problem
    declined = _declined(task, problem)
    if declined is not None:
        return declined
    t0 = time.perf_counter()
    trace = nki.trace(task.op, {**problem.params, **problem.spec()}, task.target)
    est = model_trace(trace, task.target)
    trace_wall = time.perf_counter() - t0
    busiest = max(est.engine_busy_s.values()) if est.engine_busy_s else 0.0
    energy = modeled_energy(est.latency_s, task.target, utilization=busiest / est.latency_s if est.latency_s else 0,
                            lnc=est.lnc, tokens=problem.tokens, power_w=config.power_w.get(task.target))
    perf = perf_field("modeled", latency_s=est.latency_s, method=METHOD, flops=est.flops, hbm_bytes=est.hbm_bytes,
                      tokens=problem.tokens, mfu=est.mfu, mbu=est.mbu, bottleneck=est.bottleneck,
                      roofline_s=est.roofline_s, engine_busy_s=est.engine_busy_s,
                      launch_overhead_s=est.launch_overhead_s, lnc=est.lnc, instructions=est.instructions,
                      instruction_mix=est.instruction_mix,
                      peak_flops=est.peak_flops, bandwidth=est.bandwidth, formula_flops=problem.flops(),
                      formula_hbm_bytes=problem.hbm_bytes(), assumptions=est.assumptions)
    return make_record(kernel=task.op, backend="nki", target=task.target, problem=problem.record(), check=None,
                       perf=perf, energy=energy_field(energy), trace_wall_s=trace_wall, stage="model",
                       command=_bench_command(task, config))


def cached_model_task(task: Task, config: RunConfig) -> dict:
    """`model_task` through `config.cache` (a hit reads the stored record); uncached when the cache is None."""
    if config.cache is None:
        return model_task(task, config)
    return cached_record(config.cache, record_key(task, config.power_w.get(task.target)),
                         lambda: model_task(task, config))


def _bench_command(task: Task, config: RunConfig) -> str:
    """The `nkilab bench` line that reproduces a modeled record (the full grid holds every grid's problems)."""
    p, q = task.problem, config.quant
    group = f" --group-size {q.group_size}" if q.group_size else ""
    return (f"nkilab bench --kernel {task.op} --model {p.model} --phase {p.phase} --target {task.target} "
            f"--grid full --scheme {q.scheme}{group} --problem {p.name}")


def measure_task(task: Task) -> dict:
    """Time (and meter) one real-shape problem on the device that exists: CUDA for Triton, Neuron for NKI."""
    problem = task.problem
    declined = _declined(task, problem)
    if declined is not None:
        return declined
    measured = measure_cuda(problem) if task.backend == "triton" else measure_neuron(problem)
    perf = perf_field("measured", latency_s=measured.latency_s, method=measured.method, flops=problem.flops(),
                      hbm_bytes=problem.hbm_bytes(), tokens=problem.tokens, **measured.extra)
    return make_record(kernel=task.op, backend=task.backend, target=task.target, problem=problem.record(),
                       perf=perf, energy=energy_field(measured.energy), stage="measure")
