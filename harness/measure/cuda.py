"""Measured CUDA kernel timing, `triton.testing.do_bench` style: warm-up, then quantiles of timed repeats.

Each repeat is bracketed by its own pair of CUDA events (device time of the launch queue, not host time), so the
median ignores the odd slow repeat. Cold L2 (FlashInfer `testing/utils.py` `bench_gpu_time` idea), optional:
  - rotation: pass several equivalent calls that work on different copies of the inputs; repeats cycle through
    them, so with enough copies a call finds none of its inputs in L2;
  - flush: write a buffer twice the L2 size before every repeat (outside the timed window).
CUDA only: without a CUDA device `gpu_time` raises a RuntimeError that says so. CPU wall time is emulation time,
never device speed (every figure says measured / modeled / emulation), so there is deliberately no CPU fallback
here.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

DEFAULT_WARMUP_MS = 25.0  # triton.testing.do_bench defaults
DEFAULT_REP_MS = 100.0
MIN_REPEATS = 5  # quantiles of fewer repeats are noise
FALLBACK_L2_BYTES = 256 * 2**20  # when the device does not report its L2 size (triton's do_bench flush buffer)


@dataclass(frozen=True)
class Timing:
    """Quantiles of one call's device time, in ms, over `repeats` timed calls after `warmup` untimed ones."""

    p20_ms: float
    p50_ms: float
    p80_ms: float
    repeats: int
    warmup: int
    cold_l2: str  # "no" | "flush" | "rotate xN"
    kind: str = "measured"
    method: str = "CUDA events per call, quantiles of repeats after warm-up"

    def to_dict(self) -> dict:
        return asdict(self)


def require_cuda(what: str = "GPU timing"):
    """The torch module, if a CUDA device is present; else RuntimeError naming `what`."""
    try:
        import torch  # optional heavy dependency: only CUDA timing needs it
    except ImportError as e:
        raise RuntimeError(f"{what} needs torch with CUDA; torch is not installed") from e
    if not torch.cuda.is_available():
        raise RuntimeError(f"{what} needs a CUDA GPU, and torch.cuda.is_available() is False on this machine "
                           "(CPU runs are emulation time, not device speed)")
    return torch


def quantiles_ms(samples_ms: Sequence[float]) -> tuple[float, float, float]:
    """(p20, p50, p80) of the samples, linear interpolation between order statistics."""
    if not samples_ms:
        raise ValueError("samples_ms: need at least one sample")
    if len(samples_ms) == 1:
        return (samples_ms[0],) * 3
    cuts = statistics.quantiles(samples_ms, n=10, method="inclusive")  # deciles: cuts[1] = p20, cuts[7] = p80
    return cuts[1], statistics.median(samples_ms), cuts[7]


def gpu_time(fns: Callable[[], object] | Sequence[Callable[[], object]], *, warmup_ms: float = DEFAULT_WARMUP_MS,
             rep_ms: float = DEFAULT_REP_MS, flush_l2: bool = False, max_repeats: int = 1000) -> Timing:
    """Device time of one call: quantiles over repeats sized to fill `rep_ms`, after `warmup_ms` of warm-up.

    Args:
        fns: a callable that launches the work, or several equivalent ones on distinct input copies (rotated to keep
            the L2 cold). They must not synchronize inside (that would time the host too).
        warmup_ms, rep_ms: time budgets, ms, of the warm-up and of the timed repeats (at least MIN_REPEATS).
        flush_l2: overwrite a 2×L2-sized buffer before every timed call.
        max_repeats: upper bound on timed calls.

    Returns:
        Timing (kind "measured").

    Raises:
        RuntimeError: no CUDA device.
    """
    torch = require_cuda("gpu_time")
    calls = [fns] if callable(fns) else list(fns)
    if not calls:
        raise ValueError("fns: need at least one callable")
    flush = None
    if flush_l2:
        l2 = getattr(torch.cuda.get_device_properties(torch.cuda.current_device()), "L2_cache_size", 0)
        flush = torch.empty(2 * (l2 or FALLBACK_L2_BYTES), dtype=torch.int8, device="cuda")

    # Estimate one call from a few, to size the warm-up and the repeats.
    calls[0]()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for i in range(5):
        calls[i % len(calls)]()
    end.record()
    torch.cuda.synchronize()
    estimate_ms = max(start.elapsed_time(end) / 5, 1e-4)
    warmup = max(1, int(warmup_ms / estimate_ms))
    repeats = min(max_repeats, max(MIN_REPEATS, int(rep_ms / estimate_ms)))

    for i in range(warmup):
        calls[i % len(calls)]()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(repeats)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(repeats)]
    for i in range(repeats):
        if flush is not None:
            flush.zero_()
        starts[i].record()
        calls[i % len(calls)]()
        ends[i].record()
    torch.cuda.synchronize()
    samples = [s.elapsed_time(e) for s, e in zip(starts, ends)]
    p20, p50, p80 = quantiles_ms(samples)
    cold = "flush" if flush is not None else (f"rotate x{len(calls)}" if len(calls) > 1 else "no")
    return Timing(p20, p50, p80, repeats, warmup, cold)
