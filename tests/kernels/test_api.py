"""nkilab.kernels public API: kinds in = kinds out, reference dispatch, backend resolution, validation errors."""

import types

import ml_dtypes
import numpy as np
import pytest
import torch

import nkilab.kernels as K
from nkilab import reference
from nkilab.kernels import BackendUnavailableError, _backends, _registry, available_backends, resolve_backend
from nkilab.reference.quant import quantize_activation, quantize_weight


def attention_inputs(dtype=np.float32, b=1, sq=3, skv=5, hq=4, hkv=2, d=8):
    rng = np.random.default_rng(0)
    return tuple(rng.standard_normal(s).astype(dtype) for s in [(b, sq, hq, d), (b, skv, hkv, d), (b, skv, hkv, d)])


def paged_inputs(dtype=np.float32):
    """Two sequences (decode over 5 keys, prefill of 3) over a 4-block cache of block_size 2."""
    rng = np.random.default_rng(1)
    kc = rng.standard_normal((4, 2, 2, 8)).astype(dtype)
    vc = rng.standard_normal((4, 2, 2, 8)).astype(dtype)
    tables = np.array([[3, 0, 1], [2, 1, -1]], dtype=np.int32)
    seq_lens = np.array([5, 3], dtype=np.int32)
    qsl = np.array([0, 1, 4], dtype=np.int32)
    q = rng.standard_normal((4, 4, 8)).astype(dtype)
    return q, kc, vc, tables, seq_lens, qsl


def write_inputs(dtype=np.float32):
    rng = np.random.default_rng(2)
    key, value = rng.standard_normal((3, 2, 8)).astype(dtype), rng.standard_normal((3, 2, 8)).astype(dtype)
    kc, vc = np.zeros((2, 4, 2, 8), dtype=dtype), np.zeros((2, 4, 2, 8), dtype=dtype)
    return key, value, kc, vc, np.array([5, -1, 0], dtype=np.int32)


def to_torch(arrays, dtype=None):
    out = []
    for a in arrays:
        t = torch.from_numpy(np.ascontiguousarray(a))
        out.append(t.to(dtype) if dtype is not None and t.is_floating_point() else t)
    return out


# --- kinds and dtypes ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64, ml_dtypes.bfloat16])
def test_numpy_attention_returns_numpy_of_q_dtype_equal_to_reference(dtype):
    q, k, v = attention_inputs(dtype)
    out = K.attention(q, k, v, causal=True, backend="reference")
    assert isinstance(out, np.ndarray) and out.dtype == np.dtype(dtype) and out.shape == q.shape
    np.testing.assert_array_equal(out, reference.attention(q, k, v, causal=True).astype(dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_torch_attention_returns_torch_of_q_dtype(dtype):
    q, k, v = to_torch(attention_inputs(), dtype)
    out = K.attention(q, k, v, sliding_window=2, backend="reference")
    assert isinstance(out, torch.Tensor) and out.dtype == dtype and out.shape == q.shape
    expected = reference.attention(*(t.float().numpy() for t in (q, k, v)), sliding_window=2)
    np.testing.assert_array_equal(out.float().numpy(), torch.from_numpy(expected).to(dtype).float().numpy())


def test_auto_on_cpu_is_reference():
    q, k, v = attention_inputs()
    np.testing.assert_array_equal(K.attention(q, k, v), K.attention(q, k, v, backend="reference"))


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_paged_attention_kinds_and_reference(kind):
    arrays = paged_inputs()
    expected = reference.paged_attention(*arrays, scale=0.3).astype(np.float32)
    inputs = arrays if kind == "numpy" else to_torch(arrays)
    out = K.paged_attention(*inputs, scale=0.3, backend="reference")
    assert (isinstance(out, np.ndarray) if kind == "numpy" else isinstance(out, torch.Tensor))
    np.testing.assert_array_equal(np.asarray(out), expected)


@pytest.mark.parametrize("kind", ["numpy", "torch", "torch-bf16"])
def test_write_kv_cache_is_in_place_on_the_callers_arrays(kind):
    key, value, kc, vc, slots = write_inputs()
    if kind == "numpy":
        args = (key, value, kc, vc, slots)
    else:
        args = tuple(to_torch((key, value, kc, vc, slots), torch.bfloat16 if kind == "torch-bf16" else None))
    out_k, out_v = K.write_kv_cache(*args, backend="reference")
    assert out_k is args[2] and out_v is args[3]
    got = np.asarray(out_k.float() if kind != "numpy" else out_k, dtype=np.float64)
    expected_key = key.astype(ml_dtypes.bfloat16).astype(np.float64) if kind == "torch-bf16" else key
    np.testing.assert_array_equal(got[1, 1], expected_key[0])  # slot 5 = block 1, offset 1
    np.testing.assert_array_equal(got[0, 0], expected_key[2])
    assert np.count_nonzero(got) == 2 * key[0].size  # the -1 token wrote nothing


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_qmatmul_kinds_and_out_dtype(kind):
    rng = np.random.default_rng(3)
    x, qw = rng.standard_normal((3, 64)).astype(np.float32), quantize_weight(rng.standard_normal((64, 5)), "int4", 32)
    xin = x if kind == "numpy" else torch.from_numpy(x)
    out = K.qmatmul(xin, qw, backend="reference")
    assert out.dtype == (np.float32 if kind == "numpy" else torch.float32)
    np.testing.assert_array_equal(np.asarray(out), reference.qmatmul(x, qw).astype(np.float32))
    for out_dtype in ("float16", np.float16, np.dtype(np.float16), torch.float16):  # every spelling of a dtype
        out16 = K.qmatmul(xin, qw, out_dtype=out_dtype, backend="reference")
        assert out16.dtype == (np.float16 if kind == "numpy" else torch.float16)


def test_qmatmul_w8a8():
    rng = np.random.default_rng(4)
    qa = quantize_activation(rng.standard_normal((2, 32)), "fp8_e4m3fn")
    qw = quantize_weight(rng.standard_normal((32, 3)), "fp8_e4m3fn")
    out = K.qmatmul(qa, qw, backend="reference")
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    np.testing.assert_array_equal(out, reference.qmatmul(qa, qw).astype(np.float32))


# --- backends -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "has_neuron, has_cuda, expected",
    [(True, True, "nki"), (True, False, "nki"), (False, True, "triton"), (False, False, "reference")],
)
@pytest.mark.parametrize("op", _registry.OPS)
def test_resolve_backend_truth_table(op, has_neuron, has_cuda, expected):
    assert resolve_backend(op, has_neuron=has_neuron, has_cuda=has_cuda) == expected


def test_resolve_backend_rejects_unknown_op():
    with pytest.raises(ValueError, match="op"):
        resolve_backend("matmul", has_neuron=False, has_cuda=False)


def fake_backends(monkeypatch, **modules):
    """Replace the launcher modules of the named backends (for every op); others import as usual."""
    real = _backends._import_backend

    def fake(backend, module):
        if backend in modules:
            if isinstance(modules[backend], Exception):
                raise modules[backend]
            return modules[backend]
        return real(backend, module)

    monkeypatch.setattr(_backends, "_import_backend", fake)


@pytest.mark.parametrize("backend", ["nki", "triton"])
def test_explicit_backend_without_the_op_is_not_available_yet(monkeypatch, backend):
    fake_backends(monkeypatch, **{backend: types.SimpleNamespace()})
    with pytest.raises(BackendUnavailableError, match=f"backend='{backend}' is not available yet"):
        K.attention(*attention_inputs(), backend=backend)
    assert backend not in available_backends("attention")


def test_explicit_backend_that_fails_to_import_says_why(monkeypatch):
    fake_backends(monkeypatch, nki=ImportError("No module named 'neuronxcc'"))
    with pytest.raises(BackendUnavailableError, match="neuronxcc"):
        K.attention(*attention_inputs(), backend="nki")


def test_auto_falls_back_when_the_preferred_backend_lacks_the_op(monkeypatch):
    fake_backends(monkeypatch, triton=types.SimpleNamespace())
    monkeypatch.setattr(_backends, "has_cuda_device", lambda: True)
    q, k, v = attention_inputs()
    np.testing.assert_array_equal(K.attention(q, k, v), K.attention(q, k, v, backend="reference"))


def test_backend_that_defines_the_op_is_dispatched_to_with_resolved_scale(monkeypatch):
    calls = []

    def attention(q, k, v, *, causal, scale, sliding_window, softcap):
        calls.append(scale)
        return np.zeros(q.shape, q.dtype)

    fake_backends(monkeypatch, nki=types.SimpleNamespace(attention=attention, unsupported=lambda **p: None))
    out = K.attention(*attention_inputs(), backend="nki")
    assert calls == [8**-0.5] and np.all(out == 0)
    assert "nki" in available_backends("attention")


def test_unsupported_problem_names_op_backend_reason_and_alternatives(monkeypatch):
    def unsupported(*, head_dim, **problem):
        return f"head_dim {head_dim} > 4" if head_dim > 4 else None

    fake_backends(monkeypatch, triton=types.SimpleNamespace(attention=lambda *a, **k: None, unsupported=unsupported))
    with pytest.raises(ValueError, match=r"attention: backend='triton' .* head_dim 8 > 4; backends that do: \['reference'"):
        K.attention(*attention_inputs(), backend="triton")
    monkeypatch.setattr(_backends, "has_cuda_device", lambda: True)
    q, k, v = attention_inputs()
    np.testing.assert_array_equal(K.attention(q, k, v), K.attention(q, k, v, backend="reference"))  # auto falls back


def test_unknown_backend():
    with pytest.raises(ValueError, match="backend: must be one of"):
        K.attention(*attention_inputs(), backend="cuda")


# --- validation: one test per rule, each naming the argument -----------------------------------------------------


def _attention_case(**changes):
    q, k, v = attention_inputs()
    args = dict(q=q, k=k, v=v, causal=False)
    args.update(changes)
    return args


@pytest.mark.parametrize(
    "changes, error, match",
    [
        (dict(q=np.zeros((3, 4, 8))), ValueError, "q: must be 4-D"),
        (dict(q=[[0.0]]), TypeError, "q: must be a numpy.ndarray"),
        (dict(q=np.zeros((1, 3, 4, 8), np.int32)), TypeError, "q: dtype"),
        (dict(k=np.zeros((1, 5, 2, 8), np.float16)), TypeError, "q, k, v: must share one dtype"),
        (dict(k=np.zeros((1, 5, 3, 8), np.float32), v=np.zeros((1, 5, 3, 8), np.float32)), ValueError, "q: Hq=4"),
        (dict(k=np.zeros((1, 5, 2, 4), np.float32), v=np.zeros((1, 5, 2, 4), np.float32)), ValueError, "k: head_dim"),
        (dict(k=np.zeros((2, 5, 2, 8), np.float32), v=np.zeros((2, 5, 2, 8), np.float32)), ValueError, "k: batch"),
        (dict(v=np.zeros((1, 4, 2, 8), np.float32)), ValueError, "v: shape"),
        (dict(k=torch.zeros(1, 5, 2, 8)), TypeError, "q, k, v: must all be NumPy arrays or all torch tensors"),
        (dict(scale=-1.0), ValueError, "scale: must be a finite number > 0"),
        (dict(scale=float("nan")), ValueError, "scale"),
        (dict(sliding_window=0), ValueError, "sliding_window"),
        (dict(sliding_window=2.5), ValueError, "sliding_window"),
        (dict(softcap=0.0), ValueError, "softcap"),
        (dict(causal="yes"), TypeError, "causal"),
        (dict(softcap=float("inf")), ValueError, "softcap: must be a finite number > 0"),
        (dict(sliding_window=True), ValueError, "sliding_window"),
        (dict(q=np.zeros((1, 3, 0, 8), np.float32)), ValueError, "q: Hq=0 query heads must be a positive multiple"),
        (dict(q=np.zeros((1, 3, 4, 0), np.float32), k=np.zeros((1, 5, 2, 0), np.float32),
              v=np.zeros((1, 5, 2, 0), np.float32)), ValueError, "q: head_dim D must be >= 1"),
        # meta tensors have a device but no data: a device mismatch must be caught before any copy
        (dict(q=torch.zeros(1, 3, 4, 8), k=torch.zeros(1, 5, 2, 8, device="meta"), v=torch.zeros(1, 5, 2, 8)),
         ValueError, "q, k, v: must all be on one device"),
    ],
)
def test_attention_validation(changes, error, match):
    with pytest.raises(error, match=match):
        K.attention(**_attention_case(**changes), backend="reference")


def _paged_case(**changes):
    q, kc, vc, tables, seq_lens, qsl = paged_inputs()
    args = dict(q=q, key_cache=kc, value_cache=vc, block_tables=tables, seq_lens=seq_lens, query_start_loc=qsl)
    args.update(changes)
    return args


I32 = np.int32


@pytest.mark.parametrize(
    "changes, error, match",
    [
        (dict(block_tables=np.array([[3, 0, 4], [2, 1, -1]], I32)), ValueError, r"block_tables: used entry \[0, 2\] = 4"),
        (dict(block_tables=np.array([[3, -1, 1], [2, 1, -1]], I32)), ValueError, r"block_tables: used entry \[0, 1\] = -1"),
        (dict(block_tables=np.array([[3, 0], [2, 1]], I32)), ValueError, "block_tables: sequence 0 needs 3 blocks"),
        (dict(block_tables=np.array([[3, 0, 1], [2, 1, -1]], np.float32)), TypeError, "block_tables: dtype"),
        (dict(block_tables=np.array([3, 0, 1], I32)), ValueError, "block_tables: must be 2-D"),
        (dict(query_start_loc=np.array([1, 1, 4], I32)), ValueError, "query_start_loc: must start at 0"),
        (dict(query_start_loc=np.array([0, 1, 3], I32)), ValueError, "query_start_loc: must end at"),
        (dict(query_start_loc=np.array([0, 3, 2, 4], I32), seq_lens=np.array([5, 3, 3], I32),
              block_tables=np.array([[3, 0, 1], [2, 1, -1], [0, 1, -1]], I32)), ValueError, "query_start_loc: must be non-decreasing"),
        (dict(query_start_loc=np.array([0, 1], I32)), ValueError, "query_start_loc: length"),
        (dict(seq_lens=np.array([5, 2], I32)), ValueError, "seq_lens: sequence 1 has q_len=3"),
        (dict(seq_lens=np.array([5], I32)), ValueError, "seq_lens: length"),
        (dict(seq_lens=np.array([5.0, 3.0])), TypeError, "seq_lens: dtype"),
        (dict(q=np.zeros((4, 3, 8), np.float32)), ValueError, "q: Hq=3"),
        (dict(q=np.zeros((4, 4, 16), np.float32)), ValueError, "q: head_dim D=16"),
        (dict(q=np.zeros((4, 4, 8), np.float16)), TypeError, "q, key_cache, value_cache: must share one dtype"),
        (dict(value_cache=np.zeros((4, 3, 2, 8), np.float32)), ValueError, "value_cache: shape"),
        (dict(key_cache=np.zeros((4, 2, 8), np.float32)), ValueError, "key_cache: must be 4-D"),
        (dict(scale=0), ValueError, "scale"),
        (dict(sliding_window=-3), ValueError, "sliding_window"),
        (dict(softcap=-1.0), ValueError, "softcap"),
        (dict(q=np.zeros((4, 4, 0), np.float32), key_cache=np.zeros((4, 2, 2, 0), np.float32),
              value_cache=np.zeros((4, 2, 2, 0), np.float32)), ValueError, "key_cache: .* D must all be >= 1"),
        (dict(q=np.zeros((4, 0, 8), np.float32)), ValueError, "q: Hq=0"),
        (dict(sliding_window=0), ValueError, "sliding_window"),
        (dict(scale=float("nan")), ValueError, "scale"),
    ],
)
def test_paged_attention_validation(changes, error, match):
    with pytest.raises(error, match=match):
        K.paged_attention(**_paged_case(**changes), backend="reference")


def test_paged_attention_ignores_junk_past_live_blocks():
    base = K.paged_attention(**_paged_case(), backend="reference")
    junk = K.paged_attention(**_paged_case(block_tables=np.array([[3, 0, 1], [2, 1, 10**6]], I32)), backend="reference")
    np.testing.assert_array_equal(base, junk)


def _write_case(**changes):
    key, value, kc, vc, slots = write_inputs()
    args = dict(key=key, value=value, key_cache=kc, value_cache=vc, slot_mapping=slots)
    args.update(changes)
    return args


@pytest.mark.parametrize(
    "changes, error, match",
    [
        (dict(slot_mapping=np.array([5, -1, 8], I32)), ValueError, r"slot_mapping: slot_mapping\[2\] = 8 is outside"),
        (dict(slot_mapping=np.array([5, -2, 0], I32)), ValueError, r"slot_mapping: slot_mapping\[1\] = -2"),
        (dict(slot_mapping=np.array([5, 5, 0], I32)), ValueError, "slot_mapping: live slots must be unique"),
        (dict(slot_mapping=np.array([5.0, -1.0, 0.0])), TypeError, "slot_mapping: dtype must be a signed integer"),
        # uint64 cannot hold -1, and 2**64 - 1 would wrap to -1 (padding) in an int64 check
        (dict(slot_mapping=np.array([5, 2**64 - 1, 0], np.uint64)), TypeError, "slot_mapping: dtype must be a signed"),
        (dict(key_cache=np.zeros((2, 4, 2, 0), np.float32), value_cache=np.zeros((2, 4, 2, 0), np.float32),
              key=np.zeros((3, 2, 0), np.float32), value=np.zeros((3, 2, 0), np.float32)), ValueError,
         "key_cache: num_blocks, block_size, Hkv and D must all be >= 1"),
        (dict(slot_mapping=np.array([5, -1], I32)), ValueError, "slot_mapping: length 2"),
        (dict(key=np.zeros((3, 2, 4), np.float32), value=np.zeros((3, 2, 4), np.float32)), ValueError, "key: \\[Hkv, D\\]"),
        (dict(value=np.zeros((2, 2, 8), np.float32)), ValueError, "value: shape"),
        (dict(key=np.zeros((3, 2, 8), np.float16), value=np.zeros((3, 2, 8), np.float16)), TypeError, "must share one dtype"),
        (dict(value_cache=np.zeros((2, 4, 2, 4), np.float32)), ValueError, "value_cache: shape"),
    ],
)
def test_write_kv_cache_validation(changes, error, match):
    args = _write_case(**changes)
    before = args["key_cache"].copy()
    with pytest.raises(error, match=match):
        K.write_kv_cache(**args, backend="reference")
    np.testing.assert_array_equal(args["key_cache"], before)  # validation happens before any write


@pytest.mark.parametrize(
    "x, qw, out_dtype, error, match",
    [
        (np.zeros((2, 32), np.float32), "int8", None, TypeError, "qw: must be a QuantizedWeight"),
        (np.zeros((2, 16), np.float32), None, None, ValueError, "x: K=16"),
        (np.zeros((2, 32), np.int32), None, None, TypeError, "x: dtype"),
        (np.zeros(32, np.float32), None, None, ValueError, "x: must be 2-D"),
        (np.zeros((2, 32), np.float32), None, np.int8, TypeError, "out_dtype"),
    ],
)
def test_qmatmul_validation(x, qw, out_dtype, error, match):
    qw = quantize_weight(np.ones((32, 3)), "int8") if qw is None else qw
    with pytest.raises(error, match=match):
        K.qmatmul(x, qw, out_dtype=out_dtype, backend="reference")


def test_qmatmul_rejects_inconsistent_quantized_weight():
    qw = quantize_weight(np.ones((32, 3)), "int8", group_size=16)
    bad = type(qw)(qw.data, qw.scales[:1], qw.zeros, qw.scheme, qw.group_size, qw.shape)
    with pytest.raises(ValueError, match="qw.scales"):
        K.qmatmul(np.zeros((1, 32), np.float32), bad, backend="reference")


def test_qmatmul_w8a8_needs_fp8_per_channel():
    qa = quantize_activation(np.ones((2, 32)))
    with pytest.raises(ValueError, match="qw: W8A8"):
        K.qmatmul(qa, quantize_weight(np.ones((32, 3)), "int8"), backend="reference")


def test_write_kv_cache_rejects_a_read_only_cache_before_writing():
    args = _write_case()
    args["value_cache"].flags.writeable = False
    with pytest.raises(ValueError, match="value_cache: is written in place but the NumPy array is read-only"):
        K.write_kv_cache(**args, backend="reference")
    assert not args["key_cache"].any()  # key_cache untouched: the check runs before either write


def test_write_kv_cache_rejects_a_cache_that_requires_grad_before_writing():
    key, value, kc, vc, slots = to_torch(write_inputs())
    kc.requires_grad_(True)
    with pytest.raises(ValueError, match=r"key_cache: requires grad while grad mode is on.*key_cache.detach\(\)"):
        K.write_kv_cache(key, value, kc, vc, slots, backend="reference")
    with torch.no_grad(), pytest.raises(ValueError, match=r"key_cache: is written in place but requires grad; pass "
                                                          r"key_cache.detach\(\)"):
        K.write_kv_cache(key, value, kc, vc, slots, backend="reference")
    assert not kc.detach().any() and not vc.any()


def test_write_kv_cache_torch_caches_on_different_devices():
    key, value, kc, vc, slots = to_torch(write_inputs())
    with pytest.raises(ValueError, match="must all be on one device"):
        K.write_kv_cache(key, value, kc, vc.to("meta"), slots, backend="reference")


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_non_contiguous_inputs_give_the_contiguous_result(kind):
    q, k, v = attention_inputs()
    qs, ks, vs = (np.ascontiguousarray(a.transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3) for a in (q, k, v))
    assert not qs.flags.c_contiguous
    if kind == "torch":
        qs, ks, vs = (torch.from_numpy(a) for a in (qs, ks, vs))
    np.testing.assert_array_equal(np.asarray(K.attention(qs, ks, vs, causal=True, backend="reference")),
                                  K.attention(q, k, v, causal=True, backend="reference"))


def test_write_kv_cache_into_non_contiguous_caches_writes_the_callers_views():
    key, value, _, _, slots = write_inputs()
    storage = np.zeros((8, 2, 4, 2), np.float32)  # [D, Hkv, block_size, num_blocks]: the cache is a transposed view
    kc, vc = storage.transpose(3, 2, 1, 0), np.zeros((2, 4, 2, 8), np.float32)
    K.write_kv_cache(key, value, kc, vc, slots, backend="reference")
    np.testing.assert_array_equal(storage.transpose(3, 2, 1, 0)[1, 1], key[0])
    np.testing.assert_array_equal(vc[0, 0], value[2])


def test_numpy_scalar_options_reach_the_backend_as_python_types(monkeypatch):
    seen = {}

    def attention(q, k, v, **options):
        seen.update(options)
        return np.zeros(q.shape, q.dtype)

    fake_backends(monkeypatch, nki=types.SimpleNamespace(attention=attention, unsupported=lambda **p: None))
    K.attention(*attention_inputs(), causal=np.bool_(True), sliding_window=np.int64(3), softcap=np.float32(5.0),
                backend="nki")
    assert seen == dict(causal=True, scale=8**-0.5, sliding_window=3, softcap=5.0)
    assert [type(seen[k]) for k in ("causal", "scale", "sliding_window", "softcap")] == [bool, float, int, float]


def _replace(obj, **fields):
    return type(obj)(**{**obj.__dict__, **fields})


@pytest.mark.parametrize(
    "scheme, fields, error, match",
    [
        ("fp8_e4m3", dict(data=lambda qw: qw.data.astype(ml_dtypes.float8_e4m3fn)), TypeError,
         "qw.data: dtype must be float8_e4m3 for scheme 'fp8_e4m3', got float8_e4m3fn"),
        ("int4", dict(data=lambda qw: qw.data.astype(np.int8)), TypeError, "qw.data: dtype must be uint8"),
        ("int8", dict(scales=lambda qw: qw.scales.astype(np.float64)), TypeError, "qw.scales: dtype must be float32"),
        ("int8", dict(scales=lambda qw: qw.scales * np.float32(np.nan)), ValueError, "qw.scales: must be finite"),
        ("int8", dict(data=lambda qw: torch.from_numpy(qw.data)), TypeError, "qw.data: must be a NumPy array"),
        ("int4", dict(zeros=lambda qw: qw.zeros + np.uint8(16)), ValueError, "qw.zeros: must be uint8 zero points in 0..15"),
    ],
)
def test_qmatmul_rejects_hand_built_weights_a_kernel_would_misread(scheme, fields, error, match):
    qw = quantize_weight(np.random.default_rng(5).standard_normal((32, 3)), scheme, 16, symmetric=scheme != "int4")
    bad = _replace(qw, **{name: make(qw) for name, make in fields.items()})
    with pytest.raises(error, match=match):
        K.qmatmul(np.zeros((1, 32), np.float32), bad, backend="reference")


@pytest.mark.parametrize(
    "fields, match",
    [
        (dict(data=lambda qa: qa.data[0]), r"x.data: must be 2-D \[M, K\] float8_e4m3fn"),
        (dict(data=lambda qa: qa.data.astype(ml_dtypes.float8_e4m3)), "x.data: must be 2-D .* got float8_e4m3 "),
        (dict(scales=lambda qa: qa.scales[:1]), r"x.scales: must be float32 \[M, 1\] = \(2, 1\)"),
        (dict(scales=lambda qa: qa.scales * np.float32(np.inf)), "x.scales: must be finite"),
    ],
)
def test_qmatmul_rejects_inconsistent_quantized_activation(fields, match):
    qa = quantize_activation(np.random.default_rng(6).standard_normal((2, 32)), "fp8_e4m3fn")
    bad = _replace(qa, **{name: make(qa) for name, make in fields.items()})
    with pytest.raises(ValueError, match=match):
        K.qmatmul(bad, quantize_weight(np.ones((32, 3)), "fp8_e4m3fn"), backend="reference")


# --- the NumPy <-> torch adapter ----------------------------------------------------------------------------------


@pytest.mark.parametrize("torch_dtype, ml_dtype", [(torch.bfloat16, ml_dtypes.bfloat16),
                                                   (torch.float8_e4m3fn, ml_dtypes.float8_e4m3fn)])
def test_adapter_round_trips_bits_both_ways(torch_dtype, ml_dtype):
    from nkilab.kernels._adapter import to_numpy, to_torch

    t = (torch.randn(5, 7) * 100).to(torch_dtype).t()  # non-contiguous, values past fp8's max saturate or NaN
    a = to_numpy(t)
    assert a.dtype == ml_dtype and a.shape == (7, 5)
    np.testing.assert_array_equal(a.astype(np.float32), t.float().numpy())
    back = to_torch(a)
    assert back.dtype == torch_dtype
    assert torch.equal(back.view(torch.uint8 if torch_dtype.itemsize == 1 else torch.int16),
                       t.contiguous().view(torch.uint8 if torch_dtype.itemsize == 1 else torch.int16))


def test_adapter_copies_a_read_only_array_instead_of_aliasing_it():
    import warnings

    from nkilab.kernels._adapter import to_torch

    a = np.ones((2, 3), np.float32)
    a.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns (and would alias) on a non-writable array
        t = to_torch(a)
    t.fill_(5.0)
    assert np.all(a == 1.0)


def test_adapter_names_a_dtype_torch_lacks():
    from nkilab.kernels._adapter import to_torch

    with pytest.raises(TypeError, match="'float8_e4m3' has no torch equivalent"):
        to_torch(np.ones(2, ml_dtypes.float8_e4m3))


def _empty_calls():
    """One call per op whose inputs have a zero-length dimension (M = 0, Skv = 0, T = 0, T_total = 0)."""
    rng = np.random.default_rng(11)
    qw = quantize_weight(rng.standard_normal((64, 8)), "int8")
    cache = np.zeros((2, 4, 1, 8), np.float32)
    no_tokens = np.zeros((0, 1, 8), np.float32)
    return {
        "qmatmul": lambda b: K.qmatmul(np.zeros((0, 64), np.float32), qw, backend=b),
        "attention": lambda b: K.attention(np.ones((1, 3, 2, 8), np.float32), np.zeros((1, 0, 1, 8), np.float32),
                                           np.zeros((1, 0, 1, 8), np.float32), backend=b),
        "write_kv_cache": lambda b: K.write_kv_cache(no_tokens, no_tokens, cache, cache.copy(),
                                                     np.zeros(0, np.int32), backend=b)[0],
        "paged_attention": lambda b: K.paged_attention(
            no_tokens, cache, cache.copy(), np.zeros((1, 1), np.int32), np.array([3], np.int32),
            np.array([0, 0], np.int32), backend=b),
    }


@pytest.mark.parametrize("op", ["qmatmul", "attention", "write_kv_cache", "paged_attention"])
def test_empty_problems(op):
    """Every backend that accepts an empty problem matches the reference; one that declines it says so by name."""
    call = _empty_calls()[op]
    expected = call("reference")
    if op == "attention":  # three queries, no keys: fully masked rows are zeros
        np.testing.assert_array_equal(expected, np.zeros((1, 3, 2, 8), np.float32))
    np.testing.assert_array_equal(call("auto"), expected)
    for backend in ("nki", "triton"):
        try:
            out = call(backend)
        except ValueError as e:
            assert "empty problem" in str(e) and "reference" in str(e), str(e)
        else:
            np.testing.assert_array_equal(np.asarray(out), expected)
