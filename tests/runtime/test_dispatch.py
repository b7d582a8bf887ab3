"""What a runtime needs from the dispatch: per-call target=, which backend ran, out=, no silent autograd loss, cache
writes that cost O(new tokens) (in place through views, a compact staging cache otherwise), masks and varlen."""

import logging

import numpy as np
import pytest
import torch

import nkilab.kernels as K
from nkilab import reference
from nkilab.harness.emulator import run as emulate
from nkilab.kernels import _backends
from nkilab.kernels.nki import launch_qmatmul
from nkilab.kernels.ops import write_kv_cache as write_kv_cache_op
from nkilab.reference.quant import quantize_weight
from runtime import cache_write_bench

RNG = np.random.default_rng(3)
BACKENDS = ("reference", "nki", "triton")


def normal(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


# --- target= and the backend that ran -----------------------------------------------------------------------------


def test_target_reaches_the_nki_launcher(monkeypatch):
    seen = []
    real = launch_qmatmul.qmatmul
    monkeypatch.setattr(launch_qmatmul, "qmatmul", lambda *a, target=None, **k: seen.append(target) or real(*a, **k))
    x, qw = normal(2, 64), quantize_weight(normal(64, 16), "int8")
    K.qmatmul(x, qw, backend="nki", target="trn1")
    K.qmatmul(x, qw, backend="nki")
    assert seen == ["trn1", None]  # None: the launcher's default ($NEURON_PLATFORM_TARGET_OVERRIDE, else trn2)


def test_target_selects_the_emulated_generation():
    x, qw = normal(2, 64), quantize_weight(normal(64, 16), "int8")
    np.testing.assert_array_equal(K.qmatmul(x, qw, backend="nki", target="inf2"),
                                  K.qmatmul(x, qw, backend="nki", target="trn2"))
    with pytest.raises(ValueError, match="h100"):
        K.qmatmul(x, qw, backend="nki", target="h100")
    with pytest.raises(ValueError, match="target: selects the Neuron target of backend='nki'; backend='reference'"):
        K.qmatmul(x, qw, backend="reference", target="trn1")
    with pytest.raises(TypeError, match="target: must be None or a Neuron target name"):
        K.qmatmul(x, qw, backend="nki", target=2)
    K.qmatmul(x, qw, target="trn1")  # auto on this machine picks the reference: the NKI target does not apply


def test_last_backend_and_the_debug_line(caplog):
    q = normal(1, 4, 2, 16)
    with caplog.at_level(logging.DEBUG, logger="nkilab.kernels"):
        K.attention(q, q[:, :, :1], q[:, :, :1])
        assert K.last_backend("attention") == "reference"
        K.attention(q, q[:, :, :1], q[:, :, :1], backend="nki")
    assert K.last_backend("attention") == "nki"
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("attention: backend='auto' ran on 'reference' (auto: no Neuron or CUDA device)")
    assert lines[1] == "attention: backend='nki' ran on 'nki'"
    with pytest.raises(ValueError, match="unknown op"):
        K.last_backend("softmax")


def test_auto_names_why_it_fell_back(monkeypatch, caplog):
    monkeypatch.setattr(_backends, "has_cuda_device", lambda: True)
    monkeypatch.setattr(_backends, "has_neuron_device", lambda: False)
    q = np.zeros((1, 2, 1, 16), np.float64)  # float64: Triton declines it
    with caplog.at_level(logging.DEBUG, logger="nkilab.kernels"):
        K.attention(q, q, q)
    assert K.last_backend("attention") == "reference"
    assert "auto: triton does not support this problem: dtype float64" in caplog.records[-1].getMessage()


# --- autograd -------------------------------------------------------------------------------------------------------


def test_inputs_that_require_grad_are_refused_by_name():
    x = torch.randn(2, 64, requires_grad=True)
    qw = quantize_weight(normal(64, 8), "int8")
    with pytest.raises(ValueError, match=r"x: requires grad while grad mode is on.*torch.no_grad\(\).*x.detach\(\)"):
        K.qmatmul(x, qw, backend="reference")
    with torch.no_grad():
        assert K.qmatmul(x, qw, backend="reference").grad_fn is None
    q, k = torch.randn(1, 3, 2, 8), torch.randn(1, 3, 2, 8, requires_grad=True)
    with pytest.raises(ValueError, match="^k: requires grad"):
        K.attention(q, k, k.detach(), backend="reference")
    with pytest.raises(ValueError, match="^weight: requires grad"):
        K.rms_norm(torch.randn(2, 8), torch.ones(8, requires_grad=True), backend="reference")


# --- out= -------------------------------------------------------------------------------------------------------------


def paged_problem(kind="numpy"):
    kc, vc = normal(6, 4, 2, 16), normal(6, 4, 2, 16)
    tables = np.array([[5, 0], [3, 1]], np.int32)
    arrays = (normal(4, 4, 16), kc, vc, tables, np.array([6, 7], np.int32), np.array([0, 1, 4], np.int32))
    return arrays if kind == "numpy" else tuple(torch.from_numpy(a) for a in arrays)


@pytest.mark.parametrize("backend", BACKENDS)
def test_out_receives_the_attention_result(backend):
    arrays = paged_problem("torch")
    out = torch.full_like(arrays[0], float("nan"))
    assert K.paged_attention(*arrays, backend=backend, out=out) is out
    torch.testing.assert_close(out, K.paged_attention(*arrays, backend=backend), rtol=0, atol=0)
    q, k = normal(2, 5, 4, 16), normal(2, 7, 2, 16)
    dense = np.full_like(q, np.nan)
    assert K.attention(q, k, k, causal=True, backend=backend, out=dense) is dense
    np.testing.assert_array_equal(dense, K.attention(q, k, k, causal=True, backend=backend))


def test_out_must_match_q():
    arrays = paged_problem()
    for out, error, match in [(np.zeros((4, 4, 8), np.float32), ValueError, r"out: shape must be q's \(4, 4, 16\)"),
                              (np.zeros((4, 4, 16), np.float16), TypeError, "out: dtype must be q's float32"),
                              (torch.zeros(4, 4, 16), TypeError, "out: must be a numpy array like q")]:
        with pytest.raises(error, match=match):
            K.paged_attention(*arrays, backend="reference", out=out)
    readonly = np.zeros((4, 4, 16), np.float32)
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="out: is written in place but the NumPy array is read-only"):
        K.paged_attention(*arrays, backend="reference", out=readonly)


# --- cache writes: O(new tokens) ------------------------------------------------------------------------------------


def write_problem(kind, num_blocks=8):
    kc, vc = np.full((num_blocks, 4, 2, 16), np.nan, np.float32), np.full((num_blocks, 4, 2, 16), np.nan, np.float32)
    key, value = normal(3, 2, 16), normal(3, 2, 16)
    slots = np.array([9, -1, 30], np.int64)
    arrays = (key, value, kc, vc, slots)
    return arrays if kind == "numpy" else tuple(torch.from_numpy(a) for a in arrays)


def expected_write(key, value, kc, vc, slots):
    key, value, kc, vc, slots = (np.array(np.asarray(a)) for a in (key, value, kc, vc, slots))
    return reference.write_kv_cache(key, value, kc, vc, slots)


@pytest.mark.parametrize("kind", ["numpy", "torch"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_writes_land_in_the_callers_memory_without_staging(backend, kind, monkeypatch):
    args = write_problem(kind)
    want = expected_write(*args)
    monkeypatch.setattr(write_kv_cache_op, "scatter_rows", None)  # the staging path would call it
    out = K.write_kv_cache(*args, backend=backend)
    assert out[0] is args[2] and out[1] is args[3]
    np.testing.assert_array_equal(np.asarray(args[2]), want[0])
    np.testing.assert_array_equal(np.asarray(args[3]), want[1])


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_contiguous_caches_go_through_a_compact_staging_cache(backend):
    key, value, kc, vc, slots = write_problem("torch")
    both = torch.stack([kc, vc], dim=-1)  # [..., D, 2]: each cache a strided view, as packed K/V layouts are
    k_view, v_view = both[..., 0], both[..., 1]
    assert _backends.in_place(backend, k_view) is None
    K.write_kv_cache(key, value, k_view, v_view, slots, backend=backend)
    want = expected_write(key, value, kc, vc, slots)
    np.testing.assert_array_equal(k_view.numpy(), want[0])
    np.testing.assert_array_equal(v_view.numpy(), want[1])


def test_in_place_views_and_refusals():
    a = np.zeros((2, 3), np.float32)
    view = _backends.in_place("triton", a)
    assert isinstance(view, torch.Tensor) and K._adapter.same_memory(view, a)
    assert _backends.in_place("nki", a) is a
    t = torch.zeros(2, 3, dtype=torch.bfloat16)
    assert K._adapter.same_memory(_backends.in_place("reference", t), t)
    assert _backends.in_place("reference", t.t()) is None  # not contiguous
    ro = np.zeros(3)
    ro.flags.writeable = False
    assert _backends.in_place("triton", ro) is None


def test_the_emulator_hands_back_a_returned_argument():
    def kernel(a, b):
        return a, b

    a = np.zeros((2, 2), np.float32)
    b = torch.zeros(2, 2)
    out = emulate(kernel, a, b).outputs
    assert out[0] is a and out[1] is b
    out = emulate(kernel, a, b, mode="trace").outputs
    assert out[0] is a and out[1] is b


# --- masks and varlen ---------------------------------------------------------------------------------------------


def left_padded(b=3, s=9, pads=(0, 3, 9)):
    mask = np.ones((b, s), bool)
    for row, pad in enumerate(pads):
        mask[row, :pad] = False
    return mask


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("sq", [9, 1])
def test_left_padded_batches_match_the_reference_mask(backend, sq):
    q, k, v = normal(3, sq, 4, 16), normal(3, 9, 2, 16), normal(3, 9, 2, 16)
    mask = left_padded()
    want = reference.attention(q, k, v, causal=True, key_padding_mask=mask)
    got = K.attention(q, k, v, causal=True, key_padding_mask=mask, backend=backend)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)  # float32 kernels against the float64 truth
    assert not got[2].any()  # a row whose keys are all padding sees none: zeros


def test_general_masks_run_on_the_reference_only():
    q = normal(2, 4, 2, 16)
    mask = np.ones((2, 4), bool)
    mask[0, 2] = False  # a hole: not left padding
    want = reference.attention(q, q, q, causal=True, key_padding_mask=mask).astype(np.float32)
    np.testing.assert_array_equal(K.attention(q, q, q, causal=True, key_padding_mask=mask), want)
    assert K.last_backend("attention") == "reference"
    with pytest.raises(ValueError, match="key_padding_mask: backend='nki' runs left-padding masks only"):
        K.attention(q, q, q, causal=True, key_padding_mask=mask, backend="nki")


@pytest.mark.parametrize("backend", BACKENDS)
def test_varlen_matches_the_reference(backend):
    cu_q, cu_k = np.array([0, 4, 4, 5, 12], np.int32), np.array([0, 6, 9, 9, 16], np.int32)
    q, k, v = normal(1, 12, 4, 16), normal(1, 16, 2, 16), normal(1, 16, 2, 16)
    want = reference.attention_varlen(q, k, v, cu_q, cu_k, causal=True, sliding_window=3)
    got = K.attention(*(torch.from_numpy(a) for a in (q, k, v)), causal=True, sliding_window=3,
                      cu_seqlens_q=torch.from_numpy(cu_q), cu_seqlens_k=torch.from_numpy(cu_k), backend=backend)
    np.testing.assert_allclose(got.numpy(), want, rtol=2e-5, atol=2e-6)
    assert not got[0, 4].any()  # sequence 2 has a query and no key


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(key_padding_mask=np.ones((2, 5), bool)), ValueError,
     r"key_padding_mask: shape must be \[B, Skv\] = \(1, 5\)"),
    (dict(key_padding_mask=np.ones((1, 5), np.int64)), TypeError, "key_padding_mask: dtype must be bool"),
    (dict(cu_seqlens_q=np.array([0, 3])), ValueError, "cu_seqlens_q: varlen attention needs both"),
    (dict(cu_seqlens_q=np.array([0, 2]), cu_seqlens_k=np.array([0, 5])), ValueError,
     "cu_seqlens_q: must start at 0, never decrease and end at 3"),
    (dict(cu_seqlens_q=np.array([0, 3]), cu_seqlens_k=np.array([0, 2, 5])), ValueError,
     "cu_seqlens_k: cu_seqlens_q and cu_seqlens_k must both"),
    (dict(key_padding_mask=np.ones((1, 5), bool), cu_seqlens_q=np.array([0, 3]), cu_seqlens_k=np.array([0, 5])),
     ValueError, "key_padding_mask: give either"),
])
def test_mask_validation(kwargs, error, match):
    q, k = normal(1, 3, 2, 16), normal(1, 5, 2, 16)
    with pytest.raises(error, match=match):
        K.attention(q, k, k, backend="reference", **kwargs)


def test_one_token_into_a_large_cache_costs_what_it_costs_into_a_small_one():
    # measured, in one process: min of 7 calls per cell, 8 MiB against 512 MiB; a whole-cache copy would be ~60x
    for backend, kind, small, large in cache_write_bench.table():
        assert large < 3 * small, f"{backend} {kind}: {large:.2f} ms at 512 MiB vs {small:.2f} ms at 8 MiB"
