"""Energy per token: meters that read real counters, and a modeled figure that says it is one.

Meters (each `begin()` then `end()` -> `Reading`, or a reading with `value=None` and the reason it could not read):
  NvmlEnergyMeter     NVIDIA total-energy counter (mJ since driver load, Volta+), board-level per GPU.
  NeuronPowerMeter    Neuron driver sysfs power utilisation (percent of an unpublished device maximum), found
                      under /sys/devices/virtual/neuron_device at run time; integrated over the window to %·s.
                      Joules only with a stated max-power assumption, and then labelled modeled.
  RaplEnergyMeter     Linux powercap RAPL `energy_uj` (package domains), with counter wrap-around.

`measure_energy(fn, meter, min_window_s=)` repeats `fn` until the window is long enough and returns joules per
call; `modeled_energy(latency_s, target, ...)` gives latency x assumed power with the static share stated.

Every result carries `kind` ("measured" | "modeled"), `method`, `boundary` and `assumption`; a figure that
cannot be obtained is None with a `reason` — never a guess labelled as a measurement.
"""

from __future__ import annotations

import glob
import os
import threading
import time
from dataclasses import asdict, dataclass
from typing import Callable

from nkilab.harness.chips import NeuronTarget, Target, get_target

NEURON_SYSFS_ROOT = "/sys/devices/virtual/neuron_device"
RAPL_ROOT = "/sys/class/powercap"
NEURON_POLL_S = 0.05  # the driver refreshes its power sample every 50 ms (aws-neuron-driver neuron_power.c)


@dataclass(frozen=True)
class Reading:
    """What a meter saw over one window.

    Attributes:
        value: amount over the window in `unit`, or None when the meter could not read.
        unit: "J" or "%*s" (percent of device max power, integrated over seconds).
        kind: "measured" | "modeled".
        method: how it was obtained, e.g. "nvml:total_energy_consumption".
        boundary: what the figure covers, e.g. "accelerator (GPU board)".
        assumption: assumptions behind the number ("" when none).
        reason: why `value` is None ("" otherwise).
        joules: energy in J when known (equals `value` for J meters; %*s x max power for Neuron with an
            assumption, then `kind` is "modeled"), else None.
    """

    value: float | None
    unit: str
    kind: str
    method: str
    boundary: str
    assumption: str = ""
    reason: str = ""
    joules: float | None = None


@dataclass(frozen=True)
class EnergyResult:
    """Energy of one call of a measured function, or of one modeled kernel launch.

    Attributes:
        joules_per_call: J per call, or None (then `reason` says why).
        joules_per_token: J per token when the token count is known, else None.
        kind, method, boundary, assumption, reason: as in `Reading`.
        pct_s_per_call: Neuron only: percent-of-max-power x seconds per call (the measured quantity).
        calls, window_s: how many calls the window held and how long it lasted, s.
    """

    joules_per_call: float | None
    kind: str
    method: str
    boundary: str
    assumption: str = ""
    reason: str = ""
    joules_per_token: float | None = None
    pct_s_per_call: float | None = None
    calls: int = 0
    window_s: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    def per_token(self, tokens: int | None) -> "EnergyResult":
        """This result with `joules_per_token` = joules_per_call / tokens (None if either is unknown)."""
        jpt = self.joules_per_call / tokens if (self.joules_per_call is not None and tokens) else None
        return EnergyResult(**{**asdict(self), "joules_per_token": jpt})


class NvmlEnergyMeter:
    """NVIDIA GPU energy from `nvmlDeviceGetTotalEnergyConsumption` (mJ, monotonic since driver load).

    Args:
        index: GPU index.
        nvml: the `pynvml` module (from `nvidia-ml-py`); injectable for tests. None = import it.
    """

    method = "nvml:total_energy_consumption"
    boundary = "accelerator (GPU board, incl. HBM)"

    def __init__(self, index: int = 0, nvml=None):
        self.index = index
        self._nvml = nvml
        self._handle = None
        self._start_mj: float | None = None
        self.reason = ""
        try:
            if self._nvml is None:
                import pynvml  # optional dependency (nvidia-ml-py, the `gpu` extra): only where a GPU is metered

                self._nvml = pynvml
            self._nvml.nvmlInit()
            self._handle = self._nvml.nvmlDeviceGetHandleByIndex(index)
            self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
        except Exception as exc:  # any NVML failure means "cannot read", with the reason kept
            self.reason = f"NVML unavailable: {type(exc).__name__}: {exc}"
            self._handle = None

    @property
    def available(self) -> bool:
        return self._handle is not None

    def begin(self) -> None:
        self._start_mj = self._read_mj()

    def end(self) -> Reading:
        stop = self._read_mj()
        if self._start_mj is None or stop is None:
            return self._null(self.reason or "energy counter not readable")
        delta_j = (stop - self._start_mj) / 1000.0
        if delta_j <= 0:
            # the counter refreshes about every 100 ms; a zero delta means the window was too short to see
            return self._null("energy counter did not advance over the window (window shorter than its update "
                              "period?)")
        return Reading(delta_j, "J", "measured", self.method, self.boundary, joules=delta_j)

    def _read_mj(self) -> float | None:
        if self._handle is None:
            return None
        try:
            return float(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))
        except Exception as exc:
            self.reason = f"NVML read failed: {type(exc).__name__}: {exc}"
            return None

    def _null(self, reason: str) -> Reading:
        return Reading(None, "J", "measured", self.method, self.boundary, reason=reason)


def find_neuron_power_files(root: str = NEURON_SYSFS_ROOT) -> list[str]:
    """Power-utilisation files under the Neuron sysfs tree, live (`utilization_raw`) ones first.

    The driver moved sysfs nodes in 2.31, so the path is searched, not assumed: any file named `utilization*`
    below a `power` directory of any `neuron*` device.
    """
    found = sorted(glob.glob(os.path.join(root, "neuron*", "**", "utilization*"), recursive=True))
    found = [p for p in found if os.path.basename(os.path.dirname(p)) == "power" and os.path.isfile(p)]
    return sorted(found, key=lambda p: (not p.endswith("utilization_raw"), p))


def parse_neuron_utilization(text: str) -> float | None:
    """Percent of max power from one sysfs read, or None when the driver has no valid sample.

    Formats: per-minute stats `STATUS,unix_ts,min,max,avg` (the average is used; only POWER_STATUS_VALID
    counts), or a live value: a number in percent, or basis points (0-10000) when above 100. Several
    comma/space-separated live values (one per die) give their maximum, as the driver aggregates dies.
    """
    text = text.strip()
    if not text:
        return None
    if text.startswith("POWER_STATUS"):
        fields = [f.strip() for f in text.split(",")]
        if fields[0] != "POWER_STATUS_VALID" or len(fields) < 5:
            return None
        return float(fields[4])
    values = []
    for token in text.replace(",", " ").split():
        try:
            values.append(float(token))
        except ValueError:
            continue
    if not values:
        return None
    pct = max(values)
    return pct / 100.0 if pct > 100.0 else pct


class NeuronPowerMeter:
    """Neuron device power utilisation integrated over a window (trapezoid rule), in percent·seconds.

    The live file is polled every `poll_s` in a background thread between `begin()` and `end()`. The
    per-minute file only changes once a minute, so windows shorter than ~3 minutes read from it are reported
    as null (a window of a few seconds sees at most one sample of it). Joules need `max_power_w`: E = %·s / 100 x max_power_w, labelled
    modeled because AWS publishes no max-power figure.

    Args:
        root: sysfs root to search (tests pass a fake tree).
        max_power_w: assumed device max power, W, or None for %·s only.
        poll_s: polling period, s.
        clock: monotonic clock, injectable for tests.
    """

    method = "neuron-sysfs:power/utilization (integrated)"
    boundary = "accelerator (whole Neuron device, max over dies)"
    MIN_MINUTE_WINDOW_S = 180.0

    def __init__(self, root: str = NEURON_SYSFS_ROOT, *, max_power_w: float | None = None,
                 poll_s: float = NEURON_POLL_S, clock: Callable[[], float] = time.monotonic):
        files = find_neuron_power_files(root)
        self.path = files[0] if files else None
        self.live = bool(self.path and self.path.endswith("utilization_raw"))
        self.max_power_w = max_power_w
        self.poll_s = poll_s
        self._clock = clock
        self._samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.reason = "" if self.path else f"no Neuron power-utilization file under {root}"

    @property
    def available(self) -> bool:
        return self.path is not None

    def sample(self) -> None:
        """Read the file once and keep (time, percent) if it holds a valid value."""
        try:
            with open(self.path) as fh:
                pct = parse_neuron_utilization(fh.read())
        except OSError as exc:
            self.reason = f"cannot read {self.path}: {exc}"
            return
        if pct is not None:
            self._samples.append((self._clock(), pct))

    def begin(self) -> None:
        self._samples = []
        if not self.available:
            return
        self.sample()
        self._stop.clear()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.sample()

    def end(self) -> Reading:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
        if not self.available:
            return self._null(self.reason)
        self.sample()
        if len(self._samples) < 2:
            return self._null(self.reason or "fewer than two valid power samples in the window")
        window = self._samples[-1][0] - self._samples[0][0]
        if not self.live and window < self.MIN_MINUTE_WINDOW_S:
            return self._null(f"only the per-minute power file exists ({self.path}); a window of {window:.1f} s "
                              f"is shorter than the {self.MIN_MINUTE_WINDOW_S:.0f} s it needs")
        pct_s = sum(0.5 * (p0 + p1) * (t1 - t0)
                    for (t0, p0), (t1, p1) in zip(self._samples, self._samples[1:]))
        if self.max_power_w is None:
            return Reading(pct_s, "%*s", "measured", self.method, self.boundary,
                           assumption="percent of the device's unpublished max power; no joules without a "
                                      "max-power assumption")
        joules = pct_s / 100.0 * self.max_power_w
        return Reading(pct_s, "%*s", "modeled", self.method + " x assumed max power", self.boundary,
                       assumption=f"max power assumed {self.max_power_w:g} W (not published); driver says "
                                  "background power is backed out", joules=joules)

    def _null(self, reason: str) -> Reading:
        return Reading(None, "%*s", "measured", self.method, self.boundary, reason=reason)


class RaplEnergyMeter:
    """Host CPU package energy from Linux powercap RAPL, summed over package domains, wrap-around handled.

    Args:
        root: powercap root (tests pass a fake tree).
    """

    method = "rapl:energy_uj"
    boundary = "host CPU packages"

    def __init__(self, root: str = RAPL_ROOT):
        zones = sorted(glob.glob(os.path.join(root, "intel-rapl:*")))
        self.zones = [z for z in zones if z.count(":") == 1 and os.path.isfile(os.path.join(z, "energy_uj"))]
        self._start: list[int] | None = None
        self.reason = "" if self.zones else f"no RAPL package domain under {root}"
        if self.zones and self._read() is None:
            self.zones = []

    @property
    def available(self) -> bool:
        return bool(self.zones)

    def _read(self) -> list[int] | None:
        try:
            values = []
            for z in self.zones:
                with open(os.path.join(z, "energy_uj")) as fh:
                    values.append(int(fh.read().strip()))
            return values
        except (OSError, ValueError) as exc:
            # energy_uj is root-only since CVE-2020-8694; unreadable means unavailable, not zero
            self.reason = f"RAPL not readable: {type(exc).__name__}: {exc}"
            return None

    def _range(self, zone: str) -> int:
        with open(os.path.join(zone, "max_energy_range_uj")) as fh:
            return int(fh.read().strip())

    def begin(self) -> None:
        self._start = self._read() if self.zones else None

    def end(self) -> Reading:
        stop = self._read() if self.zones else None
        if self._start is None or stop is None:
            return Reading(None, "J", "measured", self.method, self.boundary, reason=self.reason)
        total_uj = 0
        for zone, e0, e1 in zip(self.zones, self._start, stop):
            # one wrap at most between the two reads: the window must be shorter than a wrap period (~minutes)
            total_uj += (e1 - e0) % (self._range(zone) + 1)
        joules = total_uj / 1e6
        return Reading(joules, "J", "measured", self.method, self.boundary,
                       assumption="at most one counter wrap within the window", joules=joules)


def measure_energy(fn: Callable[[], object], meter, *, min_window_s: float = 1.0,
                   clock: Callable[[], float] = time.perf_counter) -> EnergyResult:
    """Joules per call of `fn`, repeating it until the metered window lasts at least `min_window_s`.

    `fn` must finish its device work before returning (synchronize inside it), and should be warmed up
    before (compilation inside the window is counted). The meter's window brackets whole calls only. NVML
    readings settle only for windows of 5 s or more (the counter updates in driver-sized steps): pass min_window_s=5 for
    reported figures; the 1 s default suits quick runs.

    Returns:
        EnergyResult with joules_per_call (None + reason when the meter cannot read, or when only %·s is
        known without a max-power assumption — then `pct_s_per_call` holds the measured figure).
    """
    if not min_window_s > 0:
        raise ValueError(f"min_window_s: must be > 0 s, got {min_window_s!r}")
    method = getattr(meter, "method", type(meter).__name__)
    boundary = getattr(meter, "boundary", "")
    if not getattr(meter, "available", True):
        return EnergyResult(None, "measured", method, boundary, reason=getattr(meter, "reason", "meter unavailable"))
    meter.begin()
    t0 = clock()
    calls = 0
    while True:
        fn()
        calls += 1
        elapsed = clock() - t0
        if elapsed >= min_window_s:
            break
    reading = meter.end()
    if reading.value is None:
        return EnergyResult(None, reading.kind, reading.method, reading.boundary, reading.assumption,
                            reading.reason, calls=calls, window_s=elapsed)
    pct_s = reading.value / calls if reading.unit == "%*s" else None
    jpc = reading.joules / calls if reading.joules is not None else None
    reason = "" if jpc is not None else "no joules: percent-of-max-power only (pass max_power_w to convert)"
    return EnergyResult(jpc, reading.kind, reading.method, reading.boundary, reading.assumption, reason,
                        pct_s_per_call=pct_s, calls=calls, window_s=elapsed)


def modeled_energy(latency_s: float, target: str | Target, *, utilization: float = 1.0, lnc: int | None = None,
                   tokens: int | None = None, power_w: float | None = None,
                   idle_share: float | None = None) -> EnergyResult:
    """Modeled energy of one launch: latency x (static + dynamic x utilization) power of the cores it holds.

    P = power x (idle_share + (1 - idle_share) x utilization), power = the target's full-load power attributed
    to the `lnc` cores (Neuron) or the chip; idle_share the static fraction. Both come from the target table
    (published TDP or an explicit assumption) unless overridden.

    Args:
        latency_s: kernel time, s.
        target: target key or `Target`.
        utilization: activity of the busiest engine over the run, 0..1.
        lnc: logical core degree (Neuron).
        tokens: tokens the launch serves, for joules_per_token.
        power_w: chip full-load power override, W; idle_share: static share override, 0..1.
    """
    tgt = get_target(target) if isinstance(target, str) else target
    if power_w is not None or idle_share is not None:
        tgt = tgt.with_power(power_w if power_w is not None else tgt.power_w, idle_share)
    if not latency_s >= 0:
        raise ValueError(f"latency_s: must be >= 0 s, got {latency_s!r}")
    util = min(max(float(utilization), 0.0), 1.0)
    full = tgt.power(lnc=lnc)
    watts = full * (tgt.idle_share + (1.0 - tgt.idle_share) * util)
    joules = watts * latency_s
    share = f"{lnc or 1} of {tgt.cores} cores" if isinstance(tgt, NeuronTarget) else "whole chip"
    assumption = (f"{tgt.power_source}; {share} -> {full:.3g} W at full load; static share {tgt.idle_share:.0%} "
                  f"always drawn, the rest scaled by utilization {util:.2f}")
    result = EnergyResult(joules, "modeled", "latency x assumed power (static + utilization-scaled dynamic)",
                          f"accelerator ({tgt.name}, {share})", assumption)
    return result.per_token(tokens)
