"""Trace-mode speed of nkilab's own NKI kernels at real shapes: the `--kernels` part of
`python -m nkilab.harness.emulator.benchmark` (emulation time on this machine, never device speed; every figure
is measured).

Each workload is one op at Llama-3.1-8B shapes (`nkilab.harness.workloads`) traced for one Neuron target the way
the performance model gets its traces: the NKI backend's `traceable(op, problem, target)` hook, then
`nkilab.harness.emulator.run(kernel, ..., target=, mode="trace")`. Reported: instructions, CPU seconds of the run
(`time.process_time`, the minimum over repeats: the machine may be shared) and instructions per CPU-second.
This module sits outside the emulator package because it imports the kernels (the emulator may not).
"""

from __future__ import annotations

import time

from nkilab.harness.emulator import run
from nkilab.harness.workloads.models import DEFAULT_MODEL, MODELS
from nkilab.kernels import nki
from nkilab.kernels._registry import get
from nkilab.kernels.ops._problem import DEFAULT_QUANT

_PAGED = {"block_sizes": (32,)}
# (op, phase, grid keys of `nkilab.harness.workloads.grids` for that op, target, a substring of the problem name)
WORKLOADS = (
    ("paged_attention", "decode", dict(_PAGED, batches=(32,), contexts=(2048,)), "trn2", ""),
    ("paged_attention", "decode", dict(_PAGED, batches=(32,), contexts=(2048,)), "trn1", ""),
    ("paged_attention", "decode", dict(_PAGED, batches=(64,), contexts=(4096,)), "trn2", ""),
    ("paged_attention", "decode", dict(_PAGED, batches=(32,), contexts=(32768,)), "trn2", ""),
    ("attention", "prefill", {"prefill": (512,)}, "trn2", ""),
    ("attention", "prefill", {"prefill": (4096,)}, "trn2", ""),
    ("qmatmul", "decode", {"batches": (32,)}, "trn2", "gate_up"),
    ("qmatmul", "prefill", {"prefill_gemm": (512,)}, "trn2", "gate_up"),
)


def kernel_trace_times(repeats: int = 3, workloads=WORKLOADS, model: str = DEFAULT_MODEL) -> list[dict]:
    """One record per problem of `workloads`: {"problem", "target", "instructions", "cpu_s", "per_cpu_s"} (CPU
    seconds of the trace-mode run, the minimum over `repeats`)."""
    out = []
    for op, phase, grid, target, pick in workloads:
        for problem in get(op).model_problems(MODELS[model], phase, grid, DEFAULT_QUANT, "bfloat16"):
            if pick not in problem.name:
                continue
            best, count = float("inf"), 0
            for _ in range(repeats):
                kernel, args, kwargs = nki.traceable(op, {**problem.params, **problem.spec()}, target)
                c0 = time.process_time()
                trace = run(kernel, *args, target=target, mode="trace", **kwargs).trace
                best = min(best, time.process_time() - c0)
                count = len(trace)
                del trace
            out.append({"problem": problem.name, "target": target, "instructions": count, "cpu_s": best,
                        "per_cpu_s": count / best})
    return out


def print_kernel_trace_times(repeats: int = 3) -> None:
    """Print `kernel_trace_times` as one line per workload."""
    for r in kernel_trace_times(repeats):
        print(f"trace mode {r['problem']} {r['target']}: {r['instructions']} instructions in {r['cpu_s']:.2f} s CPU: "
              f"{r['per_cpu_s']:.0f} instructions per CPU-second (measured)", flush=True)
