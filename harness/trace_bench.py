"""Trace-mode speed of nkilab's own NKI kernels at real shapes: the `--kernels` part of
`python -m nkilab.harness.emulator.benchmark` (emulation time on this machine, never device speed; every figure
is measured).

Each workload is a phase, a grid (keys of `nkilab.harness.workloads.grids`) and a Neuron target; every registered op
with an NKI backend contributes the model problems it has there at Llama-3.1-8B shapes (`Op.model_problems`), each
traced the way the performance model gets its traces: the NKI backend's `traceable(op, problem, target)` hook, then
`nkilab.harness.emulator.run(kernel, ..., target=, mode="trace")`. A problem that two workloads share on one target
is traced once. Reported: instructions, CPU seconds of the run (`time.process_time`, the minimum over repeats: the
machine may be shared) and instructions per CPU-second.
This module sits outside the emulator package because it imports the kernels (the emulator may not).
"""

from __future__ import annotations

import time

from nkilab.harness.emulator import run
from nkilab.harness.workloads.models import DEFAULT_MODEL, MODELS
from nkilab.kernels import nki
from nkilab.kernels._registry import available_backends, ops_list
from nkilab.kernels.ops._problem import DEFAULT_QUANT


def _grid(**keys) -> dict:
    """A grid with every key an op may read: none of a sweep unless given, 32-token cache blocks."""
    return {"batches": (), "contexts": (), "block_sizes": (32,), "prefill": (), "prefill_gemm": (), **keys}


# (phase, grid, target): decode at b32 ctx2K (trn2 and trn1), b64 ctx4K and b32 ctx32K; prefill at 512 (the GEMMs
# too) and 4096 (no GEMMs: their traces grow with M x K x N)
WORKLOADS = (
    ("decode", _grid(batches=(32,), contexts=(2048,)), "trn2"),
    ("decode", _grid(batches=(32,), contexts=(2048,)), "trn1"),
    ("decode", _grid(batches=(64,), contexts=(4096,)), "trn2"),
    ("decode", _grid(batches=(32,), contexts=(32768,)), "trn2"),
    ("prefill", _grid(prefill=(512,), prefill_gemm=(512,)), "trn2"),
    ("prefill", _grid(prefill=(4096,)), "trn2"),
)


def _problems(workloads, model: str):
    """(problem, target) of every NKI op's model problems in `workloads`, each (problem name, target) once."""
    seen = set()
    for phase, grid, target in workloads:
        for op in ops_list():
            if "nki" not in available_backends(op.name):
                continue
            for problem in op.model_problems(MODELS[model], phase, grid, DEFAULT_QUANT, "bfloat16"):
                if (problem.name, target) in seen or nki.unsupported(problem.op, **problem.spec()) is not None:
                    continue
                seen.add((problem.name, target))
                yield problem, target


def kernel_trace_times(repeats: int = 3, workloads=WORKLOADS, model: str = DEFAULT_MODEL) -> list[dict]:
    """One record per problem of `workloads`: {"problem", "target", "instructions", "cpu_s", "per_cpu_s"} (CPU
    seconds of the trace-mode run, the minimum over `repeats`)."""
    out = []
    for problem, target in _problems(workloads, model):
        best, count = float("inf"), 0
        for _ in range(repeats):
            kernel, args, kwargs = nki.traceable(problem.op, {**problem.params, **problem.spec()}, target)
            c0 = time.process_time()
            trace = run(kernel, *args, target=target, mode="trace", **kwargs).trace
            best = min(best, time.process_time() - c0)
            count = len(trace)
            del trace
        out.append({"problem": problem.name, "target": target, "instructions": count, "cpu_s": best,
                    "per_cpu_s": count / best})
    return out


def print_kernel_trace_times(repeats: int = 3) -> None:
    """Print `kernel_trace_times` as one line per problem, then the totals."""
    records = kernel_trace_times(repeats)
    for r in records:
        print(f"trace mode {r['problem']} {r['target']}: {r['instructions']} instructions in {r['cpu_s']:.2f} s CPU: "
              f"{r['per_cpu_s']:.0f} instructions per CPU-second (measured)", flush=True)
    count, cpu = sum(r["instructions"] for r in records), sum(r["cpu_s"] for r in records)
    print(f"trace mode, all {len(records)} kernel problems: {count} instructions in {cpu:.2f} s CPU: "
          f"{count / cpu:.0f} instructions per CPU-second (measured)")
