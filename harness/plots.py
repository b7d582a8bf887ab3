"""PNG plots of a run, drawn from stored records only (never from live objects).

  roofline_<target>.png   every modeled kernel record of a target at (FLOPs/byte, achieved FLOP/s), under the
                          target's bf16 and fp8 compute roofs and its HBM roof
  latency_vs_batch.png    modeled decode latency per call vs batch, one line per kernel/projection, roofline
                          bound dashed; one panel per target
  latency_vs_context.png  modeled paged-attention latency vs context, one line per batch
  energy_vs_batch.png     modeled J/token vs batch; energy_vs_context.png: vs context

Every axis carries its unit; every title says "modeled" (these plots show model output only).
"""

from __future__ import annotations

import os
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

from nkilab.harness.perf.chips import get_target  # noqa: E402

_COLORS = {"qmatmul": "tab:blue", "attention": "tab:orange", "write_kv_cache": "tab:green",
           "paged_attention": "tab:red"}


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
        ax.scatter(p["flops"] / p["hbm_bytes"], p["flops"] / p["latency_s"], color=_COLORS.get(op, "gray"),
                   s=18, label=None if op in seen else op, zorder=3)
        seen.add(op)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity [FLOP/byte of HBM traffic]")
    ax.set_ylabel("achieved [FLOP/s]")
    ax.set_title(f"{target} (lnc={lnc}): modeled kernels on the roofline")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _decode_rows(records, target):
    return [r for r in _modeled(records, target) if r["problem"].get("phase") == "decode"]


def _batch_key(r):
    return "t" if r["kernel"] == "write_kv_cache" else ("m" if r["kernel"] == "qmatmul" else "num_seqs")


def _line_label(r):
    p = r["problem"]
    if r["kernel"] == "qmatmul":
        return f"qmatmul {p.get('projection', '')}"
    if r["kernel"] == "paged_attention":
        return f"paged_attention ctx {p.get('context')}"
    return r["kernel"]


def _by_batch(records, target, y_fn):
    rows = _decode_rows(records, target)
    lines = defaultdict(list)
    for r in rows:
        y = y_fn(r)
        if y is not None:
            lines[_line_label(r)].append((r["problem"][_batch_key(r)], y, r))
    return {k: sorted(v, key=lambda t: t[0]) for k, v in lines.items()}


def _panel_figure(targets):
    """One panel per target, two per row; unused panels hidden."""
    cols = min(2, len(targets))
    rows = -(-len(targets) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 4.2 * rows), squeeze=False)
    flat = list(axes.flat)
    for ax in flat[len(targets):]:
        ax.set_visible(False)
    return fig, flat[:len(targets)]


def batch_plot(records, targets, path: str, *, energy: bool) -> str | None:
    """Modeled latency (or J/token) per call vs decode batch, one panel per target."""
    targets = [t for t in targets if _decode_rows(records, t)]
    if not targets:
        return None
    fig, axes = _panel_figure(targets)
    for ax, target in zip(axes, targets):
        if energy:
            lines = _by_batch(records, target, lambda r: (r.get("energy") or {}).get("joules_per_token"))
        else:
            lines = _by_batch(records, target, lambda r: r["perf"]["latency_s"] * 1e6)
        for label, pts in sorted(lines.items()):
            (line,) = ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, label=label)
            color = line.get_color()
            if not energy:
                bound = [p[2]["perf"].get("roofline_s") for p in pts]
                if all(b is not None for b in bound):
                    ax.plot([p[0] for p in pts], [b * 1e6 for b in bound], ls="--", lw=0.8, color=color)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("decode batch [sequences]")
        ax.set_ylabel("modeled J/token [J]" if energy else "modeled latency per call [us]")
        ax.set_title(f"{target}: {'energy per token' if energy else 'latency (dashed: roofline bound)'} (modeled)",
                     fontsize=9)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def context_plot(records, targets, path: str, *, energy: bool) -> str | None:
    """Modeled paged-attention latency (or J/token) vs context length, one line per batch, one panel per target."""
    def rows_of(t):
        return [r for r in _decode_rows(records, t) if r["kernel"] == "paged_attention"]

    targets = [t for t in targets if rows_of(t)]
    if not targets:
        return None
    fig, axes = _panel_figure(targets)
    for ax, target in zip(axes, targets):
        lines = defaultdict(list)
        for r in rows_of(target):
            y = (r.get("energy") or {}).get("joules_per_token") if energy else r["perf"]["latency_s"] * 1e6
            if y is not None:
                lines[r["problem"]["num_seqs"]].append((r["problem"]["context"], y))
        for batch, pts in sorted(lines.items()):
            pts.sort()
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, label=f"batch {batch}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("context length [tokens]")
        ax.set_ylabel("modeled J/token [J]" if energy else "modeled latency per call [us]")
        ax.set_title(f"{target}: paged_attention {'energy per token' if energy else 'latency'} (modeled)",
                     fontsize=9)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_plots(records, out_dir: str) -> list[str]:
    """Every plot this run's records support, written into out_dir; returns their file names."""
    targets = sorted({r["target"] for r in _modeled(records)})
    made = [roofline_plot(records, t, os.path.join(out_dir, f"roofline_{t}.png")) for t in targets]
    made += [
        batch_plot(records, targets, os.path.join(out_dir, "latency_vs_batch.png"), energy=False),
        context_plot(records, targets, os.path.join(out_dir, "latency_vs_context.png"), energy=False),
        batch_plot(records, targets, os.path.join(out_dir, "energy_vs_batch.png"), energy=True),
        context_plot(records, targets, os.path.join(out_dir, "energy_vs_context.png"), energy=True),
    ]
    return [os.path.basename(p) for p in made if p]
