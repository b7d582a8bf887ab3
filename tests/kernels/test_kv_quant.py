"""Quantized KV caches on every backend and target: the write stores the reference's codes (and int8 scales) bit for
bit, paged attention over the quantized caches matches the float64 reference on the same caches — through the
page-table adversaries (permuted and shared blocks, -1 / junk padding, NaN in every unused data and scale slot) —
and bad scale / format arguments raise errors naming them."""

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from kv_quant_cases import NKI_V2_V3_FORMATS, TRITON_FORMATS, KvQuant, kv_quants
from strategies import block_sizes, head_counts, head_dims, paged_problems, pinned_paged_problem, write_problems

import nkilab.kernels.triton as triton_backend
from nkilab.harness.checks import compare
from nkilab.kernels import paged_attention, write_kv_cache
from nkilab.reference.dtypes import numpy_dtype
from nkilab.reference.kv_quant import storage_dtype
from nkilab.reference.paged import paged_attention as reference_paged_attention

# (target, formats it stores): NeuronCore-v2/v3 have fp8 e4m3 (max 240), v4 adds the OCP e4m3fn
NKI_TARGETS = [("inf2", NKI_V2_V3_FORMATS), ("trn1", NKI_V2_V3_FORMATS), ("trn2", NKI_V2_V3_FORMATS),
               ("trn3", ("fp8_e4m3fn", "int8"))]
TRITON_DTYPES = ("float32", "float16") if triton_backend.INTERPRET else ("float32", "float16", "bfloat16")


def _bits(a) -> np.ndarray:
    a = np.ascontiguousarray(a.numpy() if hasattr(a, "numpy") else a)
    return a.view(np.uint8)


def _write_case(problem, quant: KvQuant):
    """(key, value, quantized caches filled with old codes / NaN scales, slots, scale keywords)."""
    key, value, key_cache, _, slots = problem.inputs()
    dt = storage_dtype(quant.kv_cache_dtype, problem.dtype)
    rng = np.random.default_rng(problem.seed % 2**32)
    if quant.kv_cache_dtype == "int8":
        caches = [rng.integers(-127, 128, key_cache.shape).astype(np.int8) for _ in range(2)]
        extra = {n: np.full(key_cache.shape[:3], np.nan, np.float32) for n in ("k_scale_cache", "v_scale_cache")}
    else:
        caches = [np.full(key_cache.shape, np.nan, np.float32).astype(dt) for _ in range(2)]
        extra = dict(k_scale=quant.scales(key), v_scale=quant.scales(value))
    return key, value, caches, slots.astype(np.int64), extra


def _check_write(problem, quant: KvQuant, backend: str, target=None):
    key, value, caches, slots, extra = _write_case(problem, quant)
    expected = [c.copy() for c in caches]
    expected_extra = {n: (v.copy() if isinstance(v, np.ndarray) else v) for n, v in extra.items()}
    write_kv_cache(key, value, *expected, slots, kv_cache_dtype=quant.kv_cache_dtype, backend="reference",
                   **expected_extra)
    write_kv_cache(key, value, *caches, slots, kv_cache_dtype=quant.kv_cache_dtype, backend=backend, target=target,
                   **extra)
    for got, want in zip(caches, expected):
        np.testing.assert_array_equal(_bits(got), _bits(want))
    for name in ("k_scale_cache", "v_scale_cache"):
        if name in extra:
            np.testing.assert_array_equal(_bits(extra[name]), _bits(expected_extra[name]))


@pytest.mark.parametrize("target,formats", NKI_TARGETS, ids=[t for t, _ in NKI_TARGETS])
@given(data=st.data())
def test_nki_write_stores_the_reference_codes(target, formats, data):
    problem = data.draw(write_problems(dims=head_dims(choices=(1, 16, 64, 80)), dtypes=st.sampled_from(
        ("float32", "bfloat16", "float16"))))
    _check_write(problem, data.draw(kv_quants(formats=formats)), "nki", target)


@given(data=st.data())
def test_triton_write_stores_the_reference_codes(data):
    problem = data.draw(write_problems(dims=head_dims(choices=(1, 16, 64, 80)),
                                       dtypes=st.sampled_from(TRITON_DTYPES)))
    _check_write(problem, data.draw(kv_quants(formats=TRITON_FORMATS)), "triton")


def _check_paged(problem, quant: KvQuant, backend: str, target=None):
    """The kernel against the float64 reference on the same quantized caches; returns the quantization error
    itself: max |reference on the quantized caches - reference on the float caches|."""
    assume(sum(problem.q_lens) > 0)  # an empty batch has no NKI / Triton launch (the API names the reason)
    inputs = problem.inputs()
    qinputs, extra = quant.quantize_paged(inputs, problem.table.live_slots(), seed=problem.seed % 2**32)
    options = problem.options()
    out = paged_attention(*qinputs, **options, **extra, backend=backend, target=target)
    ref64 = reference_paged_attention(*qinputs, **options, **extra)
    ref_low = reference_paged_attention(*qinputs, **options, **extra, compute_dtype=numpy_dtype(problem.dtype))
    floor = None
    if problem.dtype == "float32":  # as tests/kernels/nki/test_paged_attention.py: 8 fp32 ulps at max|ref|
        floor = 8 * float(np.finfo(np.float32).eps) * float(np.nanmax(np.abs(ref64), initial=0.0))
    result = compare(np.asarray(out), ref64, ref_low, floor=floor)
    assert result.passed, str(result)
    return float(np.max(np.abs(ref64 - reference_paged_attention(*inputs, **options)), initial=0.0))


def _paged(dtypes):
    """Smaller batches than the float tests' (the kernels' quantized paths differ only in the gather, the scales and
    the dtypes): CI time stays bounded across 4 targets x 3 formats."""
    return paged_problems(max_seqs=2, max_seq_len=24, heads=head_counts(max_q_heads=4), dims=head_dims(),
                          sizes=block_sizes(choices=(1, 4, 16, 32)), dtypes=st.sampled_from(dtypes))


@pytest.mark.parametrize("target,formats", NKI_TARGETS, ids=[t for t, _ in NKI_TARGETS])
@given(data=st.data())
def test_nki_paged_attention_over_quantized_caches(target, formats, data):
    quant = data.draw(kv_quants(formats=formats))
    dtypes = ("bfloat16", "float16") if quant.kv_cache_dtype.startswith("fp8") else ("bfloat16", "float32")
    _check_paged(data.draw(_paged(dtypes)), quant, "nki", target)


@given(data=st.data())
def test_triton_paged_attention_over_quantized_caches(data):
    _check_paged(data.draw(_paged(TRITON_DTYPES)), data.draw(kv_quants(formats=TRITON_FORMATS)), "triton")


# Llama-3.1-8B per rank (32 / 8 heads, D 128), a decode batch and a 6-token chunk: the quantization error itself is
# printed (pytest -s) next to the kernel's agreement with the reference on the same quantized caches
LLAMA = pinned_paged_problem([70, 33, 20], [1, 1, 6], 32, 8, 128, 16, dtype="bfloat16", seed=11)
LLAMA_CASES = [("trn2", KvQuant("fp8_e4m3")), ("trn2", KvQuant("fp8_e4m3", "head")), ("inf2", KvQuant("int8")),
               ("trn3", KvQuant("fp8_e4m3fn", "head")), ("trn1", KvQuant("fp8_e4m3", "tensor", 0.5))]


@pytest.mark.parametrize("target,quant", LLAMA_CASES, ids=[f"{t}-{q.kv_cache_dtype}-{q.style}-{q.factor}"
                                                            for t, q in LLAMA_CASES])
def test_llama_shapes_quantization_error(target, quant, capsys):
    error = _check_paged(LLAMA, quant, "nki", target)
    with capsys.disabled():
        print(f"\n  {target} {quant}: quantization error max|ref(quantized) - ref(float)| = {error:.3e}")
    # int8 keeps ~7 bits per (token, head), fp8 ~4 bits and clips above scale * max: the attention output (|out|
    # < 3 here) moves by well under its own magnitude in every case, and by far less with int8
    assert error < (0.05 if quant.kv_cache_dtype == "int8" else 0.5)


# --- bad input ------------------------------------------------------------------------------------------------------


def _decode_case(kv_cache_dtype="fp8_e4m3", dtype="bfloat16"):
    problem = pinned_paged_problem([9, 5], [1, 1], 4, 2, 16, 4, dtype=dtype, seed=2)
    qinputs, extra = KvQuant(kv_cache_dtype).quantize_paged(problem.inputs(), problem.table.live_slots())
    return qinputs, extra


BAD_SCALES = [
    (dict(k_scale=0.0), ValueError, "k_scale"),
    (dict(v_scale=-1.0), ValueError, "v_scale"),
    (dict(k_scale=float("nan")), ValueError, "k_scale"),
    (dict(k_scale=float("inf")), ValueError, "k_scale"),
    (dict(k_scale=np.ones(3, np.float32)), ValueError, "Hkv=2"),
    (dict(k_scale=np.ones((2, 1), np.float32)), ValueError, "k_scale"),
    (dict(k_scale=np.ones(2, np.float64)), TypeError, "float32"),
    (dict(v_scale=np.array([1.0, 0.0], np.float32)), ValueError, "v_scale[1]"),
    (dict(k_scale=True), TypeError, "k_scale"),
    (dict(k_scale="1"), TypeError, "k_scale"),
]


@pytest.mark.parametrize("bad,error,words", BAD_SCALES, ids=[str(b) for b, _, _ in BAD_SCALES])
@pytest.mark.parametrize("op", ["write", "attend"])
def test_bad_fp8_scales_are_refused(op, bad, error, words):
    (q, kc, vc, bt, sl, qsl), extra = _decode_case()
    extra.update(bad)
    with pytest.raises(error, match=words.replace("[", r"\[").replace("]", r"\]")):
        if op == "write":
            write_kv_cache(q[:, :2], q[:, :2], kc, vc, np.array([0, -1], np.int64), backend="reference", **extra)
        else:
            paged_attention(q, kc, vc, bt, sl, qsl, backend="reference", **extra)


def test_int8_scale_cache_rules():
    (q, kc, vc, bt, sl, qsl), extra = _decode_case("int8")
    with pytest.raises(ValueError, match="k_scale_cache.*needs float32 scale caches"):
        paged_attention(q, kc, vc, bt, sl, qsl, kv_cache_dtype="int8", v_scale_cache=extra["v_scale_cache"])
    with pytest.raises(ValueError, match=r"v_scale_cache: must be \[num_blocks, block_size, Hkv\]"):
        paged_attention(q, kc, vc, bt, sl, qsl, **{**extra, "v_scale_cache": extra["v_scale_cache"][:, :, :1]})
    with pytest.raises(TypeError, match="k_scale_cache: must be float32"):
        paged_attention(q, kc, vc, bt, sl, qsl, **{**extra, "k_scale_cache": extra["k_scale_cache"].astype(np.float16)})
    with pytest.raises(ValueError, match="k_scale: kv_cache_dtype='int8' takes no k_scale"):
        paged_attention(q, kc, vc, bt, sl, qsl, **extra, k_scale=1.0)
    read_only = extra["k_scale_cache"].copy()
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="k_scale_cache"):
        write_kv_cache(q[:, :2], q[:, :2], kc, vc, np.array([0, -1], np.int64), kv_cache_dtype="int8",
                       k_scale_cache=read_only, v_scale_cache=extra["v_scale_cache"])


def test_format_and_cache_dtype_rules():
    (q, kc, vc, bt, sl, qsl), extra = _decode_case()
    with pytest.raises(ValueError, match="kv_cache_dtype: must be one of"):
        paged_attention(q, kc, vc, bt, sl, qsl, kv_cache_dtype="fp8")
    with pytest.raises(TypeError, match="key_cache: a quantized cache stores int8"):
        paged_attention(q, kc, vc, bt, sl, qsl, kv_cache_dtype="int8", k_scale_cache=np.ones(kc.shape[:3], np.float32),
                        v_scale_cache=np.ones(kc.shape[:3], np.float32))
    with pytest.raises(ValueError, match="k_scale: kv_cache_dtype='auto' takes no k_scale"):
        paged_attention(q, q[:1].reshape(1, 1, 4, 16).repeat(2, 1)[:, :, :2], q[:1].reshape(1, 1, 4, 16).repeat(
            2, 1)[:, :, :2], bt[:, :1] * 0, np.array([1, 1]), qsl, k_scale=1.0)
    key = np.full((2, 2, 16), np.nan, np.float32)
    with pytest.raises(ValueError, match="key: must be finite to be quantized"):
        write_kv_cache(key, key, kc, vc, np.array([0, -1], np.int64), backend="reference", **extra)


@pytest.mark.parametrize("target", ["inf2", "trn1", "trn2"])
def test_e4m3fn_is_refused_off_trn3(target):
    (q, kc, vc, bt, sl, qsl), extra = _decode_case("fp8_e4m3fn")
    with pytest.raises(ValueError, match="kv_cache_dtype: 'fp8_e4m3fn'.*NeuronCore-v4"):
        paged_attention(q, kc, vc, bt, sl, qsl, **extra, backend="nki", target=target)
    with pytest.raises(ValueError, match="kv_cache_dtype: 'fp8_e4m3fn'.*NeuronCore-v4"):
        write_kv_cache(q[:, :2], q[:, :2], kc, vc, np.array([0, -1], np.int64), **extra, backend="nki", target=target)


def test_backend_refusals_name_the_reason():
    (q, kc, vc, bt, sl, qsl), extra = _decode_case("fp8_e4m3", dtype="float32")
    with pytest.raises(ValueError, match="fp8 cache with float32 q"):
        paged_attention(q, kc, vc, bt, sl, qsl, **extra, backend="nki")
    with pytest.raises(ValueError, match="fp8_e4m3 .* has no torch dtype"):
        paged_attention(q, kc, vc, bt, sl, qsl, **extra, backend="triton")
