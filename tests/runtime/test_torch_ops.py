"""torch.ops.nkilab.<op>: one custom op per registered family (plus .out overloads), passing torch.library.opcheck,
and a decode step (write_kv_cache + paged_attention + qmatmul) that torch.compile captures whole (fullgraph=True)."""

import numpy as np
import pytest
import torch

import nkilab.kernels.torch_ops as torch_ops
from nkilab.kernels import _registry
from nkilab.kernels.ops.qmatmul import torch_weight_args, weight_from_tensors
from nkilab.reference.quant import QuantizedWeight, dequantize_weight, quantize_weight

OPS = torch.ops.nkilab


def test_every_family_is_registered_with_its_out_overloads():
    names = {op.name for op in _registry.ops_list()}
    assert {n.split("::")[1].split(".")[0] for n in torch_ops.REGISTERED} == names
    for op in _registry.ops_list():
        assert hasattr(OPS, op.name), op.name
        assert (f"nkilab::{op.name}.out" in torch_ops.REGISTERED) == (op.torch.out_schema is not None)
    assert "Tensor(a!) key_cache" in OPS.write_kv_cache.default._schema.__str__()


def smoke_args(op, problem):
    """The op's smoke problem as torch-op arguments (qmatmul: the weight as tensors)."""
    args, kwargs = op.make_inputs(problem, np.random.default_rng(0), False)
    args = [part for a in args for part in (torch_weight_args(a) if isinstance(a, QuantizedWeight) else (a,))]
    tensors = [torch.from_numpy(a) if isinstance(a, np.ndarray) else a for a in args]
    options = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    return tensors, options


@pytest.mark.parametrize("backend", ["reference", "nki"])
@pytest.mark.parametrize("name", _registry.OPS)
def test_opcheck(name, backend):
    op = _registry.get(name)
    problem = op.smoke_problems("float32")[0]
    args, kwargs = smoke_args(op, problem)
    kwargs["backend"] = backend
    overload = getattr(OPS, name)
    torch.library.opcheck(overload.default, args, kwargs)
    if op.torch.out_schema is not None:
        out = torch.empty_like(args[0])
        torch.library.opcheck(overload.out, args, {**kwargs, "out": out})


def test_the_torch_op_equals_the_public_function():
    op = _registry.get("paged_attention")
    args, kwargs = smoke_args(op, op.smoke_problems("float32")[0])
    want = op.api(*args, **kwargs, backend="reference")
    torch.testing.assert_close(OPS.paged_attention(*args, **kwargs, backend="reference"), want, rtol=0, atol=0)
    out = torch.full_like(want, float("nan"))
    assert OPS.paged_attention.out(*args, **kwargs, backend="reference", out=out) is None
    torch.testing.assert_close(out, want, rtol=0, atol=0)


@pytest.mark.parametrize("scheme", ["int4", "fp8_e4m3"])
def test_weight_tensors_round_trip(scheme):
    qw = quantize_weight(np.random.default_rng(1).standard_normal((64, 16)), scheme, 32, symmetric=scheme != "int4")
    back = weight_from_tensors(*torch_weight_args(qw))
    np.testing.assert_array_equal(dequantize_weight(back), dequantize_weight(qw))
    data = torch_weight_args(qw)[0]
    if scheme == "fp8_e4m3":
        assert data.dtype == torch.uint8  # torch has no IEEE-like e4m3: the bits travel as bytes
        with pytest.raises(TypeError, match="w_data: fp8_e4m3 weights travel as their uint8 bits"):
            weight_from_tensors(data.to(torch.int8), *torch_weight_args(qw)[1:])


def test_the_ops_refuse_inputs_that_require_grad():
    x = torch.randn(2, 64, requires_grad=True)
    args = torch_weight_args(quantize_weight(np.ones((64, 8)), "int8"))
    with pytest.raises(ValueError, match="^x: requires grad while grad mode is on"):
        OPS.qmatmul(x, *args, backend="reference")


# --- a decode step under torch.compile ------------------------------------------------------------------------------

HQ, HKV, D, BS = 4, 2, 16, 4


def decode_inputs():
    g = torch.Generator().manual_seed(0)
    kc, vc = torch.randn(8, BS, HKV, D, generator=g), torch.randn(8, BS, HKV, D, generator=g)
    step = dict(q=torch.randn(2, HQ, D, generator=g), key=torch.randn(2, HKV, D, generator=g),
                value=torch.randn(2, HKV, D, generator=g), slots=torch.tensor([3 * BS + 1, 6 * BS + 0]))
    meta = dict(tables=torch.tensor([[3, 1, 0], [2, 5, 6]], dtype=torch.int32),
                seq_lens=torch.tensor([2, 9], dtype=torch.int32), starts=torch.tensor([0, 1, 2], dtype=torch.int32))
    weight = torch_weight_args(quantize_weight(np.random.default_rng(2).standard_normal((HQ * D, 24)), "int8"))
    return kc, vc, step, meta, weight


def make_step(backend, meta, weight):
    def step(q, key, value, slots, key_cache, value_cache):
        OPS.write_kv_cache(key, value, key_cache, value_cache, slots, backend=backend)
        attn = OPS.paged_attention(q, key_cache, value_cache, meta["tables"], meta["seq_lens"], meta["starts"],
                                   backend=backend)
        return OPS.qmatmul(attn.reshape(attn.shape[0], HQ * D), *weight, backend=backend)

    return step


@pytest.mark.parametrize("backend, compiler", [("reference", "inductor"), ("nki", "aot_eager")])
def test_decode_step_compiles_whole(backend, compiler):
    kc, vc, inputs, meta, weight = decode_inputs()
    step = make_step(backend, meta, weight)
    eager_caches = (kc.clone(), vc.clone())
    want = step(**inputs, key_cache=eager_caches[0], value_cache=eager_caches[1])
    torch._dynamo.reset()
    explained = torch._dynamo.explain(step)(**inputs, key_cache=kc.clone(), value_cache=vc.clone())
    assert (explained.graph_count, explained.graph_break_count) == (1, 0)
    compiled = torch.compile(step, fullgraph=True, backend=compiler)
    got = compiled(**inputs, key_cache=kc, value_cache=vc)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    torch.testing.assert_close((kc, vc), eager_caches, rtol=0, atol=0)  # the caller's caches were written
