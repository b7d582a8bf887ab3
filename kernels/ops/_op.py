"""`Op`: the declaration of one op family — everything the public API, the backends and the harness know about it.

Each module `nkilab.kernels.ops.<name>` defines one `OP = Op(...)`; `nkilab.kernels._registry` discovers them, so
adding a family never edits a central list. Backend launchers are named by module path (`Launcher`) and imported
on first use: a backend package may set up its environment on import (the Triton package sets TRITON_INTERPRET
before triton is imported), so declaring an op must not import it.

The backend contract a launcher module fulfils:
    <function>(*arrays, **options)        the op on arrays of the backend's kind (validated by the public API)
    unsupported(**problem) -> str | None  why it cannot run `problem` (the op's `spec` dict plus `empty`), or None
    traceable(problem, target)            NKI launchers only: (kernel, args, kwargs) at `problem`'s real shapes for
                                          the emulator's trace mode on `target` (zeros as data)
    TUNING_CHOICES, shape_class(problem)  NKI launchers with tunables, optional: what `nkilab tune` searches and the
                                          tuning-table row of a problem (`nkilab.kernels.nki.launch_tuning`); trace mode
                                          passes a config as `problem["tunables"]`
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable


@dataclass(frozen=True)
class Launcher:
    """Where one backend implements an op: `function` of module `module`, imported on first use."""

    module: str
    function: str


def _identity(out):
    return out


@dataclass(frozen=True)
class Check:
    """How the harness's one comparator (`nkilab.harness.checks.compare`) judges a backend's output.

    Attributes:
        output: the backend's result as one float array comparable with `reference`'s (identity for ops that return
            one array; e.g. write_kv_cache stacks its two caches).
        reference: `fn(*args, compute_dtype=..., **kwargs) -> array` in `output`'s form; None = the op's reference.
        naive: True = the FlashAttention rule: the error budget is c times the error of the reference run naively
            in the output's precision (`compute_dtype=`); False = no budget (ref_lowprec = ref64, an exact op).
        floor: absolute slack of the bound; None = the comparator's default (two ulps of the output dtype at the
            reference's magnitude); 0.0 with naive=False = bit-exact values (NaN where the reference has NaN).
        dequantized: for ops taking a quantized KV cache, `fn(*args, compute_dtype=..., **kwargs) -> array`: the
            reference on the quantized inputs in the form of the unquantized reference's output (e.g. the written
            codes dequantized), for `harness.checks.quantization_error`; None = `reference` itself (its output is
            already in that form).
        magnitude: for ops whose outputs are sums that may cancel, `fn(*args, **kwargs) -> float`: the largest
            sum of |terms| of one output (e.g. max over m, n of sum_k |x[m, k] W[k, n]|), at which the default floor
            is taken instead of max|ref64| (`harness.checks.check_output`); None = max|ref64|.
    """

    output: Callable = _identity
    reference: Callable | None = None
    naive: bool = True
    floor: float | None = None
    dequantized: Callable | None = None
    magnitude: Callable | None = None


@dataclass(frozen=True)
class Plot:
    """How the run's plots place an op's modeled records (records are dicts read back from results.jsonl).

    Attributes:
        size: the problem parameter that counts what one call serves: the decode-batch axis of the batch sweep and
            the size the report's headline picks by (qmatmul "m", paged_attention "num_seqs", ...).
        series: `fn(problem_record) -> (sort key, legend label)` of the record's line in the batch sweep; None = one
            line named after the op.
        context: the problem parameter of the context sweep, or None when the op is not swept over context.
    """

    size: str
    series: Callable[[dict], tuple[tuple, str]] | None = None
    context: str | None = None


@dataclass(frozen=True)
class TorchOp:
    """How `torch.ops.nkilab.<name>` exposes the op (registered from the registry by `nkilab.kernels.torch_ops`).

    Attributes:
        schema: the torch.library schema after the op name, e.g. "(Tensor x, *, str backend='auto') -> Tensor".
            Arguments written in place carry an alias annotation (`Tensor(a!) key_cache`), so torch.compile and
            `torch.library.opcheck` know what the op mutates.
        fake: `fn(*args, **kwargs)` (the schema's arguments) -> empty tensors of the result's shapes, dtypes and
            devices (None for `-> ()`), computing nothing: what torch.compile traces instead of the kernel.
        call: `fn(*args, **kwargs)` -> the result on real tensors; None = the public function itself (its result
            matches the schema's). Tensor results must be fresh tensors, never an input.
        out_schema: the `<name>.out` overload's schema (the same arguments and a keyword `Tensor(a!) out`,
            `-> ()`; the public function's `out=`), or None.
    """

    schema: str
    fake: Callable
    call: Callable | None = None
    out_schema: str | None = None

    @classmethod
    def like_first(cls, arguments: str) -> "TorchOp":
        """An op returning one tensor of its first argument's shape, dtype and device, with an `.out` overload:
        `arguments` is the schema's argument list without parentheses."""
        return cls(schema=f"({arguments}) -> Tensor", out_schema=f"({arguments}, Tensor(a!) out) -> ()",
                   fake=_shaped_like_first)


def _shaped_like_first(first, *args, **kwargs):
    """torch.compile's stand-in for a result shaped like the first argument."""
    return first.new_empty(first.shape)


@dataclass(frozen=True)
class Op:
    """One op family, declared once.

    Attributes:
        name: the public name (`nkilab.kernels.<name>`, CLI `--ops`, records' `kernel`).
        order: sort key of the op in every listing (OPS, the CLI, a run's order, plot colours).
        api: the public function (docstring = the spec; validates, then dispatches with `backend=`).
        reference: the float64 reference with `compute_dtype=` (the semantics, in nkilab.reference).
        run_reference: the "reference" backend: `reference` in float64, cast to the op's output dtype.
        backends: {"nki": Launcher, "triton": Launcher}: where each accelerator backend implements the op (a missing
            key = that backend does not have the op yet).
        spec: `fn(problem) -> dict`: a workload Problem as the backends' `unsupported(**problem)` dict.
        flops, hbm_bytes: `fn(problem) -> float`: the roofline formulas (FLOPs; minimum HBM bytes).
        make_inputs: `fn(problem, rng, zeros) -> (args, kwargs)`: NumPy arguments of `api` for a Problem.
        smoke_problems: `fn(dtype) -> [Problem]`: small shapes every backend runs in seconds (correctness).
        model_problems: `fn(model, phase, grid, quant, dtype) -> [Problem]`: real-model shapes; `model` is duck-typed
            (a ModelShape: hidden, head_dim, q_heads_per_rank, kv_heads_per_rank, sliding_window, projections(), name),
            `grid` a dict of sizes (nkilab.harness.workloads.GRIDS), phase one of `phases`.
        plot: where plots and the report place its records (`Plot`).
        check: the rule the harness applies to a backend's output (`Check`; default the FlashAttention rule).
        bench: torch side of the GPU bench, or None: `fn(problem, device, cache) -> (cases, truth)` with cases
            [(provider, run)] — "triton" first, then torch baselines; `run()` launches without synchronizing and
            returns the output — and `truth() -> (ref64, ref_lowprec)` on the device in `check.output`'s form.
        bench_variants: `fn(problem) -> [Problem]`: the problems the GPU bench runs for one workload problem
            (e.g. qmatmul once per weight scheme; default: the problem itself).
        phases: the workload phases `model_problems` is asked for (nkilab.harness.workloads.PHASES: "decode",
            "prefill", and the paged-cache steps "chunked", "mixed"); default decode and prefill.
        torch: how the op is registered as `torch.ops.nkilab.<name>` (`TorchOp`).
    """

    name: str
    order: int
    api: Callable
    reference: Callable
    run_reference: Callable
    backends: dict[str, Launcher]
    spec: Callable
    flops: Callable
    hbm_bytes: Callable
    make_inputs: Callable
    smoke_problems: Callable
    model_problems: Callable
    plot: Plot
    check: Check = field(default_factory=Check)
    bench: Callable | None = None
    bench_variants: Callable | None = None
    phases: tuple[str, ...] = ("decode", "prefill")
    torch: TorchOp | None = None

    def bench_problems(self, problem) -> list:
        """The GPU bench's problems for one workload problem (`bench_variants`, default the problem itself)."""
        return [problem] if self.bench_variants is None else list(self.bench_variants(problem))
