"""Quantized KV caches through the runtime integration: the torch custom ops' new arguments pass
torch.library.opcheck, and the vLLM-style impl writes and reads fp8 / int8 caches with its layer's scales."""

import numpy as np
import pytest
import torch
from kv_quant_cases import KvQuant
from strategies import pinned_paged_problem

import nkilab.kernels.torch_ops  # noqa: F401  (registers torch.ops.nkilab)
from nkilab import reference
from nkilab.kernels.adapters.vllm import NkilabAttentionImpl, NkilabAttentionMetadata

OPS = torch.ops.nkilab
# torch's schema check (opcheck's test_schema) compares inputs before / after with a multiply that CPU float8 tensors
# lack ("mul_cpu_reduced_float" not implemented for Float8_e4m3fn), so fp8 runs opcheck's other tests; int8 runs all
FP8_OPCHECK_TESTS = ("test_faketensor", "test_aot_dispatch_dynamic")


def _tensor(a):
    """NumPy -> torch (float8_e4m3fn through its bytes; Python scalars as 0-d float32 scales)."""
    if not isinstance(a, np.ndarray):
        return torch.tensor(a, dtype=torch.float32)
    if a.dtype.name == "float8_e4m3fn":
        return torch.from_numpy(a.view(np.uint8)).view(torch.float8_e4m3fn)
    return torch.from_numpy(np.ascontiguousarray(a))


def _case(kv_cache_dtype):
    dtype = "float16" if kv_cache_dtype.startswith("fp8") else "float32"  # NKI: fp8 K / V pair with 16-bit q
    problem = pinned_paged_problem([9, 5], [2, 1], 4, 2, 16, 4, dtype=dtype, seed=2)
    inputs, extra = KvQuant(kv_cache_dtype, "head").quantize_paged(problem.inputs(), problem.table.live_slots())
    kwargs = {k: (v if k == "kv_cache_dtype" else _tensor(v)) for k, v in extra.items()}
    return [_tensor(a) for a in inputs], kwargs


@pytest.mark.parametrize("backend", ["reference", "nki"])
@pytest.mark.parametrize("kv_cache_dtype", ["int8", "fp8_e4m3fn"])
def test_opcheck_quantized(kv_cache_dtype, backend):
    (q, kc, vc, bt, sl, qsl), kwargs = _case(kv_cache_dtype)
    kwargs["backend"] = backend
    tests = FP8_OPCHECK_TESTS if kv_cache_dtype.startswith("fp8") else None
    target = {"target": "trn3"} if backend == "nki" and kv_cache_dtype == "fp8_e4m3fn" else {}
    torch.library.opcheck(OPS.paged_attention.default, (q, kc, vc, bt, sl, qsl), {**kwargs, **target},
                          **({"test_utils": tests} if tests else {}))
    torch.library.opcheck(OPS.paged_attention.out, (q, kc, vc, bt, sl, qsl),
                          {**kwargs, **target, "out": torch.empty_like(q)}, **({"test_utils": tests} if tests else {}))
    key = q[:3, :2].contiguous()
    write_kwargs = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in kwargs.items()}
    torch.library.opcheck(OPS.write_kv_cache.default, (key, key, kc.clone(), vc.clone(), torch.tensor([0, -1, 5])),
                          {**write_kwargs, **target}, **({"test_utils": tests} if tests else {}))


def test_int8_write_op_mutates_the_scale_caches():
    (q, kc, vc, bt, sl, qsl), kwargs = _case("int8")
    before = kwargs["k_scale_cache"].clone()
    OPS.write_kv_cache(q[:1, :2], q[:1, :2], kc, vc, torch.tensor([3]), **kwargs, backend="reference")
    assert not torch.equal(kwargs["k_scale_cache"][0, 3], before[0, 3])
    assert float(kwargs["k_scale_cache"][0, 3, 0]) == pytest.approx(float(q[0, 0].abs().max()) / 127, rel=1e-6)


class _Layer:
    """What the impl reads from vLLM's Attention layer: fp8 scales, or nkilab's int8 scale caches."""


@pytest.mark.parametrize("kv_cache_dtype", ["fp8", "int8"])
def test_vllm_impl_quantized_step(kv_cache_dtype):
    g = torch.Generator().manual_seed(0)
    hq, hkv, d, bs, nb = 4, 2, 16, 4, 6
    q, k, v = (torch.randn(3, h, d, generator=g) for h in (hq, hkv, hkv))
    meta = NkilabAttentionMetadata(num_actual_tokens=3, query_start_loc=torch.tensor([0, 2, 3], dtype=torch.int32),
                                   seq_lens=torch.tensor([2, 1], dtype=torch.int32),
                                   block_table=torch.tensor([[4], [2]], dtype=torch.int32),
                                   slot_mapping=torch.tensor([4 * bs, 4 * bs + 1, 2 * bs]))
    layer = _Layer()
    fmt = "fp8_e4m3fn" if kv_cache_dtype == "fp8" else "int8"
    if fmt == "int8":
        kv_cache = torch.zeros(2, nb, bs, hkv, d, dtype=torch.int8)
        layer.kv_scale_cache = torch.full((2, nb, bs, hkv), float("nan"))
        extra = dict(k_scale_cache=layer.kv_scale_cache[0].numpy().copy(),
                     v_scale_cache=layer.kv_scale_cache[1].numpy().copy())
    else:
        kv_cache = torch.zeros(2, nb, bs, hkv, d, dtype=torch.float8_e4m3fn)
        layer._k_scale, layer._v_scale = torch.tensor(0.01), torch.tensor([0.02, 0.005])
        extra = dict(k_scale=0.01, v_scale=np.array([0.02, 0.005], np.float32))
    kc = kv_cache[0].view(torch.uint8).numpy().copy() if fmt != "int8" else kv_cache[0].numpy().copy()
    kc, vc = (c.view(np.dtype("float8_e4m3fn")) if fmt != "int8" else c for c in (kc, kc.copy()))
    reference.write_kv_cache(k.numpy(), v.numpy(), kc, vc, meta.slot_mapping.numpy(), kv_cache_dtype=fmt, **extra)
    want = reference.paged_attention(q.numpy(), kc, vc, meta.block_table.numpy(), meta.seq_lens.numpy(),
                                     meta.query_start_loc.numpy(), scale=0.3, kv_cache_dtype=fmt, **extra)
    output = torch.zeros(3, hq * d)
    NkilabAttentionImpl(hq, d, 0.3, hkv, kv_cache_dtype=kv_cache_dtype, backend="reference").forward(
        layer, q, k, v, kv_cache, meta, output=output)
    bits = (lambda a: a.view(np.uint8)) if fmt != "int8" else (lambda a: a)
    got_k = kv_cache[0].view(torch.uint8).numpy() if fmt != "int8" else kv_cache[0].numpy()
    np.testing.assert_array_equal(got_k, bits(kc))
    np.testing.assert_allclose(output.view(3, hq, d).numpy(), want, rtol=1e-5, atol=1e-6)  # float32 vs float64
    if fmt == "int8":
        np.testing.assert_array_equal(layer.kv_scale_cache[0].numpy(), extra["k_scale_cache"])


def test_vllm_impl_int8_needs_the_scale_caches():
    impl = NkilabAttentionImpl(4, 16, 0.3, 2, kv_cache_dtype="int8", backend="reference")
    meta = NkilabAttentionMetadata(1, torch.tensor([0, 1], dtype=torch.int32), torch.tensor([1], dtype=torch.int32),
                                   torch.tensor([[0]], dtype=torch.int32), torch.tensor([0]))
    with pytest.raises(ValueError, match="layer.kv_scale_cache"):
        impl.forward(_Layer(), torch.zeros(1, 4, 16), torch.zeros(1, 2, 16), torch.zeros(1, 2, 16),
                     torch.zeros(2, 1, 4, 2, 16, dtype=torch.int8), meta, output=torch.zeros(1, 64))
