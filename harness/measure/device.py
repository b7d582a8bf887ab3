"""Measured profiles of one workload problem through the public API, on the device that exists: Triton on a CUDA
GPU (CUDA-event timing, NVML energy) and NKI on a Neuron device (host wall time, sysfs power)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from nkilab.harness.measure.cuda import gpu_time
from nkilab.harness.measure.energy import EnergyResult, NeuronPowerMeter, NvmlEnergyMeter, measure_energy
from nkilab.harness.workloads import Problem, make_inputs
from nkilab.kernels._adapter import to_torch

ENERGY_WINDOW_S = 5.0  # NVML and the Neuron power file settle only over windows of seconds
NEURON_REPEATS = 10
CUDA_METHOD = ("CUDA events around the public API call (nkilab.harness.measure.cuda.gpu_time: p50 of repeats "
               "after warm-up; includes the API's validation and dispatch)")
NEURON_METHOD = (f"host wall time around the public API call on a Neuron device (includes launch and host-device "
                 f"copies), median of {NEURON_REPEATS} after one warm-up")


@dataclass(frozen=True)
class Measurement:
    """One problem measured on a device: latency (s), how it was measured, energy per token, extra perf fields."""

    latency_s: float
    method: str
    energy: EnergyResult
    extra: dict = field(default_factory=dict)


def host_time(fn: Callable[[], object], repeats: int = NEURON_REPEATS) -> list[float]:
    """Host wall time of `fn` (s) over `repeats` calls after one warm-up (`fn` must block until its work is done)."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def measure_cuda(problem: Problem) -> Measurement:
    """Time and meter `problem` on the Triton backend of the CUDA device."""
    import torch  # optional heavy dependency: only a CUDA measurement needs it

    args, kwargs = make_inputs(problem, np.random.default_rng(0))
    dev_args = tuple(to_torch(a, device="cuda") if isinstance(a, np.ndarray) else a for a in args)
    api = problem.family.api

    def launch():
        api(*dev_args, **kwargs, backend="triton")

    def synced():
        launch()
        torch.cuda.synchronize()

    timing = gpu_time(launch)
    energy = measure_energy(synced, NvmlEnergyMeter(torch.cuda.current_device()), min_window_s=ENERGY_WINDOW_S)
    return Measurement(timing.p50_ms / 1e3, CUDA_METHOD, energy.per_token(problem.tokens),
                       dict(p20_s=timing.p20_ms / 1e3, p80_s=timing.p80_ms / 1e3, repeats=timing.repeats,
                            device=torch.cuda.get_device_name()))


def measure_neuron(problem: Problem) -> Measurement:
    """Time and meter `problem` on the NKI backend of the Neuron device (the power file gives %·s only: AWS
    publishes no max power, so joules would be an assumption dressed as a measurement)."""
    args, kwargs = make_inputs(problem, np.random.default_rng(0))
    api = problem.family.api

    def call():
        api(*args, **kwargs, backend="nki")

    latency = float(np.median(host_time(call)))
    energy = measure_energy(call, NeuronPowerMeter(), min_window_s=ENERGY_WINDOW_S)
    return Measurement(latency, NEURON_METHOD, energy.per_token(problem.tokens))
