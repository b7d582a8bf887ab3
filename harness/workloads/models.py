"""Model shapes: the per-layer dimensions of the transformers nkilab's workloads are cut from.

Llama-3.1-8B and Llama-3.1-70B (the latter at TP 8, so per-rank shapes), Qwen2.5-7B (28/4 heads), Mistral-7B
(sliding window 4096), from each model's published config.json (hidden_size, num_hidden_layers,
num_attention_heads, num_key_value_heads, head_dim, intermediate_size, vocab_size, sliding_window, rope_theta,
rope_scaling). A model not in the list comes from its own config.json (`model_from_config`, CLI `--model-config
FILE`).
"""

from __future__ import annotations

import json
import os
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


# config.json key (Hugging Face names) -> ModelShape field; nkilab's own field names are accepted as well
CONFIG_KEYS = {"hidden_size": "hidden", "num_hidden_layers": "layers", "num_attention_heads": "q_heads",
               "num_key_value_heads": "kv_heads", "head_dim": "head_dim", "intermediate_size": "intermediate",
               "vocab_size": "vocab", "sliding_window": "sliding_window", "tp": "tp", "name": "name",
               "rope_theta": "rope_theta", "rope_scaling": "rope_scaling"}
_CONFIG_NAME = {field: key for key, field in CONFIG_KEYS.items()}  # a field as the config file spells it
REQUIRED_CONFIG = ("hidden", "layers", "q_heads", "intermediate", "vocab")


def model_from_config(path: str) -> ModelShape:
    """A ModelShape from a JSON model config (a Hugging Face config.json, or nkilab's field names).

    Keys: hidden_size, num_hidden_layers, num_attention_heads, intermediate_size, vocab_size (required);
    num_key_value_heads (default: num_attention_heads), head_dim (default hidden_size / num_attention_heads),
    sliding_window (null = none; ignored when use_sliding_window is false), rope_theta (default 10000),
    rope_scaling (null or a llama3 rope_scaling mapping, `RopeScaling.from_config`), tp (nkilab's: tensor-parallel
    degree, default 1), name (default: the file name without .json). Unknown keys are ignored.

    Raises:
        ValueError: the file is missing or not a JSON object, a required key is missing, a size is not a positive
            int, rope_theta is not a number > 0, rope_scaling is not a llama3 rope_scaling, the name holds a "/",
            or num_attention_heads is not a multiple of num_key_value_heads; the message names the file and the key.
    """
    if not os.path.isfile(path):
        raise ValueError(f"model config: no such file {path!r}")
    try:
        with open(path) as fh:
            raw = json.load(fh)
    except json.JSONDecodeError as exc:
        raise ValueError(f"model config {path!r}: not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"model config {path!r}: must hold a JSON object, got {type(raw).__name__}")
    fields = {CONFIG_KEYS.get(k, k): v for k, v in raw.items() if k in CONFIG_KEYS or k in CONFIG_KEYS.values()}
    if raw.get("use_sliding_window") is False:
        fields["sliding_window"] = None
    missing = [k for k in REQUIRED_CONFIG if fields.get(k) is None]
    if missing:
        raise ValueError(f"model config {path!r}: missing {', '.join(_CONFIG_NAME[k] for k in missing)}")
    fields.setdefault("name", os.path.splitext(os.path.basename(path))[0])
    fields.setdefault("kv_heads", fields["q_heads"])
    fields.setdefault("tp", 1)
    if fields.get("head_dim") is None:
        fields["head_dim"] = _positive(path, "hidden", fields["hidden"]) // _positive(path, "q_heads",
                                                                                        fields["q_heads"])
    for key in ("hidden", "layers", "q_heads", "kv_heads", "head_dim", "intermediate", "vocab", "tp"):
        _positive(path, key, fields[key])
    if fields.get("sliding_window") is not None:
        _positive(path, "sliding_window", fields["sliding_window"])
    theta = fields.get("rope_theta", 10000.0)
    if isinstance(theta, bool) or not isinstance(theta, (int, float)) or not theta > 0:
        raise ValueError(f"model config {path!r}: rope_theta must be a number > 0, got {theta!r}")
    fields["rope_theta"] = float(theta)
    try:
        fields["rope_scaling"] = RopeScaling.from_config(fields.get("rope_scaling"))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"model config {path!r}: rope_{exc}") from None
    if not isinstance(fields["name"], str) or not fields["name"] or "/" in fields["name"]:
        raise ValueError(f"model config {path!r}: name must be a non-empty string without '/', got {fields['name']!r}")
    if fields["q_heads"] % fields["kv_heads"]:
        raise ValueError(f"model config {path!r}: num_attention_heads={fields['q_heads']} must be a multiple of "
                         f"num_key_value_heads={fields['kv_heads']}")
    return ModelShape(**{k: fields.get(k) for k in ModelShape.__dataclass_fields__ if k in fields})


def _positive(path: str, key: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"model config {path!r}: {_CONFIG_NAME[key]} must be a positive int, got {value!r}")
    return value


def resolve_model(model: "str | ModelShape") -> ModelShape:
    """A ModelShape from a key of MODELS or a ModelShape; ValueError naming the known models otherwise."""
    if isinstance(model, ModelShape):
        return model
    if model not in MODELS:
        raise ValueError(f"model: unknown {model!r}; choose one of {', '.join(MODELS)} (or a config file)")
    return MODELS[model]
