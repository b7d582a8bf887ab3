"""The kernel calls of one decoder forward step on one tensor-parallel rank: what the composer costs.

A `Step` is the work of one step of one replica:
  prefill  one sequence of S new tokens (input tokens); causal attention over them; logits of the last token only
           (what serving computes: the next token).                                           tokens = S
  decode   B sequences, one new token each, at KV lengths `contexts` (uniform or ragged; each counts the new token);
           paged attention over each sequence's cache.                                        tokens = B
  mixed    a decode batch and one prefill chunk of C tokens in one launch of each kernel (paged attention with
           q_lens (1, ..., 1, C)); logits for the B decode tokens and the chunk's last.          tokens = B + C

Per layer, in order (Llama-style pre-norm block; the issue's list): rms_norm, qkv qmatmul, rope, write_kv_cache,
paged_attention (attention for prefill), o qmatmul, rms_norm with residual, gate_up qmatmul, silu_mul, down
qmatmul; then once: the final rms_norm with residual and the lm_head GEMM (vocab split over TP, in the weight
scheme too). Shapes are per rank (`ModelShape` at the deployment's TP) and come from each op family's own
`model_problems`, so a call here is exactly the problem `nkilab run` models.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from nkilab.harness.workloads.models import ModelShape
from nkilab.kernels._registry import get
from nkilab.kernels.ops._problem import Problem, Quant

PHASES = ("prefill", "decode", "mixed")
BLOCK_SIZE = 32  # paged-cache block of the composed decode (the default grid's)
DTYPE = "bfloat16"  # activations and KV cache


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
        return self.problem.op == "qmatmul"


def _grid(rows: int) -> dict:
    """A one-point grid: every token-wise op at `rows` rows, in either phase."""
    return dict(batches=(rows,), contexts=(1,), block_sizes=(BLOCK_SIZE,), prefill=(rows,), prefill_gemm=(rows,))


def _problems(op: str, model: ModelShape, phase: str, rows: int, quant: Quant | None) -> list[Problem]:
    return get(op).model_problems(model, phase, _grid(rows), quant, DTYPE)


def _attention(model: ModelShape, step: Step) -> tuple[str, Problem]:
    if step.phase == "prefill":
        return "attention", _problems("attention", model, "prefill", step.prefill, None)[0]
    grid = dict(_grid(step.batch), contexts=(max(step.contexts),))
    base = get("paged_attention").model_problems(model, "decode", grid, None, DTYPE)[0]
    q_lens = (1,) * step.batch + ((step.prefill,) if step.prefill else ())
    seq_lens = step.contexts + ((step.prefill,) if step.prefill else ())
    params = dict(base.params, num_seqs=len(seq_lens))
    if len(set(seq_lens)) > 1 or step.prefill:
        params.update(q_lens=q_lens, seq_lens=seq_lens)
    else:
        params.update(context=seq_lens[0])
    label = "ragged" if "seq_lens" in params else f"ctx{seq_lens[0]}"
    name = f"{model.name}/{step.phase}/paged_attention/b{len(seq_lens)}-{label}-bs{BLOCK_SIZE}"
    return "paged_attention", replace(base, name=name, params=params, tokens=step.tokens)


def step_calls(model: ModelShape, step: Step, quant: Quant | None) -> list[Call]:
    """The calls of one step on one rank of `model` (per-rank shapes: `model.tp`), weights in `quant` (None =
    bf16), in execution order of one layer, then the final norm and the lm_head."""
    phase = "prefill" if step.phase == "prefill" else "decode"
    rows, layers = step.tokens, model.layers
    norms = {p.params["residual"]: p for p in _problems("rms_norm", model, phase, rows, None)}
    gemms = {p.params["projection"]: p for p in _problems("qmatmul", model, phase, rows, quant)}
    attn_name, attn = _attention(model, step)
    lm_rows = step.logits_rows
    lm_head = Problem(get("qmatmul"), f"{model.name}/{step.phase}/qmatmul/lm_head-m{lm_rows}", phase,
                      dict(m=lm_rows, k=model.hidden, n=model.vocab // model.tp, projection="lm_head"), DTYPE,
                      lm_rows, model.name, quant)
    return [
        Call("rms_norm", norms[False], layers),
        Call("qmatmul qkv", gemms["qkv"], layers),
        Call("rope", _problems("rope", model, phase, rows, None)[0], layers),
        Call("write_kv_cache", _problems("write_kv_cache", model, phase, rows, None)[0], layers),
        Call(attn_name, attn, layers),
        Call("qmatmul o", gemms["o"], layers),
        Call("rms_norm+residual", norms[True], layers),
        Call("qmatmul gate_up", gemms["gate_up"], layers),
        Call("silu_mul", _problems("silu_mul", model, phase, rows, None)[0], layers),
        Call("qmatmul down", gemms["down"], layers),
        Call("final rms_norm+residual", norms[True], 1),
        Call("qmatmul lm_head", lm_head, 1),
    ]
