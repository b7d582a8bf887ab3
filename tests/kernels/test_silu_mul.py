"""Public silu_mul: validation with clear errors, kinds and shapes in = out, every backend against the reference,
empty problems, and its workload rows at each model's per-rank MLP width modeled at or above the roofline."""

import ml_dtypes
import numpy as np
import pytest
import torch

import nkilab.kernels as K
from nkilab import reference
from nkilab.harness.checks import check_output
from nkilab.harness.cli import main
from nkilab.harness.perf.model import model_trace
from nkilab.harness.workloads import GRIDS, MODELS, make_inputs, model_problems
from nkilab.kernels import _registry, nki

OP = _registry.get("silu_mul")


@pytest.mark.parametrize("make, error, match", [
    (lambda: np.zeros((3, 5), np.float32), ValueError, r"gate_up: the last axis must be even and >= 2 .* got 5"),
    (lambda: np.zeros((3, 0), np.float32), ValueError, "gate_up: the last axis must be even and >= 2"),
    (lambda: np.array(1.0, np.float32), ValueError, "gate_up: must be at least 1-D"),
    (lambda: np.zeros((3, 4), np.int32), TypeError, "gate_up: dtype must be one of"),
    (lambda: [[1.0, 2.0]], TypeError, "gate_up: must be a numpy.ndarray or torch.Tensor"),
])
def test_bad_arguments_are_named(make, error, match):
    with pytest.raises(error, match=match):
        K.silu_mul(make())


def test_bad_backend_is_named():
    with pytest.raises(ValueError, match="backend: must be one of"):
        K.silu_mul(np.zeros((1, 2), np.float32), backend="cuda")


@pytest.mark.parametrize("shape", [(2,), (3, 16), (2, 3, 16)])
def test_reference_backend_keeps_leading_dims_and_dtype(shape):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    out = K.silu_mul(x, backend="reference")
    assert isinstance(out, np.ndarray) and out.shape == shape[:-1] + (shape[-1] // 2,) and out.dtype == np.float32
    np.testing.assert_array_equal(out, reference.silu_mul(x).astype(np.float32))


@pytest.mark.parametrize("backend", ["reference", "nki", "triton"])
@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_every_backend_passes_the_check_in_the_callers_kind(backend, kind):
    for problem in OP.smoke_problems("float16"):
        (x,), kwargs = make_inputs(problem, np.random.default_rng(3))
        out = K.silu_mul(x if kind == "numpy" else torch.from_numpy(x), backend=backend)
        assert isinstance(out, torch.Tensor if kind == "torch" else np.ndarray)
        result = check_output(OP, out, (x,), kwargs)
        assert result.passed, f"{problem.name} on {backend}: {result}"


def test_the_check_fails_swapped_halves():
    (x,), _ = make_inputs(OP.smoke_problems("float32")[1], np.random.default_rng(4))
    half = x.shape[1] // 2
    wrong = K.silu_mul(np.concatenate([x[:, half:], x[:, :half]], axis=1), backend="reference")
    assert not check_output(OP, wrong, (x,), {}).passed


def test_bfloat16_on_the_nki_backend_and_auto_on_cpu():
    x = np.random.default_rng(5).standard_normal((9, 2 * 896)).astype(ml_dtypes.bfloat16)
    out = K.silu_mul(x, backend="nki")
    assert check_output(OP, out, (x,), {}).passed
    np.testing.assert_array_equal(K.silu_mul(x), K.silu_mul(x, backend="reference"))


def test_float64_runs_on_the_reference_and_is_declined_by_the_kernels():
    x = np.ones((2, 4))
    assert K.silu_mul(x, backend="auto").dtype == np.float64
    for backend in ("nki", "triton"):
        with pytest.raises(ValueError, match="silu_mul: backend=.* does not support this problem: dtype float64"):
            K.silu_mul(x, backend=backend)


@pytest.mark.parametrize("backend", ["reference", "nki", "triton", "auto"])
def test_no_rows(backend):
    try:
        out = K.silu_mul(np.zeros((0, 8), np.float32), backend=backend)
    except ValueError as e:  # a kernel may decline an empty problem, naming why and who runs it
        assert "empty problem" in str(e) and "reference" in str(e)
    else:
        assert out.shape == (0, 4)


@pytest.mark.parametrize("model", list(MODELS))
def test_workload_rows_at_each_models_per_rank_width(model):
    shape = MODELS[model]
    for phase, key in (("decode", "batches"), ("prefill", "prefill")):
        problems = model_problems(model, phase=phase, grid="default", ops=("silu_mul",))
        assert [p.params["rows"] for p in problems] == list(GRIDS["default"][key])
        for p in problems:
            assert p.params["intermediate"] == shape.intermediate // shape.tp and p.tokens == p.params["rows"]
            assert p.hbm_bytes() == 2 * 3 * p.params["rows"] * p.params["intermediate"]


def test_llama_70b_intermediate_is_split_by_tensor_parallelism():
    (p,) = OP.model_problems(MODELS["llama-3.1-70b"], "decode", dict(batches=(8,)), None, "bfloat16")
    assert p.params["intermediate"] == 28672 // 8 and p.name == "llama-3.1-70b/decode/silu_mul/r8-i3584"


@pytest.mark.parametrize("target", ["inf2", "trn1", "trn2"])
def test_llama_decode_and_prefill_are_modeled_at_or_above_the_roofline(target):
    for phase, rows in (("decode", 8), ("prefill", 512)):
        problem = next(p for p in model_problems("llama-3.1-8b", phase=phase, grid="default", ops=("silu_mul",))
                       if p.params["rows"] == rows)
        est = model_trace(nki.trace("silu_mul", {**problem.params, **problem.spec()}, target), target)
        assert est.latency_s >= est.roofline_s > 0
        assert est.hbm_bytes >= problem.hbm_bytes()


def test_bench_cli_models_silu_mul_prefill(capsys):
    assert main(["bench", "--kernel", "silu_mul", "--target", "inf2", "--phase", "prefill", "--grid", "quick"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("llama-3.1-8b/prefill/silu_mul/") == 1 and "(modeled)" in printed


def test_target_selects_the_emulated_generation():
    x = np.random.default_rng(7).standard_normal((3, 512)).astype(np.float32)
    on = {t: K.silu_mul(x, backend="nki", target=t) for t in ("inf2", "trn2")}
    np.testing.assert_array_equal(on["inf2"], on["trn2"])
    with pytest.raises(ValueError, match="h100"):
        K.silu_mul(x, backend="nki", target="h100")
