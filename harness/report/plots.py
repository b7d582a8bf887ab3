"""PNG plots of a run, drawn from stored records only (never from live objects).

  roofline_<target>.png   every modeled kernel record of a target at (FLOPs/byte, achieved FLOP/s), under the
                          target's bf16 and fp8 compute roofs and its HBM roof
  latency_vs_batch.png    modeled decode latency per call vs batch, one line per kernel series (`Op.plot.series`,
                          e.g. one per qmatmul projection), roofline bound dashed; one panel per target
  latency_vs_context.png  modeled latency vs context of the ops swept over context (`Op.plot.context`: paged
                          attention), one line per batch, roofline bound dashed
  energy_vs_batch.png     modeled J/token vs batch; energy_vs_context.png: vs context

Where a record sits comes from its op's declaration (`Op.plot`); each op keeps one colour (matplotlib's cycle, in
OPS order). Every axis carries its unit; every title says "modeled" (these plots show model output only).
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

from nkilab.harness.chips import get_target  # noqa: E402
from nkilab.harness.report.records import size  # noqa: E402
from nkilab.kernels._registry import OPS, get, ops_list  # noqa: E402

_CONTEXT_OPS = tuple(op.name for op in ops_list() if op.plot.context)  # the ops the context sweep shows

def _modeled(records, target=None):
    return [r for r in records if r.get("status") == "ok" and (r.get("perf") or {}).get("kind") == "modeled"
            and r["perf"].get("latency_s") and (target is None or r["target"] == target)]


def roofline_plot(records, target: str, path: str) -> str | None:
    """Roofline of one Neuron target with every modeled record on it; None when there is nothing to draw."""
    rows = _modeled(records, target)
    if not rows:
        return None
    tgt = get_target(target)
    lnc = max(r["perf"].get("lnc") or 1 for r in rows)
    bw = tgt.bandwidth(lnc=lnc)
    fig, ax = plt.subplots(figsize=(7, 5))
    xs = [r["perf"]["flops"] / r["perf"]["hbm_bytes"] for r in rows if r["perf"]["flops"] and r["perf"]["hbm_bytes"]]
    lo, hi = (min(xs + [0.1]) / 2, max(xs + [1e3]) * 2)
    grid = [lo * (hi / lo) ** (i / 200) for i in range(201)]
    for dtype, style in (("bfloat16", "-"), ("float8_e4m3", ":"), ("float32", "--")):
        peak = tgt.peak(dtype, lnc=lnc)
        ax.plot(grid, [min(peak, x * bw) for x in grid], "k" + style, lw=1,
                label=f"roof {dtype} ({peak / 1e12:.0f} TFLOP/s, {bw / 1e9:.0f} GB/s)")
    seen = set()
    for r in rows:
        p = r["perf"]
        if not p["flops"] or not p["hbm_bytes"]:
            continue
        op = r["kernel"]
        ax.scatter(p["flops"] / p["hbm_bytes"], p["flops"] / p["latency_s"], color=_color(op),
                   s=18, label=None if op in seen else op, zorder=3)
        seen.add(op)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity [FLOP/byte of HBM traffic]")
    ax.set_ylabel("achieved [FLOP/s]")
    ax.set_title(f"{target} (lnc={lnc}): modeled kernels on the roofline")
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, path)


def _decode_rows(records, target):
    return [r for r in _modeled(records, target) if r["problem"].get("phase") == "decode"]


def _color(kernel: str) -> str:
    """One colour per op, in OPS order (gray for a kernel this version does not register)."""
    return f"C{OPS.index(kernel) % 10}" if kernel in OPS else "gray"


def _batch_series(r):
    """(kernel, the op's series key): one line of the batch sweep, sorted by kernel then numerically."""
    series = get(r["kernel"]).plot.series
    return (r["kernel"], series(r["problem"])[0] if series else ())


def _batch_label(r) -> str:
    series = get(r["kernel"]).plot.series
    return series(r["problem"])[1] if series else r["kernel"]


def _context_param(r) -> str | None:
    return get(r["kernel"]).plot.context


def _context_label(r) -> str:
    """A context-sweep line: one per batch (and per op, when more than one op is swept)."""
    return f"batch {size(r)}" if len(_CONTEXT_OPS) == 1 else f"{r['kernel']} batch {size(r)}"


@dataclass(frozen=True)
class _Sweep:
    """One x axis: which decode records it shows, their x value and the line (series) each belongs to."""

    xlabel: str
    subject: str                      # what the title says is plotted
    keep: Callable[[dict], bool]
    x: Callable[[dict], float]
    series: Callable[[dict], object]  # sortable key of the record's line
    label: Callable[[dict], str]      # legend text of a line, from one of its records


_SWEEPS = {
    "batch": _Sweep("decode batch [sequences]", "", lambda r: True, size, _batch_series, _batch_label),
    "context": _Sweep("context length [tokens]", " ".join(_CONTEXT_OPS) + " ", lambda r: r["kernel"] in _CONTEXT_OPS,
                      lambda r: r["problem"][_context_param(r)], lambda r: (r["kernel"], size(r)), _context_label),
}


def _latency_us(r):
    return r["perf"]["latency_s"] * 1e6


def _roofline_us(r):
    bound = r["perf"].get("roofline_s")
    return None if bound is None else bound * 1e6


def _joules_per_token(r):
    return (r.get("energy") or {}).get("joules_per_token")


def _panel_figure(targets):
    """One panel per target, two per row, room for a legend right of each; unused panels hidden."""
    cols = min(2, len(targets))
    rows = -(-len(targets) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(7.5 * cols, 4.2 * rows), squeeze=False)
    flat = list(axes.flat)
    for ax in flat[len(targets):]:
        ax.set_visible(False)
    return fig, flat[:len(targets)]


def _save(fig, path: str) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def sweep_figure(records, targets, *, x: str, energy: bool):
    """The figure of `sweep_plot` (left open for the caller to save or inspect); None when nothing to draw."""
    if x not in _SWEEPS:
        raise ValueError(f"x: must be one of {tuple(_SWEEPS)}, got {x!r}")
    sweep = _SWEEPS[x]
    y_of = _joules_per_token if energy else _latency_us

    def rows_of(target):
        return [r for r in _decode_rows(records, target) if sweep.keep(r) and y_of(r) is not None]

    targets = [t for t in targets if rows_of(t)]
    if not targets:
        return None
    fig, axes = _panel_figure(targets)
    for ax, target in zip(axes, targets):
        lines = defaultdict(list)
        for r in rows_of(target):
            lines[sweep.series(r)].append(r)
        bounded = False
        for _, rows in sorted(lines.items()):
            rows.sort(key=sweep.x)
            xs = [sweep.x(r) for r in rows]
            (line,) = ax.plot(xs, [y_of(r) for r in rows], marker="o", ms=3, label=sweep.label(rows[0]))
            bound = [_roofline_us(r) for r in rows]
            if not energy and all(b is not None for b in bound):
                # tick markers keep a one-point series' bound visible; same color as its line
                ax.plot(xs, bound, ls="--", lw=0.8, marker="_", ms=8, color=line.get_color())
                bounded = True
        if bounded:
            ax.plot([], [], "k--", lw=0.8, label="roofline bound (dashed, line's color)")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel(sweep.xlabel)
        ax.set_ylabel("modeled energy per token [J/token]" if energy else "modeled latency per call [us]")
        ax.set_title(f"{target}: {sweep.subject}{'energy per token' if energy else 'latency'} (modeled)", fontsize=9)
        ax.legend(fontsize=6, handlelength=3, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def sweep_plot(records, targets, path: str, *, x: str, energy: bool) -> str | None:
    """Modeled decode latency per call (or J/token) vs `x` ("batch" | "context"), one panel per target.

    x="batch": one line per op series (`Op.plot.series`: a qmatmul projection, a paged-attention context, ...);
    x="context": the ops with a context axis (`Op.plot.context`), one line per batch. Latency panels draw each line's roofline bound (the record's `perf.roofline_s`) dashed
    in the line's color. Returns the path, or None when the records hold nothing to draw.
    """
    fig = sweep_figure(records, targets, x=x, energy=energy)
    return None if fig is None else _save(fig, path)


def write_plots(records, out_dir: str) -> list[str]:
    """Every plot this run's records support, written into out_dir; returns their file names."""
    targets = sorted({r["target"] for r in _modeled(records)})
    made = [roofline_plot(records, t, os.path.join(out_dir, f"roofline_{t}.png")) for t in targets]
    made += [sweep_plot(records, targets, os.path.join(out_dir, f"{metric}_vs_{x}.png"), x=x, energy=metric == "energy")
             for metric in ("latency", "energy") for x in ("batch", "context")]
    return [os.path.basename(p) for p in made if p]
