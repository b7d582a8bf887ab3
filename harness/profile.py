"""Walk kernels x backends x targets x problems: correctness on small shapes, modeled and measured profiles.

Three passes, each producing `records` (see `report/records.py`), over every registered op (`nkilab.kernels.OPS`):
  check     every op on every available backend at the smoke workload, against the float64 reference by the op's
            check rule (`harness.checks.check_output`); the call's CPU wall time is kept as `emulation-wall` for
            the NKI emulator and the Triton interpreter — never as device speed.
  model     every op on each Neuron target at the real shapes of a model: the NKI backend traces `kernel[lnc]` for
            the target (`nkilab.kernels.nki.trace`, the emulator's trace mode; lnc = the target's default logical
            core degree from the hardware table unless the run asks for another) and the performance model costs
            the trace (`perf.model_trace`): kind "modeled", with a modeled energy per token.
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
from nkilab.harness.chips import NEURON_TARGETS, get_target
from nkilab.harness.emulator.trace import Trace
from nkilab.harness.measure.device import measure_cuda, measure_neuron
from nkilab.harness.measure.energy import modeled_energy
from nkilab.harness.perf.model import METHOD, Estimate, model_trace
from nkilab.harness.record_cache import cached_record, record_key
from nkilab.harness.report.records import check_field, energy_field, make_record, perf_field
from nkilab.harness.workloads import (
    DEFAULT_MODEL,
    DEFAULT_QUANT,
    PHASES,
    ModelShape,
    Problem,
    Quant,
    grid_sizes,
    make_inputs,
    model_problems,
    short_name,
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
        model: model key of the real shapes, or a ModelShape (`model_config`: the JSON file it was read from, named
            in the records' reproduction commands).
        phases: workload phases (PHASES); grid: "quick" | "default" | "full"; sizes: overrides of the grid's sweeps
            (`grid_sizes` keys: batches, contexts, prefill_lengths, chunks; None or missing = the grid's).
        quant: weight scheme of the qmatmul problems.
        lnc: logical NeuronCore degree the modeled kernels launch with (`kernel[lnc]`); None = each target's default
            (`lnc_default` of the hardware table: 1 on inf2/trn1, 2 on trn2/trn3).
        check, modeled, measured: which passes run.
        power_w: per-target chip power overrides, W (modeled energy).
        seed: RNG seed of the smoke inputs.
        cache: the on-disk cache of modeled records (`harness.record_cache`); None = trace every time.
    """

    ops: tuple[str, ...] = OPS
    backends: tuple[str, ...] | None = None
    targets: tuple[str, ...] = NEURON_TARGETS
    model: str | ModelShape = DEFAULT_MODEL
    model_config: str | None = None
    phases: tuple[str, ...] = PHASES
    grid: str = "default"
    sizes: dict = field(default_factory=dict)
    quant: Quant = DEFAULT_QUANT
    lnc: int | None = None
    check: bool = True
    modeled: bool = True
    measured: bool = True
    power_w: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    cache: Cache | None = None

    def grid_sizes(self) -> dict:
        """The sweep sizes of `grid` with `sizes` applied."""
        return grid_sizes(self.grid, **self.sizes)

    def lnc_for(self, target: str) -> int:
        """The LNC a modeled kernel launches with on `target`: `lnc`, else the target's default."""
        return self.lnc or get_target(target, neuron=True).lnc_default


@dataclass(frozen=True)
class Task:
    """One unit of work: `kind` "check" | "model" | "measure"; `lnc` the logical NeuronCore degree the NKI kernel
    launches with (None where no NeuronCore kernel runs, or where the device's runtime decides)."""

    kind: str
    op: str
    backend: str
    target: str
    problem: Problem
    lnc: int | None = None


def plan(config: RunConfig) -> list[Task]:
    """Every task `run` will do, in order (the progress bar's total)."""
    tasks: list[Task] = []
    if config.check:
        for op in config.ops:
            for backend in config.backends or tuple(_registry.available_backends(op)):
                # the emulator runs the public API's NKI launch, kernel[1]
                target, lnc = ("emulator", 1) if backend == "nki" else ("cpu", None)
                tasks += [Task("check", op, backend, target, p, lnc) for p in smoke_problems(ops=(op,))]
    sizes = config.grid_sizes()
    real = [p for phase in config.phases
            for p in model_problems(config.model, phase=phase, grid=sizes, quant=config.quant, ops=config.ops)]
    if config.modeled:
        tasks += [Task("model", p.op, "nki", t, p, config.lnc_for(t)) for t in config.targets for p in real]
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
                       status=status, note=note, stage=task.kind, lnc=task.lnc, **extra)


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
                       note=None if result.passed else result.message, wall_s=wall, stage="check", lnc=task.lnc,
                       command=f"nkilab check --ops {task.op} --backends {task.backend}")


def _quant_error(problem: Problem, args, kwargs, plain_rng: np.random.Generator) -> dict | None:
    """`checks.quantization_error` of a quantized-cache problem against the same draws over the model-dtype cache
    (make_inputs quantizes after drawing, so `plain_rng` gives the unquantized values); None for "auto"."""
    if kwargs.get("kv_cache_dtype", "auto") == "auto":
        return None
    plain = replace(problem, params={**problem.params, "kv_cache_dtype": "auto"})
    return quantization_error(problem.family, args, kwargs, *make_inputs(plain, plain_rng), problem.dtype)


def model_problem(problem: Problem, target: str, lnc: int = 1) -> tuple[Trace, Estimate, float]:
    """(trace, estimate, CPU seconds) of `problem`'s NKI kernel launched as `kernel[lnc]` on `target`."""
    t0 = time.perf_counter()
    trace = nki.trace(problem.op, {**problem.params, **problem.spec()}, target, lnc=lnc)
    est = model_trace(trace, target)
    return trace, est, time.perf_counter() - t0


def model_task(task: Task, config: RunConfig,
               on_trace: Callable[[Trace, Estimate], None] | None = None) -> dict:
    """Trace one NKI kernel at real shapes for one Neuron target (as `kernel[lnc]`) and model the trace;
    `on_trace(trace, estimate)` sees them before the record is made (the bench's timelines)."""
    problem = task.problem
    declined = _declined(task, problem)
    if declined is not None:
        return declined
    lnc = task.lnc or config.lnc_for(task.target)
    trace, est, trace_wall = model_problem(problem, task.target, lnc)
    if on_trace is not None:
        on_trace(trace, est)
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
                       perf=perf, energy=energy_field(energy), trace_wall_s=trace_wall, stage="model", lnc=lnc,
                       note=replication_note(trace), command=bench_command(task, config))


def cached_model_task(task: Task, config: RunConfig) -> dict:
    """`model_task` through `config.cache` (a hit reads the stored record); uncached when the cache is None."""
    if config.cache is None:
        return model_task(task, config)
    key_parts, command = model_cache_entry(task, config)
    return cached_record(config.cache, key_parts, lambda: model_task(task, config), command=command)


def model_cache_entry(task: Task, config: RunConfig) -> tuple[dict, str]:
    """(cache key parts, reproduction command) of `task`'s modeled record under `config`."""
    return record_key(task, config.power_w.get(task.target)), bench_command(task, config)


def replication_note(trace: Trace) -> str | None:
    """A note when an LNC>1 kernel runs the same instruction stream on every program instance: it splits no work
    between the logical core's NeuronCores (each repeats the whole kernel), so LNC brings it no speed-up."""
    if trace.lnc < 2:
        return None
    streams: dict[int, list] = {}
    for inst in trace.instructions:
        streams.setdefault(inst.program_id, []).append(
            (inst.engine, inst.opcode, tuple((o.shape, o.access.start, o.access.stop) for o in inst.operands)))
    if len(streams) < 2 or any(s != streams[0] for s in streams.values()):
        return None
    return (f"kernel[{trace.lnc}] repeats the whole kernel on each of its {trace.lnc} NeuronCores (no work split "
            "by program id): LNC gives it no speed-up; the model orders the copies' writes to the same output, so "
            "this latency is an upper bound (--lnc 1 models one copy)")


def bench_command(task: Task, config: RunConfig) -> str:
    """The `nkilab bench` line that reproduces a modeled record (bench looks a problem up in every grid, with the
    run's size overrides)."""
    p, q = task.problem, config.quant
    model = f"--model-config {config.model_config}" if config.model_config else f"--model {p.model}"
    parts = [f"nkilab bench {model} --target {task.target} --lnc {config.lnc_for(task.target)} --scheme {q.scheme}"]
    if q.group_size:
        parts.append(f"--group-size {q.group_size}")
    for key, values in sorted(config.sizes.items()):
        if values:
            parts.append(f"--{key.replace('_', '-')} {','.join(str(v) for v in values)}")
    parts.append(f"--problem {short_name(p.name)}")
    return " ".join(parts)


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
                       perf=perf, energy=energy_field(measured.energy), stage="measure", lnc=task.lnc)
