"""Walk kernels x backends x targets x problems: correctness on small shapes, modeled and measured profiles.

Three passes, each producing `records` (see `records.py`):
  check     every op on every available backend at the smoke workload, against the float64 reference
            (`harness.checks`); the call's CPU wall time is kept as `emulation-wall` for the NKI emulator and the
            Triton interpreter — never as device speed.
  model     every op on each Neuron target at the real shapes of a model, in the emulator's trace mode, costed
            by the performance model (`perf`): kind "modeled", with a modeled energy per token.
  measure   on a CUDA device, Triton kernels timed with CUDA events and metered with NVML; on a Neuron device,
            NKI kernels timed on the host clock and metered with the sysfs power file. Skipped where no device
            exists (the run says so).

Protocol for modeling at real shapes (backend packages provide it; nothing else of theirs is used):
    nkilab.kernels.nki.traceable(op: str, problem: dict, target: str) -> (kernel, args, kwargs)
returns the jit kernel and HBM-shaped NumPy arguments (zeros are fine). `problem` holds the contract keys of
`unsupported(op, **problem)` plus the shape parameters of `workloads.Problem.params` (m, k, n; b, sq, skv, hq,
hkv, head_dim; num_seqs, q_len, context, block_size; t). A missing package, hook or op is reported as
"unavailable" and the walk goes on.
"""

from __future__ import annotations

import importlib
import time
import traceback
import zlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from nkilab.harness.chips import NEURON_TARGETS
from nkilab.harness.energy import (
    NeuronPowerMeter,
    NvmlEnergyMeter,
    measure_energy,
    modeled_energy,
)
from nkilab.harness.records import check_field, energy_field, make_record, perf_field
from nkilab.harness.workloads import (
    DEFAULT_MODEL,
    DEFAULT_QUANT,
    OPS,
    Problem,
    Quant,
    make_inputs,
    model_problems,
    smoke_problems,
)

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
    """

    ops: tuple[str, ...] = OPS
    backends: tuple[str, ...] | None = None
    targets: tuple[str, ...] = NEURON_TARGETS
    model: str = DEFAULT_MODEL
    phases: tuple[str, ...] = ("decode", "prefill")
    grid: str = "default"
    quant: Quant = DEFAULT_QUANT
    check: bool = True
    modeled: bool = True
    measured: bool = True
    power_w: dict[str, float] = field(default_factory=dict)
    seed: int = 0


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
    from nkilab.kernels import available_backends
    from nkilab.kernels._registry import has_cuda_device, has_neuron_device

    tasks: list[Task] = []
    smoke = [p for p in smoke_problems() if p.op in config.ops]
    if config.check:
        for op in config.ops:
            backends = config.backends or tuple(available_backends(op))
            for backend in backends:
                target = "emulator" if backend == "nki" else "cpu"
                tasks += [Task("check", op, backend, target, p) for p in smoke if p.op == op]
    real = [p for phase in config.phases
            for p in model_problems(config.model, phase=phase, grid=config.grid, quant=config.quant)
            if p.op in config.ops]
    if config.modeled:
        tasks += [Task("model", p.op, "nki", t, p) for t in config.targets for p in real]
    if config.measured:
        if has_cuda_device():
            tasks += [Task("measure", p.op, "triton", "cuda", p) for p in real]
        if has_neuron_device():
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
                rec = model_task(task, config)
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


def _backend_hooks(op: str, backend: str):
    """(implementation, unsupported) of `op` on `backend`, or raises BackendUnavailableError."""
    from nkilab.kernels._registry import load

    return load(op, backend)


def _supported_variant(task: Task, unsupported) -> tuple[Problem | None, str | None]:
    """The smoke problem in the first dtype the backend supports, else (None, first reason)."""
    first_reason = None
    for dtype in dict.fromkeys((task.problem.dtype,) + SMOKE_DTYPES):
        candidate = task.problem.with_dtype(dtype)
        reason = unsupported(task.op, **candidate.spec())
        if reason is None:
            return candidate, None
        first_reason = first_reason or reason
    return None, first_reason


def check_task(task: Task, rng: np.random.Generator) -> dict:
    """Run one smoke problem on one backend and compare it with the float64 reference."""
    import nkilab.kernels as api
    from nkilab.kernels._registry import BackendUnavailableError

    try:
        _, unsupported = _backend_hooks(task.op, task.backend)
    except BackendUnavailableError as exc:
        return _status_record(task, "unavailable", str(exc))
    problem, reason = _supported_variant(task, unsupported)
    if problem is None:
        return _status_record(task, "unsupported", reason)
    args, kwargs = make_inputs(problem, rng)
    call_args = tuple(a.copy() if isinstance(a, np.ndarray) else a for a in args)
    t0 = time.perf_counter()
    out = getattr(api, task.op)(*call_args, **kwargs, backend=task.backend)
    wall = time.perf_counter() - t0
    result = _compare(task.op, out, args, kwargs)
    perf = None
    if task.backend in EMULATION_METHOD:
        perf = perf_field("emulation-wall", latency_s=wall, method=EMULATION_METHOD[task.backend],
                          flops=problem.flops(), hbm_bytes=problem.hbm_bytes(), tokens=problem.tokens)
    return make_record(kernel=task.op, backend=task.backend, target=task.target, problem=problem.record(),
                       check=check_field(result), perf=perf, energy=None,
                       status="ok" if result.passed else "failed",
                       note=None if result.passed else result.message, wall_s=wall, stage="check",
                       command=f"nkilab check --ops {task.op} --backends {task.backend}")


def _compare(op: str, out, args, kwargs):
    from nkilab import reference
    from nkilab.harness.checks import check_against_reference, compare
    from nkilab.kernels._adapter import to_numpy

    if op == "write_kv_cache":
        key, value, key_cache, value_cache, slots = args
        ref_k, ref_v = reference.write_kv_cache(key, value, key_cache.copy(), value_cache.copy(), slots)
        got = np.stack([to_numpy(out[0]).astype(np.float64), to_numpy(out[1]).astype(np.float64)])
        ref = np.stack([ref_k.astype(np.float64), ref_v.astype(np.float64)])
        return compare(got, ref, ref, floor=0.0)  # a copy must be exact (NaN where the cache was never written)
    ref_fn = {"qmatmul": reference.qmatmul, "attention": reference.attention,
              "paged_attention": reference.paged_attention}[op]
    return check_against_reference(out, ref_fn, *args, **kwargs)


def _traceable():
    """nkilab.kernels.nki.traceable, or None with the reason."""
    try:
        module = importlib.import_module("nkilab.kernels.nki")
    except Exception as exc:  # a broken backend package is "unavailable", whatever it raised
        return None, None, f"nkilab.kernels.nki does not import: {type(exc).__name__}: {exc}"
    hook = getattr(module, "traceable", None)
    if hook is None:
        return None, None, "nkilab.kernels.nki.traceable is not defined yet (no real-shape modeling)"
    return hook, getattr(module, "unsupported", None), None


def model_task(task: Task, config: RunConfig) -> dict:
    """Trace one NKI kernel at real shapes on one Neuron target and model it."""
    from nkilab.harness.perf.model import METHOD, estimate

    hook, unsupported, why = _traceable()
    if hook is None:
        return _status_record(task, "unavailable", why)
    problem = task.problem
    if unsupported is not None:
        reason = unsupported(task.op, **problem.spec())
        if reason is not None:
            return _status_record(task, "unsupported", reason)
    t0 = time.perf_counter()
    kernel, args, kwargs = hook(task.op, {**problem.params, **problem.spec()}, task.target)
    est = estimate(kernel, *args, target=task.target, **kwargs)
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


def _bench_command(task: Task, config: RunConfig) -> str:
    """The `nkilab bench` line that reproduces a modeled record (the full grid holds every grid's problems)."""
    p, q = task.problem, config.quant
    group = f" --group-size {q.group_size}" if q.group_size else ""
    return (f"nkilab bench --kernel {task.op} --model {p.model} --phase {p.phase} --target {task.target} "
            f"--grid full --scheme {q.scheme}{group} --problem {p.name}")


def measure_task(task: Task) -> dict:
    """Time (and meter) one real-shape problem on the device that exists: CUDA for Triton, Neuron for NKI."""
    if task.backend == "triton":
        return _measure_cuda(task)
    return _measure_neuron(task)


def _measure_cuda(task: Task) -> dict:
    import torch

    import nkilab.kernels as api
    from nkilab.kernels._adapter import to_torch

    problem = task.problem
    _, unsupported = _backend_hooks(task.op, "triton")
    reason = unsupported(task.op, **problem.spec())
    if reason is not None:
        return _status_record(task, "unsupported", reason)
    args, kwargs = make_inputs(problem, np.random.default_rng(0))
    dev_args = tuple(to_torch(a, device="cuda") if isinstance(a, np.ndarray) else a for a in args)
    fn = getattr(api, task.op)

    def call():
        fn(*dev_args, **kwargs, backend="triton")
        torch.cuda.synchronize()

    for _ in range(3):
        call()  # warm-up: compilation and caches
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(20):
        start.record()
        fn(*dev_args, **kwargs, backend="triton")
        stop.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(stop) / 1e3)
    p20, p50, p80 = (float(np.percentile(times, q)) for q in (20, 50, 80))
    energy = measure_energy(call, NvmlEnergyMeter(torch.cuda.current_device()), min_window_s=5.0)
    perf = perf_field("measured", latency_s=p50, method="CUDA events around the public API call, p50 of 20 "
                      "after 3 warm-ups (includes the API's validation and dispatch)", flops=problem.flops(),
                      hbm_bytes=problem.hbm_bytes(), tokens=problem.tokens, p20_s=p20, p80_s=p80,
                      device=torch.cuda.get_device_name())
    return make_record(kernel=task.op, backend="triton", target="cuda", problem=problem.record(), perf=perf,
                       energy=energy_field(energy.per_token(problem.tokens)), stage="measure")


def _measure_neuron(task: Task) -> dict:
    import nkilab.kernels as api

    problem = task.problem
    args, kwargs = make_inputs(problem, np.random.default_rng(0))
    fn = getattr(api, task.op)

    def call():
        fn(*args, **kwargs, backend="nki")

    call()
    times = []
    for _ in range(10):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    # %·s only: AWS publishes no max power, so joules would be an assumption dressed as a measurement
    energy = measure_energy(call, NeuronPowerMeter(), min_window_s=5.0)
    perf = perf_field("measured", latency_s=float(np.median(times)), method="host wall time around the public API "
                      "call on a Neuron device (includes launch and host-device copies), median of 10",
                      flops=problem.flops(), hbm_bytes=problem.hbm_bytes(), tokens=problem.tokens)
    return make_record(kernel=task.op, backend="nki", target="neuron", problem=problem.record(), perf=perf,
                       energy=energy_field(energy.per_token(problem.tokens)), stage="measure")
