"""report.md of a run folder, and the rows of the console summary — both from stored records only.

Sections: how the figures were made (kinds, methods, power assumptions per target); correctness per kernel and
backend; the modeled profile per Neuron target (latency, tokens/s, MFU, MBU, bottleneck, J/token with its kind);
what limits each NKI kernel; the model's calibration against published Trainium2 measurements; the plots;
everything that did not run and why.
"""

from __future__ import annotations

import math
import os
from collections import Counter, defaultdict

from nkilab.harness.chips import get_target
from nkilab.harness.perf.roofline import ridge_point
from nkilab.harness.report.records import size

HEADLINE_BATCH = 8
HEADLINE_CONTEXT = 2048


def fmt(x, spec: str = ".3g", unit: str = "") -> str:
    """A number for a table, '—' when unknown."""
    if x is None:
        return "—"
    return f"{x:{spec}}{unit}"


def check_rows(records) -> list[list[str]]:
    """[kernel, backend, target, problem, dtype, result, max_abs_err, max_rel_err, bound, wall, quant error]; the
    last is a quantized-KV-cache check's `check.quant_error` (reference on the quantized vs the unquantized cache),
    '—' elsewhere."""
    rows = []
    for r in records:
        if r.get("stage") != "check":
            continue
        c = r.get("check")
        result = {"ok": "PASS", "failed": "FAIL"}.get(r["status"], r["status"])
        rows.append([r["kernel"], r["backend"], r["target"], r["problem"]["name"], r["problem"].get("dtype", ""),
                     result, fmt(c and c["max_abs_err"]), fmt(c and c["max_rel_err"]), fmt(c and c["bound"]),
                     fmt(r.get("wall_s"), ".2f", " s"), _quant_error(c)])
    return rows


def _quant_error(check: dict | None) -> str:
    q = (check or {}).get("quant_error")
    if not q:
        return "—"
    return f"{fmt(q['max_abs_err'])} / {fmt(q['max_rel_err'])} ({q['kv_cache_dtype']} vs {q['unquantized_dtype']})"


def perf_row(r) -> list[str]:
    """[kernel, target, problem, latency, kind, tokens/s, MFU, MBU, bottleneck, J/token (kind)]."""
    p, e = r.get("perf") or {}, r.get("energy") or {}
    jpt = e.get("joules_per_token")
    energy = f"{jpt:.3g} ({e['kind']})" if jpt is not None else (f"— ({e.get('reason')})" if e else "—")
    return [r["kernel"], r["target"], r["problem"]["name"].split("/", 2)[-1],
            fmt(p.get("latency_s") and p["latency_s"] * 1e6, ".4g", " us"), p.get("kind", "—"),
            fmt(p.get("tokens_per_s"), ".4g"), fmt(p.get("mfu"), ".1%"), fmt(p.get("mbu"), ".1%"),
            p.get("bottleneck") or "—", energy]


def modeled(records, target: str | None = None):
    return [r for r in records if r.get("stage") == "model" and r["status"] == "ok"
            and (target is None or r["target"] == target)]


def headline(records) -> list[dict]:
    """Modeled records nearest the headline point, per target, kernel and projection: decode batch 8 at
    context 2048, and the longest prefill."""
    def distance(r):
        p = r["problem"]
        if p["phase"] == "prefill":
            return (0.0, -size(r))
        return (abs(math.log2(size(r) / HEADLINE_BATCH)),
                abs(math.log2(p.get("context", HEADLINE_CONTEXT) / HEADLINE_CONTEXT)))

    best: dict = {}
    for r in modeled(records):
        key = (r["target"], r["problem"]["phase"], r["kernel"], r["problem"].get("projection"))
        if key not in best or distance(r) < distance(best[key]):
            best[key] = r
    return [best[k] for k in sorted(best, key=lambda k: (k[0], k[1], k[2], k[3] or ""))]


def limits_summary(records, target: str) -> list[str]:
    """One line per NKI kernel on `target`: what limits it over the modeled problems."""
    by_op = defaultdict(list)
    for r in modeled(records, target):
        by_op[r["kernel"]].append(r)
    lines = []
    for op, rows in sorted(by_op.items()):
        bottlenecks = Counter(r["perf"]["bottleneck"] for r in rows)
        mbu = [r["perf"]["mbu"] for r in rows if r["perf"]["mbu"] is not None]
        mfu = [r["perf"]["mfu"] for r in rows if r["perf"]["mfu"] is not None]
        ratio = [r["perf"]["latency_s"] / r["perf"]["roofline_s"] for r in rows if r["perf"].get("roofline_s")]
        lines.append(f"- `{op}` on {target}: bottleneck {', '.join(f'{k} x{v}' for k, v in bottlenecks.most_common())}"
                     f"; MBU {min(mbu):.0%}–{max(mbu):.0%}, MFU {min(mfu):.0%}–{max(mfu):.0%}"
                     f"; latency / roofline bound {min(ratio):.2g}–{max(ratio):.2g} over {len(rows)} problems")
    return lines


def not_run_rows(records) -> list[list[str]]:
    """[stage, kernel, backend, status, reason (first line of the note), records]: what did not run, counted."""
    reasons = Counter((r["stage"], r["kernel"], r["backend"], r["status"], (r.get("note") or "").split("\n")[0])
                      for r in records if r["status"] in ("unavailable", "unsupported", "error"))
    return [[*key, str(n)] for key, n in sorted(reasons.items())]


def _table(header, rows) -> list[str]:
    if not rows:
        return ["_(none)_", ""]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "/").replace("\n", " ") for c in row) + " |" for row in rows]
    return lines + [""]


PERF_HEADER = ["kernel", "target", "problem", "latency", "kind", "tokens/s", "MFU", "MBU", "bottleneck",
               "J/token (kind)"]
NOT_RUN_HEADER = ["stage", "kernel", "backend", "status", "reason", "records"]
CHECK_HEADER = ["kernel", "backend", "target", "problem", "dtype", "result", "max abs err", "max rel err", "bound",
                "wall (emulation)", "quantization's own error: max abs / rel"]


def write_report(records, out_dir: str, *, plots: list[str], command: str, wall_s: float,
                 calibration: list[dict] | None = None) -> str:
    """Write out_dir/report.md; returns its path."""
    lines = ["# nkilab run report", "", f"- command: `{command}`", f"- wall time: {wall_s:.1f} s"]
    if records:
        r0 = records[0]
        lines += [f"- nkilab {r0.get('nkilab_version')} at commit `{r0.get('git_commit')}`, host `{r0.get('host')}`,"
                  f" {r0.get('timestamp')}"]
    lines += ["", "## How these figures were made", "",
              "- **modeled**: NKI kernels traced by nkilab's emulator (trace mode, no values computed) and timed "
              "by the instruction-level model (`nkilab.harness.perf`: per-engine costs from the chip tables, a "
              "dependency-aware schedule over engines running in parallel). The model never beats the roofline "
              "bound max(FLOPs/peak, HBM bytes/bandwidth). Latency excludes the fixed launch overhead, reported "
              "apart (`perf.launch_overhead_s`). Figures are per kernel call, i.e. per layer and per rank.",
              "- **emulation-wall**: CPU wall time of the NKI emulator or the Triton interpreter during the "
              "correctness runs — emulation time, never device speed.",
              "- **measured**: only on a CUDA or Neuron device (none in this run unless listed below).",
              "- **J/token (modeled)**: latency x assumed power of the cores the kernel holds, static share always "
              "drawn, the rest scaled by the busiest engine's utilization. Power assumptions:", ""]
    for t in sorted({r["target"] for r in modeled(records)}):
        tgt = get_target(t)
        lines.append(f"  - `{t}`: {tgt.power_source}; roofline per core {tgt.peak() / 1e12:.0f} TFLOP/s bf16, "
                     f"{tgt.bandwidth() / 1e9:.0f} GB/s HBM, ridge {ridge_point(tgt):.0f} FLOP/byte")
    lines += ["", "## Correctness (smoke workload, against the float64 reference)", ""]
    lines += _table(CHECK_HEADER, check_rows(records))
    lines += ["## Modeled profile, headline points (decode batch 8 / context 2048, longest prefill)", ""]
    lines += _table(PERF_HEADER, [perf_row(r) for r in headline(records)])
    for t in sorted({r["target"] for r in modeled(records)}):
        lines += [f"## Modeled profile on `{t}` ({get_target(t).description})", "", "What limits each kernel:", ""]
        lines += limits_summary(records, t) + [""]
        lines += _table(PERF_HEADER, [perf_row(r) for r in modeled(records, t)])
    if calibration:
        lines += ["## Calibration against published Trainium2 measurements", "",
                  "Same model constants for every point (no per-kernel factors); kernels are nkilab's own, written "
                  "in the structure of the published ones (`nkilab.harness.perf.calibration`). `nkilab calibrate` "
                  "(or `nkilab run --calibrate full`) models all six points.", ""]
        lines += _table(["point", "published", "modeled", "model / published", "bottleneck", "source"],
                        [[c["name"], c["published"], c["modeled"], f"{c['ratio']:.3f}", c["bottleneck"],
                          c["source"]] for c in calibration])
    if plots:
        lines += ["## Plots (modeled)", ""] + [f"![{p}]({p})" for p in plots] + [""]
    lines += ["## Not run, and why", ""]
    lines += _table(NOT_RUN_HEADER, not_run_rows(records))
    path = os.path.join(out_dir, "report.md")
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return path
