"""End to end: a small random-weight HF Llama (4 layers, 8 query / 2 kv heads, built from a config: no download)
generates the same greedy tokens through nkilab as through HF itself.

- paged: `runtime.paged_runner.PagedRunner` (vLLM-style shim over nkilab's paged cache: chunked prefill, mixed
  prefill/decode steps, a shuffled block pool, -1 padding tokens) against HF generate, fp32, on every backend;
  int8 weights (every nn.Linear but lm_head through qmatmul) on NKI against the reference backend on the same weights.
- dense: the HF attention function (`adapters.hf`, attn_implementation "nkilab_<backend>") on a left-padded batch
  against HF's eager attention; dropping the padding mask changes the tokens, so the comparison can fail.
"""

import copy

import pytest
import torch
from runtime.paged_runner import PagedRunner
from transformers import LlamaConfig, LlamaForCausalLM

import nkilab.kernels as K
from nkilab.kernels.adapters import hf

PROMPTS = [[5, 6, 7, 8, 9, 10, 11, 12, 13], [20, 21, 22], [30, 31, 32, 33, 34, 35]]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    # initializer_range 0.2 (HF's default is 0.02) keeps the random model's logits apart, so greedy tokens are decided
    # by the model and not by rounding
    config = LlamaConfig(vocab_size=96, hidden_size=128, intermediate_size=256, num_hidden_layers=4,
                         num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=128,
                         initializer_range=0.2, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="module")
def hf_tokens(model):
    """HF generate's 6 greedy tokens per prompt, one prompt at a time, eager attention (n tokens = the first n)."""
    model.set_attn_implementation("eager")
    out = []
    with torch.no_grad():
        for p in PROMPTS:
            ids = torch.tensor([p])
            out.append(model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=6,
                                      do_sample=False)[0, len(p):].tolist())
    return out


# Triton runs under the CPU interpreter here: 2 tokens (still chunked prefill and a mixed step) keep it in budget
@pytest.mark.parametrize("backend, new_tokens", [("reference", 6), ("nki", 6), ("triton", 2)])
def test_paged_generation_matches_hf(model, hf_tokens, backend, new_tokens):
    runner = PagedRunner(model, backend)
    got = runner.generate(PROMPTS, new_tokens)
    assert K.last_backend("paged_attention") == backend and K.last_backend("write_kv_cache") == backend
    assert got == [tokens[:new_tokens] for tokens in hf_tokens]
    # the schedule did what the test is about: a prompt split over steps, a step mixing prefill and decode
    assert any(prefill and n < len(PROMPTS[0]) for step in runner.steps for n, prefill in step)
    assert any({prefill for _, prefill in step} == {True, False} for step in runner.steps)


def test_paged_generation_int8_nki_matches_the_reference_backend(model):
    tokens = {}
    for backend in ("reference", "nki"):
        quantized = hf.quantize_linears(copy.deepcopy(model), "int8", backend=backend)
        tokens[backend] = PagedRunner(quantized, backend).generate(PROMPTS, 6)
        assert K.last_backend("qmatmul") == backend
    assert tokens["nki"] == tokens["reference"]


@pytest.mark.parametrize("backend", ["reference", "nki"])
def test_hf_attention_function_on_a_left_padded_batch(model, backend):
    ids = torch.tensor([[0, 0, 0, 5, 6, 7, 8], [9, 10, 11, 12, 13, 14, 15]])
    mask = (ids != 0).long()
    model.set_attn_implementation("eager")
    with torch.no_grad():
        want = model.generate(ids, attention_mask=mask, max_new_tokens=3, do_sample=False)
        model.set_attn_implementation(hf.register(f"nkilab_{backend}", backend=backend))
        got = model.generate(ids, attention_mask=mask, max_new_tokens=3, do_sample=False)
        assert K.last_backend("attention") == backend
        torch.testing.assert_close(got, want, rtol=0, atol=0)
        model.set_attn_implementation(hf.register("nkilab_ignoring_padding", backend=backend))
        hf.AttentionMaskInterface.register("nkilab_ignoring_padding", lambda *a, **k: None)
        unmasked = model.generate(ids, attention_mask=mask, max_new_tokens=3, do_sample=False)
    assert not torch.equal(unmasked[0], want[0]) and torch.equal(unmasked[1], want[1])  # only the padded row moves
