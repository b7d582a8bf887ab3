"""`Problem` (one kernel call to check or profile) and `Quant` (a qmatmul weight scheme).

A Problem belongs to its op family (`family`, an `Op`), which owns the formulas: `spec()`, `flops()` and
`hbm_bytes()` ask it, so a Problem never branches on which op it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from nkilab.kernels.ops._op import Op


@dataclass(frozen=True)
class Quant:
    """A weight-quantization scheme for qmatmul problems (formats in nkilab.reference.quant)."""

    scheme: str = "int8"
    group_size: int | None = None
    symmetric: bool = True
    w8a8: bool = False

    @property
    def label(self) -> str:
        group = f"g{self.group_size}" if self.group_size else "per-channel"
        return f"{self.scheme}-{group}{'' if self.symmetric else '-asym'}{'-w8a8' if self.w8a8 else ''}"


DEFAULT_QUANT = Quant()


@dataclass(frozen=True)
class Problem:
    """One kernel call to check or profile.

    Attributes:
        family: the op family (`Op`) this is a call of; `op` is its name.
        name: readable id, e.g. "llama-3.1-8b/decode/paged_attention/b8-ctx2048-bs32".
        phase: "decode" | "prefill" | "smoke".
        params: shape parameters (each op's `make_inputs` names its keys).
        dtype: activation / KV dtype name.
        tokens: tokens this call serves (decode: one per sequence; prefill: the sequence).
        model: model key or "smoke".
        quant: qmatmul only: the weight scheme.
    """

    family: Op = field(repr=False, compare=False)
    name: str
    phase: str
    params: dict = field(hash=False)
    dtype: str
    tokens: int
    model: str
    quant: Quant | None = None

    @property
    def op(self) -> str:
        return self.family.name

    def spec(self) -> dict:
        """The problem dict of the backend contract (`unsupported(**spec)`)."""
        return self.family.spec(self)

    def flops(self) -> float:
        """FLOPs counted the roofline way (the op's formula)."""
        return float(self.family.flops(self))

    def hbm_bytes(self) -> float:
        """Minimum HBM bytes: every input read once, every output written once (the op's formula)."""
        return float(self.family.hbm_bytes(self))

    def record(self) -> dict:
        """The `problem` field of a results.jsonl record: shape parameters, scheme, dtype, phase, model."""
        out = {"name": self.name, "op": self.op, "phase": self.phase, "model": self.model, "dtype": self.dtype,
               **self.params}
        out["scheme"] = self.quant.label if self.quant else None
        return out

    def with_dtype(self, dtype: str) -> "Problem":
        return replace(self, dtype=dtype)
