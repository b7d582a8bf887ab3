"""`nkilab sweep`: the modeled pass of a run over any model, grid, targets, ops and weight schemes, as tasks on Ray.

    nkilab sweep [--model M] [--grid quick|default|full] [--targets T,...] [--ops ...] [--phases ...]
                 [--schemes int8,...] [--out DIR] [--workers N] [--address ADDR] [--resume DIR] [--cache DIR]

Records stream into DIR/results.jsonl as tasks finish; `--resume DIR` continues an interrupted sweep in DIR (the
records there are kept, only the missing tasks run). report.md and the plots are rendered at the end, from the file.
"""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from nkilab.harness.chips import NEURON_TARGETS
from nkilab.harness.cli_args import add_cache_arguments, csv_of, power_override
from nkilab.harness.report.console import console
from nkilab.harness.report.markdown import write_report
from nkilab.harness.report.run_info import write_run_info
from nkilab.harness.report.plots import write_plots
from nkilab.harness.sweep.runner import sweep
from nkilab.harness.sweep.tasks import plan, sweep_run_config
from nkilab.harness.workloads import GRIDS, MODELS, PHASES, Quant
from nkilab.kernels._registry import OPS
from nkilab.reference.quant import SCHEMES


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register `sweep` on the main CLI's subparsers (its handler set as `handler`)."""
    p = subparsers.add_parser("sweep", help="the modeled pass as Ray tasks, streamed into a run folder")
    p.add_argument("--model", choices=tuple(MODELS), default="llama-3.1-70b",
                   help="real shapes to model (default: llama-3.1-70b)")
    p.add_argument("--grid", choices=tuple(GRIDS), default="default",
                   help="batch/context grid: quick | default | full (default: default)")
    p.add_argument("--targets", type=csv_of(NEURON_TARGETS, "target"), default=NEURON_TARGETS,
                   help=f"Neuron targets, comma-separated (default: {','.join(NEURON_TARGETS)})")
    p.add_argument("--ops", type=csv_of(OPS, "op"), default=OPS,
                   help=f"ops, comma-separated (default: {','.join(OPS)})")
    p.add_argument("--phases", type=csv_of(PHASES, "phase"), default=PHASES,
                   help=f"workload phases, comma-separated (default: {','.join(PHASES)})")
    p.add_argument("--schemes", type=csv_of(SCHEMES, "scheme"), default=SCHEMES,
                   help="qmatmul weight schemes (default all)")
    p.add_argument("--group-size", type=int, default=None, help="qmatmul quant group size (default per channel)")
    p.add_argument("--power-w", type=power_override, action="append", default=[], metavar="TARGET=WATTS",
                   help="override a target's assumed chip power, e.g. trn2=450; repeatable (default: the table's)")
    p.add_argument("--out", default=None, help="run folder (default runs/<UTC timestamp>/)")
    p.add_argument("--resume", default=None, metavar="DIR",
                   help="continue the sweep in DIR, skipping done tasks (default: a new sweep)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="Ray CPUs of a local cluster (default: this machine's cores); 1 = in-process")
    p.add_argument("--address", default=None, help="Ray cluster to join (default $RAY_ADDRESS, else local)")
    p.add_argument("--no-plots", action="store_true", help="write no PNG plots (default: plots are written)")
    add_cache_arguments(p)
    p.set_defaults(handler=cmd_sweep)
    return p


def cmd_sweep(args, command: str) -> int:
    out = console()
    if args.workers < 1:
        out.print(f"--workers must be >= 1, got {args.workers}")
        return 2
    folder = args.resume or args.out or os.path.join("runs", time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))
    path = os.path.join(folder, "results.jsonl")
    if args.resume is None and os.path.exists(path):
        out.print(f"{path} exists: pass --resume {folder} to continue that sweep, or another --out")
        return 2
    os.makedirs(folder, exist_ok=True)
    t0 = time.perf_counter()
    quants = tuple(Quant(s, args.group_size) for s in args.schemes)
    tasks = plan(model=args.model, grid=args.grid, phases=args.phases, targets=args.targets, ops=args.ops,
                 quants=quants, run=sweep_run_config(dict(args.power_w), args.cache, use_cache=not args.no_cache))
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=out) as progress:
        bar = progress.add_task("starting", total=len(tasks))

        def on_record(task, rec):
            progress.update(bar, advance=1, description=f"{rec['status']:11s} {task.task.target} "
                                                        f"{task.task.problem.name}"[:90])

        records = sweep(tasks, path, workers=args.workers, address=args.address,
                        on_start=lambda done, total: progress.update(bar, completed=done),
                        on_record=on_record)
    wall = time.perf_counter() - t0
    plots = [] if args.no_plots else write_plots(records, folder)
    info = {"command": command, "wall_s": wall, "model": args.model, "grid": args.grid}
    write_run_info(folder, info)
    report = write_report(records, folder, plots=plots, info=info)
    statuses = Counter(r["status"] for r in records)
    hits = sum(r.get("cache") == "hit" for r in records)
    out.print(f"wrote {path} ({len(records)} records: "
              + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
              + f"; {hits} from the cache), {report}; {wall:.1f} s")
    return 1 if statuses.get("error") else 0
