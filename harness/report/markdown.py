"""report.md of a run folder, and the rows of the console summary — both from stored records (and run.json) only.

Sections: what was run (command, model and its per-layer shapes, qmatmul scheme, LNC per target); how the figures
were made (kinds, methods, power assumptions per target, what "per layer" means); correctness per kernel and
backend with the rule that decides PASS; the modeled profile per Neuron target (latency, tokens/s, MFU, MBU,
bottleneck, J/token with its kind); what limits each NKI kernel; the model's calibration against published
device measurements; the plots; everything that did not run and why.
"""

from __future__ import annotations

import math
import os
from collections import Counter, defaultdict
from dataclasses import asdict

from nkilab.harness.chips import get_target
from nkilab.harness.perf import calibration as calibration_points
from nkilab.harness.perf.roofline import ridge_point
from nkilab.harness.report.records import size
from nkilab.harness.workloads import MODELS, short_name

HEADLINE_BATCH = 8
HEADLINE_CONTEXT = 2048

# What every modeled figure is a figure of (the report, the console summary and the plots say it the same way).
PER_LAYER = ("Every modeled figure is one kernel call of one transformer layer on one tensor-parallel rank: "
             "tokens/s = tokens the call serves / its latency, J/token = its energy / those tokens. A whole forward "
             "pass costs about the model's layer count times the sum of one layer's calls; `nkilab cost` (and the "
             "cost-of-a-token section of `nkilab run`'s report) adds them up per token.")
# How the correctness pass decides PASS, and why a large max rel err can still pass (see nkilab.harness.checks).
CHECK_RULE = ("PASS when max abs err <= bound, the absolute error budget: bound = 2 x the largest error of the same "
              "computation run naively in the output's precision + a floor of 2 ulps of the output dtype at the "
              "reference's largest magnitude (exact ops: the floor alone, 0 = bit-exact); NaN/inf where the "
              "reference is finite always fails. max rel err divides each element's error by |reference| (clamped "
              "at eps x the largest |reference|), so an element near zero shows a large relative error (e.g. 0.396) "
              "while its absolute error is inside the budget: it is shown for information and never decides PASS. "
              "abs err / bound is the share of the budget used.")


def fmt(x, spec: str = ".3g", unit: str = "") -> str:
    """A number for a table, '—' when unknown."""
    if x is None:
        return "—"
    return f"{x:{spec}}{unit}"


def check_rows(records) -> list[list[str]]:
    """[kernel, backend, target, problem, dtype, result, max abs err, bound, abs err / bound, max rel err, wall,
    quant error]; the last is a quantized-KV-cache check's `check.quant_error` (reference on the quantized vs the
    unquantized cache), '—' elsewhere."""
    rows = []
    for r in records:
        if r.get("stage") != "check":
            continue
        c = r.get("check")
        result = {"ok": "PASS", "failed": "FAIL"}.get(r["status"], r["status"])
        share = c["max_abs_err"] / c["bound"] if c and c["bound"] and c["max_abs_err"] is not None else None
        rows.append([r["kernel"], r["backend"], r["target"], r["problem"]["name"], r["problem"].get("dtype", ""),
                     result, fmt(c and c["max_abs_err"]), fmt(c and c["bound"]), fmt(share, ".2f"),
                     fmt(c and c["max_rel_err"]), fmt(r.get("wall_s"), ".2f", " s"), _quant_error(c)])
    return rows


def _quant_error(check: dict | None) -> str:
    q = (check or {}).get("quant_error")
    if not q:
        return "—"
    return f"{fmt(q['max_abs_err'])} / {fmt(q['max_rel_err'])} ({q['kv_cache_dtype']} vs {q['unquantized_dtype']})"


def record_lnc(r) -> int | None:
    """The logical NeuronCore degree of a record (top-level `lnc`, else the model's `perf.lnc`)."""
    return r.get("lnc") or (r.get("perf") or {}).get("lnc")


def perf_row(r) -> list[str]:
    """[kernel, target, LNC, problem, latency, kind, tokens/s, MFU, MBU, bottleneck, J/token (kind)]."""
    p, e = r.get("perf") or {}, r.get("energy") or {}
    jpt = e.get("joules_per_token")
    energy = f"{jpt:.3g} ({e['kind']})" if jpt is not None else (f"— ({e.get('reason')})" if e else "—")
    return [r["kernel"], r["target"], fmt(record_lnc(r), "d"), short_name(r["problem"]["name"]),
            fmt(p.get("latency_s") and p["latency_s"] * 1e6, ".4g", " us"), p.get("kind", "—"),
            fmt(p.get("tokens_per_s"), ".4g"), fmt(p.get("mfu"), ".1%"), fmt(p.get("mbu"), ".1%"),
            p.get("bottleneck") or "—", energy]


def modeled(records, target: str | None = None):
    return [r for r in records if r.get("stage") == "model" and r["status"] == "ok"
            and (target is None or r["target"] == target)]


def headline(records) -> list[dict]:
    """Modeled records nearest the headline point, per target, phase, kernel and projection: decode batch 8 at
    context 2048; the call serving the most tokens in the other phases (the longest prefill, chunk, step)."""
    def distance(r):
        p = r["problem"]
        if p["phase"] != "decode":
            return (0.0, -(r["perf"].get("tokens") or 0))
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
        notes = sorted({r["note"] for r in rows if r.get("note")})
        lines.append(f"- `{op}` on {target}: bottleneck {', '.join(f'{k} x{v}' for k, v in bottlenecks.most_common())}"
                     f"; MBU {min(mbu):.0%}–{max(mbu):.0%}, MFU {min(mfu):.0%}–{max(mfu):.0%}"
                     f"; latency / roofline bound {min(ratio):.2g}–{max(ratio):.2g} over {len(rows)} problems"
                     + "".join(f"; {n}" for n in notes))
    return lines


def not_run_rows(records) -> list[list[str]]:
    """[stage, kernel, backend, status, reason (first line of the note), records]: what did not run, counted."""
    reasons = Counter((r["stage"], r["kernel"], r["backend"], r["status"], (r.get("note") or "").split("\n")[0])
                      for r in records if r["status"] in ("unavailable", "unsupported", "error"))
    return [[*key, str(n)] for key, n in sorted(reasons.items())]


def run_facts(records, info: dict) -> list[str]:
    """What was run, from run.json (`info`) and the records: model and per-layer shapes, qmatmul scheme, phases,
    grid, LNC per target."""
    rows = modeled(records)
    models = sorted({r["problem"].get("model") for r in rows if r["problem"].get("model")})
    schemes = sorted({r["problem"]["scheme"] for r in rows if r["problem"].get("scheme")})
    phases = sorted({r["problem"]["phase"] for r in rows})
    lnc = {r["target"]: record_lnc(r) for r in rows}
    facts = []
    for name in models:
        shape = info.get("model_shape") if info.get("model") == name else None
        shape = shape or (asdict(MODELS[name]) if name in MODELS else None)
        dims = "" if not shape else (
            f": hidden {shape['hidden']}, {shape['layers']} layers, {shape['q_heads']} query / {shape['kv_heads']} KV "
            f"heads x {shape['head_dim']}, MLP {shape['intermediate']}, TP {shape['tp']}"
            + (f", sliding window {shape['sliding_window']}" if shape.get("sliding_window") else ""))
        facts.append(f"- model: `{name}`{dims}" + (f" (from `{info['model_config']}`)" if info.get("model_config")
                                                  and info.get("model") == name else ""))
    if schemes:
        facts.append(f"- qmatmul weight scheme: {', '.join(schemes)}")
    if phases:
        facts.append(f"- phases: {', '.join(phases)}; grid: {info.get('grid', '—')}"
                     + (f" with {info['sizes']}" if info.get("sizes") else ""))
    if lnc:
        facts.append("- LNC (logical NeuronCore degree of the modeled kernels, `kernel[lnc]`): "
                     + ", ".join(f"{t} {n}" for t, n in sorted(lnc.items())))
    return facts


def _table(header, rows) -> list[str]:
    if not rows:
        return ["_(none)_", ""]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "/").replace("\n", " ") for c in row) + " |" for row in rows]
    return lines + [""]


PERF_HEADER = ["kernel", "target", "LNC", "problem", "latency", "kind", "tokens/s (1 layer)", "MFU", "MBU",
               "bottleneck", "J/token (1 layer, kind)"]
NOT_RUN_HEADER = ["stage", "kernel", "backend", "status", "reason", "records"]
CHECK_HEADER = ["kernel", "backend", "target", "problem", "dtype", "result", "max abs err", "bound (abs)",
                "abs err / bound", "max rel err", "wall (emulation)", "quantization's own error: max abs / rel"]
CALIBRATION_HEADER = ["point", "published", "modeled", "model / published", "bottleneck", "source"]


def calibration_rows(calibration) -> list[list[str]]:
    return [[c["name"], c["published"], c["modeled"], f"{c['ratio']:.3f}", c["bottleneck"], c["source"]]
            for c in calibration]


def calibration_legend(calibration) -> list[str]:
    """"[TAG] source" for each source tag the rows cite ([KO], [AT], ...), from the calibration's SOURCES."""
    return [f"{tag} {text}" for tag, text in calibration_points.SOURCES.items()
            if any(tag in c["source"] for c in calibration)]


def _header(records, info: dict, rerendered: str | None) -> list[str]:
    wall = info.get("wall_s")
    lines = ["# nkilab run report", "", f"- command: `{info.get('command', '(not recorded)')}`",
             f"- wall time: {fmt(wall, '.1f', ' s') if wall is not None else '(not recorded)'}"]
    if rerendered:
        lines.append(f"- re-rendered by `{rerendered}`")
    if records:
        r0 = records[0]
        lines += [f"- nkilab {r0.get('nkilab_version')} at commit `{r0.get('git_commit')}`, host `{r0.get('host')}`,"
                  f" {r0.get('timestamp')}"]
    return lines + run_facts(records, info)


def _method(records) -> list[str]:
    lines = ["", "## How these figures were made", "",
             "- **modeled**: NKI kernels traced by nkilab's emulator (trace mode, no values computed) as "
             "`kernel[lnc]` and timed by the instruction-level model (`nkilab.harness.perf`: per-engine costs from "
             "the chip tables, a dependency-aware schedule over engines running in parallel). The model never beats "
             "the roofline bound max(FLOPs/peak, HBM bytes/bandwidth) of the LNC's cores. Latency excludes the fixed "
             "launch overhead, reported apart (`perf.launch_overhead_s`).",
             f"- **per layer**: {PER_LAYER}",
             "- **emulation-wall**: CPU wall time of the NKI emulator or the Triton interpreter during the "
             "correctness runs — emulation time, never device speed.",
             "- **measured**: only on a CUDA or Neuron device (none in this run unless listed below).",
             "- **J/token (modeled)**: latency x assumed power of the cores the kernel holds, static share always "
             "drawn, the rest scaled by the busiest engine's utilization. Power assumptions:", ""]
    for t in sorted({r["target"] for r in modeled(records)}):
        tgt = get_target(t)
        lnc = max(record_lnc(r) or 1 for r in modeled(records, t))
        lines.append(f"  - `{t}`: {tgt.power_source}; roofline of the LNC={lnc} logical core "
                     f"{tgt.peak(lnc=lnc) / 1e12:.0f} TFLOP/s bf16, {tgt.bandwidth(lnc=lnc) / 1e9:.0f} GB/s HBM, "
                     f"ridge {ridge_point(tgt):.0f} FLOP/byte")
    return lines


def write_report(records, out_dir: str, *, plots: list[str], info: dict | None = None,
                 rerendered: str | None = None) -> str:
    """Write out_dir/report.md from the records and the run's run.json (`info`: command, wall time, model,
    calibration; see `run_info`); `rerendered` names the command that re-rendered it. Returns its path."""
    info = info or {}
    lines = _header(records, info, rerendered) + _method(records)
    lines += ["", "## Correctness (smoke workload, against the float64 reference)", "", CHECK_RULE, ""]
    lines += _table(CHECK_HEADER, check_rows(records))
    lines += ["## Modeled profile, headline points (decode batch 8 / context 2048; the largest call of the other "
              "phases), one layer per call", ""]
    lines += _table(PERF_HEADER, [perf_row(r) for r in headline(records)])
    for t in sorted({r["target"] for r in modeled(records)}):
        lnc = sorted({record_lnc(r) for r in modeled(records, t)})
        lines += [f"## Modeled profile on `{t}`, LNC={'/'.join(str(n) for n in lnc)} ({get_target(t).description}), "
                  "one layer per call", "", "What limits each kernel:", ""]
        lines += limits_summary(records, t) + [""]
        lines += _table(PERF_HEADER, [perf_row(r) for r in modeled(records, t)])
    calibration = info.get("calibration")
    if calibration:
        lines += ["## Calibration against published device measurements", "",
                  "One constant set per generation (no per-kernel factors); kernels are nkilab's own, written in the "
                  "structure of the published ones (`nkilab.harness.perf.calibration`); modeled = kernel + launch, "
                  "as the published whole-launch figures are. `nkilab calibrate` (or `nkilab run --calibrate full`) "
                  "models all the points.", ""]
        lines += _table(CALIBRATION_HEADER, calibration_rows(calibration))
        lines += [f"- {line}" for line in calibration_legend(calibration)] + [""]
    if plots:
        lines += ["## Plots (modeled, one layer per call)", ""] + [f"![{p}]({p})" for p in plots] + [""]
    lines += ["## Not run, and why", ""]
    lines += _table(NOT_RUN_HEADER, not_run_rows(records))
    path = os.path.join(out_dir, "report.md")
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return path
