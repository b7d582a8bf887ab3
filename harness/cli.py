"""`nkilab` console script: run | check | bench | targets | report | calibrate | cost.

  nkilab run        correctness of every kernel on every available backend (smoke shapes), the modeled profile
                    of every NKI kernel on each Neuron target at the real shapes of a model, measured profiles
                    where a device exists; prints a summary and writes a run folder (results.jsonl, report.md,
                    PNG plots). `--quick` cuts the grid for CI.
  nkilab check      the correctness pass only.
  nkilab bench      one kernel on one workload / target / backend (modeled for nki, measured on a device).
  nkilab targets    the chip tables.
  nkilab report     re-render report.md and plots from a run folder's results.jsonl.
  nkilab calibrate  the model against published Trainium2 measurements (model / published per point).
  nkilab cost       the modeled cost of a token: latency, tokens/s, J/token, $/Mtoken, per-kernel share.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from nkilab.harness.perf import calibration_report
from nkilab.harness.perf.calibration import POINTS, QUICK_POINTS, calibration_table
from nkilab.harness.chips import ALL_TARGETS, NEURON_TARGETS, TARGETS
from nkilab.harness.cost import cli as cost_cli
from nkilab.harness.profile import RunConfig, Task, measure_task, model_task, plan, run
from nkilab.harness.report.markdown import (
    CHECK_HEADER,
    NOT_RUN_HEADER,
    PERF_HEADER,
    check_rows,
    headline,
    not_run_rows,
    perf_row,
    write_report,
)
from nkilab.harness.report.plots import write_plots
from nkilab.harness.report.records import read_jsonl, write_jsonl
from nkilab.harness.workloads import DEFAULT_MODEL, GRIDS, MODELS, PHASES, Quant, model_problems
from nkilab.kernels._registry import BACKENDS, OPS, has_cuda_device


def _csv(choices):
    def parse(text: str) -> tuple[str, ...]:
        items = tuple(s.strip() for s in text.split(",") if s.strip())
        bad = [s for s in items if s not in choices]
        if bad:
            raise argparse.ArgumentTypeError(f"unknown {', '.join(bad)}; choose from {', '.join(choices)}")
        return items

    return parse


def _power(text: str) -> tuple[str, float]:
    target, _, watts = text.partition("=")
    if target not in TARGETS or not watts:
        raise argparse.ArgumentTypeError(f"expected TARGET=WATTS with TARGET in {', '.join(ALL_TARGETS)}, got {text!r}")
    return target, float(watts)


def _add_selection(p: argparse.ArgumentParser, *, targets: bool = True) -> None:
    p.add_argument("--ops", type=_csv(OPS), default=OPS, help="comma-separated ops (default: all)")
    p.add_argument("--backends", type=_csv(BACKENDS), default=None,
                   help="backends for the correctness pass (default: every available one)")
    if targets:
        p.add_argument("--targets", type=_csv(NEURON_TARGETS), default=NEURON_TARGETS,
                       help="Neuron targets to model (default: all)")
        p.add_argument("--model", choices=tuple(MODELS), default=DEFAULT_MODEL, help="real shapes to model")
        p.add_argument("--phases", type=_csv(PHASES), default=PHASES)
        p.add_argument("--grid", choices=tuple(GRIDS), default="default",
                       help="batch/context grid: quick | default | full (nkilab.harness.workloads.grids)")
        p.add_argument("--scheme", default="int8", help="qmatmul weight scheme (int8, int4, fp8_e4m3, fp8_e4m3fn)")
        p.add_argument("--group-size", type=int, default=None, help="qmatmul quant group size (default per channel)")
        p.add_argument("--power-w", type=_power, action="append", default=[],
                       help="override a target's chip power assumption, e.g. trn2=450 (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nkilab", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="check, model and (where possible) measure every kernel; write a run folder")
    _add_selection(run)
    run.add_argument("--out", default=None, help="run folder (default runs/<UTC timestamp>/)")
    run.add_argument("--quick", action="store_true", help="smallest grid, decode only, trn2 only (CI smoke)")
    run.add_argument("--no-check", action="store_true", help="skip the correctness pass")
    run.add_argument("--no-model", action="store_true", help="skip the modeled profile")
    run.add_argument("--no-measure", action="store_true", help="skip measured profiles even on a device")
    run.add_argument("--no-plots", action="store_true", help="write no PNG plots")
    run.add_argument("--no-cost", action="store_true", help="leave the cost-of-a-token section out of the report")
    run.add_argument("--calibrate", choices=("none", "quick", "full"), default="quick",
                     help="calibration points in the report: quick = the three that trace in seconds (default), "
                          "full = all six published Trainium2 points (~2 min more)")

    check = sub.add_parser("check", help="correctness of every kernel on every available backend (smoke shapes)")
    _add_selection(check, targets=False)
    check.add_argument("--out", default=None, help="also write results.jsonl here")

    bench = sub.add_parser("bench", help="one kernel x workload x target x backend")
    bench.add_argument("--kernel", choices=OPS, required=True)
    bench.add_argument("--model", choices=tuple(MODELS), default=DEFAULT_MODEL)
    bench.add_argument("--phase", choices=PHASES, default="decode")
    bench.add_argument("--target", choices=ALL_TARGETS, default="trn2")
    bench.add_argument("--backend", choices=("nki", "triton"), default="nki")
    bench.add_argument("--grid", choices=tuple(GRIDS), default="default")
    bench.add_argument("--problem", default=None, help="only the problem with this name")
    bench.add_argument("--scheme", default="int8")
    bench.add_argument("--group-size", type=int, default=None)

    sub.add_parser("targets", help="print the chip tables")
    report = sub.add_parser("report", help="re-render report.md and plots from a run folder")
    report.add_argument("folder")
    sub.add_parser("calibrate", help="model vs published Trainium2 measurements")
    cost_cli.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = "nkilab " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    handler = {"run": cmd_run, "check": cmd_check, "bench": cmd_bench, "targets": cmd_targets,
               "report": cmd_report, "calibrate": cmd_calibrate, "cost": cost_cli.cmd_cost}[args.command]
    return handler(args, command)


def _config(args, **overrides):
    fields = dict(ops=args.ops, backends=args.backends)
    if hasattr(args, "targets"):
        fields.update(targets=args.targets, model=args.model, phases=args.phases, grid=args.grid,
                      quant=Quant(args.scheme, args.group_size), power_w=dict(args.power_w))
    fields.update(overrides)
    return RunConfig(**fields)


def _console():
    """A rich console; 160 columns when stdout is not a terminal, so piped tables stay readable."""
    return Console() if sys.stdout.isatty() else Console(width=160)


def _walk(config, console):
    """Run the plan with a rich progress bar; returns the records."""
    total = len(plan(config))
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=False) as progress:
        bar = progress.add_task("planning", total=total)

        def on_record(task, rec):
            progress.update(bar, advance=1, description=f"{task.kind:7s} {rec['status']:11s} "
                                                        f"{task.backend}/{task.target} {task.problem.name}"[:90])

        records = run(config, on_record=on_record)
        progress.update(bar, description=f"done: {len(records)} records")
    return records


def _table(title: str, header, rows, *, style_of=None):
    """A rich table with one column per header entry; `style_of(row)` gives a row's style (None = plain)."""
    table = Table(title=title)
    for h in header:
        table.add_column(h)
    for row in rows:
        table.add_row(*row, style=style_of(row) if style_of else None)
    return table


def _summary(records, console) -> None:
    rows = check_rows(records)
    if rows:
        console.print(_table("Correctness (smoke workload vs float64 reference)", CHECK_HEADER, rows,
                             style_of=lambda row: {"PASS": "green", "FAIL": "bold red"}.get(row[5])))
    heads = headline(records)
    if heads:
        console.print(_table("Modeled NKI kernels, headline points (per call = per layer and rank)", PERF_HEADER,
                             [perf_row(r) for r in heads]))
    skipped = not_run_rows(records)
    if skipped:
        console.print(_table("Not run, and why", NOT_RUN_HEADER, skipped))


def _write_folder(records, out: str, *, command: str, wall_s: float, plots: bool, calibration=None) -> str:
    os.makedirs(out, exist_ok=True)
    write_jsonl(records, os.path.join(out, "results.jsonl"))
    names = write_plots(records, out) if plots else []
    return write_report(records, out, plots=names, command=command, wall_s=wall_s, calibration=calibration)


def cmd_run(args, command: str) -> int:
    console = _console()
    t0 = time.perf_counter()
    overrides = dict(check=not args.no_check, modeled=not args.no_model, measured=not args.no_measure)
    if args.quick:
        overrides.update(grid="quick", phases=("decode",), targets=("trn2",))
    config = _config(args, **overrides)
    out = args.out or os.path.join("runs", time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))
    records = _walk(config, console)
    calibration = None
    if args.calibrate != "none":
        with console.status("calibration: modeling published Trainium2 points"):
            calibration = calibration_table(POINTS if args.calibrate == "full" else QUICK_POINTS)
    _summary(records, console)
    wall = time.perf_counter() - t0
    report = _write_folder(records, out, command=command, wall_s=wall, plots=not args.no_plots,
                           calibration=calibration)
    if not args.no_cost:
        cost_cli.append_to_run(out, report, config, quick=args.quick, console=console)
    failed = sum(r["status"] in ("failed", "error") for r in records)
    console.print(f"wrote {out}/results.jsonl ({len(records)} records), {report}; {wall:.1f} s; "
                  f"{failed} failed or errored")
    return 1 if any(r["status"] == "failed" for r in records) else 0


def cmd_check(args, command: str) -> int:
    console = _console()
    t0 = time.perf_counter()
    records = _walk(_config(args, modeled=False, measured=False), console)
    _summary(records, console)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        write_jsonl(records, os.path.join(args.out, "results.jsonl"))
    console.print(f"{len(records)} records in {time.perf_counter() - t0:.1f} s")
    return 1 if any(r["status"] == "failed" for r in records) else 0


def cmd_bench(args, command: str) -> int:
    console = _console()
    problems = [p for p in model_problems(args.model, phase=args.phase, grid=args.grid,
                                          quant=Quant(args.scheme, args.group_size), ops=(args.kernel,))
                if args.problem is None or p.name == args.problem]
    if not problems:
        console.print(f"no {args.kernel} problem named {args.problem!r} in {args.model}/{args.phase}/{args.grid}")
        return 2
    if args.backend == "nki" and args.target not in NEURON_TARGETS:
        console.print(f"--backend nki is modeled on a Neuron target ({', '.join(NEURON_TARGETS)}), not {args.target}")
        return 2
    if args.backend == "triton" and not has_cuda_device():
        console.print("--backend triton is measured on a CUDA device, and none is visible here")
        return 2
    config = RunConfig(ops=(args.kernel,), targets=(args.target,))
    for p in problems:
        if args.backend == "nki":
            rec = model_task(Task("model", p.op, "nki", args.target, p), config)
        else:
            rec = measure_task(Task("measure", p.op, "triton", "cuda", p))
        perf = rec.get("perf") or {}
        console.print(f"{p.name:60s} {rec['status']:11s} latency={_us(perf.get('latency_s'))} "
                      f"({perf.get('kind', '—')}) roofline={_us(perf.get('roofline_s'))} "
                      f"mfu={_pct(perf.get('mfu'))} mbu={_pct(perf.get('mbu'))} "
                      f"bottleneck={perf.get('bottleneck')} {rec.get('note') or ''}")
        for engine, ops in (perf.get("instruction_mix") or {}).items():  # what limits it: which engine, which ops
            busy = (perf.get("engine_busy_s") or {}).get(engine)
            console.print(f"    {engine:7s} busy {_us(busy):>10s}  " + ", ".join(f"{op} x{n}" for op, n in ops.items()))
    return 0


def _us(x):
    return "—" if x is None else f"{x * 1e6:.4g} us"


def _pct(x):
    return "—" if x is None else f"{x:.1%}"


def cmd_targets(args, command: str) -> int:
    header = ("target", "kind", "description", "cores", "bf16 TFLOP/s", "fp8 TFLOP/s", "fp32 TFLOP/s", "HBM GB/s",
              "power W (source)")
    rows = [(t.name, t.kind, t.description, str(t.cores), f"{t.peak_flops['bf16'] / 1e12:.0f}",
             f"{t.peak_flops['fp8'] / 1e12:.0f}", f"{t.peak_flops['fp32'] / 1e12:.1f}", f"{t.hbm_bw / 1e9:.0f}",
             f"{t.power_w:g} ({t.power_source.split(':')[0]})")
            for t in (TARGETS[name] for name in ALL_TARGETS)]
    _console().print(_table("Targets (per chip; Neuron per-core engine tables in nkilab.harness.chips)", header,
                            rows))
    return 0


def cmd_report(args, command: str) -> int:
    records = read_jsonl(os.path.join(args.folder, "results.jsonl"))
    path = _write_folder(records, args.folder, command=command, wall_s=0.0, plots=True)
    print(f"wrote {path}")
    return 0


def cmd_calibrate(args, command: str) -> int:
    console = _console()
    calibration_report.run(lambda line: console.print(line, markup=False, highlight=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
