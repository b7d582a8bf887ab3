"""Rendering of the cost of a token: the `nkilab cost` breakdown, the headline table and the waterfall in report.md,
and the waterfall PNG. The breakdown says whether its row is modeled or measured; the report.md tables and the PNG are
modeled (they say so). `run_section` is `nkilab run`'s hook.
"""

from __future__ import annotations

import json
import os
from typing import Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

from nkilab.harness.cache import Cache  # noqa: E402
from nkilab.harness.chips import GPU_TARGETS, NEURON_TARGETS  # noqa: E402
from nkilab.harness.cost.calls import Step  # noqa: E402
from nkilab.harness.cost.composer import SCHEMES, TokenCost, compose  # noqa: E402
from nkilab.harness.cost.waterfall import WaterfallStep, waterfall  # noqa: E402

HEADLINE_HEADER = ("model", "phase", "target", "instance", "scheme", "lnc", "tp", "tokens/s (instance)", "J/token",
                   "$/Mtoken", "kind")
WATERFALL_HEADER = ("step", "target", "scheme", "kernels", "tp", "$/Mtoken", "Δ$ %", "J/token", "ΔJ %", "kind")
WATERFALL_PNG = "cost_waterfall.png"
COST_JSON = "cost.json"


def _num(x, fmt: str) -> str:
    return "—" if x is None else format(x, fmt)


def cost_text(c: TokenCost) -> str:
    """The breakdown and headline figures of one composed step, as plain text."""
    ctx = f"ctx {c.ctx}" if c.ctx is not None else ("ragged contexts" if c.batch else "")
    lnc = f" (LNC={c.lnc}: {c.deployment['ranks_per_chip']} ranks per chip)" if c.lnc else ""
    lines = [f"{c.model} {c.phase} (batch {c.batch} {ctx}, prefill {c.prefill}) {c.scheme} on {c.target}{lnc}, "
             f"tp={c.tp}, {c.deployment['replicas']} replica(s) per {c.instance}; {c.kernels} kernels; all figures "
             f"{c.kind}", f"{'kernel':26s} {'calls':>6s} {'latency':>12s} {'share':>7s}  method"]
    for b in c.breakdown:
        lines.append(f"{b['kernel']:26s} {b['calls']:6d} {b['latency_s'] * 1e3:9.3f} ms {b['share']:7.1%}  "
                     f"{b['method']}")
        if b.get("note"):
            lines.append(f"{'':26s} note: {b['note']}")
    price = (f"${c.usd_per_hour:g}/h ({c.price_source})" if c.usd_per_hour is not None
             else f"price unknown: {c.price_reason}")
    lines += [f"step latency {c.latency_s_per_step * 1e3:.3f} ms for {c.tokens_per_step} {c.token_kind} tokens",
              f"tokens/s: {c.tokens_per_s:.1f} per instance, {c.tokens_per_s_per_chip:.1f} per chip, "
              f"{c.tokens_per_s_per_rank:.1f} per rank (logical core / GPU), {c.tokens_per_s_per_core:.1f} per "
              "NeuronCore / GPU",
              f"J/token {c.joules_per_token:.4g} ({c.energy_kind}: {c.energy_assumption})",
              f"$/Mtoken {_num(c.usd_per_mtoken, '.4g')} ({c.token_kind}); {price}"]
    return "\n".join(lines)


def headline_row(c: TokenCost) -> tuple[str, ...]:
    return (c.model, c.phase, c.target, c.instance, c.scheme, _num(c.lnc, "d"), str(c.tp), f"{c.tokens_per_s:.1f}",
            f"{c.joules_per_token:.4g}", _num(c.usd_per_mtoken, ".4g"), c.kind)


def waterfall_row(s: WaterfallStep) -> tuple[str, ...]:
    c = s.cost
    return (s.label, c.target, c.scheme, c.kernels, str(c.tp), _num(c.usd_per_mtoken, ".4g"),
            _num(s.usd_change_pct, "+.1f"), f"{c.joules_per_token:.4g}", _num(s.joules_change_pct, "+.1f"), c.kind)


def markdown_table(header, rows) -> list[str]:
    return (["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            + ["| " + " | ".join(row) + " |" for row in rows] + [""])


def waterfall_png(steps: list[WaterfallStep], path: str, title: str) -> str:
    """Two panels ($/Mtoken, J/token) of bars per step, each labelled with its % change; returns `path`."""
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    labels = [s.label.replace(": ", ":\n") for s in steps]
    panels = ((axes[0], [s.cost.usd_per_mtoken for s in steps], [s.usd_change_pct for s in steps], "$ / Mtoken"),
              (axes[1], [s.cost.joules_per_token for s in steps], [s.joules_change_pct for s in steps], "J / token"))
    for ax, values, changes, unit in panels:
        xs = range(len(steps))
        heights = [v if v is not None else 0.0 for v in values]
        bars = ax.bar(xs, heights, color=["#888888"] + ["#1f77b4"] * (len(steps) - 2) + ["#2ca02c"])
        for bar, value, change in zip(bars, values, changes):
            text = "no price" if value is None else (f"{change:+.0f}%" if change is not None else f"{value:.3g}")
            ax.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom",
                        fontsize=8)
        ax.set_xticks(list(xs), labels, fontsize=7, rotation=30, ha="right")
        ax.set_ylabel(f"{unit} (modeled)")
        ax.set_title(f"{unit}, each step vs the previous (modeled)", fontsize=10)
    fig.suptitle(title + " — modeled", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_section(out_dir: str, *, model: str, steps: list[Step], targets, cache: Cache | None = None,
                schemes=tuple(SCHEMES), lnc: int | None = None,
                progress: Callable[[str], None] | None = None) -> list[str]:
    """Compose the headline table (every step x target x scheme; Neuron ranks of `lnc` cores, None = each target's
    default) and one waterfall per step (the first Neuron target), write the waterfall PNGs and `cost.json` (every composed point as `TokenCost.to_dict`, and the
    waterfalls) into `out_dir`; returns the report.md lines. Points whose deployment does not fit are listed with
    the reason."""
    cache = cache if cache is not None else Cache()
    rows, skipped, lines = [], [], ["## Cost of a token (modeled: nkilab.harness.cost)", ""]
    stored = {"headline": [], "waterfalls": []}
    for step in steps:
        for target in targets:
            for scheme in schemes:
                try:
                    cost = compose(model, step, scheme, target, lnc=lnc if target in NEURON_TARGETS else None,
                                   cache=cache, progress=progress)
                except ValueError as exc:
                    skipped.append(f"- {step.phase} {target} {scheme}: {exc}")
                    continue
                rows.append(headline_row(cost))
                stored["headline"].append(cost.to_dict())
    lines += ["Per step of one replica: every kernel call of every layer modeled (NKI traces on Neuron, the "
              "roofline-efficiency model on GPUs and for GEMMs without an NKI kernel), plus launch costs and TP "
              "collectives; $/Mtoken from on-demand prices with their source (`nkilab cost --json` shows it).", ""]
    lines += markdown_table(HEADLINE_HEADER, rows) + skipped + ([""] if skipped else [])
    neuron = next((t for t in targets if t in NEURON_TARGETS), None)
    gpu = next((t for t in targets if t in GPU_TARGETS), "h100")
    for i, step in enumerate(steps if neuron else []):
        wf = waterfall(model, step, gpu=gpu, neuron=neuron, lnc=lnc, cache=cache, progress=progress)
        name = WATERFALL_PNG if i == 0 else WATERFALL_PNG.replace(".png", f"_{step.phase}.png")
        title = f"{model} {step.phase} ({step.tokens} tokens/step): {gpu} -> {neuron}"
        waterfall_png(wf, os.path.join(out_dir, name), title)
        lines += [f"### Waterfall: {title}", "", f"![waterfall]({name})", ""]
        lines += markdown_table(WATERFALL_HEADER, [waterfall_row(s) for s in wf])
        stored["waterfalls"].append({"title": title, "steps": [s.to_dict() for s in wf]})
    with open(os.path.join(out_dir, COST_JSON), "w") as fh:
        json.dump(stored, fh, indent=1)
    return lines
