"""Timelines of a modeled kernel: the performance model's schedule of one trace, as a Chrome/Perfetto trace and as a
Gantt chart (`nkilab bench --problem NAME --timeline FILE.json --timeline-png FILE.png`).

Where the times come from: `nkilab.harness.perf.schedule.schedule` places every traced instruction on its engine
(TensorE, VectorE, ScalarE, GpSimdE of each NeuronCore, in program order) and every DMA transfer on the DMA engines
("queues") its packets occupied and, for software DGE, on GpSimdE while it wrote the descriptors
(`Schedule.dma_pieces`). These are *modeled* times, never a device profile.

Chrome trace event format (the JSON that ui.perfetto.dev and chrome://tracing open): {"traceEvents": [...],
"displayTimeUnit": "ns", "otherData": {...}}; one process per NeuronCore (pid = LNC program id), one thread (track)
per engine and per DMA queue that did work; each instruction a complete event ("ph": "X", "ts"/"dur" in
microseconds) named by its opcode (a transfer's software-DGE descriptors "<opcode> descriptors" on GpSimdE), with
its operands (name, shape, dtype, buffer), FLOPs, HBM bytes and when its result was usable as arguments; tracks
named by metadata events ("ph": "M", process_name / thread_name, and *_sort_index so engines list in a fixed order).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

from nkilab.harness.chips import get_target  # noqa: E402
from nkilab.harness.emulator.trace import Instruction, Trace  # noqa: E402
from nkilab.harness.perf.schedule import Schedule, schedule  # noqa: E402

ENGINE_TRACKS = {"tensor": "TensorE", "vector": "VectorE", "scalar": "ScalarE", "gpsimd": "GpSimdE"}
DMA_TID = 100  # tid of DMA queue q is DMA_TID + q (engines take tids 1..4)
US = 1e6


@dataclass(frozen=True)
class Span:
    """One bar of the timeline: instruction `index` on `track` of NeuronCore `core`, from start_s to end_s (s)."""

    index: int
    core: int
    track: str
    tid: int
    start_s: float
    end_s: float


def spans(trace: Trace, timed: Schedule) -> list[Span]:
    """Every bar of the schedule: one per compute instruction on its engine (start to done: its engine time), one
    per DMA packet on the engine ("queue") that carried it, and software-DGE descriptor writing on GpSimdE."""
    tids = {engine: i + 1 for i, engine in enumerate(ENGINE_TRACKS)}
    out = []
    for i, inst in enumerate(trace.instructions):
        pieces = timed.dma_pieces[i] if timed.dma_pieces else ()
        if inst.engine == "dma":
            # packets on DMA queues; software-DGE descriptors on the compute engine that wrote them (GpSimdE)
            out += [Span(i, inst.program_id, f"DMA queue {q}", DMA_TID + q, t0, t1) if isinstance(q, int)
                    else Span(i, inst.program_id, ENGINE_TRACKS[q], tids[q], t0, t1) for q, t0, t1 in pieces]
        else:
            out.append(Span(i, inst.program_id, ENGINE_TRACKS[inst.engine], tids[inst.engine], timed.start_s[i],
                            timed.done_s[i]))
    return out


def _operand(o) -> str:
    return f"{o.name}{'(w)' if o.is_write else ''}: {list(o.shape)} {o.dtype} @{o.buffer}"


def _args(inst: Instruction, timed: Schedule) -> dict:
    i = inst.index
    return {"index": i, "engine": inst.engine, "operands": [_operand(o) for o in inst.operands],
            "flops": inst.flops, "hbm_bytes": inst.hbm_bytes, "done_us": timed.done_s[i] * US,
            "attrs": {k: v if isinstance(v, (int, float, str, bool)) or v is None else str(v)
                      for k, v in inst.attrs.items()}}


def chrome_trace(trace: Trace, target: str, *, title: str | None = None) -> dict:
    """The modeled schedule of `trace` on `target` as a Chrome trace-event JSON object (see the module docstring)."""
    timed = schedule(trace, get_target(target, neuron=True))
    bars = spans(trace, timed)
    events = []
    for core in sorted({b.core for b in bars}):
        events.append({"name": "process_name", "ph": "M", "pid": core, "tid": 0,
                       "args": {"name": f"NeuronCore {core} ({target}, LNC program {core})"}})
        events.append({"name": "process_sort_index", "ph": "M", "pid": core, "tid": 0, "args": {"sort_index": core}})
    for core, tid, track in sorted({(b.core, b.tid, b.track) for b in bars}):
        events.append({"name": "thread_name", "ph": "M", "pid": core, "tid": tid, "args": {"name": track}})
        events.append({"name": "thread_sort_index", "ph": "M", "pid": core, "tid": tid, "args": {"sort_index": tid}})
    for b in sorted(bars, key=lambda b: (b.start_s, b.tid)):
        inst = trace.instructions[b.index]
        name = inst.opcode + (" descriptors" if inst.engine == "dma" and b.tid < DMA_TID else "")
        events.append({"name": name, "cat": inst.engine, "ph": "X", "ts": b.start_s * US,
                       "dur": (b.end_s - b.start_s) * US, "pid": b.core, "tid": b.tid, "args": _args(inst, timed)})
    return {"traceEvents": events, "displayTimeUnit": "ns",
            "otherData": {"kernel": trace.kernel, "target": target, "lnc": trace.lnc, "title": title or trace.kernel,
                          "makespan_us": timed.makespan_s * US, "instructions": len(trace),
                          "kind": "modeled (nkilab.harness.perf schedule), not a device profile"}}


def write_chrome_trace(trace: Trace, target: str, path: str, *, title: str | None = None) -> str:
    """Write `chrome_trace` to `path` (JSON); returns the path."""
    with open(path, "w") as fh:
        json.dump(chrome_trace(trace, target, title=title), fh)
    return path


def gantt_figure(trace: Trace, target: str, *, title: str | None = None):
    """A Gantt chart of the modeled schedule: one row per NeuronCore engine and DMA queue that did work, bars
    coloured by opcode (left open for the caller)."""
    timed = schedule(trace, get_target(target, neuron=True))
    bars = spans(trace, timed)
    rows = sorted({(b.core, b.tid, b.track) for b in bars})
    row_of = {key: i for i, key in enumerate(rows)}
    opcodes = sorted({trace.instructions[b.index].opcode for b in bars})
    # ten distinct hues first (tab10), then their light shades (tab20's odd entries): a kernel issues a dozen or so
    palette = [matplotlib.colormaps["tab10"](i) for i in range(10)] + [matplotlib.colormaps["tab20"](2 * i + 1)
                                                                       for i in range(10)]
    color = {op: palette[i % len(palette)] for i, op in enumerate(opcodes)}
    fig, ax = plt.subplots(figsize=(13, 0.3 * len(rows) + 1.4))
    # a thin white edge keeps back-to-back transfers on one queue apart; bars under ~3 px (0.25% of the makespan)
    # get none, else their edges would wash a run of short matmuls out to white
    thin = 0.0025 * timed.makespan_s
    groups: dict[tuple, list] = {}
    for b in bars:
        key = (trace.instructions[b.index].opcode, row_of[(b.core, b.tid, b.track)], b.end_s - b.start_s < thin)
        groups.setdefault(key, []).append((b.start_s * US, (b.end_s - b.start_s) * US))
    for (op, row, narrow), xranges in groups.items():
        ax.broken_barh(xranges, (row - 0.4, 0.8), facecolors=color[op], edgecolors="none" if narrow else "white",
                       linewidth=0.3)
    for op in opcodes:
        ax.plot([], [], lw=6, color=color[op], label=op)
    ax.set_yticks(range(len(rows)), [f"core {c} {track}" if len({r[0] for r in rows}) > 1 else track
                                     for c, _, track in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("modeled time [us]")
    ax.set_title(f"{title or trace.kernel} on {target} (LNC={trace.lnc}): modeled schedule, "
                 f"{timed.makespan_s * US:.4g} us, {len(trace)} instructions", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="opcode", title_fontsize=7)
    return fig


def write_gantt(trace: Trace, target: str, path: str, *, title: str | None = None) -> str:
    """Write `gantt_figure` as a PNG; returns the path."""
    fig = gantt_figure(trace, target, title=title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
