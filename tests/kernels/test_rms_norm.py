"""Public rms_norm: validation with clear errors, kinds and shapes in = out, every backend against the reference,
empty problems, and its workload rows at Llama-3.1 shapes modeled at or above the roofline."""

import ml_dtypes
import numpy as np
import pytest
import torch

import nkilab.kernels as K
from nkilab import reference
from nkilab.harness.checks import check_output
from nkilab.harness.cli import main
from nkilab.harness.perf.model import model_trace
from nkilab.harness.workloads import MODELS, GRIDS, make_inputs, model_problems
from nkilab.kernels import _registry, nki

OP = _registry.get("rms_norm")


def _inputs(shape=(3, 16), dtype=np.float32, residual=False):
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal(shape).astype(dtype), rng.standard_normal(shape[-1]).astype(dtype)
    r = rng.standard_normal(shape).astype(dtype) if residual else None
    return x, w, r


@pytest.mark.parametrize("make, error, match", [
    (lambda x, w, r: dict(x=x, weight=w[:-1]), ValueError, r"weight: shape must be \(H,\) = \(16,\)"),
    (lambda x, w, r: dict(x=x, weight=w[None]), ValueError, r"weight: shape must be \(H,\)"),
    (lambda x, w, r: dict(x=x, weight=w.astype(np.float16)), TypeError, "x, weight: must share one dtype"),
    (lambda x, w, r: dict(x=x.astype(np.int32), weight=w), TypeError, "x: dtype must be one of"),
    (lambda x, w, r: dict(x=np.array(1.0, np.float32), weight=w), ValueError, "x: must be at least 1-D"),
    (lambda x, w, r: dict(x=np.zeros((3, 0), np.float32), weight=np.zeros(0, np.float32)), ValueError,
     "x: the normalized .* H must be >= 1"),
    (lambda x, w, r: dict(x=x, weight=w, eps=0.0), ValueError, "eps: must be a finite number > 0, got 0.0"),
    (lambda x, w, r: dict(x=x, weight=w, eps=-1e-6), ValueError, "eps: must be a finite number > 0"),
    (lambda x, w, r: dict(x=x, weight=w, eps=float("nan")), ValueError, "eps: must be a finite number > 0"),
    (lambda x, w, r: dict(x=x, weight=w, eps=True), ValueError, "eps: must be a finite number > 0"),
    (lambda x, w, r: dict(x=x, weight=w, eps="1e-6"), ValueError, "eps: must be a finite number > 0"),
    (lambda x, w, r: dict(x=x, weight=w, residual=x[:, :-1]), ValueError, r"residual: shape must equal x's \(3, 16\)"),
    (lambda x, w, r: dict(x=x, weight=w, residual=x.astype(np.float64)), TypeError, "x, residual: must share one dtype"),
    (lambda x, w, r: dict(x=x, weight=torch.from_numpy(w)), TypeError, "must all be NumPy arrays or all torch"),
    (lambda x, w, r: dict(x=x.tolist(), weight=w), TypeError, "x: must be a numpy.ndarray or torch.Tensor"),
    (lambda x, w, r: dict(x=x, weight=w, backend="cuda"), ValueError, "backend: must be one of"),
])
def test_bad_arguments_are_named(make, error, match):
    with pytest.raises(error, match=match):
        K.rms_norm(**make(*_inputs()))


@pytest.mark.parametrize("shape", [(16,), (3, 16), (2, 3, 16)])
@pytest.mark.parametrize("residual", [False, True])
def test_reference_backend_keeps_shape_dtype_and_equals_the_reference(shape, residual):
    x, w, r = _inputs(shape, residual=residual)
    out = K.rms_norm(x, w, eps=1e-5, residual=r, backend="reference")
    expected = reference.rms_norm(x, w, eps=1e-5, residual=r)
    for got, want in zip(out if residual else (out,), expected if residual else (expected,)):
        assert isinstance(got, np.ndarray) and got.shape == shape and got.dtype == np.float32
        np.testing.assert_array_equal(got, want.astype(np.float32))


@pytest.mark.parametrize("backend", ["reference", "nki", "triton"])
@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_every_backend_passes_the_check_in_the_callers_kind(backend, kind):
    for problem in OP.smoke_problems("float16"):
        (x, w), kwargs = make_inputs(problem, np.random.default_rng(3))
        to = (lambda a: a) if kind == "numpy" else (lambda a: None if a is None else torch.from_numpy(a))
        out = K.rms_norm(to(x), to(w), eps=kwargs["eps"], residual=to(kwargs["residual"]), backend=backend)
        outputs = out if isinstance(out, tuple) else (out,)
        assert all(isinstance(o, torch.Tensor if kind == "torch" else np.ndarray) for o in outputs)
        result = check_output(OP, out, (x, w), kwargs)
        assert result.passed, f"{problem.name} on {backend}: {result}"


def test_bfloat16_on_the_nki_backend_and_auto_on_cpu():
    x, w, r = _inputs((130, 96), ml_dtypes.bfloat16, residual=True)
    out = K.rms_norm(x, w, residual=r, backend="nki")
    assert check_output(OP, out, (x, w), dict(eps=1e-6, residual=r)).passed
    np.testing.assert_array_equal(np.stack(K.rms_norm(x, w, residual=r)),
                                  np.stack(K.rms_norm(x, w, residual=r, backend="reference")))


def test_float64_runs_on_the_reference_and_is_declined_by_the_kernels():
    x, w, _ = _inputs(dtype=np.float64)
    assert K.rms_norm(x, w, backend="auto").dtype == np.float64
    for backend in ("nki", "triton"):
        with pytest.raises(ValueError, match="rms_norm: backend=.* does not support this problem: dtype float64"):
            K.rms_norm(x, w, backend=backend)


@pytest.mark.parametrize("backend", ["reference", "nki", "triton", "auto"])
def test_no_rows(backend):
    x, w = np.zeros((0, 8), np.float32), np.ones(8, np.float32)
    try:
        y = K.rms_norm(x, w, backend=backend)
    except ValueError as e:  # a kernel may decline an empty problem, naming why and who runs it
        assert "empty problem" in str(e) and "reference" in str(e)
    else:
        assert y.shape == (0, 8)


def test_the_nki_kernel_declines_a_hidden_size_past_its_sbuf_budget():
    reason = nki.unsupported("rms_norm", dtype="float32", hidden=8192, residual=True)
    assert "hidden 8192" in reason and "SBUF" in reason
    assert nki.unsupported("rms_norm", dtype="bfloat16", hidden=8192, residual=True) is None


@pytest.mark.parametrize("model", ["llama-3.1-8b", "llama-3.1-70b"])
def test_workload_rows_at_llama_shapes(model):
    hidden = MODELS[model].hidden
    decode = model_problems(model, phase="decode", grid="default", ops=("rms_norm",))
    prefill = model_problems(model, phase="prefill", grid="default", ops=("rms_norm",))
    assert sorted(p.params["rows"] for p in decode) == sorted(2 * GRIDS["default"]["batches"])
    assert sorted(p.params["rows"] for p in prefill) == sorted(2 * GRIDS["default"]["prefill"])
    for p in decode + prefill:
        assert p.params["hidden"] == hidden and p.tokens == p.params["rows"]
        assert p.hbm_bytes() >= 2 * p.params["rows"] * hidden * 2 and p.flops() >= 4 * p.params["rows"] * hidden


@pytest.mark.parametrize("target", ["inf2", "trn1", "trn2"])
def test_llama_70b_prefill_and_decode_are_modeled_at_or_above_the_roofline(target):
    for phase, rows in (("decode", 8), ("prefill", 512)):
        problem = next(p for p in model_problems("llama-3.1-70b", phase=phase, grid="default", ops=("rms_norm",))
                       if p.params["rows"] == rows and p.params["residual"])
        est = model_trace(nki.trace("rms_norm", {**problem.params, **problem.spec()}, target), target)
        assert est.latency_s >= est.roofline_s > 0
        mix = est.instruction_mix
        assert mix["scalar"]["activation"] == 2 * -(-rows // 128)  # square + sum, rsqrt: per row tile
        assert est.hbm_bytes >= problem.hbm_bytes()  # the trace reads at least what the formula counts


def test_bench_cli_models_rms_norm_decode(capsys):
    assert main(["bench", "--kernel", "rms_norm", "--target", "trn2", "--phase", "decode", "--grid", "quick"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("llama-3.1-8b/decode/rms_norm/") == 4 and "(modeled)" in printed
    assert "roofline=" in printed
