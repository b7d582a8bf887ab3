"""A hand-written continuous-batching loop that serves an HF causal LM through nkilab's paged KV cache, the way vLLM's
Transformers backend does: HF runs the layers, every attention layer is the vLLM-style shim
(`nkilab.kernels.adapters.vllm.NkilabAttentionImpl`) over one paged cache per layer.

Each step packs the scheduled tokens of all requests into one [1, T] batch (positions per token): a request still
in its prompt gets a chunk of it (chunked prefill, up to the step's token budget), a request past its prompt gets
one decode token, so steps mix prefills and decodes. Blocks come from a shuffled pool, so a request's blocks are
scattered. The packed batch is padded to a multiple of `pad_to` with dummy tokens (slot -1, not counted in
num_actual_tokens), as CUDA-graph padding does. Greedy sampling.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from transformers import AttentionInterface

from nkilab.kernels.adapters.vllm import NkilabAttentionImpl, NkilabAttentionMetadata

_STEP: dict = {}  # the step being run: metadata, caches, impls (read by the attention function)


def _paged_attention(module, query, key, value, attention_mask, scaling=None, **kwargs):
    """HF attention function: [1, H, T, D] in, the shim on layer `module.layer_idx`'s cache, [1, T, Hq, D] out."""
    impl, cache = _STEP["impls"][module.layer_idx], _STEP["caches"][module.layer_idx]
    q, k, v = (t[0].transpose(0, 1).contiguous() for t in (query, key, value))  # [T, H, D]
    out = torch.zeros_like(q)  # rows past num_actual_tokens (padding) stay 0: no garbage into the next layer
    impl.forward(module, q, k, v, cache, _STEP["metadata"], output=out)
    return out[None], None


AttentionInterface.register("nkilab_paged_runner", _paged_attention)


@dataclass
class Request:
    prompt: list[int]
    max_new_tokens: int
    generated: list[int] = field(default_factory=list)
    computed: int = 0  # tokens whose keys are in the cache
    blocks: list[int] = field(default_factory=list)

    @property
    def tokens(self) -> list[int]:
        return self.prompt + self.generated

    @property
    def done(self) -> bool:
        return len(self.generated) >= self.max_new_tokens


class PagedRunner:
    """Serve `model` (an HF LlamaForCausalLM, fp32) on nkilab backend `backend` with caches of `num_blocks` blocks."""

    def __init__(self, model, backend: str, *, num_blocks: int = 48, block_size: int = 4, token_budget: int = 7,
                 pad_to: int = 4, seed: int = 0):
        cfg = model.config
        self.model, self.block_size, self.token_budget, self.pad_to = model, block_size, token_budget, pad_to
        heads, kv_heads, head_dim = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        self.impls = [NkilabAttentionImpl(heads, head_dim, head_dim ** -0.5, kv_heads, backend=backend)
                      for _ in range(cfg.num_hidden_layers)]
        self.caches = [torch.full((2, num_blocks, block_size, kv_heads, head_dim), float("nan"))
                       for _ in range(cfg.num_hidden_layers)]  # NaN: a read of a slot nobody wrote poisons the output
        self.free = list(np.random.default_rng(seed).permutation(num_blocks))
        self.steps: list[list[tuple[int, bool]]] = []  # per step: (new tokens, still in the prompt) per request
        model.set_attn_implementation("nkilab_paged_runner")

    def generate(self, prompts: list[list[int]], max_new_tokens: int) -> list[list[int]]:
        requests = [Request(list(p), max_new_tokens) for p in prompts]
        while not all(r.done for r in requests):
            self.step([r for r in requests if not r.done])
        return [r.generated for r in requests]

    def _schedule(self, requests: list[Request]) -> list[tuple[Request, int]]:
        """(request, new tokens) for this step: decodes first (one token each), then prompt chunks in the budget."""
        budget, chosen = self.token_budget, []
        for r in sorted(requests, key=lambda r: r.computed < len(r.prompt)):
            n = min(budget, len(r.tokens) - r.computed)
            if n > 0:
                chosen.append((r, n))
                budget -= n
        return chosen

    def step(self, requests: list[Request]) -> None:
        scheduled = self._schedule(requests)
        self.steps.append([(n, r.computed + n < len(r.prompt) or not r.generated) for r, n in scheduled])
        ids, positions, slots, starts, seq_lens = [], [], [], [0], []
        for r, n in scheduled:
            end = r.computed + n
            while len(r.blocks) * self.block_size < end:
                r.blocks.append(int(self.free.pop()))
            pos = np.arange(r.computed, end)
            ids += r.tokens[r.computed:end]
            positions += pos.tolist()
            slots += [r.blocks[p // self.block_size] * self.block_size + p % self.block_size for p in pos]
            starts.append(starts[-1] + n)
            seq_lens.append(end)
        actual = len(ids)
        padding = -actual % self.pad_to
        ids, positions, slots = ids + [0] * padding, positions + [0] * padding, slots + [-1] * padding
        table = np.zeros((len(scheduled), max(len(r.blocks) for r, _ in scheduled)), np.int32)  # 0: unused entries
        for i, (r, _) in enumerate(scheduled):
            table[i, :len(r.blocks)] = r.blocks
        _STEP.update(impls=self.impls, caches=self.caches, metadata=NkilabAttentionMetadata(
            num_actual_tokens=actual, query_start_loc=torch.tensor(starts, dtype=torch.int32),
            seq_lens=torch.tensor(seq_lens, dtype=torch.int32), block_table=torch.from_numpy(table),
            slot_mapping=torch.tensor(slots, dtype=torch.int64), max_query_len=max(n for _, n in scheduled),
            max_seq_len=max(seq_lens)))
        with torch.no_grad():
            logits = self.model(input_ids=torch.tensor([ids]), position_ids=torch.tensor([positions]),
                                use_cache=False).logits[0]
        for i, (r, n) in enumerate(scheduled):
            r.computed += n
            if r.computed == len(r.tokens):  # the chunk reached the last known token: sample the next one
                r.generated.append(int(logits[starts[i + 1] - 1].argmax()))
