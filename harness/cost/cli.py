"""`nkilab cost`: the modeled cost of a token of one model, phase, scheme and deployment.

    nkilab cost --model llama-3.1-8b --phase decode --batch 8 --ctx 4096 --scheme int4 --target inf2 [--tp 2]
                [--lnc 1|2] [--kv-dtype auto|fp8|int8] [--price inf2.xlarge=0.76] [--kernels naive]
                [--cache DIR] [--json] [--measured FILE | --record-calls FILE]

Prints the per-kernel breakdown and the headline figures (or, with --json, one JSON object: `TokenCost.to_dict`).
Traces not in the cache are announced as they run; a second call with the same arguments reads them back.
`--contexts 512,4096,...` gives a ragged decode batch; `--phase mixed --chunk C` adds a prefill chunk to it.
The measured path (h100 / h200, `measured.py`): on the GPU, `--record-calls FILE` measures each of the step's calls
(Triton, CUDA events, NVML) into FILE; `--measured FILE` composes the `kind: "measured"` row from such records.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from nkilab.harness.cache import Cache
from nkilab.harness.chips import ALL_TARGETS, GPU_TARGETS, get_target
from nkilab.harness.cli_args import DEFAULT_LNC, LNC_CHOICES
from nkilab.harness.cost.calls import KV_DTYPES, PHASES, Step
from nkilab.harness.cost import measured as measured_calls
from nkilab.harness.cost.composer import SCHEMES, compose, step_plan
from nkilab.harness.cost.estimate import KERNELS
from nkilab.harness.cost.prices import INSTANCES, parse_overrides
from nkilab.harness.cost.report import cost_text, run_section
from nkilab.harness.workloads.grids import GRIDS
from nkilab.kernels._registry import has_cuda_device
from nkilab.harness.workloads.models import DEFAULT_MODEL, MODELS


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def add_parser(subparsers) -> None:
    """Register `nkilab cost` on the top-level subparsers."""
    p = subparsers.add_parser("cost", help="modeled cost of a token: latency, tokens/s, J/token, $/Mtoken")
    p.add_argument("--model", choices=tuple(MODELS), default=DEFAULT_MODEL)
    p.add_argument("--phase", choices=PHASES, default="decode")
    p.add_argument("--batch", type=int, default=8, help="decode sequences (decode, mixed)")
    p.add_argument("--ctx", type=int, default=4096, help="KV length of every decode sequence, or the prefill length")
    p.add_argument("--contexts", type=_ints, default=None, help="ragged decode: one KV length per sequence")
    p.add_argument("--chunk", type=int, default=512, help="mixed: prefill chunk tokens")
    p.add_argument("--scheme", choices=tuple(SCHEMES), default="int4", help="weights (int4 = int4 g128)")
    p.add_argument("--target", choices=ALL_TARGETS[:-1], default="inf2")
    p.add_argument("--tp", type=int, default=None, help="TP ranks per replica (default: least that fits HBM)")
    p.add_argument("--lnc", type=int, choices=LNC_CHOICES, default=None,
                   help=f"Neuron: NeuronCores per rank, each kernel modeled as kernel[lnc] (default: the target's "
                        f"own, {DEFAULT_LNC}); 2 only on trn2/trn3")
    p.add_argument("--kv-dtype", choices=tuple(KV_DTYPES), default="auto",
                   help="KV cache format (default auto = the activations' bf16; fp8 e4m3; int8 + a float32 scale per "
                        "token and head)")
    p.add_argument("--kernels", choices=KERNELS, default="nkilab",
                   help="nkilab's kernels, or the naive dequantize-then-matmul GEMMs")
    p.add_argument("--price", action="append", default=[], metavar="INSTANCE=USD",
                   help="override an instance's $/h (repeatable; also $NKILAB_PRICES)")
    p.add_argument("--cache", default=None, help="trace cache folder (default $NKILAB_CACHE or ~/.cache/nkilab)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--measured", default=None, metavar="FILE",
                       help="compose a measured row from per-call records measured on the target GPU (JSON lines)")
    where.add_argument("--record-calls", default=None, metavar="FILE",
                       help="on a CUDA GPU: measure each of the step's calls into FILE (JSON lines), then stop")


def step_of(args) -> Step:
    """The `Step` the arguments name (ValueError naming the argument when they do not make one)."""
    if args.phase == "prefill":
        return Step("prefill", prefill=args.ctx)
    contexts = args.contexts if args.contexts is not None else None
    decode = Step.decode(len(contexts) if contexts else args.batch, args.ctx, contexts)
    return decode if args.phase == "decode" else Step("mixed", decode.contexts, args.chunk)


def cmd_cost(args, command: str) -> int:
    t0 = time.perf_counter()
    try:
        prices = parse_overrides(args.price)
        step = step_of(args)
    except ValueError as exc:
        print(f"nkilab cost: {exc}", file=sys.stderr)
        return 2
    cache = Cache(args.cache)
    if args.record_calls:
        return _record_calls(args, step)

    def progress(line: str) -> None:
        print(f"  {line} ...", file=sys.stderr, flush=True)

    try:
        measured = measured_calls.load(args.measured, get_target(args.target)) if args.measured else None
        result = compose(args.model, step, args.scheme, args.target, tp=args.tp, lnc=args.lnc,
                         kv_dtype=args.kv_dtype, kernels=args.kernels, prices=prices, cache=cache, progress=progress,
                         measured=measured)
    except ValueError as exc:
        print(f"nkilab cost: {exc}", file=sys.stderr)
        return 2
    wall = time.perf_counter() - t0
    if args.json:
        print(json.dumps(result.to_dict(), indent=1))
    else:
        print(cost_text(result))
    print(f"{wall:.2f} s; traces: {cache.misses} run, {cache.hits} from the cache ({cache.directory})",
          file=sys.stderr)
    return 0


def _record_calls(args, step: Step, measure=None) -> int:
    """`--record-calls FILE`: the step's calls measured on the CUDA GPU (`measured.record_calls`); exit status 2
    without one. `measure` replaces the measurement (tests)."""
    if args.target not in GPU_TARGETS:
        print(f"nkilab cost: --record-calls measures Triton kernels on a GPU: --target must be one of "
              f"{', '.join(GPU_TARGETS)}, got {args.target!r}", file=sys.stderr)
        return 2
    if measure is None and not has_cuda_device():
        print("nkilab cost: --record-calls needs a CUDA GPU; torch sees none here", file=sys.stderr)
        return 2
    try:
        _, calls = step_plan(args.model, step, args.scheme, get_target(args.target), tp=args.tp, lnc=args.lnc,
                             kv_dtype=args.kv_dtype)
    except ValueError as exc:
        print(f"nkilab cost: {exc}", file=sys.stderr)
        return 2
    count = measured_calls.record_calls([c.problem for c in calls], args.record_calls, measure)
    print(f"{count} calls measured into {args.record_calls}", file=sys.stderr)
    return 0


def append_to_run(out_dir: str, report_path: str, config, *, quick: bool, console) -> None:
    """`nkilab run`'s hook: the headline cost table and the waterfall appended to report.md (PNGs beside it).

    At the run's model and phases: decode batch 8 at context 2048 (the run's headline point) and prefill at the
    grid's longest prefill GEMM length, every scheme, on the first of the run's targets that has a priced instance
    and on the GPUs, at the run's LNC (`--lnc`; None = each target's default). `quick` (CI smoke): decode batch 8 at context 512, bf16 and int4 only. `nkilab cost` gives any
    other point."""
    prefill = GRIDS[config.grid]["prefill_gemm"][-1]
    steps = [Step.decode(8, 512)] if quick else (
        ([Step.decode(8, 2048)] if "decode" in config.phases else [])
        + ([Step("prefill", prefill=prefill)] if "prefill" in config.phases else []))
    neuron = [t for t in config.targets if any(i.target == t for i in INSTANCES.values())][:1]
    targets = neuron + list(GPU_TARGETS)
    schemes = ("bf16", "int4") if quick else tuple(SCHEMES)
    with console.status("cost of a token: composing decoder steps") as status:
        lines = run_section(out_dir, model=config.model, steps=steps, targets=targets, schemes=schemes,
                            lnc=config.lnc, progress=lambda line: status.update(f"cost of a token: {line}"))
    with open(report_path, "a") as fh:
        fh.write("\n" + "\n".join(lines) + "\n")
    console.print(f"cost of a token: {len(steps)} step(s) x {len(targets)} targets appended to {report_path}")
