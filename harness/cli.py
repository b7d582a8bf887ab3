"""`nkilab` console script: run | check | bench | targets | report | calibrate | diff | cost | sweep | tune.

  nkilab run        correctness of every kernel on every available backend (smoke shapes), the modeled profile
                    of every NKI kernel on each Neuron target at the real shapes of a model, measured profiles
                    where a device exists; prints a summary and writes a run folder (results.jsonl, run.json,
                    report.md, PNG plots). `--quick` cuts the grid for CI.
  nkilab check      the correctness pass only.
  nkilab bench      one kernel on one workload / target (modeled for nki, measured on a CUDA GPU for triton),
                    with each engine's busy time and instruction mix; `--timeline` writes the modeled schedule.
  nkilab targets    the hardware table; `--sources` every field with its source.
  nkilab report     re-render report.md and plots from a run folder (its records and run.json).
  nkilab calibrate  the model against published device measurements (model / published per point).
  nkilab diff       two run folders compared record by record (latency, MFU/MBU, errors).
  nkilab cost       the modeled cost of a token: latency, tokens/s, J/token, $/Mtoken, per-kernel share
                    (`nkilab.harness.cost.cli`).
  nkilab sweep      the modeled pass at any size as Ray tasks, streamed and resumable (`nkilab.harness.sweep`).
  nkilab tune       search a kernel's tunables on the model; write its tuning table (`nkilab.harness.tune`).
Modeled records go through the on-disk cache (`nkilab.harness.record_cache`; --cache DIR, --no-cache).

Exit codes: 0 when every record is ok, unsupported or unavailable; 1 when a record failed its check or errored;
2 for bad arguments or a missing run folder. This module holds the parser; the commands are in
`nkilab.harness.commands`.
"""

from __future__ import annotations

import argparse
import sys

from nkilab.harness import commands
from nkilab.harness.chips import NEURON_TARGETS
from nkilab.harness.cli_args import (DEFAULT_LNC, LNC_CHOICES, add_cache_arguments, csv_of, ints, positive_int,
                                     power_override)
from nkilab.harness.cost import cli as cost_cli
from nkilab.harness.sweep import cli as sweep_cli
from nkilab.harness.tune import cli as tune_cli
from nkilab.harness.workloads import DEFAULT_MODEL, GRIDS, MODELS, PHASES
from nkilab.kernels._registry import BACKENDS, OPS, has_cuda_device
from nkilab.reference.quant import SCHEMES

NO_GPU = "needs a CUDA GPU, and torch sees none here"


def _add_shapes(p: argparse.ArgumentParser, *, run: bool) -> None:
    """The model, grid, shape overrides, weight scheme, LNC and power options of `run` and `bench`."""
    model = p.add_mutually_exclusive_group()
    model.add_argument("--model", choices=tuple(MODELS), default=DEFAULT_MODEL,
                       help=f"the model whose per-layer shapes are modeled (default: {DEFAULT_MODEL})")
    model.add_argument("--model-config", metavar="FILE", default=None,
                       help="a model not in the list: its config.json (Hugging Face keys hidden_size, "
                            "num_hidden_layers, num_attention_heads, num_key_value_heads, head_dim, "
                            "intermediate_size, vocab_size, sliding_window, rope_theta, rope_scaling; optional tp) "
                            "(default: none)")
    grid_default = "default" if run else "default; --problem searches every grid"
    p.add_argument("--grid", choices=tuple(GRIDS), default=None,
                   help=f"batch/context/length sweep: quick | default | full (nkilab.harness.workloads.grids) "
                        f"(default: {grid_default})")
    p.add_argument("--batches", type=ints, default=None, metavar="N,N,...",
                   help="decode batches (and the decode part of mixed steps), e.g. 1,8,32 (default: the grid's)")
    p.add_argument("--contexts", type=ints, default=None, metavar="N,N,...",
                   help="KV context lengths of decode, chunked and mixed steps, e.g. 1024,4096 (default: the grid's)")
    p.add_argument("--prefill-lengths", type=ints, default=None, metavar="N,N,...",
                   help="prefill sequence lengths (dense and paged), e.g. 512,2048 (default: the grid's)")
    p.add_argument("--chunks", type=ints, default=None, metavar="N,N,...",
                   help="chunked-prefill chunk lengths, e.g. 512 (default: the grid's)")
    p.add_argument("--scheme", choices=SCHEMES, default="int8",
                   help="qmatmul weight scheme (default: int8)")
    p.add_argument("--group-size", type=positive_int, default=None,
                   help="qmatmul quantization group size along K (default: none = per output channel)")
    p.add_argument("--lnc", type=int, choices=LNC_CHOICES, default=None,
                   help="logical NeuronCore degree the modeled kernels launch with, kernel[lnc] (default: each "
                        f"target's from the hardware table: {DEFAULT_LNC}); 2 only on trn2/trn3")
    p.add_argument("--power-w", type=power_override, action="append", default=[], metavar="TARGET=WATTS",
                   help="override a target's assumed chip power for the modeled energy, e.g. trn2=450; repeatable "
                        "(default: the hardware table's assumption)")


def _add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true",
                   help="print the records as JSON lines on stdout (the results.jsonl schema) and the tables on "
                        "stderr")


def _add_run(sub) -> None:
    run = sub.add_parser("run", help="check, model and (where possible) measure every kernel; write a run folder")
    _add_selection(run)
    run.add_argument("--targets", type=csv_of(NEURON_TARGETS, "target"), default=NEURON_TARGETS,
                     help=f"Neuron targets to model, comma-separated (default: {','.join(NEURON_TARGETS)})")
    run.add_argument("--phases", type=csv_of(PHASES, "phase"), default=PHASES,
                     help="workload phases to model, comma-separated: decode (one token per sequence), prefill, "
                          "chunked (a chunked-prefill chunk), mixed (decode sequences and a chunk in one call) "
                          f"(default: {','.join(PHASES)})")
    _add_shapes(run, run=True)
    run.add_argument("--out", default=None, help="run folder to write (default: runs/<UTC timestamp>/)")
    run.add_argument("--quick", action="store_true",
                     help="CI smoke: quick grid, decode only, trn2 only (overrides --grid, --phases, --targets)")
    run.add_argument("--no-check", action="store_true", help="skip the correctness pass")
    run.add_argument("--no-model", action="store_true", help="skip the modeled profile")
    run.add_argument("--no-measure", action="store_true",
                     help="skip measured profiles (they run only where a CUDA or Neuron device exists)")
    run.add_argument("--no-plots", action="store_true", help="write no PNG plots")
    run.add_argument("--no-cost", action="store_true", help="leave the cost-of-a-token section out of the report")
    add_cache_arguments(run)
    run.add_argument("--calibrate", choices=("none", "quick", "full"), default="quick",
                     help="calibration points in the report: quick = the ones that trace in seconds, full = every "
                          "published point (minutes more), none (default: quick)")


def _add_selection(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ops", type=csv_of(OPS, "op"), default=OPS,
                   help=f"ops, comma-separated (default: all: {','.join(OPS)})")
    p.add_argument("--backends", type=csv_of(BACKENDS, "backend"), default=None,
                   help=f"backends of the correctness pass, comma-separated from {','.join(BACKENDS)} (default: "
                        "every one available here; triton runs on its CPU interpreter without a GPU)")


def _add_bench(sub, gpu: bool) -> None:
    backends = ("nki", "triton") if gpu else ("nki",)
    bench = sub.add_parser("bench", help="one kernel x workload x target: modeled latency, engines, instruction mix")
    bench.add_argument("--kernel", choices=OPS, default=None,
                       help="the op (default: the one named in --problem; one of the two is required)")
    bench.add_argument("--problem", default=None, metavar="NAME",
                       help="only this problem: its full name (llama-3.1-8b/decode/qmatmul/qkv-m8) or a tail of it "
                            "(decode/qmatmul/qkv-m8, qmatmul/qkv-m8, qkv-m8), as the reports print it "
                            "(default: every problem of the kernel in the phase and grid)")
    bench.add_argument("--phase", choices=PHASES, default=None,
                       help="workload phase (default: decode; every phase when --problem is given)")
    bench.add_argument("--target", choices=NEURON_TARGETS, default="trn2",
                       help="Neuron target the NKI kernel is modeled on (default: trn2)")
    bench.add_argument("--backend", type=_backend_choice(gpu), default="nki", metavar="{" + ",".join(backends) + "}",
                       help="nki: traced and modeled on --target; triton: measured on this machine's CUDA GPU"
                            + ("" if gpu else f" ({NO_GPU})") + " (default: nki)")
    _add_shapes(bench, run=False)
    bench.add_argument("--timeline", metavar="FILE.json", default=None,
                       help="write the modeled schedule of the one selected problem as a Chrome/Perfetto trace "
                            "(open in ui.perfetto.dev; default: none)")
    bench.add_argument("--timeline-png", metavar="FILE.png", default=None,
                       help="draw the same schedule as a Gantt chart, one row per engine and DMA queue (default: none)")
    add_cache_arguments(bench)
    _add_json(bench)


def _backend_choice(gpu: bool):
    def parse(text: str) -> str:
        if text == "nki" or (text == "triton" and gpu):
            return text
        if text == "triton":
            raise argparse.ArgumentTypeError(f"triton {NO_GPU}; --backend nki models the NKI kernel instead")
        raise argparse.ArgumentTypeError(f"unknown backend {text!r}; choose from nki" + (", triton" if gpu else ""))

    return parse


def build_parser(gpu: bool | None = None) -> argparse.ArgumentParser:
    """The `nkilab` parser; `gpu` says whether a CUDA GPU is visible (None: ask torch), which decides whether bench
    offers `--backend triton`."""
    gpu = has_cuda_device() if gpu is None else gpu
    parser = argparse.ArgumentParser(prog="nkilab", description=__doc__.split("\n\n")[0],
                                     epilog="Exit codes: 0 all records ok/unsupported/unavailable, 1 a record "
                                            "failed or errored, 2 bad arguments or a missing run folder.")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_run(sub)
    check = sub.add_parser("check", help="correctness of every kernel on every available backend (smoke shapes)")
    _add_selection(check)
    check.add_argument("--out", default=None, help="also write results.jsonl into this folder (default: none)")
    _add_json(check)
    _add_bench(sub, gpu)
    targets = sub.add_parser("targets", help="print the hardware table")
    targets.add_argument("--sources", action="store_true",
                         help="every field of every Neuron target with its source, and the sources' definitions")
    report = sub.add_parser("report", help="re-render report.md and plots from a run folder")
    report.add_argument("folder", help="a run folder written by `nkilab run` (holds results.jsonl)")
    calibrate = sub.add_parser("calibrate", help="model vs published device measurements (trn2, trn1)")
    _add_json(calibrate)
    diff = sub.add_parser("diff", help="compare two run folders record by record (before -> after)")
    diff.add_argument("run_a", help="the run folder before")
    diff.add_argument("run_b", help="the run folder after")
    diff.add_argument("--rtol", type=float, default=0.01,
                      help="relative change of latency, MFU or MBU below which a record counts as unchanged "
                           "(default: 0.01)")
    diff.add_argument("--all", action="store_true", help="list unchanged records too")
    cost_cli.add_parser(sub)
    sweep_cli.add_parser(sub)
    tune_cli.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # only bench's options depend on a GPU; asking torch costs seconds, so the other commands do not ask
    first = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(gpu=None if first == "bench" else False)
    args = parser.parse_args(argv)
    command = commands.command_line(argv)
    try:
        handler = getattr(args, "handler", None) or commands.HANDLERS[args.command]  # sweep/tune set `handler`
        return handler(args, command)
    except commands.UsageError as exc:
        print(f"nkilab {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
