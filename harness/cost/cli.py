"""`nkilab cost`: the modeled cost of a token of one model, phase, scheme and deployment.

    nkilab cost --model llama-3.1-8b --phase decode --batch 8 --ctx 4096 --scheme int4 --target inf2 [--tp 2]
                [--price inf2.xlarge=0.76] [--kernels naive] [--cache DIR] [--json]

Prints the per-kernel breakdown and the headline figures (or, with --json, one JSON object: `TokenCost.to_dict`).
Traces not in the cache are announced as they run; a second call with the same arguments reads them back.
`--contexts 512,4096,...` gives a ragged decode batch; `--phase mixed --chunk C` adds a prefill chunk to it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from nkilab.harness.cache import Cache
from nkilab.harness.chips import ALL_TARGETS, GPU_TARGETS
from nkilab.harness.cost.calls import PHASES, Step
from nkilab.harness.cost.composer import SCHEMES, compose
from nkilab.harness.cost.estimate import KERNELS
from nkilab.harness.cost.prices import INSTANCES, parse_overrides
from nkilab.harness.cost.report import cost_text, run_section
from nkilab.harness.workloads.grids import GRIDS
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
    p.add_argument("--kernels", choices=KERNELS, default="nkilab",
                   help="nkilab's kernels, or the naive dequantize-then-matmul GEMMs")
    p.add_argument("--price", action="append", default=[], metavar="INSTANCE=USD",
                   help="override an instance's $/h (repeatable; also $NKILAB_PRICES)")
    p.add_argument("--cache", default=None, help="trace cache folder (default $NKILAB_CACHE or ~/.cache/nkilab)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


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

    def progress(line: str) -> None:
        print(f"  {line} ...", file=sys.stderr, flush=True)

    try:
        result = compose(args.model, step, args.scheme, args.target, tp=args.tp, kernels=args.kernels,
                         prices=prices, cache=cache, progress=progress)
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


def append_to_run(out_dir: str, report_path: str, config, *, quick: bool, console) -> None:
    """`nkilab run`'s hook: the headline cost table and the waterfall appended to report.md (PNGs beside it).

    At the run's model and phases: decode batch 8 at context 2048 (the run's headline point) and prefill at the
    grid's longest prefill GEMM length, every scheme, on the first of the run's targets that has a priced instance
    and on the GPUs. `quick` (CI smoke): decode batch 8 at context 512, bf16 and int4 only. `nkilab cost` gives any
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
                            progress=lambda line: status.update(f"cost of a token: {line}"))
    with open(report_path, "a") as fh:
        fh.write("\n" + "\n".join(lines) + "\n")
    console.print(f"cost of a token: {len(steps)} step(s) x {len(targets)} targets appended to {report_path}")
