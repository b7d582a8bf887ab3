"""The results.jsonl record: one JSON object per kernel x backend x target x problem.

Fields every record keeps (more may be added freely; unknown values are null, never invented):
  kernel, backend, target          op name ("qmatmul", …), "reference" | "nki" | "triton", target key or "cpu"
  problem                          dict: shape parameters, scheme, dtype, phase, model, name
  check                            {passed, max_abs_err, max_rel_err, bound, …} or null when not checked
  perf                             {kind, latency_s, flops, hbm_bytes, tokens, tokens_per_s, mfu, mbu, bottleneck,
                                    method, …} or null; kind = "measured" | "modeled" | "emulation-wall"
  energy                           {kind, joules_per_token, method, assumption, boundary, …} or null;
                                    kind = "measured" | "modeled"
plus provenance: nkilab version, git commit, timestamp, host, the command that reproduces the record, and
`status` ("ok" | "failed" | "unsupported" | "unavailable" | "error") with `note` saying why when not ok.
"""

from __future__ import annotations

import functools
import json
import math
import os
import platform
import subprocess
import time
from importlib import metadata

from nkilab.kernels._registry import get

REQUIRED = ("kernel", "backend", "target", "problem", "check", "perf", "energy")
CHECK_FIELDS = ("passed", "max_abs_err", "max_rel_err", "bound")
PERF_FIELDS = ("kind", "latency_s", "flops", "hbm_bytes", "tokens", "tokens_per_s", "mfu", "mbu", "bottleneck")
ENERGY_FIELDS = ("kind", "joules_per_token", "method", "assumption")
PERF_KINDS = ("measured", "modeled", "emulation-wall")
ENERGY_KINDS = ("measured", "modeled")
STATUSES = ("ok", "failed", "unsupported", "unavailable", "error")


def provenance() -> dict:
    """nkilab version, git commit (None outside a checkout), host, Python and the UTC timestamp."""
    return {**_static_provenance(), "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


@functools.lru_cache(maxsize=1)
def _static_provenance() -> dict:
    try:
        version = metadata.version("nkilab")
    except metadata.PackageNotFoundError:
        version = None
    try:
        here = os.path.dirname(os.path.abspath(__file__))
        commit = subprocess.run(["git", "-C", here, "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"nkilab_version": version, "git_commit": commit, "host": platform.node(),
            "python": platform.python_version()}


def check_field(result, quant_error: dict | None = None) -> dict:
    """The `check` field from a `nkilab.harness.checks.CheckResult`; a quantized-KV-cache check also keeps
    `quant_error` ({kv_cache_dtype, unquantized_dtype, max_abs_err, max_rel_err} of
    `nkilab.harness.checks.quantization_error`: the quantization's own error, not the kernel's)."""
    field = {"passed": bool(result.passed), "max_abs_err": _num(result.max_abs_err),
             "max_rel_err": _num(result.max_rel_err), "mean_rel_err": _num(result.mean_rel_err),
             "bound": _num(result.bound)}
    if quant_error is not None:
        field["quant_error"] = {**quant_error, "max_abs_err": _num(quant_error["max_abs_err"]),
                                "max_rel_err": _num(quant_error["max_rel_err"])}
    return field


def perf_field(kind: str, *, latency_s: float | None, method: str, flops: float | None = None,
               hbm_bytes: float | None = None, tokens: int | None = None, mfu: float | None = None,
               mbu: float | None = None, bottleneck: str | None = None, **extra) -> dict:
    """The `perf` field; tokens_per_s = tokens / latency_s when both are known."""
    if kind not in PERF_KINDS:
        raise ValueError(f"kind: must be one of {PERF_KINDS}, got {kind!r}")
    tps = tokens / latency_s if (tokens and latency_s) else None
    return {"kind": kind, "latency_s": _num(latency_s), "flops": _num(flops), "hbm_bytes": _num(hbm_bytes),
            "tokens": tokens, "tokens_per_s": _num(tps), "mfu": _num(mfu), "mbu": _num(mbu),
            "bottleneck": bottleneck, "method": method, **extra}


def energy_field(result) -> dict | None:
    """The `energy` field from an `nkilab.harness.measure.energy.EnergyResult` (None stays None)."""
    if result is None:
        return None
    return {"kind": result.kind, "joules_per_token": _num(result.joules_per_token),
            "joules_per_call": _num(result.joules_per_call), "method": result.method,
            "assumption": result.assumption, "boundary": result.boundary, "reason": result.reason or None,
            "pct_s_per_call": _num(result.pct_s_per_call)}


def make_record(*, kernel: str, backend: str, target: str, problem: dict, check: dict | None = None,
                perf: dict | None = None, energy: dict | None = None, status: str = "ok", note: str | None = None,
                command: str | None = None, **extra) -> dict:
    """A complete record with provenance; raises ValueError if it breaks the schema."""
    rec = {"kernel": kernel, "backend": backend, "target": target, "problem": problem, "check": check,
           "perf": perf, "energy": energy, "status": status, "note": note, "command": command, **provenance(),
           **extra}
    errors = validate_record(rec)
    if errors:
        raise ValueError("record: " + "; ".join(errors))
    return rec


def validate_record(rec: dict) -> list[str]:
    """Schema violations of one record (empty list = valid)."""
    errors = [f"missing field {k!r}" for k in REQUIRED if k not in rec]
    if errors:
        return errors
    if not isinstance(rec["problem"], dict):
        errors.append("problem must be a dict")
    if rec.get("status", "ok") not in STATUSES:
        errors.append(f"status must be one of {STATUSES}")
    for name, keys in (("check", CHECK_FIELDS), ("perf", PERF_FIELDS), ("energy", ENERGY_FIELDS)):
        value = rec[name]
        if value is None:
            continue
        if not isinstance(value, dict):
            errors.append(f"{name} must be a dict or null")
            continue
        errors += [f"{name}.{k} missing" for k in keys if k not in value]
    if isinstance(rec["perf"], dict) and rec["perf"].get("kind") not in PERF_KINDS:
        errors.append(f"perf.kind must be one of {PERF_KINDS}")
    if isinstance(rec["energy"], dict):
        if rec["energy"].get("kind") not in ENERGY_KINDS:
            errors.append(f"energy.kind must be one of {ENERGY_KINDS}")
        if not rec["energy"].get("method"):
            errors.append("energy.method must say how the figure was obtained")
    return errors


def size(rec: dict) -> int:
    """What one call of a stored record serves: its op's size parameter (`Op.plot.size`: decode batch, prefill
    length), read from the record's problem."""
    return rec["problem"][get(rec["kernel"]).plot.size]


def json_line(rec: dict) -> str:
    """One record as one line of JSON (NaN/inf as null, NumPy scalars as numbers), without the newline."""
    return json.dumps(_clean(rec), sort_keys=False)


def write_jsonl(records, path: str) -> None:
    """Write records one JSON object per line (NaN/inf written as null)."""
    with open(path, "w") as fh:
        for rec in records:
            fh.write(json_line(rec) + "\n")


def read_jsonl(path: str) -> list[dict]:
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _num(x) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _clean(obj):
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # NumPy scalars
        return _clean(obj.item())
    return obj
