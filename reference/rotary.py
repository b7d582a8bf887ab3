"""Rotary position embedding (RoPE) reference: q and k rotated by angles position × inv_freq.

Each query/key head vector x [D] of a token at absolute position p has its first `rotary_dim` = r dims rotated in
r/2 planes; plane i (frequency inv_freq[i] = theta^(-2i/r)) turns by the angle p · inv_freq[i]; dims r..D pass
through unchanged (partial rotary). The planes pair dims in one of two layouts:
  "neox"  halves: (x[i], x[i + r/2]) — GPT-NeoX, HF Llama/Qwen/Mistral (`rotate_half`), vLLM is_neox_style=True;
  "gptj"  interleaved pairs: (x[2i], x[2i + 1]) — GPT-J, vLLM is_neox_style=False.
Rotation of a pair (x1, x2) by angle a: (x1 cos a - x2 sin a, x2 cos a + x1 sin a).

Llama-3.1's frequency-dependent scaling (HF `rope_scaling` with rope_type "llama3") is `RopeScaling`: wavelengths
2π / inv_freq longer than original_max_position_embeddings / low_freq_factor are stretched by `factor`, those
shorter than original_max_position_embeddings / high_freq_factor are kept, and the band between interpolates
linearly in original_max_position_embeddings / wavelength. Other HF rope types (linear, dynamic, yarn, longrope)
are not supported; each would be one more transform of `inv_freq` here (and a field on RopeScaling), which every
backend then picks up, since the backends all take their frequencies from `inv_freq`.

Precision: `compute_dtype=np.float64` (default) is the truth: frequencies, angles, cos/sin and products in float64.
A low precision (float32/float16/bfloat16) is the naive run the check's error budget needs, done the way HF and
vLLM do it: inv_freq rounded to fp32, angles p · inv_freq in fp32 (positions are exact in fp32 below 2^24),
cos/sin in fp32 rounded to the working precision (vLLM keeps its cos_sin_cache in the model dtype), products and
sums in fp32, each output rounded once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields

import numpy as np

from nkilab.reference.matmul import accumulate_dtype

STYLES = ("neox", "gptj")
SCALING_TYPES = ("llama3",)


@dataclass(frozen=True)
class RopeScaling:
    """Llama-3.1's rope scaling: HF config.json `rope_scaling` with "rope_type": "llama3".

    Attributes:
        factor: > 0, the stretch of the low-frequency (long-wavelength) planes (Llama-3.1: 8).
        low_freq_factor, high_freq_factor: 0 < low < high (Llama-3.1: 1 and 4); the band edges are
            original_max_position_embeddings / low_freq_factor and ... / high_freq_factor, in tokens of wavelength.
        original_max_position_embeddings: >= 1, the pre-training context (Llama-3.1: 8192).
    """

    factor: float
    low_freq_factor: float
    high_freq_factor: float
    original_max_position_embeddings: int

    def __post_init__(self):
        for name in ("factor", "low_freq_factor", "high_freq_factor"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"scaling: {name} must be a finite number > 0, got {value!r}")
        if not self.low_freq_factor < self.high_freq_factor:
            raise ValueError(f"scaling: low_freq_factor {self.low_freq_factor!r} must be < high_freq_factor "
                             f"{self.high_freq_factor!r}")
        orig = self.original_max_position_embeddings
        if isinstance(orig, bool) or not isinstance(orig, (int, np.integer)) or orig < 1:
            raise ValueError(f"scaling: original_max_position_embeddings must be an int >= 1, got {orig!r}")

    @classmethod
    def from_config(cls, value) -> "RopeScaling | None":
        """None, a RopeScaling, or an HF `rope_scaling` mapping ({"rope_type" (or "type"): "llama3", "factor": ...,
        "low_freq_factor": ..., "high_freq_factor": ..., "original_max_position_embeddings": ...}).

        Raises:
            TypeError: anything else. ValueError: another rope type, a missing or unknown key, a bad value.
        """
        if value is None or isinstance(value, cls):
            return value
        if not isinstance(value, Mapping):
            raise TypeError(f"scaling: must be None, a RopeScaling or an HF rope_scaling dict, got "
                            f"{type(value).__name__}")
        config = dict(value)
        kind = config.pop("rope_type", None)
        kind = config.pop("type", kind)  # older HF configs name the key "type"
        if kind not in SCALING_TYPES:
            raise ValueError(f"scaling: rope_type must be one of {SCALING_TYPES} (other HF rope types are not "
                             f"supported), got {kind!r}")
        names = [f.name for f in fields(cls)]
        missing, unknown = [n for n in names if n not in config], sorted(set(config) - set(names))
        if missing or unknown:
            raise ValueError(f"scaling: a llama3 rope_scaling needs exactly the keys {names}; missing {missing}, "
                             f"unknown {unknown}")
        return cls(**config)

    def to_config(self) -> dict:
        """The HF rope_scaling dict (JSON-ready; `from_config` reads it back)."""
        return dict(rope_type="llama3", **{f.name: getattr(self, f.name) for f in fields(self)})


def inv_freq(rotary_dim: int, theta: float, scaling: RopeScaling | None = None) -> np.ndarray:
    """Frequencies of the r/2 rotation planes, float64 [r/2]: theta^(-2i/r), then Llama-3.1's scaling if given.

    Example:
        >>> inv_freq(4, 100.0).tolist()
        [1.0, 0.1]
    """
    base = float(theta) ** -(np.arange(0, rotary_dim, 2, dtype=np.float64) / rotary_dim)
    if scaling is None:
        return base
    orig = float(scaling.original_max_position_embeddings)
    wavelen = 2.0 * np.pi / base
    long_edge, short_edge = orig / scaling.low_freq_factor, orig / scaling.high_freq_factor
    # between the edges: linear in orig / wavelen, from all-stretched (smooth 0) to unscaled (smooth 1)
    smooth = (orig / wavelen - scaling.low_freq_factor) / (scaling.high_freq_factor - scaling.low_freq_factor)
    scaled = np.where(wavelen > long_edge, base / scaling.factor, base)
    medium = (wavelen >= short_edge) & (wavelen <= long_edge)
    return np.where(medium, (1.0 - smooth) * base / scaling.factor + smooth * base, scaled)


def angles(positions, rotary_dim: int, theta: float, scaling: RopeScaling | None = None,
           dtype=np.float64) -> np.ndarray:
    """Rotation angles [T, r/2] = positions[t] · inv_freq[i], computed in `dtype` (float64 truth; float32 the way
    HF/vLLM do: inv_freq and positions rounded to fp32, one fp32 product)."""
    dt = np.dtype(dtype)
    freq = inv_freq(rotary_dim, theta, scaling).astype(dt)
    return np.asarray(positions).astype(dt)[:, None] * freq[None, :]


def pair_index(rotary_dim: int, style: str) -> tuple[np.ndarray, np.ndarray]:
    """(first, second) dim indices [r/2] of each rotation plane: halves for "neox", even/odd for "gptj"; the dims
    r..D pass through."""
    half = rotary_dim // 2
    if style == "neox":
        return np.arange(half), np.arange(half, rotary_dim)
    return np.arange(0, rotary_dim, 2), np.arange(1, rotary_dim, 2)


def rope(q, k, positions, *, theta: float = 10000.0, rotary_dim: int | None = None, style: str = "neox",
         scaling: RopeScaling | None = None, compute_dtype=np.float64):
    """(q', k'): q and k with each head's first rotary_dim dims rotated by its token's angles; new arrays.

    Dimensions: T tokens, Hq / Hkv heads of D dims, r = rotary_dim (even, <= D).

    Args:
        q: [T, Hq, D] float; k: [T, Hkv, D] float.
        positions: [T] non-negative integers, the absolute position of each token.
        theta: > 0, the frequency base (Llama-3.1: 500000).
        rotary_dim: None (= D) or the even number of leading dims rotated.
        style: "neox" | "gptj" (see the module docstring).
        scaling: None, a RopeScaling (Llama-3.1's) or its HF rope_scaling dict (`RopeScaling.from_config`).
        compute_dtype: float64 (truth) | float32 | float16 | bfloat16 (the naive run, see the module docstring).

    Returns:
        (q', k'): q's and k's shapes, compute_dtype.

    Example:
        >>> x = np.array([[[1.0, 0.0]]])  # one token, one head, D = 2, at position 1, inv_freq = [1]
        >>> [v.round(4).tolist() for v in rope(x, x, np.array([1]))]
        [[[[0.5403, 0.8415]]], [[[0.5403, 0.8415]]]]
    """
    cd = np.dtype(compute_dtype)
    acc = accumulate_dtype(cd)
    d = np.asarray(q).shape[-1]
    r = d if rotary_dim is None else int(rotary_dim)
    ang = angles(positions, r, theta, RopeScaling.from_config(scaling), dtype=acc)
    cos = np.cos(ang).astype(cd).astype(acc)[:, None, :]  # [T, 1, r/2], broadcast over heads
    sin = np.sin(ang).astype(cd).astype(acc)[:, None, :]
    first, second = pair_index(r, style)
    out = []
    for x in (q, k):
        x = np.asarray(x).astype(cd)
        x1, x2 = x[..., first].astype(acc), x[..., second].astype(acc)
        y = x.copy()
        y[..., first] = (x1 * cos - x2 * sin).astype(cd)
        y[..., second] = (x2 * cos + x1 * sin).astype(cd)
        out.append(y)
    return tuple(out)
