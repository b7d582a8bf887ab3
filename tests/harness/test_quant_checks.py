"""The quantized-KV-cache rows of `nkilab run`'s check pass: each backend against the reference on the same quantized
cache, the quantization's own error in `check.quant_error`, unsupported backends recorded with their reason."""

import ml_dtypes
import numpy as np
import pytest

from nkilab import reference
from nkilab.harness import profile
from nkilab.harness.report.markdown import CHECK_HEADER, check_rows
from nkilab.harness.workloads import make_inputs, smoke_problems
from nkilab.reference.kv_quant import fp8_codes, int8_codes

OPS = ("paged_attention", "write_kv_cache")


def _quantized(op: str) -> list:
    return [p for p in smoke_problems("float16", ops=(op,)) if p.params.get("kv_cache_dtype", "auto") != "auto"]


def _check(problem, backend: str) -> dict:
    task = profile.Task("check", problem.op, backend, "cpu", problem)
    return profile.check_task(task, np.random.default_rng(7))


@pytest.mark.parametrize("op", OPS)
def test_smoke_rows_cover_fp8_per_head_and_int8(op):
    formats = {(p.params["kv_cache_dtype"], p.params["fp8_scales"]) for p in _quantized(op)}
    assert formats == {("fp8_e4m3", "head"), ("int8", None)}
    fp8 = next(p for p in _quantized(op) if p.params["kv_cache_dtype"] == "fp8_e4m3")
    _, kwargs = make_inputs(fp8, np.random.default_rng(0))
    assert kwargs["k_scale"].shape == (2,) and kwargs["k_scale"].dtype == np.float32  # per kv head
    assert kwargs["k_scale"][0] != kwargs["k_scale"][1]


@pytest.mark.parametrize("kv", ["fp8_e4m3", "int8"])
def test_write_quant_error_equals_the_rounding_of_the_written_rows(kv):
    """Independent computation: quantize the new rows with the reference's codes, dequantize, compare with the rows."""
    problem = next(p for p in _quantized("write_kv_cache") if p.params["kv_cache_dtype"] == kv)
    rec = _check(problem, "reference")
    assert rec["status"] == "ok", rec["note"]
    got = rec["check"]["quant_error"]
    (key, value, _, _, slots), kwargs = make_inputs(problem, np.random.default_rng(7))
    live = slots >= 0
    errs, rels = [], []
    for x, name in ((key, "k_scale"), (value, "v_scale")):
        x = x[live].astype(np.float64)
        if kv == "int8":
            codes, scales = int8_codes(x)
            back = codes.astype(np.float64) * scales[..., None].astype(np.float64)
        else:
            s = np.asarray(kwargs[name], np.float64)[None, :, None]
            back = fp8_codes(x, kwargs[name], kv).astype(np.float64) * s
        err = np.abs(back - x)
        floor = float(ml_dtypes.finfo(np.float16).eps) * np.abs(np.concatenate([key[live], value[live]])).max()
        errs.append(err.max())
        rels.append((err / np.maximum(np.abs(x), floor)).max())
    assert got["kv_cache_dtype"] == kv and got["unquantized_dtype"] == "float16"
    assert got["max_abs_err"] == pytest.approx(max(errs), rel=1e-12)
    assert got["max_rel_err"] == pytest.approx(max(rels), rel=1e-12)
    assert 0 < got["max_abs_err"] < (0.1 if kv == "int8" else 0.5)


@pytest.mark.parametrize("kv", ["fp8_e4m3", "int8"])
def test_paged_quant_error_is_reference_over_quantized_vs_unquantized_cache(kv):
    """Independent computation: the unquantized inputs drawn again over an "auto" cache; the quantized caches are
    that cache written by the reference write; the error is between the two reference outputs."""
    problem = next(p for p in _quantized("paged_attention") if p.params["kv_cache_dtype"] == kv)
    rec = _check(problem, "reference")
    assert rec["status"] == "ok", rec["note"]
    (q, kc, vc, tables, lens, starts), kwargs = make_inputs(problem, np.random.default_rng(7))
    plain = problem.__class__(**{**problem.__dict__, "params": {**problem.params, "kv_cache_dtype": "auto"}})
    (q0, kc0, vc0, *_), options = make_inputs(plain, np.random.default_rng(7))
    np.testing.assert_array_equal(q, q0)
    # a live slot of the quantized cache holds the reference write of the unquantized one
    block, k_new = int(tables[0, 0]), kc0[int(tables[0, 0]), :1]
    codes = (int8_codes(k_new)[0] if kv == "int8" else fp8_codes(k_new, kwargs["k_scale"], kv)).astype(np.float64)
    np.testing.assert_array_equal(kc[block, :1].astype(np.float64), codes)
    quantized = reference.paged_attention(q, kc, vc, tables, lens, starts, **kwargs)
    exact = reference.paged_attention(q0, kc0, vc0, tables, lens, starts, **options)
    err = np.abs(quantized - exact)
    floor = float(ml_dtypes.finfo(np.float16).eps) * np.abs(exact).max()
    got = rec["check"]["quant_error"]
    assert got["max_abs_err"] == pytest.approx(err.max(), rel=1e-12)
    assert got["max_rel_err"] == pytest.approx((err / np.maximum(np.abs(exact), floor)).max(), rel=1e-12)
    assert got["max_abs_err"] > 0


def test_auto_rows_carry_no_quant_error():
    auto = smoke_problems("float16", ops=("write_kv_cache",))[0]
    rec = _check(auto, "reference")
    assert rec["status"] == "ok" and "quant_error" not in rec["check"]


@pytest.mark.parametrize("op", OPS)
def test_triton_declines_fp8_e4m3_with_its_reason(op):
    fp8 = next(p for p in _quantized(op) if p.params["kv_cache_dtype"] == "fp8_e4m3")
    rec = _check(fp8, "triton")
    assert rec["status"] == "unsupported"
    assert "fp8_e4m3" in rec["note"] and "no torch dtype" in rec["note"]
    assert rec["check"] is None


@pytest.mark.parametrize("op", OPS)
def test_gpu_bench_declines_quantized_rows(op):
    """The GPU bench runs model problems through `bench_problems`; quantized ones are declined there by name."""
    for p in _quantized(op):
        assert p.family.bench_problems(p) == []


def test_report_shows_the_quantization_error():
    problem = next(p for p in _quantized("write_kv_cache") if p.params["kv_cache_dtype"] == "int8")
    rec = _check(problem, "reference")
    row = check_rows([rec])[0]
    assert len(row) == len(CHECK_HEADER)
    assert row[-1].endswith("(int8 vs float16)")
    assert f"{rec['check']['quant_error']['max_abs_err']:.3g}" in row[-1]
