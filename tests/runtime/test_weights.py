"""Weights for a runtime: nn.Linear layout, prepared weights on every backend, GPTQ / AWQ int4 import checked against
a float64 dequantization written from each format's definition (one element at a time, independent of the importer)."""

import numpy as np
import pytest
import torch

import nkilab.kernels as K
from nkilab.kernels.ops.qmatmul import PreparedWeight, prepare_weight
from nkilab.kernels.triton import prepare_weight as triton_prepare_weight
from nkilab.reference.quant import dequantize_weight, quantize_weight
from nkilab.reference.quant_import import AWQ_ORDER, from_awq, from_gptq, quantize_linear

RNG = np.random.default_rng(7)


# --- the formats, written out: packers as AutoGPTQ / AutoAWQ describe them, and a per-element dequantization -------


def pack_words(values: np.ndarray, axis: int, order=range(8)) -> np.ndarray:
    """Eight 4-bit values per int32 along `axis`: value order[i] of each run of eight goes to bits 4i..4i+3."""
    v = np.moveaxis(values.astype(np.uint32) & 0xF, axis, -1)
    runs = v.reshape(*v.shape[:-1], -1, 8)
    words = np.zeros(runs.shape[:-1], np.uint32)
    for i, src in enumerate(order):
        words |= runs[..., src] << np.uint32(4 * i)
    return np.moveaxis(words, -1, axis).view(np.int32)


def nibble(word, i: int) -> int:
    return (int(np.uint32(np.int32(word))) >> (4 * i)) & 0xF


def gptq_dequant64(qweight, qzeros, scales, g_idx, zero_offset=1) -> np.ndarray:
    """w[k, n] = s[g_idx[k], n] * (q[k, n] - (stored zero + offset)), q and zero read nibble by nibble."""
    k, n = 8 * qweight.shape[0], qweight.shape[1]
    w = np.zeros((k, n))
    for kk in range(k):
        for nn in range(n):
            g = g_idx[kk]
            z = nibble(qzeros[g, nn // 8], nn % 8) + zero_offset
            w[kk, nn] = float(scales[g, nn]) * (nibble(qweight[kk // 8, nn], kk % 8) - z)
    return w


def awq_dequant64(qweight, qzeros, scales, group_size) -> np.ndarray:
    """w[k, n] = s[k // G, n] * (q - z), column 8c + j sitting in nibble AWQ_ORDER.index(j) of word c."""
    k, n = qweight.shape[0], 8 * qweight.shape[1]
    w = np.zeros((k, n))
    for kk in range(k):
        for nn in range(n):
            pos = AWQ_ORDER.index(nn % 8)
            z = nibble(qzeros[kk // group_size, nn // 8], pos)
            w[kk, nn] = float(scales[kk // group_size, nn]) * (nibble(qweight[kk, nn // 8], pos) - z)
    return w


def random_int4_layer(k=64, n=16, group_size=32, zeros=None):
    q = RNG.integers(0, 16, (k, n))
    groups = k // group_size
    z = RNG.integers(0, 16, (groups, n)) if zeros is None else np.full((groups, n), zeros)
    scales = (RNG.random((groups, n)) * 0.1 + 0.01).astype(np.float16)
    return q, z, scales


@pytest.mark.parametrize("zeros", [None, 8])
@pytest.mark.parametrize("group_size", [32, 64])
def test_gptq_import_matches_the_format(zeros, group_size):
    q, z, scales = random_int4_layer(group_size=group_size, zeros=zeros)
    z = np.maximum(z, 1)  # the "gptq" format stores z - 1: z = 0 would need a stored -1 (AutoGPTQ's overflow case)
    qweight, qzeros = pack_words(q, 0), pack_words(z - 1, 1)
    g_idx = np.arange(q.shape[0], dtype=np.int32) // group_size
    qw = from_gptq(*(torch.from_numpy(a) for a in (qweight, qzeros, scales, g_idx)))
    expected = gptq_dequant64(qweight, qzeros, scales, g_idx)
    np.testing.assert_array_equal(dequantize_weight(qw), expected)
    assert qw.symmetric == (zeros == 8) and qw.shape == q.shape
    assert qw.group_size == (None if group_size == q.shape[0] else group_size)


def test_gptq_v2_and_errors():
    q, z, scales = random_int4_layer(group_size=64)
    qweight, qzeros = pack_words(q, 0), pack_words(z, 1)
    g_idx = np.arange(64) // 64
    qw = from_gptq(qweight, qzeros, scales, g_idx, checkpoint_format="gptq_v2")
    np.testing.assert_array_equal(dequantize_weight(qw), gptq_dequant64(qweight, qzeros, scales, g_idx, 0))
    assert qw.group_size is None  # one group over K = per channel
    with pytest.raises(ValueError, match="g_idx: must be k // 32 .*act-order"):
        from_gptq(pack_words(q, 0), pack_words(np.ones((2, 16)), 1), np.ones((2, 16), np.float16),
                  RNG.permutation(64) // 32)
    stored_15 = pack_words(np.full((1, 16), 15), 1)  # z = 16 under the +1 convention
    with pytest.raises(ValueError, match=r"qzeros: GPTQ \(gptq\) zero point z\[0, 0\] = 16 is outside"):
        from_gptq(qweight, stored_15, scales)
    with pytest.raises(ValueError, match="bits: nkilab imports 4-bit"):
        from_gptq(qweight, qzeros, scales, bits=8)
    with pytest.raises(TypeError, match="qweight: must be a 2-D int32"):
        from_gptq(qweight.astype(np.int64), qzeros, scales)


@pytest.mark.parametrize("zeros", [None, 8])
def test_awq_import_matches_the_format(zeros):
    q, z, scales = random_int4_layer(k=64, n=24, group_size=16, zeros=zeros)
    qweight, qzeros = pack_words(q, 1, AWQ_ORDER), pack_words(z, 1, AWQ_ORDER)
    qw = from_awq(qweight, qzeros, scales)
    np.testing.assert_array_equal(dequantize_weight(qw), awq_dequant64(qweight, qzeros, scales, 16))
    assert qw.symmetric == (zeros == 8) and qw.group_size == 16


def test_imported_weights_run_on_every_backend():
    q, z, scales = random_int4_layer(k=128, n=32, group_size=64)
    qw = from_awq(pack_words(q, 1, AWQ_ORDER), pack_words(z, 1, AWQ_ORDER), scales)
    x = RNG.standard_normal((3, 128)).astype(np.float32)
    packed = pack_words(q, 1, AWQ_ORDER), pack_words(z, 1, AWQ_ORDER)
    expected = x.astype(np.float64) @ awq_dequant64(*packed, scales, 64)
    for backend in ("reference", "triton"):
        np.testing.assert_allclose(np.asarray(K.qmatmul(torch.from_numpy(x), qw, backend=backend)), expected,
                                   rtol=1e-5, atol=1e-5)  # fp32 sums of 128 products of order 0.1
    # NKI rounds x to bf16 (qmatmul's docstring): compare with that rounding made explicit
    x_bf16 = torch.from_numpy(x).to(torch.bfloat16).double().numpy()
    np.testing.assert_allclose(K.qmatmul(x, qw, backend="nki"), x_bf16 @ dequantize_weight(qw), rtol=1e-5, atol=1e-5)


# --- nn.Linear layout and prepared weights ------------------------------------------------------------------------


def test_quantize_linear_takes_the_nn_linear_layout():
    linear = torch.nn.Linear(64, 24, bias=False)
    qw = quantize_linear(linear, "int8")
    assert qw.shape == (64, 24)
    x = torch.randn(5, 64)
    with torch.no_grad():
        want = linear(x).double().numpy()
        got = K.qmatmul(x, qw, backend="reference").double().numpy()
    assert np.abs(got - want).max() < 0.02 * np.abs(want).max()  # int8 per-channel rounding: < 1 % per weight
    with pytest.raises(ValueError, match=r"linear: the weight must be 2-D \[N, K\]"):
        quantize_linear(np.zeros(3), "int8")


@pytest.mark.parametrize("backend", ["reference", "nki", "triton"])
def test_prepared_weights_on_every_backend(backend):
    qw = quantize_weight(RNG.standard_normal((128, 48)), "int4", 64, symmetric=False)
    pw = prepare_weight(qw, backend=backend)
    assert isinstance(pw, PreparedWeight) and pw.backend == backend and pw.source is qw
    x = torch.randn(2, 128)
    np.testing.assert_array_equal(K.qmatmul(x, pw, backend=backend).numpy(), K.qmatmul(x, qw, backend=backend).numpy())
    other = "reference" if backend != "reference" else "triton"  # another backend reads the source weight
    np.testing.assert_array_equal(K.qmatmul(x, pw, backend=other).numpy(), K.qmatmul(x, qw, backend=other).numpy())


def test_backend_own_prepared_weight_is_accepted():
    qw = quantize_weight(RNG.standard_normal((64, 32)), "int8")
    x = torch.randn(2, 64)
    np.testing.assert_array_equal(K.qmatmul(x, triton_prepare_weight(qw), backend="triton").numpy(),
                                  K.qmatmul(x, qw, backend="triton").numpy())
    with pytest.raises(TypeError, match="qw: must be a QuantizedWeight .* or a prepared weight"):
        K.qmatmul(x, object(), backend="reference")
    with pytest.raises(ValueError, match="device: backend 'nki' reads NumPy weights"):
        prepare_weight(qw, backend="nki", device="cpu")
