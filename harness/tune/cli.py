"""`nkilab tune --kernel K [--model M] [--targets T,...]`: search K's tunables on the performance model and write
the best config per (target, shape class) into K's tuning table (`kernels/nki/launch_<K>.tuning.json`, which its
launcher reads). Prints, per shape, the modeled latency before (the table's config) and after (the best found)."""

from __future__ import annotations

import argparse
import os
import time

from rich.table import Table

from nkilab.harness.chips import NEURON_TARGETS
from nkilab.harness.cli_args import add_cache_arguments, csv_of
from nkilab.harness.report.console import console
from nkilab.harness.sweep.tasks import sweep_run_config
from nkilab.harness.tune.search import tune, tuning_hooks, updated_table, write_table
from nkilab.harness.workloads import DEFAULT_MODEL, GRIDS, MODELS, PHASES
from nkilab.kernels._registry import OPS
from nkilab.kernels.nki import launch_tuning as tuning


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register `tune` on the main CLI's subparsers (its handler set as `handler`)."""
    p = subparsers.add_parser("tune", help="search a kernel's tunables (modeled) and write its tuning table")
    p.add_argument("--kernel", choices=OPS, required=True,
                   help="the op whose NKI launcher declares tunables (required: no default)")
    p.add_argument("--model", choices=tuple(MODELS), default=DEFAULT_MODEL,
                   help=f"real shapes to tune at (default: {DEFAULT_MODEL})")
    p.add_argument("--targets", "--target", type=csv_of(NEURON_TARGETS, "target"), default=NEURON_TARGETS,
                   help=f"Neuron targets, comma-separated (default: {','.join(NEURON_TARGETS)})")
    p.add_argument("--phases", type=csv_of(PHASES, "phase"), default=PHASES,
                   help=f"workload phases, comma-separated (default: {','.join(PHASES)})")
    p.add_argument("--grid", choices=tuple(GRIDS), default="default",
                   help="batch/context grid: quick | default | full (default: default)")
    p.add_argument("--budget", type=int, default=None, help="random sample of this many configs (default: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random sample (default: 0)")
    p.add_argument("--table", default=None, help="tuning table to read and write (default the kernel's own)")
    p.add_argument("--dry-run", action="store_true", help="print the result, write no table (default: write it)")
    p.add_argument("--out", default=None, help="folder of the search's results.jsonl (default runs/tune-<UTC>/)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="Ray CPUs; 1 = in-process (default: this machine's cores)")
    p.add_argument("--address", default=None, help="Ray cluster to join (default $RAY_ADDRESS, else local)")
    add_cache_arguments(p)
    p.set_defaults(handler=cmd_tune)
    return p


def cmd_tune(args, command: str) -> int:
    out = console()
    try:
        path = args.table or str(tuning_hooks(args.kernel)[2])
    except ValueError as exc:
        out.print(str(exc))
        return 2
    table = tuning.load(path)
    folder = args.out or os.path.join("runs", time.strftime("tune-%Y%m%dT%H%M%SZ", time.gmtime()))
    os.makedirs(folder, exist_ok=True)
    t0 = time.perf_counter()
    results = tune(args.kernel, os.path.join(folder, "results.jsonl"), model=args.model, grid=args.grid,
                   phases=args.phases, targets=args.targets, table=table,
                   run=sweep_run_config({}, args.cache, use_cache=not args.no_cache), workers=args.workers,
                   address=args.address, budget=args.budget, seed=args.seed)
    view = Table(title=f"nkilab tune {args.kernel}: modeled latency per call, before -> after")
    for column in ("target", "shape class", "problem", "before", "after", "config before -> after"):
        view.add_column(column)
    for r in results:
        for name, before_s, after_s in r.rows:
            view.add_row(r.target, r.shape_class, name, f"{before_s * 1e6:.4g} us", f"{after_s * 1e6:.4g} us",
                         f"{r.before} -> {r.after}")
    out.print(view)
    for r in results:
        for config, reason in r.rejected.items():
            out.print(f"rejected {r.target}/{r.shape_class} {config}: {reason}"[:300], markup=False)
    if not args.dry_run:
        write_table(updated_table(table, results), path)
        out.print(f"wrote {path}")
    out.print(f"{time.perf_counter() - t0:.1f} s; records in {folder}/results.jsonl")
    return 0
