"""Model shapes: the per-layer dimensions of the transformers nkilab's workloads are cut from.

Llama-3.1-8B and Llama-3.1-70B (the latter at TP 8, so per-rank shapes), Qwen2.5-7B (28/4 heads), Mistral-7B
(sliding window 4096), from each model's published config.json (hidden_size, num_hidden_layers,
num_attention_heads, num_key_value_heads, head_dim, intermediate_size, vocab_size, sliding_window, rope_theta,
rope_scaling).
"""

from __future__ import annotations

from dataclasses import dataclass

from nkilab.reference.rotary import RopeScaling

LLAMA31_ROPE_SCALING = RopeScaling(factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                   original_max_position_embeddings=8192)  # Llama-3.1 8B / 70B config.json


@dataclass(frozen=True)
class ModelShape:
    """One transformer's per-layer dimensions, at tensor-parallel degree `tp`.

    Attributes:
        name: registry key; hidden: model width; layers; q_heads, kv_heads: attention heads (whole model);
        head_dim: D; intermediate: MLP width; vocab; sliding_window: None or the window in tokens; tp: TP degree;
        rope_theta: the rotary frequency base; rope_scaling: None or the rotary scaling (Llama-3.1's).
    """

    name: str
    hidden: int
    layers: int
    q_heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    sliding_window: int | None = None
    tp: int = 1
    rope_theta: float = 10000.0
    rope_scaling: RopeScaling | None = None

    @property
    def q_heads_per_rank(self) -> int:
        return self.q_heads // self.tp

    @property
    def kv_heads_per_rank(self) -> int:
        return max(1, self.kv_heads // self.tp)

    def projections(self) -> dict[str, tuple[int, int]]:
        """Per-rank GEMM (K, N) of each projection: TP splits N of QKV/gate_up and K of O/down."""
        d = self.head_dim
        qkv_n = (self.q_heads_per_rank + 2 * self.kv_heads_per_rank) * d
        return {
            "qkv": (self.hidden, qkv_n),
            "o": (self.q_heads_per_rank * d, self.hidden),
            "gate_up": (self.hidden, 2 * self.intermediate // self.tp),
            "down": (self.intermediate // self.tp, self.hidden),
        }


MODELS: dict[str, ModelShape] = {
    "llama-3.1-8b": ModelShape("llama-3.1-8b", 4096, 32, 32, 8, 128, 14336, 128256, rope_theta=500000.0,
                               rope_scaling=LLAMA31_ROPE_SCALING),
    "llama-3.1-70b": ModelShape("llama-3.1-70b", 8192, 80, 64, 8, 128, 28672, 128256, tp=8, rope_theta=500000.0,
                                rope_scaling=LLAMA31_ROPE_SCALING),
    "qwen2.5-7b": ModelShape("qwen2.5-7b", 3584, 28, 28, 4, 128, 18944, 152064, rope_theta=1000000.0),
    "mistral-7b": ModelShape("mistral-7b", 4096, 32, 32, 8, 128, 14336, 32000, sliding_window=4096,
                             rope_theta=10000.0),
}
DEFAULT_MODEL = "llama-3.1-8b"
