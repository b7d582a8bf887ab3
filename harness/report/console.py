"""What the `nkilab` commands print: rich tables of stored records (the rows come from `markdown`, so the console and
report.md agree), the progress of a walk, and the JSON-lines form of records (`--json`).

With `--json` a command prints nothing but one record per line on stdout (the results.jsonl schema); its progress
and tables go to stderr, so `nkilab check --json | jq ...` reads clean records.
"""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from nkilab.harness.report.markdown import (
    CHECK_HEADER,
    CHECK_RULE,
    NOT_RUN_HEADER,
    PER_LAYER,
    PERF_HEADER,
    check_rows,
    headline,
    not_run_rows,
    perf_row,
)
from nkilab.harness.report.records import json_line

PASS_STYLE = {"PASS": "green", "FAIL": "bold red", "error": "bold red"}


def console(*, stderr: bool = False) -> Console:
    """A rich console on stdout (stderr for `--json` commands); 160 columns when not a terminal, so piped tables
    stay readable."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr) if stream.isatty() else Console(stderr=stderr, width=160)


def table(title: str, header, rows, *, style_of=None, caption: str | None = None) -> Table:
    """A rich table with one column per header entry; `style_of(row)` gives a row's style (None = plain). A cell
    too long for its column folds onto the next line, never cut: names stay whole for `bench --problem`."""
    out = Table(title=title, caption=caption, caption_justify="left")
    for h in header:
        out.add_column(h, overflow="fold")
    for row in rows:
        out.add_row(*row, style=style_of(row) if style_of else None)
    return out


def print_json_lines(records, stream=None) -> None:
    """Each record as one JSON line (NaN/inf as null, as in results.jsonl)."""
    stream = stream or sys.stdout
    for rec in records:
        stream.write(json_line(rec) + "\n")
    stream.flush()


def summary(records, out: Console) -> None:
    """The correctness table (with the rule that decides PASS), the modeled headline points, what did not run."""
    rows = check_rows(records)
    if rows:
        result = CHECK_HEADER.index("result")
        out.print(table("Correctness (smoke workload vs float64 reference)", CHECK_HEADER, rows,
                        style_of=lambda row: PASS_STYLE.get(row[result]), caption=CHECK_RULE))
    heads = headline(records)
    if heads:
        out.print(table("Modeled NKI kernels, headline points (one kernel call of one layer)", PERF_HEADER,
                        [perf_row(r) for r in heads], caption=PER_LAYER))
    skipped = not_run_rows(records)
    if skipped:
        out.print(table("Not run, and why", NOT_RUN_HEADER, skipped))


def walk_progress(out: Console, total: int):
    """(progress context, on_record callback) for a walk of `total` tasks."""
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=out, transient=False)
    bar = progress.add_task("planning", total=total)

    def on_record(task, rec):
        progress.update(bar, advance=1, description=f"{task.kind:7s} {rec['status']:11s} "
                                                    f"{task.backend}/{task.target} {task.problem.name}"[:90])

    return progress, on_record
