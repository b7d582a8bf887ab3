"""The kernel calls of one decoder forward step on one tensor-parallel rank: what the composer costs.

A `Step` is the work of one step of one replica:
  prefill  one sequence of S new tokens (input tokens); causal attention over them; logits of the last token only
           (what serving computes: the next token).                                           tokens = S
  decode   B sequences, one new token each, at KV lengths `contexts` (uniform or ragged; each counts the new token);
           paged attention over each sequence's cache.                                        tokens = B
  mixed    a decode batch and one prefill chunk of C tokens in one launch of each kernel (paged attention with
           q_lens (1, ..., 1, C)); logits for the B decode tokens and the chunk's last.          tokens = B + C

Per layer (a Llama-style pre-norm block): rms_norm, qkv qmatmul, rope, write_kv_cache, paged_attention (attention
for prefill), o qmatmul, rms_norm with residual, gate_up qmatmul, silu_mul, down qmatmul; then once: the final
rms_norm with residual and the lm_head GEMM (vocab split over TP, in the weight scheme too; run as launches of at
most LM_HEAD_COLUMNS columns each; GEMMs of more than GEMM_ROWS rows run as launches of at most that many). The
layer is derived from the op registry: every family's `model_problems` at a one-point grid (per rank: `ModelShape` at the
deployment's TP), so a call here is exactly a problem `nkilab run` models, and the sum is order-free (calls run
back to back).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from nkilab.harness.workloads.models import ModelShape
from nkilab.kernels._registry import ops_list
from nkilab.kernels.ops._problem import Problem, Quant

PHASES = ("prefill", "decode", "mixed")
BLOCK_SIZE = 32  # paged-cache block of the composed decode (the default grid's)
# the lm_head runs in launches of at most this many vocab columns: its N tiles are independent, and a trace of the
# whole 128k-column GEMM would take the emulator ~10x longer than the layer's largest projection
LM_HEAD_COLUMNS = 16384
# a GEMM of more rows runs as launches of at most this many (a chunked prefill's GEMMs): the kernel's M blocks are
# independent, so the trace of one launch x launches stands for the whole; it re-dequantizes each weight tile once
# per launch (one launch of every row does so once per M block of its own) and pays a launch cost per chunk. The
# emulator traces a 4096-row GEMM of the 8B model's MLP in minutes; one of 1024 rows in a quarter of that
GEMM_ROWS = 1024
DTYPE = "bfloat16"  # activations
# the KV cache's format, a deployment option: "auto" = the activations' dtype; else the paged ops' quantized-cache
# rows (`kernels/ops/_kv_quant.py`: fp8 e4m3 with per-tensor scales, int8 with a float32 scale per token and head)
KV_DTYPES = {"auto": "auto", "fp8": "fp8_e4m3", "int8": "int8"}


@dataclass(frozen=True)
class Step:
    """One forward step of one replica (see the module docstring).

    Attributes:
        phase: "prefill" | "decode" | "mixed".
        contexts: decode sequences' KV lengths, tokens (each >= 1, the new token included); () for prefill.
        prefill: new prompt tokens of the prefilling sequence (prefill: S; mixed: the chunk C); 0 for decode.
    """

    phase: str
    contexts: tuple[int, ...] = ()
    prefill: int = 0

    def __post_init__(self):
        if self.phase not in PHASES:
            raise ValueError(f"phase: must be one of {PHASES}, got {self.phase!r}")
        if any(not isinstance(c, int) or c < 1 for c in self.contexts):
            raise ValueError(f"contexts: every KV length must be an int >= 1, got {self.contexts!r}")
        if not isinstance(self.prefill, int) or self.prefill < 0:
            raise ValueError(f"prefill: must be an int >= 0 tokens, got {self.prefill!r}")
        need = {"prefill": (False, True), "decode": (True, False), "mixed": (True, True)}[self.phase]
        if (bool(self.contexts), self.prefill > 0) != need:
            raise ValueError(f"phase {self.phase!r}: needs {'decode contexts' if need[0] else 'no contexts'} and "
                             f"{'a prefill length > 0' if need[1] else 'prefill 0'}; got contexts="
                             f"{self.contexts!r}, prefill={self.prefill!r}")

    @classmethod
    def decode(cls, batch: int, ctx: int | None = None, contexts=None) -> "Step":
        """B sequences at one KV length `ctx` (uniform), or at `contexts` (ragged, len = batch)."""
        if not isinstance(batch, int) or batch < 1:
            raise ValueError(f"batch: must be an int >= 1, got {batch!r}")
        if contexts is None:
            if ctx is None:
                raise ValueError("ctx: a uniform decode needs ctx (or pass contexts= for a ragged batch)")
            contexts = (ctx,) * batch
        contexts = tuple(contexts)
        if len(contexts) != batch:
            raise ValueError(f"contexts: {len(contexts)} KV lengths for batch {batch}; give one per sequence")
        return cls("decode", contexts)

    @property
    def batch(self) -> int:
        return len(self.contexts)

    @property
    def tokens(self) -> int:
        """Tokens the step processes (rows of every GEMM)."""
        return self.batch + self.prefill

    @property
    def input_tokens(self) -> int:
        return self.prefill

    @property
    def output_tokens(self) -> int:
        return self.batch

    @property
    def logits_rows(self) -> int:
        """Rows of the lm_head GEMM: one per decode sequence, one for the prefilling sequence's last token."""
        return self.batch + (1 if self.prefill else 0)

    @property
    def kv_tokens(self) -> int:
        """KV-cache tokens the step holds after it (the HBM capacity rule's KV term)."""
        return sum(self.contexts) + self.prefill


@dataclass(frozen=True)
class Call:
    """One kernel call of the step: breakdown label `name`, its `problem` (per rank), `count` launches per step
    (the layer count for per-layer calls)."""

    name: str
    problem: Problem
    count: int

    @property
    def is_gemm(self) -> bool:
        return is_gemm(self.problem)


def is_gemm(problem: Problem) -> bool:
    """A weight GEMM: the qmatmul family's workload rows name their `projection`."""
    return "projection" in problem.params


def _grid(rows: int, context: int) -> dict:
    """A one-point grid: every token-wise op at `rows` rows, paged attention at `context`, in either phase."""
    return dict(batches=(rows,), contexts=(context,), block_sizes=(BLOCK_SIZE,), prefill=(rows,),
                prefill_gemm=(rows,))


def kv_cache_dtype(kv_dtype: str) -> str:
    """The paged ops' `kv_cache_dtype` for a deployment's `kv_dtype` ("auto" | "fp8" | "int8"; ValueError else)."""
    if kv_dtype not in KV_DTYPES:
        raise ValueError(f"kv_dtype: must be one of {tuple(KV_DTYPES)}, got {kv_dtype!r}")
    return KV_DTYPES[kv_dtype]


def layer_calls(model: ModelShape, phase: str, rows: int, context: int, quant: Quant | None,
                kv_dtype: str = "auto") -> list[Call]:
    """One layer's calls: every registered op's workload at the one-point grid (`Op.model_problems`, so the layer
    holds exactly the families the registry declares for the phase; of the paged ops the rows of the KV-cache
    format `kv_dtype`), labelled by the op's plot series where an op makes more than one call per layer
    (qmatmul's projections, rms_norm with and without the residual)."""
    kv = kv_cache_dtype(kv_dtype)
    calls = []
    for op in ops_list():
        problems = op.model_problems(model, phase, _grid(rows, context), quant, DTYPE)
        if any("kv_cache_dtype" in problem.params for problem in problems):  # a paged op: its rows per format
            problems = [problem for problem in problems if problem.params.get("kv_cache_dtype", "auto") == kv]
        for problem in problems:
            label = op.plot.series(problem.record())[1] if op.plot.series and len(problems) > 1 else op.name
            calls.append(Call(label, problem, model.layers))
    return calls


def _ragged(call: Call, step: Step) -> Call:
    """The paged-attention call (its workload rows count `num_seqs`) at the step's own contexts and query lengths."""
    q_lens = (1,) * step.batch + ((step.prefill,) if step.prefill else ())
    seq_lens = step.contexts + ((step.prefill,) if step.prefill else ())
    params = dict(call.problem.params, num_seqs=len(seq_lens))
    if len(set(seq_lens)) > 1 or step.prefill:
        params.update(q_lens=q_lens, seq_lens=seq_lens)
        params.pop("context", None)
        name = f"{call.problem.name.rsplit('/', 1)[0]}/b{len(seq_lens)}-ragged-bs{BLOCK_SIZE}"
        return replace(call, problem=replace(call.problem, name=name, params=params, tokens=step.tokens))
    return call


def _chunked(call: Call) -> Call:
    """A GEMM call of more than GEMM_ROWS rows as equal launches of at most GEMM_ROWS rows."""
    if not call.is_gemm or call.problem.params["m"] <= GEMM_ROWS:
        return call
    m = call.problem.params["m"]
    launches = math.ceil(m / GEMM_ROWS)
    rows = math.ceil(m / launches)
    problem = replace(call.problem, name=f"{call.problem.name}-chunk{rows}", tokens=rows,
                      params=dict(call.problem.params, m=rows))
    return replace(call, problem=problem, count=call.count * launches)


def lm_head(model: ModelShape, gemm: Problem, rows: int, columns: int | None = None) -> Problem:
    """The lm_head GEMM [rows, hidden] x [hidden, columns] (default vocab / tp), in `gemm`'s family and scheme."""
    n = model.vocab // model.tp if columns is None else columns
    return replace(gemm, name=f"{model.name}/{gemm.phase}/lm_head-m{rows}-n{n}", tokens=rows,
                   params=dict(m=rows, k=model.hidden, n=n, projection="lm_head"))


def lm_head_launches(model: ModelShape) -> tuple[int, int]:
    """(launches, columns each): the rank's vocab / tp columns in launches of at most LM_HEAD_COLUMNS."""
    n = model.vocab // model.tp
    launches = math.ceil(n / LM_HEAD_COLUMNS)
    return launches, math.ceil(n / launches)


def step_calls(model: ModelShape, step: Step, quant: Quant | None, kv_dtype: str = "auto") -> list[Call]:
    """The calls of one step on one rank of `model` (per-rank shapes: `model.tp`), weights in `quant` (None =
    bf16), KV cache in `kv_dtype`: one layer's calls x the layer count (GEMMs of more than GEMM_ROWS rows in
    chunks), then the final rms_norm with residual and the lm_head."""
    phase = "prefill" if step.phase == "prefill" else "decode"
    rows = step.prefill if step.phase == "prefill" else step.tokens
    layer = [_chunked(_ragged(c, step) if "num_seqs" in c.problem.params else c)
             for c in layer_calls(model, phase, rows, max(step.contexts, default=1), quant, kv_dtype)]
    norm = next(c for c in layer if c.problem.params.get("residual") is True)
    gemm = next(c for c in layer if c.is_gemm)
    launches, columns = lm_head_launches(model)
    return layer + [Call(f"final {norm.name}", norm.problem, 1),
                    Call("lm_head", lm_head(model, gemm.problem, step.logits_rows, columns), launches)]


def weight_gemms(model: ModelShape, quant: Quant | None) -> list[tuple[Problem, int]]:
    """Every weight GEMM of the model on one rank with its count (per-layer projections x layers, the lm_head),
    at M = 0: what the HBM capacity rule sizes."""
    layer = [c for c in layer_calls(model, "decode", 0, 1, quant) if c.is_gemm]
    return [(c.problem, c.count) for c in layer] + [(lm_head(model, layer[0].problem, 0), 1)]
