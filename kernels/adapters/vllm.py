"""A vLLM-v1-style paged attention backend on nkilab's kernels, usable without vLLM installed.

`NkilabAttentionImpl.forward` takes what vLLM v1 hands an attention implementation (`AttentionImpl.forward`):

    query [num_tokens, Hq, D], key / value [num_tokens, Hkv, D]  the step's tokens (num_tokens may include padding)
    kv_cache [2, num_blocks, block_size, Hkv, D]                 vLLM's "flash" layout (NHD): keys, then values
    attn_metadata                                                 the fields of `NkilabAttentionMetadata` (vLLM's
                                                                  FlashAttentionMetadata has them all)
    output [num_tokens, Hq, D] (or [num_tokens, Hq * D])          written in place and returned

and does what vLLM's FlashAttention backend does with them: the new keys and values go into the cache at
`slot_mapping` (-1 = padding token, skipped; only the first len(slot_mapping) tokens), then paged attention over the
cache writes the first num_actual_tokens rows of `output`. Both run as torch custom ops (`torch.ops.nkilab.*`,
see `nkilab.kernels.torch_ops`) on the nkilab backend chosen at construction.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

import nkilab.kernels.torch_ops  # noqa: F401  (registers torch.ops.nkilab)

OPS = torch.ops.nkilab


@dataclass
class NkilabAttentionMetadata:
    """The per-step attention metadata of vLLM v1 that the backend reads (names and meanings as vLLM's).

    Attributes:
        num_actual_tokens: tokens of the step excluding padding (query_start_loc[-1]).
        query_start_loc: int32 [num_reqs + 1], request i's tokens are rows query_start_loc[i]:[i + 1].
        seq_lens: int32 [num_reqs], each request's KV length including this step's tokens.
        block_table: int32 [num_reqs, max_blocks], logical block j of request i -> physical block.
        slot_mapping: int64 [num_tokens'] (num_tokens' <= num_tokens): cache slot of each token, -1 = padding.
        causal: decoder attention (bottom-right causal within each request).
        max_query_len, max_seq_len: the maxima of the two (kept for vLLM parity; the kernels derive their own).
    """

    num_actual_tokens: int
    query_start_loc: torch.Tensor
    seq_lens: torch.Tensor
    block_table: torch.Tensor
    slot_mapping: torch.Tensor
    causal: bool = True
    max_query_len: int = 0
    max_seq_len: int = 0


class NkilabAttentionImpl:
    """vLLM v1 `AttentionImpl` over nkilab's write_kv_cache + paged_attention.

    Args (vLLM's, plus `backend`):
        num_heads, head_size, scale, num_kv_heads: the layer's geometry and softmax scale.
        alibi_slopes: must be None (no ALiBi kernels).
        sliding_window: None or w (each query sees its last w keys, itself included: vLLM's (w - 1, 0) window).
        kv_cache_dtype: "auto" (the cache holds the model dtype).
        logits_soft_cap: None or 0 (off), or c > 0.
        attn_type: "decoder" only.
        kv_sharing_target_layer_name: set when another layer writes the shared cache (this one only reads it).
        backend: the nkilab backend ("reference" | "nki" | "triton" | "auto").
    """

    def __init__(self, num_heads: int, head_size: int, scale: float, num_kv_heads: int, alibi_slopes=None,
                 sliding_window: int | None = None, kv_cache_dtype: str = "auto", logits_soft_cap: float | None = None,
                 attn_type: str = "decoder", kv_sharing_target_layer_name: str | None = None, *,
                 backend: str = "auto"):
        if alibi_slopes is not None:
            raise ValueError("alibi_slopes: nkilab's paged attention has no ALiBi; pass None")
        if kv_cache_dtype != "auto":
            raise ValueError(f"kv_cache_dtype: only 'auto' (the model dtype) is supported, got {kv_cache_dtype!r}")
        if str(getattr(attn_type, "value", attn_type)).lower() != "decoder":
            raise ValueError(f"attn_type: only decoder self-attention is supported, got {attn_type!r}")
        if num_heads % num_kv_heads:
            raise ValueError(f"num_heads: {num_heads} must be a multiple of num_kv_heads={num_kv_heads}")
        self.num_heads, self.head_size, self.num_kv_heads = num_heads, head_size, num_kv_heads
        self.scale = float(scale)
        self.sliding_window = sliding_window
        self.logits_soft_cap = logits_soft_cap or None
        self.kv_sharing_target_layer_name = kv_sharing_target_layer_name
        self.backend = backend

    def forward(self, layer, query: torch.Tensor, key: torch.Tensor | None, value: torch.Tensor | None,
                kv_cache: torch.Tensor, attn_metadata, output: torch.Tensor | None = None, output_scale=None,
                output_block_scale=None) -> torch.Tensor:
        """Write this step's keys and values into `kv_cache`, then attend (module docstring); returns `output`.

        `layer` is vLLM's Attention module (unused: no fp8 scales). attn_metadata None is vLLM's profiling run: the
        output is returned untouched.
        """
        if output is None:
            raise ValueError("output: vLLM v1 backends write into a preallocated output; pass one")
        if output_scale is not None or output_block_scale is not None:
            raise ValueError("output_scale: fused output quantization is not supported")
        if attn_metadata is None:
            return output
        key_cache, value_cache = kv_cache.unbind(0)
        if self.kv_sharing_target_layer_name is None and key is not None and value is not None:
            slots = attn_metadata.slot_mapping
            tokens = slots.shape[0]
            OPS.write_kv_cache(key[:tokens], value[:tokens], key_cache, value_cache, slots, backend=self.backend)
        n = attn_metadata.num_actual_tokens
        out = output[:n].view(n, self.num_heads, self.head_size)
        OPS.paged_attention.out(query[:n], key_cache, value_cache, attn_metadata.block_table, attn_metadata.seq_lens,
                                attn_metadata.query_start_loc, scale=self.scale, causal=bool(attn_metadata.causal),
                                sliding_window=self.sliding_window, softcap=self.logits_soft_cap,
                                backend=self.backend, out=out)
        return output
