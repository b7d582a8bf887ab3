"""The `nkilab` commands (the parser is `nkilab.harness.cli`): each `cmd_<name>(args, command) -> exit code`.

Exit codes: 0 when every record is ok, unsupported or unavailable; 1 when a record failed its check or errored (a
broken kernel or target must not look like success to a script or CI); 2 for arguments found bad after parsing
(`UsageError`: an unreadable model config, an unknown problem, LNC 2 on a target without it, a missing run folder).
"""

from __future__ import annotations

import os
import shlex
import time
from dataclasses import asdict

from nkilab.harness import chips, timeline
from nkilab.harness.chips import ALL_TARGETS, NEURON_TARGETS, TARGETS, NeuronTarget, get_target
from nkilab.harness.cache import Cache
from nkilab.harness.cost import cli as cost_cli
from nkilab.harness.diff import DIFF_HEADER, compare_folders, diff_rows, summary_line
from nkilab.harness.perf import calibration, calibration_report
from nkilab.harness.profile import RunConfig, Task, cached_model_task, measure_task, model_task, plan, run
from nkilab.harness.report import console as out
from nkilab.harness.report import sources
from nkilab.harness.report.markdown import write_report
from nkilab.harness.report.plots import write_plots
from nkilab.harness.report.records import make_record, perf_field, read_jsonl, write_jsonl
from nkilab.harness.report.run_info import RESULTS, read_run_info, run_folder_error, write_run_info
from nkilab.harness.workloads import (
    GRIDS,
    OVERRIDES,
    PHASES,
    Quant,
    model_from_config,
    model_problems,
    resolve_model,
    select_problem,
    short_name,
)
from nkilab.kernels._registry import OPS
from nkilab.kernels.ops._problem import Problem


class UsageError(Exception):
    """Arguments that parse but cannot be served (exit code 2); the message says why and what is valid."""


def command_line(argv: list[str]) -> str:
    return "nkilab " + " ".join(shlex.quote(a) for a in argv)


def exit_code(records) -> int:
    """1 when any record failed or errored, else 0."""
    return 1 if any(r["status"] in ("failed", "error") for r in records) else 0


def _model(args):
    """(model key or ModelShape, config path or None) of `--model` / `--model-config`."""
    if args.model_config:
        try:
            return model_from_config(args.model_config), args.model_config
        except ValueError as exc:
            raise UsageError(f"--model-config: {exc}") from None
    return args.model, None


def _sizes(args) -> dict:
    return {key: getattr(args, key) for key in OVERRIDES if getattr(args, key, None)}


def _check_lnc(lnc: int | None, targets) -> None:
    if lnc and lnc > 1:
        bad = [t for t in targets if not get_target(t).lnc2]
        if bad:
            able = [t for t in NEURON_TARGETS if get_target(t).lnc2]
            raise UsageError(f"--lnc {lnc}: {', '.join(bad)} run LNC 1 only; LNC 2 exists on {', '.join(able)} "
                             "(choose those targets, or drop --lnc for each target's default)")


def _config(args, **overrides) -> RunConfig:
    fields = dict(ops=args.ops, backends=args.backends)
    if hasattr(args, "targets"):
        model, config_path = _model(args)
        fields.update(targets=args.targets, model=model, model_config=config_path, phases=args.phases,
                      grid=args.grid or "default", sizes=_sizes(args), quant=Quant(args.scheme, args.group_size),
                      lnc=args.lnc, power_w=dict(args.power_w))
    if hasattr(args, "no_cache"):
        fields.update(cache=None if args.no_cache else Cache(args.cache))
    fields.update(overrides)
    config = RunConfig(**fields)
    _check_lnc(config.lnc, config.targets)
    return config


def _walk(config: RunConfig, console) -> list[dict]:
    """Run the plan with a progress bar; returns the records."""
    progress, on_record = out.walk_progress(console, len(plan(config)))
    with progress:
        records = run(config, on_record=on_record)
    return records


def _run_info(config: RunConfig, command: str, wall_s: float, started: str, calibration_table: list | None) -> dict:
    shape = resolve_model(config.model)
    return {"command": command, "wall_s": wall_s, "started": started, "model": shape.name,
            "model_shape": asdict(shape), "model_config": config.model_config, "scheme": config.quant.label,
            "grid": config.grid, "sizes": config.sizes, "phases": list(config.phases),
            "lnc": {t: config.lnc_for(t) for t in config.targets}, "calibration": calibration_table}


def _write_folder(records, folder: str, info: dict, *, plots: bool, console, rerendered: str | None = None) -> str:
    """results.jsonl (unless re-rendering), run.json, the plots and report.md of a run folder; returns report.md's
    path."""
    os.makedirs(folder, exist_ok=True)
    if rerendered is None:
        write_jsonl(records, os.path.join(folder, RESULTS))
        write_run_info(folder, info)
    names = []
    if plots:
        # a line per plot, not a spinner: the progress shows in logs and CI too (a full run's plots take a minute)
        names = write_plots(records, folder, on_plot=lambda name: console.print(f"drawing {name}", highlight=False))
    return write_report(records, folder, plots=names, info=info, rerendered=rerendered)


def cmd_run(args, command: str) -> int:
    console = out.console()
    t0 = time.perf_counter()
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    overrides = dict(check=not args.no_check, modeled=not args.no_model, measured=not args.no_measure)
    if args.quick:
        overrides.update(grid="quick", phases=("decode",), targets=("trn2",))
    config = _config(args, **overrides)
    folder = args.out or os.path.join("runs", time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))
    records = _walk(config, console)
    rows = None
    if args.calibrate != "none":
        with console.status("calibration: modeling the published device measurements"):
            rows = calibration.calibration_table(calibration.POINTS if args.calibrate == "full"
                                                 else calibration.QUICK_POINTS)
    out.summary(records, console)
    wall = time.perf_counter() - t0
    info = _run_info(config, command, wall, started, rows)
    report = _write_folder(records, folder, info, plots=not args.no_plots, console=console)
    if not args.no_cost:
        info["cost_section"] = _cost_section(folder, report, config, quick=args.quick, console=console)
        write_run_info(folder, info)
    failed = sum(r["status"] in ("failed", "error") for r in records)
    console.print(f"wrote {folder}/{RESULTS} ({len(records)} records), run.json, {report}; {wall:.1f} s; "
                  f"{failed} failed or errored")
    return exit_code(records)


def _cost_section(folder: str, report: str, config: RunConfig, *, quick: bool, console) -> str | None:
    """The cost-of-a-token section `nkilab.harness.cost` appends to report.md, as the text it appended (kept in
    run.json so `nkilab report` re-renders it); None for a --model-config model, which the cost model does not take
    (`nkilab cost` composes the listed models)."""
    if config.model_config is not None:
        console.print("cost of a token: not composed for a --model-config model (nkilab cost takes --model)")
        return None
    with open(report) as fh:
        before = len(fh.read())
    cost_cli.append_to_run(folder, report, config, quick=quick, console=console)
    with open(report) as fh:
        return fh.read()[before:]


def cmd_check(args, command: str) -> int:
    console = out.console(stderr=args.json)
    t0 = time.perf_counter()
    records = _walk(_config(args, modeled=False, measured=False), console)
    out.summary(records, console)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        write_jsonl(records, os.path.join(args.out, RESULTS))
    if args.json:
        out.print_json_lines(records)
    console.print(f"{len(records)} records in {time.perf_counter() - t0:.1f} s")
    return exit_code(records)


def _bench_problems(args, model, quant: Quant) -> tuple[str, list[Problem]]:
    """(grid name, the problems `nkilab bench` runs): with --problem the one it names, searched in every phase of
    every grid (and every op unless --kernel is given) unless --phase / --grid narrow it; else every problem of
    --kernel in the phase (decode by default) of the grid (default "default")."""
    if not (args.kernel or args.problem):
        raise UsageError("give --kernel KERNEL (every problem of it) or --problem NAME (one problem)")
    grids = (args.grid,) if args.grid else (tuple(GRIDS) if args.problem else ("default",))
    phases = (args.phase,) if args.phase else (PHASES if args.problem else ("decode",))
    ops = (args.kernel,) if args.kernel else OPS
    found = {}
    for grid in grids:
        sizes = RunConfig(grid=grid, sizes=_sizes(args)).grid_sizes()
        for phase in phases:
            for p in model_problems(model, phase=phase, grid=sizes, quant=quant, ops=ops):
                found.setdefault(p.name, p)  # the grids overlap: one problem per name
    problems = list(found.values())
    if args.problem:
        try:
            problems = [select_problem(problems, args.problem)]
        except ValueError as exc:
            raise UsageError(f"--problem: {exc}") from None
    if not problems:
        served = [p for p in PHASES if model_problems(model, phase=p, grid=grids[0], ops=ops)]
        raise UsageError(f"{args.kernel} has no {'/'.join(phases)} problem in the {grids[0]} grid; its phases: "
                         f"{', '.join(served)}")
    return grids[0], problems


def _bench_line(p: Problem, rec: dict, lnc) -> list[str]:
    perf = rec.get("perf") or {}
    lines = [f"{p.name:60s} {rec['status']:11s} latency={_us(perf.get('latency_s'))} "
             f"({perf.get('kind', '—')}) LNC={lnc} roofline={_us(perf.get('roofline_s'))} "
             f"mfu={_pct(perf.get('mfu'))} mbu={_pct(perf.get('mbu'))} bottleneck={perf.get('bottleneck')} "
             f"{rec.get('note') or ''}"]
    for engine, ops in (perf.get("instruction_mix") or {}).items():  # what limits it: which engine, which ops
        busy = (perf.get("engine_busy_s") or {}).get(engine)
        lines.append(f"    {engine:7s} busy {_us(busy):>10s}  " + ", ".join(f"{op} x{n}" for op, n in ops.items()))
    return lines


def cmd_bench(args, command: str) -> int:
    console = out.console(stderr=args.json)
    model, config_path = _model(args)
    quant = Quant(args.scheme, args.group_size)
    grid, problems = _bench_problems(args, model, quant)
    drawing = args.timeline or args.timeline_png
    if drawing and (args.backend != "nki" or len(problems) != 1):
        raise UsageError("--timeline / --timeline-png draw the modeled schedule of one NKI problem: add --problem "
                         "NAME, one of " + ", ".join(short_name(p.name) for p in problems[:20]))
    _check_lnc(args.lnc, (args.target,))
    config = RunConfig(ops=tuple(dict.fromkeys(p.op for p in problems)), targets=(args.target,), model=model,
                       model_config=config_path, grid=grid,
                       sizes=_sizes(args), quant=quant, lnc=args.lnc, power_w=dict(args.power_w),
                       cache=None if args.no_cache or drawing else Cache(args.cache))
    lnc = config.lnc_for(args.target)
    records = []
    for p in problems:
        if args.backend == "nki":
            task = Task("model", p.op, "nki", args.target, p, lnc)
            keep = {}
            if drawing:  # a timeline needs the trace itself, not a cached record
                rec = model_task(task, config, on_trace=lambda trace, est: keep.update(trace=trace))
            else:
                rec = cached_model_task(task, config)
            if drawing and "trace" in keep:
                _write_timelines(args, keep["trace"], p, console)
        else:
            rec = measure_task(Task("measure", p.op, "triton", "cuda", p))
        records.append(rec)
        for line in _bench_line(p, rec, lnc if args.backend == "nki" else "—"):
            console.print(line, highlight=False, markup=False)
    if args.json:
        out.print_json_lines(records)
    return exit_code(records)


def _write_timelines(args, trace, problem: Problem, console) -> None:
    if args.timeline:
        timeline.write_chrome_trace(trace, args.target, args.timeline, title=problem.name)
        console.print(f"wrote {args.timeline} (Chrome/Perfetto trace of the modeled schedule: ui.perfetto.dev)")
    if args.timeline_png:
        timeline.write_gantt(trace, args.target, args.timeline_png, title=problem.name)
        console.print(f"wrote {args.timeline_png} (Gantt chart of the modeled schedule)")


def _us(x):
    return "—" if x is None else f"{x * 1e6:.4g} us"


def _pct(x):
    return "—" if x is None else f"{x:.1%}"


def cmd_targets(args, command: str) -> int:
    console = out.console()
    rows_src = sources.row_sources(chips, "TARGETS")
    legend = sources.tag_legend(chips.__doc__)
    header = ("target", "kind", "description", "cores", "bf16 TFLOP/s", "fp8 TFLOP/s", "fp32 TFLOP/s", "HBM GB/s",
              "power W (source)", "sources")
    rows = [(t.name, t.kind, t.description, str(t.cores), f"{t.peak_flops['bf16'] / 1e12:.0f}",
             f"{t.peak_flops['fp8'] / 1e12:.0f}", f"{t.peak_flops['fp32'] / 1e12:.1f}", f"{t.hbm_bw / 1e9:.0f}",
             f"{t.power_w:g} ({t.power_source.split(':')[0]})",
             " ".join(f"[{tag}]" for tag in sources.tags_in(rows_src.get(t.name, ""), legend)))
            for t in (TARGETS[name] for name in ALL_TARGETS)]
    console.print(out.table("Targets (per chip; Neuron per-core engine tables in nkilab.harness.chips)", header, rows,
                            caption=None if args.sources else "`nkilab targets --sources`: every field with its "
                                                              "source and the sources' definitions"))
    if not args.sources:
        return 0
    cited = set()
    fields = sources.field_sources(NeuronTarget)
    rows = []
    for name, text in fields.items():
        cited.update(sources.tags_in(text, legend))
        rows.append([name, *(_field_value(getattr(TARGETS[t], name)) for t in NEURON_TARGETS), text or "—"])
    power = [["power_w", *(f"{TARGETS[t].power_w:g} W" for t in NEURON_TARGETS), "; ".join(
        dict.fromkeys(TARGETS[t].power_source for t in NEURON_TARGETS))]]
    console.print(out.table("NeuronCore fields of the hardware table, per target, with their sources",
                            ("field", *NEURON_TARGETS, "source (the field's comment in nkilab.harness.chips)"),
                            rows + power))
    cited.update(tag for t in ALL_TARGETS for tag in sources.tags_in(rows_src.get(t, ""), legend))
    console.print(out.table("Sources cited above", ("tag", "source"),
                            [[f"[{tag}]", legend[tag]] for tag in legend if tag in cited]))
    return 0


def _field_value(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, tuple):
        return ", ".join(map(str, v))
    return str(v)


def cmd_report(args, command: str) -> int:
    error = run_folder_error(args.folder)
    if error:
        raise UsageError(error)
    console = out.console()
    with console.status(f"reading {args.folder}/{RESULTS}"):
        records = read_jsonl(os.path.join(args.folder, RESULTS))
    info = read_run_info(args.folder)
    path = _write_folder(records, args.folder, info, plots=True, console=console, rerendered=command)
    if info.get("cost_section"):
        with open(path, "a") as fh:
            fh.write(info["cost_section"])
    console.print(f"wrote {path} and the plots from {len(records)} records"
                  + ("" if info else " (no run.json in the folder: command and wall time not recorded)"))
    return 0


def calibration_records(points, rows) -> list[dict]:
    """The calibration rows as results.jsonl records (stage "calibrate"): kernel = the point's kernel, its kernel
    time as the modeled latency, the published figure beside the modeled one (kernel + launch) in `calibration`."""
    return [make_record(kernel=point.kernel.__name__, backend="nki", target=point.target, stage="calibrate",
                        problem={"name": point.name, "phase": "calibration", "structure": point.structure,
                                 "inputs": [[list(shape), dtype] for shape, dtype in point.inputs]},
                        perf=perf_field("modeled", latency_s=row["kernel_s"], method="nkilab instruction-level model",
                                        mfu=row["mfu"], bottleneck=row["bottleneck"], roofline_s=row["roofline_s"],
                                        launch_overhead_s=row["launch_s"], engine_busy_s=row["engine_busy_s"]),
                        calibration={"metric": point.metric, "published": point.published,
                                     "modeled": row["ratio"] * point.published, "ratio": row["ratio"],
                                     "source": point.source, "method": point.method},
                        command="nkilab calibrate")
            for point, row in zip(points, rows)]


def cmd_calibrate(args, command: str) -> int:
    console = out.console(stderr=args.json)
    rows = calibration_report.run(lambda line: console.print(line, markup=False, highlight=False))
    if args.json:
        out.print_json_lines(calibration_records(calibration.POINTS, rows))
    return 0


def cmd_diff(args, command: str) -> int:
    for folder in (args.run_a, args.run_b):
        error = run_folder_error(folder)
        if error:
            raise UsageError(error)
    try:
        pairs = compare_folders(args.run_a, args.run_b, rtol=args.rtol)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    console = out.console()
    rows = diff_rows(pairs, show_all=args.all)
    console.print(out.table(f"{args.run_a} -> {args.run_b} (changes beyond rtol {args.rtol:g})", DIFF_HEADER, rows,
                            caption=summary_line(pairs)))
    return 1 if any(p.status_worse for p in pairs) else 0


HANDLERS = {"run": cmd_run, "check": cmd_check, "bench": cmd_bench, "targets": cmd_targets, "report": cmd_report,
            "cost": cost_cli.cmd_cost,
            "calibrate": cmd_calibrate, "diff": cmd_diff}
