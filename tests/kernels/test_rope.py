"""Public rope: validation with clear errors, kinds and shapes in = out, new arrays, every backend against the
reference, empty problems, and its workload rows at each model's per-rank shapes modeled at or above the roofline."""

import ml_dtypes
import numpy as np
import pytest
import torch

import nkilab.kernels as K
import nkilab.kernels.torch_ops  # noqa: F401  (registers torch.ops.nkilab.*)
from nkilab import reference
from nkilab.harness.checks import check_output
from nkilab.harness.cli import main
from nkilab.harness.perf.model import model_trace
from nkilab.harness.workloads import GRIDS, MODELS, make_inputs, model_problems
from nkilab.kernels import _registry, nki
from nkilab.reference import RopeScaling

OP = _registry.get("rope")


def _inputs(t=3, hq=4, hkv=2, d=16, dtype=np.float32):
    rng = np.random.default_rng(0)
    return (rng.standard_normal((t, hq, d)).astype(dtype), rng.standard_normal((t, hkv, d)).astype(dtype),
            np.array([0, 5, 9000][:t], np.int32))


@pytest.mark.parametrize("make, error, match", [
    (lambda q, k, p: dict(q=q[0], k=k, positions=p), ValueError, r"q: must be 3-D \[T, Hq, D\]"),
    (lambda q, k, p: dict(q=q, k=k[None], positions=p), ValueError, r"k: must be 3-D \[T, Hkv, D\]"),
    (lambda q, k, p: dict(q=q, k=k[:2], positions=p), ValueError, "k: .* must share q's T=3 and D=16"),
    (lambda q, k, p: dict(q=q, k=k[..., :8], positions=p), ValueError, "k: .* must share q's T=3 and D=16"),
    (lambda q, k, p: dict(q=q, k=k[:, :0], positions=p), ValueError, "q, k: need at least one head each"),
    (lambda q, k, p: dict(q=q.astype(np.int32), k=k, positions=p), TypeError, "q: dtype must be one of"),
    (lambda q, k, p: dict(q=q, k=k.astype(np.float16), positions=p), TypeError, "q, k: must share one dtype"),
    (lambda q, k, p: dict(q=q, k=k, positions=p.astype(np.float32)), TypeError, "positions: dtype must be an integer"),
    (lambda q, k, p: dict(q=q, k=k, positions=p[None]), ValueError, r"positions: must be 1-D \[T\]"),
    (lambda q, k, p: dict(q=q, k=k, positions=p[:2]), ValueError, "positions: length 2 must equal q's T=3"),
    (lambda q, k, p: dict(q=q, k=k, positions=np.array([0, -1, 2])), ValueError,
     r"positions: positions\[1\] = -1 must be in \[0, 2\*\*24\)"),
    (lambda q, k, p: dict(q=q, k=k, positions=np.array([0, 1, 2**24])), ValueError, r"positions\[2\] = 16777216"),
    (lambda q, k, p: dict(q=q, k=k, positions=p, rotary_dim=7), ValueError,
     r"rotary_dim: must be an even int in \[2, D=16\] .* got 7"),
    (lambda q, k, p: dict(q=q, k=k, positions=p, rotary_dim=18), ValueError, "rotary_dim: .* got 18"),
    (lambda q, k, p: dict(q=q, k=k, positions=p, rotary_dim=0), ValueError, "rotary_dim: .* got 0"),
    (lambda q, k, p: dict(q=q, k=k, positions=p, rotary_dim=8.0), ValueError, "rotary_dim: .* got 8.0"),
    (lambda q, k, p: dict(q=q, k=k, positions=p, rotary_dim=True), ValueError, "rotary_dim: .* got True"),
    (lambda q, k, p: dict(q=q[..., :5], k=k[..., :5], positions=p), ValueError,
     r"rotary_dim: .* got None \(= head_dim D = 5\)"),
    (lambda q, k, p: dict(q=q, k=k, positions=p, style="llama"), ValueError,
     r"style: must be one of \('neox', 'gptj'\), got 'llama'"),
    (lambda q, k, p: dict(q=q, k=k, positions=p, theta=0.0), ValueError, "theta: must be a finite number > 0"),
    (lambda q, k, p: dict(q=q, k=k, positions=p, theta=-1.0), ValueError, "theta: must be a finite number > 0"),
    (lambda q, k, p: dict(q=q, k=k, positions=p, theta=float("inf")), ValueError, "theta: must be a finite"),
    (lambda q, k, p: dict(q=q, k=k, positions=p, scaling=dict(rope_type="linear", factor=2.0)), ValueError,
     "scaling: rope_type must be one of"),
    (lambda q, k, p: dict(q=q, k=k, positions=torch.from_numpy(p)), TypeError, "must all be NumPy arrays or all"),
    (lambda q, k, p: dict(q=q, k=k, positions=p.tolist()), TypeError, "positions: must be a numpy.ndarray"),
    (lambda q, k, p: dict(q=q, k=k, positions=p, backend="cuda"), ValueError, "backend: must be one of"),
])
def test_bad_arguments_are_named(make, error, match):
    with pytest.raises(error, match=match):
        K.rope(**make(*_inputs()))


@pytest.mark.parametrize("style", ["neox", "gptj"])
def test_reference_backend_returns_new_arrays_equal_to_the_reference(style):
    q, k, pos = _inputs()
    q0, k0 = q.copy(), k.copy()
    out = K.rope(q, k, pos, theta=500000.0, rotary_dim=8, style=style, backend="reference")
    expected = reference.rope(q, k, pos, theta=500000.0, rotary_dim=8, style=style)
    for got, want, x in zip(out, expected, (q, k)):
        assert isinstance(got, np.ndarray) and got.shape == x.shape and got.dtype == np.float32
        assert not np.shares_memory(got, x)
        np.testing.assert_array_equal(got, want.astype(np.float32))
    np.testing.assert_array_equal(q, q0)  # the caller's arrays are not written
    np.testing.assert_array_equal(k, k0)


@pytest.mark.parametrize("backend", ["reference", "nki", "triton"])
@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_every_backend_passes_the_check_in_the_callers_kind(backend, kind):
    for problem in OP.smoke_problems("float16"):
        args, kwargs = make_inputs(problem, np.random.default_rng(3))
        to = (lambda a: a) if kind == "numpy" else torch.from_numpy
        out = K.rope(*(to(a) for a in args), **kwargs, backend=backend)
        assert len(out) == 2 and all(isinstance(o, torch.Tensor if kind == "torch" else np.ndarray) for o in out)
        assert [tuple(o.shape) for o in out] == [a.shape for a in args[:2]]
        result = check_output(OP, out, args, kwargs)
        assert result.passed, f"{problem.name} on {backend}: {result}"


def test_the_check_fails_a_wrong_rotation():
    problem = OP.smoke_problems("float32")[0]
    args, kwargs = make_inputs(problem, np.random.default_rng(4))
    wrong = K.rope(*args, **{**kwargs, "style": "gptj"}, backend="reference")  # pairs the wrong dims
    assert not check_output(OP, wrong, args, kwargs).passed
    late = K.rope(args[0], args[1], args[2] + 1, **kwargs, backend="reference")  # one position off
    assert not check_output(OP, late, args, kwargs).passed


def test_bfloat16_and_llama_scaling_on_the_nki_backend_and_auto_on_cpu():
    q, k, pos = _inputs(3, 32, 8, 128, ml_dtypes.bfloat16)
    opts = dict(theta=500000.0, scaling=MODELS["llama-3.1-8b"].rope_scaling)
    out = K.rope(q, k, pos, **opts, backend="nki")
    assert check_output(OP, out, (q, k, pos), opts).passed
    for got, want in zip(K.rope(q, k, pos, **opts), K.rope(q, k, pos, **opts, backend="reference")):
        np.testing.assert_array_equal(got, want)


def test_float64_runs_on_the_reference_and_is_declined_by_the_kernels():
    q, k, pos = _inputs(dtype=np.float64)
    assert all(o.dtype == np.float64 for o in K.rope(q, k, pos, backend="auto"))
    for backend in ("nki", "triton"):
        with pytest.raises(ValueError, match="rope: backend=.* does not support this problem: dtype float64"):
            K.rope(q, k, pos, backend=backend)


@pytest.mark.parametrize("backend", ["reference", "nki", "triton", "auto"])
def test_no_tokens(backend):
    q, k = np.zeros((0, 2, 8), np.float32), np.zeros((0, 1, 8), np.float32)
    try:
        out = K.rope(q, k, np.zeros(0, np.int32), backend=backend)
    except ValueError as e:  # a kernel may decline an empty problem, naming why and who runs it
        assert "empty problem" in str(e) and "reference" in str(e)
    else:
        assert [o.shape for o in out] == [(0, 2, 8), (0, 1, 8)]


@pytest.mark.parametrize("model", list(MODELS))
def test_workload_rows_at_each_models_per_rank_shapes(model):
    shape = MODELS[model]
    for phase, key in (("decode", "batches"), ("prefill", "prefill")):
        problems = model_problems(model, phase=phase, grid="default", ops=("rope",))
        assert [p.params["tokens"] for p in problems] == list(GRIDS["default"][key])
        for p in problems:
            assert (p.params["q_heads"], p.params["kv_heads"]) == (shape.q_heads_per_rank, shape.kv_heads_per_rank)
            assert p.params["rotary_dim"] == p.params["head_dim"] == shape.head_dim
            assert p.params["theta"] == shape.rope_theta and p.tokens == p.params["tokens"]
            assert RopeScaling.from_config(p.params["scaling"]) == shape.rope_scaling
            heads = p.params["tokens"] * (shape.q_heads_per_rank + shape.kv_heads_per_rank) * shape.head_dim
            assert p.hbm_bytes() > 2 * 2 * heads and p.flops() == 3 * heads


def test_per_rank_heads_under_tensor_parallelism():
    (p,) = OP.model_problems(MODELS["llama-3.1-70b"], "decode", dict(batches=(8,)), None, "bfloat16")
    assert (p.params["q_heads"], p.params["kv_heads"]) == (64 // 8, 1) and p.params["scaling"]["factor"] == 8.0
    (p,) = OP.model_problems(MODELS["qwen2.5-7b"], "prefill", dict(prefill=(2048,)), None, "bfloat16")
    assert (p.params["q_heads"], p.params["kv_heads"], p.params["theta"], p.params["scaling"]) == (28, 4, 1e6, None)
    assert p.name == "qwen2.5-7b/prefill/rope/t2048-hq28-hkv4-d128"


@pytest.mark.parametrize("target", ["inf2", "trn1", "trn2"])
def test_llama_decode_and_prefill_are_modeled_at_or_above_the_roofline(target):
    for phase, tokens in (("decode", 8), ("prefill", 512)):
        problem = next(p for p in model_problems("llama-3.1-8b", phase=phase, grid="default", ops=("rope",))
                       if p.params["tokens"] == tokens)
        est = model_trace(nki.trace("rope", {**problem.params, **problem.spec()}, target), target)
        assert est.latency_s >= est.roofline_s > 0
        assert est.hbm_bytes >= problem.hbm_bytes()  # the trace moves at least what the formula counts


def test_bench_cli_models_rope_decode(capsys):
    assert main(["bench", "--kernel", "rope", "--target", "trn2", "--phase", "decode", "--grid", "quick"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("llama-3.1-8b/decode/rope/") == 2 and "(modeled)" in printed and "roofline=" in printed


def test_the_torch_op_takes_llama_scaling_as_four_numbers():
    q, k, pos = (torch.from_numpy(a) for a in _inputs())
    hf = MODELS["llama-3.1-8b"].rope_scaling
    got = torch.ops.nkilab.rope(q, k, pos, theta=500000.0, scaling=[8.0, 1.0, 4.0, 8192.0], backend="reference")
    want = K.rope(q, k, pos, theta=500000.0, scaling=hf, backend="reference")
    assert all(torch.equal(g, w) for g, w in zip(got, want))
    with pytest.raises(ValueError, match="scaling: the torch op takes"):
        torch.ops.nkilab.rope(q, k, pos, scaling=[8.0, 1.0], backend="reference")


def test_target_selects_the_emulated_generation():
    q, k, pos = _inputs(3, 4, 2, 16)
    on = {t: K.rope(q, k, pos, backend="nki", target=t) for t in ("inf2", "trn2")}
    assert all(np.array_equal(a, b) for a, b in zip(on["inf2"], on["trn2"]))  # same values, either gather branch
    with pytest.raises(ValueError, match="target: selects the Neuron target of backend='nki'"):
        K.rope(q, k, pos, backend="reference", target="trn1")
