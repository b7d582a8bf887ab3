"""PNG plots of a run, drawn from stored records only (never from live objects).

  roofline_<target>.png   every modeled kernel record of a target at (FLOPs/byte, achieved FLOP/s), under the
                          target's bf16, fp8 and fp32 compute roofs and its HBM roof for the records' LNC; each point
                          labelled with its problem's shape (as `nkilab bench --problem` takes it), its colour the
                          op, its marker the phase
  latency_vs_batch.png    modeled decode latency per call vs batch: one panel per kernel (rows) and target
                          (columns), one line per op series (`Op.plot.series`: a qmatmul projection, a paged-attention
                          context, ...), its roofline bound dashed in its colour; ticks at the batches modeled
  latency_vs_context.png  the same vs context, for the ops swept over context (`Op.plot.context`), one line per batch
  energy_vs_batch.png     modeled J/token of one layer's call vs batch; energy_vs_context.png: vs context

Where a record sits comes from its op's declaration (`Op.plot`); each op keeps one colour in the roofline
(matplotlib's cycle, in OPS order). Every axis carries its unit; every title says "modeled" (these plots show
model output only), the LNC the kernels launched with, and the energy plots say "one layer".
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
from matplotlib.ticker import NullLocator  # noqa: E402

from nkilab.harness.chips import get_target  # noqa: E402
from nkilab.harness.report.records import size  # noqa: E402
from nkilab.kernels._registry import OPS, get  # noqa: E402

PHASE_MARKERS = {"decode": "o", "prefill": "s", "chunked": "^", "mixed": "D"}
PANEL_IN = (3.7, 2.7)  # width, height of one sweep panel, inches


def _modeled(records, target=None):
    return [r for r in records if r.get("status") == "ok" and r.get("stage", "model") == "model"
            and (r.get("perf") or {}).get("kind") == "modeled" and r["perf"].get("latency_s")
            and (target is None or r["target"] == target)]


def _lnc(rows) -> int:
    """The LNC of a target's records (the largest, should a folder mix them)."""
    return max((r.get("lnc") or r["perf"].get("lnc") or 1) for r in rows)


def _color(kernel: str) -> str:
    """One colour per op, in OPS order (gray for a kernel this version does not register)."""
    return f"C{OPS.index(kernel) % 10}" if kernel in OPS else "gray"


def roofline_figure(records, target: str):
    """The roofline figure of one Neuron target with every modeled record on it (left open); None when empty."""
    rows = [r for r in _modeled(records, target) if r["perf"]["flops"] and r["perf"]["hbm_bytes"]]
    if not rows:
        return None
    tgt = get_target(target)
    lnc = _lnc(rows)
    bw = tgt.bandwidth(lnc=lnc)
    fig, ax = plt.subplots(figsize=(9, 6.5))
    xs = [r["perf"]["flops"] / r["perf"]["hbm_bytes"] for r in rows]
    lo, hi = min(xs + [0.1]) / 2, max(xs + [1e3]) * 2
    grid = [lo * (hi / lo) ** (i / 200) for i in range(201)]
    for dtype, style in (("bfloat16", "-"), ("float8_e4m3", ":"), ("float32", "--")):
        peak = tgt.peak(dtype, lnc=lnc)
        ax.plot(grid, [min(peak, x * bw) for x in grid], "k" + style, lw=1,
                label=f"roof {dtype} ({peak / 1e12:.0f} TFLOP/s, {bw / 1e9:.0f} GB/s)")
    seen = set()
    points = []
    for r in sorted(rows, key=lambda r: r["problem"]["name"]):
        p, op, phase = r["perf"], r["kernel"], r["problem"].get("phase", "decode")
        x, y = p["flops"] / p["hbm_bytes"], p["flops"] / p["latency_s"]
        key = (op, phase)
        ax.scatter(x, y, color=_color(op), marker=PHASE_MARKERS.get(phase, "x"), s=22, zorder=3,
                   label=None if key in seen else f"{op} ({phase})")
        seen.add(key)
        points.append((x, y, r["problem"]["name"].rsplit("/", 1)[-1], _color(op)))  # the shape, as bench names it
    ax.set_xscale("log")
    ax.set_yscale("log")
    _label_points(fig, ax, points)
    ax.set_xlabel("arithmetic intensity [FLOP/byte of HBM traffic]")
    ax.set_ylabel("achieved [FLOP/s]")
    ax.set_title(f"{target} (LNC={lnc}): modeled kernels on the roofline, one layer per call")
    ax.legend(fontsize=7, loc="lower right")
    return fig


def _label_points(fig, ax, points, fontsize: float = 5.5) -> None:
    """Label each (x, y, text, colour) point to its right; a label that would cover one placed before moves up
    (bottom to top) and gets a leader line to its point."""
    fig.canvas.draw()  # fixes the data -> pixel transform
    line_px = fontsize * 1.25 * fig.dpi / 72
    placed: list[tuple[float, float, float, float]] = []
    for x, y, text, color in sorted(points, key=lambda p: (p[1], p[0])):
        px, py = ax.transData.transform((x, y))
        x0, y0 = px + 4, py - line_px / 2
        width = 0.62 * fontsize * len(text) * fig.dpi / 72
        while any(x0 < b[2] and b[0] < x0 + width and y0 < b[3] and b[1] < y0 + line_px for b in placed):
            y0 += line_px
        placed.append((x0, y0, x0 + width, y0 + line_px))
        moved = y0 - (py - line_px / 2) > 0.5 * line_px
        to_points = 72 / fig.dpi
        ax.annotate(text, (x, y), xytext=(4, (y0 - py) * to_points), textcoords="offset points", fontsize=fontsize,
                    color=color, va="bottom",
                    arrowprops=dict(arrowstyle="-", lw=0.3, color=color, shrinkA=0, shrinkB=2) if moved else None)


def roofline_plot(records, target: str, path: str) -> str | None:
    """Roofline of one Neuron target with every modeled record on it; None when there is nothing to draw."""
    fig = roofline_figure(records, target)
    return None if fig is None else _save(fig, path)


def _series_of(r):
    """(sort key, label) of the record's line in the batch sweep: its op's series, or one line per op."""
    series = get(r["kernel"]).plot.series
    return series(r["problem"]) if series else ((), r["kernel"])


def _context_param(r) -> str | None:
    return get(r["kernel"]).plot.context


@dataclass(frozen=True)
class _Sweep:
    """One x axis: which decode records it shows, their x value and the line (series) each belongs to."""

    xlabel: str
    keep: Callable[[dict], bool]
    x: Callable[[dict], float]
    series: Callable[[dict], tuple]   # sortable key of the record's line within its kernel's panel
    label: Callable[[dict], str]      # legend text of a line, from one of its records


_SWEEPS = {
    "batch": _Sweep("decode batch [sequences]", lambda r: True, size, lambda r: _series_of(r)[0],
                    lambda r: _series_of(r)[1]),
    "context": _Sweep("context length [tokens]", lambda r: _context_param(r) is not None,
                      lambda r: r["problem"][_context_param(r)], size, lambda r: f"batch {size(r)}"),
}


def _latency_us(r):
    return r["perf"]["latency_s"] * 1e6


def _roofline_us(r):
    bound = r["perf"].get("roofline_s")
    return None if bound is None else bound * 1e6


def _joules_per_token(r):
    return (r.get("energy") or {}).get("joules_per_token")


def _save(fig, path: str) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _draw_panel(ax, rows, sweep: _Sweep, y_of, energy: bool, colors: dict) -> None:
    """The lines of one kernel on one target, each in its series' colour, the roofline bound dashed."""
    lines = defaultdict(list)
    for r in rows:
        lines[sweep.series(r)].append(r)
    for key, series in sorted(lines.items()):
        series.sort(key=sweep.x)
        xs = [sweep.x(r) for r in series]
        ax.plot(xs, [y_of(r) for r in series], marker="o", ms=3, color=colors[key], label=sweep.label(series[0]))
        bound = [_roofline_us(r) for r in series]
        if not energy and all(b is not None for b in bound):
            # tick markers keep a one-point series' bound visible
            ax.plot(xs, bound, ls="--", lw=0.8, marker="_", ms=8, color=colors[key])
    ticks = sorted({sweep.x(r) for r in rows})
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(ticks, [str(t) for t in ticks], fontsize=7)
    ax.xaxis.set_minor_locator(NullLocator())
    ax.tick_params(axis="y", labelsize=7)


def sweep_figure(records, targets, *, x: str, energy: bool):
    """The figure of `sweep_plot` (left open for the caller to save or inspect); None when nothing to draw.
    Panels: one row per kernel (OPS order), one column per target; `fig.axes` lists them row by row."""
    if x not in _SWEEPS:
        raise ValueError(f"x: must be one of {tuple(_SWEEPS)}, got {x!r}")
    sweep = _SWEEPS[x]
    y_of = _joules_per_token if energy else _latency_us
    cells = defaultdict(list)
    for r in _modeled(records):
        if r["problem"].get("phase") == "decode" and r["target"] in targets and sweep.keep(r) and y_of(r) is not None:
            cells[(r["kernel"], r["target"])].append(r)
    kernels = sorted({k for k, _ in cells}, key=lambda k: (OPS.index(k) if k in OPS else len(OPS), k))
    columns = [t for t in targets if any((k, t) in cells for k in kernels)]
    if not cells:
        return None
    fig, axes = plt.subplots(len(kernels), len(columns), squeeze=False, sharey="row",
                             figsize=(PANEL_IN[0] * len(columns) + 1.6, PANEL_IN[1] * len(kernels) + 0.6))
    metric = "energy per token, one layer [J/token]" if energy else "latency per call [us]"
    for row, kernel in enumerate(kernels):
        keys = sorted({sweep.series(r) for t in columns for r in cells.get((kernel, t), [])})
        colors = {key: f"C{i % 10}" for i, key in enumerate(keys)}
        for col, target in enumerate(columns):
            ax = axes[row][col]
            rows = cells.get((kernel, target), [])
            if not rows:
                ax.set_visible(False)
                continue
            _draw_panel(ax, rows, sweep, y_of, energy, colors)
            ax.set_title(f"{kernel} on {target} (LNC={_lnc(rows)})", fontsize=8)
            if row == len(kernels) - 1 or not cells.get((kernels[row + 1], target)):
                ax.set_xlabel(sweep.xlabel, fontsize=8)
            if col == 0:
                ax.set_ylabel(f"modeled {metric}", fontsize=7)
        handles, labels = next(a for a in axes[row] if a.get_visible()).get_legend_handles_labels()
        if not energy:
            handles.append(plt.Line2D([], [], color="k", ls="--", lw=0.8))
            labels.append("roofline bound (dashed)")
        axes[row][-1].legend(handles, labels, fontsize=6, handlelength=3, loc="upper left",
                             bbox_to_anchor=(1.02, 1.0))
    what = "energy per token of one layer's call" if energy else "latency per call, one layer"
    fig.suptitle(f"Modeled decode {what} vs {x}", fontsize=10)
    return fig


def sweep_plot(records, targets, path: str, *, x: str, energy: bool) -> str | None:
    """Modeled decode latency per call (or J/token of one layer's call) vs `x` ("batch" | "context"), one panel per
    kernel and target.

    x="batch": one line per op series (`Op.plot.series`: a qmatmul projection, a paged-attention context, ...);
    x="context": the ops with a context axis (`Op.plot.context`), one line per batch. Latency panels draw each
    line's roofline bound (the record's `perf.roofline_s`) dashed in the line's color. Returns the path, or None
    when the records hold nothing to draw.
    """
    fig = sweep_figure(records, targets, x=x, energy=energy)
    return None if fig is None else _save(fig, path)


def write_plots(records, out_dir: str, on_plot: Callable[[str], None] | None = None) -> list[str]:
    """Every plot this run's records support, written into out_dir; returns their file names. `on_plot(name)` is
    called before each plot is drawn (progress)."""
    targets = sorted({r["target"] for r in _modeled(records)})
    jobs = [(f"roofline_{t}.png", lambda path, t=t: roofline_plot(records, t, path)) for t in targets]
    jobs += [(f"{metric}_vs_{x}.png",
              lambda path, x=x, metric=metric: sweep_plot(records, targets, path, x=x, energy=metric == "energy"))
             for metric in ("latency", "energy") for x in ("batch", "context")]
    made = []
    for name, draw in jobs:
        if on_plot is not None:
            on_plot(name)
        if draw(os.path.join(out_dir, name)):
            made.append(name)
    return made
