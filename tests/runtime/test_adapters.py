"""The adapters' own rules: the vLLM-style impl's arguments, profiling run, padding and shared caches; the HF mask
function and the 4-D masks the HF attention function accepts or refuses; QuantizedLinear; the HF adapter's import
from the repo root, whose kernels/ can shadow the PyPI `kernels` package."""

import importlib.metadata
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from transformers.masking_utils import causal_mask_function, sdpa_mask, sliding_window_causal_mask_function

from nkilab import reference
from nkilab.kernels.adapters import hf
from nkilab.kernels.adapters.vllm import NkilabAttentionImpl, NkilabAttentionMetadata

HQ, HKV, D, BS = 4, 2, 16, 4


def step_inputs():
    """Two requests (a 2-token decode-and-prefill over 5 keys, a 1-token decode over 3), padded to 4 tokens."""
    g = torch.Generator().manual_seed(0)
    kv_cache = torch.randn(2, 6, BS, HKV, D, generator=g)
    q, k, v = (torch.randn(4, h, D, generator=g) for h in (HQ, HKV, HKV))
    meta = NkilabAttentionMetadata(
        num_actual_tokens=3, query_start_loc=torch.tensor([0, 2, 3], dtype=torch.int32),
        seq_lens=torch.tensor([5, 3], dtype=torch.int32), block_table=torch.tensor([[4, 1], [2, 0]], dtype=torch.int32),
        slot_mapping=torch.tensor([1 * BS + 0, 1 * BS + 1, 2 * BS + 2, -1]))
    return q, k, v, kv_cache, meta


def expected(q, k, v, kv_cache, meta):
    kc, vc = kv_cache[0].numpy().copy(), kv_cache[1].numpy().copy()
    reference.write_kv_cache(k.numpy(), v.numpy(), kc, vc, meta.slot_mapping.numpy())
    out = reference.paged_attention(q[:3].numpy(), kc, vc, meta.block_table.numpy(), meta.seq_lens.numpy(),
                                    meta.query_start_loc.numpy(), scale=0.3)
    return kc, vc, out


def test_vllm_forward_writes_the_cache_and_the_output():
    q, k, v, kv_cache, meta = step_inputs()
    kc, vc, want = expected(q, k, v, kv_cache, meta)
    output = torch.full((4, HQ * D), float("nan"))  # [num_tokens, Hq * D], as vLLM's layer may allocate it
    impl = NkilabAttentionImpl(HQ, D, 0.3, HKV, backend="reference")
    assert impl.forward(None, q, k, v, kv_cache, meta, output=output) is output
    np.testing.assert_array_equal(kv_cache[0].numpy(), kc)
    np.testing.assert_array_equal(kv_cache[1].numpy(), vc)
    np.testing.assert_allclose(output[:3].view(3, HQ, D).numpy(), want, rtol=1e-6, atol=1e-6)  # float32 vs float64
    assert torch.isnan(output[3]).all()  # the padding token's row is not written


def test_vllm_profiling_run_and_shared_caches():
    q, k, v, kv_cache, meta = step_inputs()
    output = torch.zeros(4, HQ, D)
    impl = NkilabAttentionImpl(HQ, D, 0.3, HKV, backend="reference")
    assert impl.forward(None, q, k, v, kv_cache, None, output=output) is output and not output.any()
    before = kv_cache.clone()
    reader = NkilabAttentionImpl(HQ, D, 0.3, HKV, kv_sharing_target_layer_name="layers.0", backend="reference")
    reader.forward(None, q, k, v, kv_cache, meta, output=output)
    assert torch.equal(kv_cache, before)  # a layer sharing another's cache only reads it


@pytest.mark.parametrize("kwargs, match", [
    (dict(alibi_slopes=[1.0] * HQ), "alibi_slopes: nkilab's paged attention has no ALiBi"),
    (dict(kv_cache_dtype="fp8_e5m2"), "kv_cache_dtype: must be one of"),
    (dict(attn_type="encoder"), "attn_type: only decoder"),
])
def test_vllm_impl_refuses_what_it_cannot_run(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NkilabAttentionImpl(HQ, D, 0.3, HKV, **kwargs)
    with pytest.raises(ValueError, match="output: vLLM v1 backends write into a preallocated output"):
        NkilabAttentionImpl(HQ, D, 0.3, HKV).forward(None, *step_inputs(), output=None)


def test_hf_mask_function_hands_causal_patterns_their_key_padding():
    padding = torch.tensor([[False, True, True, True], [True, True, True, True]])
    got = hf.key_padding_mask(2, 1, 4, q_offset=3, attention_mask=padding)  # a decode step over a growing cache
    assert torch.equal(got, padding)
    windowed = hf.key_padding_mask(2, 4, 4, mask_function=sliding_window_causal_mask_function(2),
                                   attention_mask=padding)
    assert windowed.shape == (2, 1, 4, 4)  # another pattern: HF's own 4-D mask


def test_hf_attention_function_accepts_windowed_4d_masks_and_refuses_others():
    g = torch.Generator().manual_seed(1)
    q, k = torch.randn(2, HQ, 5, D, generator=g), torch.randn(2, HKV, 5, D, generator=g)
    padding = torch.tensor([[False, False, True, True, True], [True] * 5])
    module = torch.nn.Module()
    mask = sdpa_mask(batch_size=2, q_length=5, kv_length=5, mask_function=sliding_window_causal_mask_function(3),
                     attention_mask=padding, allow_is_causal_skip=False)
    out, weights = hf.attention_forward(module, q, k, k, mask, sliding_window=3, backend="reference")
    want = reference.attention(*(t.transpose(1, 2).numpy() for t in (q, k, k)), causal=True, sliding_window=3,
                               key_padding_mask=padding.numpy())
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-6, atol=1e-6)  # float32 vs float64
    assert weights is None
    full = sdpa_mask(batch_size=2, q_length=5, kv_length=5, mask_function=causal_mask_function,
                     attention_mask=padding, allow_is_causal_skip=False)
    with pytest.raises(ValueError, match="attention_mask: nkilab's attention takes causal / sliding-window masks"):
        hf.attention_forward(module, q, k, k, full, sliding_window=2, backend="reference")  # full causal, not w=2
    with pytest.raises(ValueError, match="dropout: nkilab's attention is for inference"):
        hf.attention_forward(module, q, k, k, None, dropout=0.1)


def test_quantized_linear_keeps_the_bias_and_the_layout():
    linear = torch.nn.Linear(64, 24)
    layer = hf.QuantizedLinear.from_linear(linear, "int8", backend="reference")
    x = torch.randn(2, 3, 64)
    with torch.no_grad():
        want, got = linear(x), layer(x)
    assert got.shape == (2, 3, 24)
    assert (got - want).abs().max() < 0.02 * want.abs().max()  # int8 per-channel rounding
    assert set(dict(layer.named_buffers())) == {"w_data", "w_scales", "bias"}
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU())
    model.add_module("lm_head", torch.nn.Linear(8, 4))
    hf.quantize_linears(model, "int8")
    assert isinstance(model[0], hf.QuantizedLinear) and isinstance(model.lm_head, torch.nn.Linear)


def _import_hf_in(cwd, *flags):
    """Import the HF adapter in a fresh interpreter started in `cwd` (python puts `cwd` first on sys.path)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONSAFEPATH"}
    return subprocess.run([sys.executable, *flags, "-c", "import nkilab.kernels.adapters.hf"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_the_repo_root_shadowing_transformers_kernels_is_named_and_minus_p_avoids_it():
    """From the repo root, `kernels` is nkilab's kernels/: with the PyPI `kernels` package installed (transformers
    >= 5.25 imports it) the adapter refuses with the fix in its message; without it the import works; `-P` (no
    working directory on sys.path) always works."""
    import importlib.metadata
    import os
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        importlib.metadata.distribution("kernels")
        installed = True
    except importlib.metadata.PackageNotFoundError:
        installed = False
    plain = _import_hf_in(root)
    if installed:
        assert plain.returncode != 0 and "shadows the `kernels` package" in plain.stderr, plain.stderr[-2000:]
    else:
        assert plain.returncode == 0, plain.stderr[-2000:]
    safe = _import_hf_in(root, "-P")
    assert safe.returncode == 0, safe.stderr[-2000:]
