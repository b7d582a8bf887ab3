"""nkilab.reference.quant: formats round-trip, errors stay within half a quantization step, fp8 saturates."""

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from strategies import quant_configs

from nkilab.reference.quant import (
    FP8_E4M3_MAX,
    FP8_E4M3FN_MAX,
    dequantize_activation,
    dequantize_weight,
    pack_int4,
    quantize_activation,
    quantize_weight,
    unpack_int4,
)

FP8_HALF_ULP_REL = 2.0**-4  # e4m3 keeps 3 mantissa bits: round-to-nearest is within 2^-4 relative for normals
FP8_SUBNORMAL_HALF_STEP = 2.0**-10  # both e4m3 variants: subnormal step 2^-9 (in units of the scale)


def weights(k=128, n=6):
    return hnp.arrays(np.float64, (k, n), elements=st.floats(-8, 8, allow_subnormal=False))


@given(q=hnp.arrays(np.int8, st.tuples(st.integers(1, 6).map(lambda x: 2 * x), st.integers(1, 5)),
                    elements=st.integers(-8, 7)))
def test_int4_pack_unpack_round_trip_signed(q):
    packed = pack_int4(q)
    assert packed.dtype == np.uint8 and packed.shape == (q.shape[0] // 2, q.shape[1])
    np.testing.assert_array_equal(unpack_int4(packed, signed=True), q)


@given(q=hnp.arrays(np.int8, (4, 3), elements=st.integers(0, 15)))
def test_int4_pack_unpack_round_trip_unsigned(q):
    np.testing.assert_array_equal(unpack_int4(pack_int4(q), signed=False), q)


def test_int4_nibble_order_low_is_even_k():
    assert pack_int4(np.array([[1], [2]], dtype=np.int8)).item() == 0x21
    assert pack_int4(np.array([[-8], [7]], dtype=np.int8)).item() == 0x78


@given(w=weights(), config=quant_configs(schemes=("int8", "int4"), allow_w8a8=False))
def test_integer_error_within_half_a_step(w, config):
    qw = quantize_weight(w, config.scheme, config.group_size, config.symmetric)
    g = config.group_size or w.shape[0]
    step = np.repeat(qw.scales.astype(np.float64), g, axis=0)
    err = np.abs(dequantize_weight(qw) - w)
    assert np.all(err <= 0.5 * step * (1 + 1e-6)), f"max err / step = {(err / step).max()}"


@given(w=weights(), config=quant_configs(schemes=("fp8_e4m3", "fp8_e4m3fn"), allow_w8a8=False))
def test_fp8_error_within_half_an_fp8_ulp(w, config):
    qw = quantize_weight(w, config.scheme, config.group_size)
    g = config.group_size or w.shape[0]
    scale = np.repeat(qw.scales.astype(np.float64), g, axis=0)
    err = np.abs(dequantize_weight(qw) - w)
    assert np.all(err <= (FP8_HALF_ULP_REL * np.abs(w) + FP8_SUBNORMAL_HALF_STEP * scale) * (1 + 1e-6))


@pytest.mark.parametrize("scheme, fmax", [("fp8_e4m3", FP8_E4M3_MAX), ("fp8_e4m3fn", FP8_E4M3FN_MAX)])
def test_fp8_never_exceeds_format_max_and_never_overflows(scheme, fmax):
    w = np.array([[1e6, -1e6], [3.0, -0.5]])
    qw = quantize_weight(w, scheme)
    data = qw.data.astype(np.float64)
    assert np.all(np.isfinite(data)) and np.abs(data).max() <= fmax
    assert np.abs(data).max() == fmax  # absmax maps exactly onto the format max
    qa = quantize_activation(w, scheme)
    assert np.all(np.isfinite(qa.data.astype(np.float64))) and np.abs(qa.data.astype(np.float64)).max() <= fmax


def test_fp8_dtypes_are_the_ml_dtypes_formats():
    assert quantize_weight(np.ones((2, 2)), "fp8_e4m3").data.dtype == ml_dtypes.float8_e4m3
    assert quantize_weight(np.ones((2, 2)), "fp8_e4m3fn").data.dtype == ml_dtypes.float8_e4m3fn


@pytest.mark.parametrize("scheme", ["int8", "int4", "fp8_e4m3", "fp8_e4m3fn"])
def test_zero_groups_get_scale_one_and_dequantize_to_zero(scheme):
    w = np.zeros((64, 3))
    w[:32, 0] = 1.0
    qw = quantize_weight(w, scheme, group_size=32)
    assert qw.scales[1, 0] == 1.0 and qw.scales[0, 1] == 1.0
    np.testing.assert_array_equal(dequantize_weight(qw)[32:], 0.0)


def test_int4_asymmetric_fields():
    rng = np.random.default_rng(0)
    w = rng.uniform(0.5, 2.0, (64, 4))  # all positive: the range still includes 0, so z = 0
    qw = quantize_weight(w, "int4", group_size=32, symmetric=False)
    assert qw.zeros.dtype == np.uint8 and qw.zeros.shape == (2, 4) and not qw.symmetric
    assert qw.data.dtype == np.uint8 and qw.data.shape == (32, 4)
    assert np.all(qw.zeros == 0)
    w_neg = -w
    assert np.all(quantize_weight(w_neg, "int4", group_size=32, symmetric=False).zeros == 15)


def test_layouts_and_dtypes():
    w = np.random.default_rng(1).standard_normal((128, 5))
    qw = quantize_weight(w, "int8", group_size=64)
    assert (qw.data.dtype, qw.data.shape, qw.scales.dtype, qw.scales.shape) == (np.int8, (128, 5), np.float32, (2, 5))
    assert quantize_weight(w, "int8").scales.shape == (1, 5) and quantize_weight(w, "int8").zeros is None


def test_quantize_weight_accepts_torch():
    torch = pytest.importorskip("torch")
    w = np.random.default_rng(2).standard_normal((32, 4))
    a, b = quantize_weight(w, "int8"), quantize_weight(torch.from_numpy(w), "int8")
    np.testing.assert_array_equal(a.data, b.data)
    assert isinstance(b.data, np.ndarray)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(scheme="int3"), "scheme"),
        (dict(scheme="int8", group_size=48), "group_size"),
        (dict(scheme="int8", group_size=0), "group_size"),
        (dict(scheme="int8", symmetric=False), "symmetric"),
    ],
)
def test_quantize_weight_errors_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        quantize_weight(np.ones((64, 2)), **kwargs)


def test_int4_needs_even_k():
    with pytest.raises(ValueError, match="K must be even"):
        quantize_weight(np.ones((3, 2)), "int4")


@given(x=hnp.arrays(np.float64, (5, 16), elements=st.floats(-100, 100, allow_subnormal=False)))
def test_activation_per_token_scale(x):
    qa = quantize_activation(x)
    assert qa.scales.shape == (5, 1) and qa.scales.dtype == np.float32
    err = np.abs(dequantize_activation(qa) - x)
    assert np.all(err <= (FP8_HALF_ULP_REL * np.abs(x) + FP8_SUBNORMAL_HALF_STEP * qa.scales) * (1 + 1e-6))


def test_activation_errors():
    with pytest.raises(ValueError, match="scheme"):
        quantize_activation(np.ones((2, 2)), scheme="int8")
    with pytest.raises(ValueError, match="per"):
        quantize_activation(np.ones((2, 2)), per="tensor")


def test_int4_asymmetric_per_channel_hand_computed():
    """Column [-1, 2]: s = (2 - -1) / 15 = 0.2, z = rint(1 / 0.2) = 5, q = [0, 15]; packed byte 0xF0."""
    qw = quantize_weight(np.array([[-1.0], [2.0]]), "int4", symmetric=False)
    assert qw.scales.shape == (1, 1) and qw.scales.item() == np.float32(0.2) and qw.zeros.item() == 5
    assert qw.data.item() == 0xF0 and unpack_int4(qw.data, signed=False).ravel().tolist() == [0, 15]
    np.testing.assert_allclose(dequantize_weight(qw).ravel(), [-1.0, 2.0], rtol=1e-6)


@pytest.mark.parametrize("scheme", ["int8", "int4", "fp8_e4m3", "fp8_e4m3fn"])
def test_group_size_equal_to_k_is_per_channel(scheme):
    w = np.random.default_rng(3).standard_normal((32, 4))
    grouped, per_channel = quantize_weight(w, scheme, group_size=32), quantize_weight(w, scheme)
    assert grouped.scales.shape == (1, 4)
    np.testing.assert_array_equal(grouped.scales, per_channel.scales)
    np.testing.assert_array_equal(dequantize_weight(grouped), dequantize_weight(per_channel))


def test_empty_k_raises():
    with pytest.raises(ValueError, match="K must be >= 1"):
        quantize_weight(np.zeros((0, 3)), "int8")
