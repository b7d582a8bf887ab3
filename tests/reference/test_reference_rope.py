"""RoPE reference: rotations, both pair layouts, partial rotary, Llama-3.1 scaling, the naive runs, rows kept apart."""

import ml_dtypes
import numpy as np
import pytest

from nkilab.reference import RopeScaling, rope
from nkilab.reference.rotary import angles, inv_freq

LLAMA = RopeScaling(factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=8192)


def _complex_rope(x, positions, freq, interleaved):
    """An independent formulation: each plane as a complex number times exp(i * angle)."""
    half = freq.shape[0]
    re, im = (x[..., 0:2 * half:2], x[..., 1:2 * half:2]) if interleaved else (x[..., :half], x[..., half:2 * half])
    z = (re + 1j * im) * np.exp(1j * positions[:, None, None] * freq[None, None, :])
    out = x.copy()
    if interleaved:
        out[..., 0:2 * half:2], out[..., 1:2 * half:2] = z.real, z.imag
    else:
        out[..., :half], out[..., half:2 * half] = z.real, z.imag
    return out


@pytest.mark.parametrize("style", ["neox", "gptj"])
@pytest.mark.parametrize("rotary_dim", [None, 6])
def test_matches_the_complex_rotation(style, rotary_dim):
    rng = np.random.default_rng(0)
    q, k = rng.standard_normal((5, 3, 10)), rng.standard_normal((5, 2, 10))
    pos = np.array([0, 1, 7, 300, 9000])
    r = 10 if rotary_dim is None else rotary_dim
    freq = 500000.0 ** -(np.arange(0, r, 2) / r)
    got = rope(q, k, pos, theta=500000.0, rotary_dim=rotary_dim, style=style)
    for x, y in zip((q, k), got):
        np.testing.assert_allclose(y, _complex_rope(x, pos, freq, style == "gptj"), rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(y[..., r:], x[..., r:])  # partial rotary: the rest passes through


def test_position_zero_is_the_identity_and_norms_are_kept():
    rng = np.random.default_rng(1)
    q = rng.standard_normal((3, 4, 16))
    q0, _ = rope(q, q[:, :1], np.zeros(3, int))
    np.testing.assert_array_equal(q0, q)
    q1, _ = rope(q, q[:, :1], np.array([5, 50, 5000]))
    np.testing.assert_allclose(np.linalg.norm(q1, axis=-1), np.linalg.norm(q, axis=-1), rtol=1e-13)


def test_gptj_is_neox_on_interleaved_dims():
    rng = np.random.default_rng(2)
    q = rng.standard_normal((4, 2, 8))
    perm = np.array([0, 2, 4, 6, 1, 3, 5, 7])  # gptj pair (2i, 2i+1) -> neox pair (i, i + 4)
    pos = np.array([3, 1, 4, 1])
    neox, _ = rope(q[..., perm], q[..., perm], pos, style="neox")
    gptj, _ = rope(q, q, pos, style="gptj")
    np.testing.assert_allclose(gptj[..., perm], neox, rtol=1e-15)


def test_llama3_scaling_matches_an_independent_formula():
    base = inv_freq(128, 500000.0)
    got = inv_freq(128, 500000.0, LLAMA)
    for f, g in zip(base, got):  # band by band, written as the Llama-3.1 release describes it
        wavelen = 2 * np.pi / f
        if wavelen < 8192 / 4.0:
            assert g == f
        elif wavelen > 8192 / 1.0:
            assert g == pytest.approx(f / 8.0, rel=1e-15)
        else:
            smooth = (8192 / wavelen - 1.0) / (4.0 - 1.0)
            assert g == pytest.approx((1 - smooth) * f / 8.0 + smooth * f, rel=1e-15)
    assert (got < base).sum() > 0 and (got == base).sum() > 0  # both bands occur at Llama-3.1's shapes


def test_inv_freq_and_angles():
    np.testing.assert_allclose(inv_freq(4, 100.0), [1.0, 0.1])
    a32 = angles(np.array([3, 100000]), 4, 100.0, dtype=np.float32)
    assert a32.dtype == np.float32
    np.testing.assert_array_equal(a32, np.float32([3, 100000])[:, None] * np.float32([1.0, 0.1])[None, :])


def test_scaling_from_an_hf_config():
    hf = dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
              original_max_position_embeddings=8192)
    assert RopeScaling.from_config(hf) == LLAMA and RopeScaling.from_config(LLAMA.to_config()) == LLAMA
    assert RopeScaling.from_config({**{k: v for k, v in hf.items() if k != "rope_type"}, "type": "llama3"}) == LLAMA
    assert RopeScaling.from_config(None) is None
    q = np.ones((1, 1, 8))
    np.testing.assert_array_equal(rope(q, q, np.array([9]), scaling=hf)[0], rope(q, q, np.array([9]), scaling=LLAMA)[0])


@pytest.mark.parametrize("config, error, match", [
    (dict(rope_type="yarn", factor=4.0), ValueError, "rope_type must be one of .*llama3.* got 'yarn'"),
    (dict(rope_type="llama3", factor=8.0), ValueError, "missing .*low_freq_factor"),
    (dict(LLAMA.to_config(), beta=1), ValueError, r"unknown \['beta'\]"),
    (dict(LLAMA.to_config(), factor=0.0), ValueError, "factor must be a finite number > 0"),
    (dict(LLAMA.to_config(), low_freq_factor=4.0), ValueError, "low_freq_factor 4.0 must be < high_freq_factor"),
    (dict(LLAMA.to_config(), original_max_position_embeddings=0), ValueError, "original_max_position_embeddings"),
    ("llama3", TypeError, "scaling: must be None, a RopeScaling or an HF rope_scaling dict"),
])
def test_bad_scaling_is_named(config, error, match):
    with pytest.raises(error, match=match):
        RopeScaling.from_config(config)


@pytest.mark.parametrize("dtype", [np.float32, np.float16, ml_dtypes.bfloat16])
def test_naive_runs_round_to_their_precision(dtype):
    rng = np.random.default_rng(3)
    q, k = rng.standard_normal((6, 4, 32)).astype(dtype), rng.standard_normal((6, 2, 32)).astype(dtype)
    pos = rng.integers(0, 8192, 6)
    low = rope(q, k, pos, theta=500000.0, scaling=LLAMA, compute_dtype=dtype)
    truth = rope(q, k, pos, theta=500000.0, scaling=LLAMA)
    eps_rel = float(ml_dtypes.finfo(dtype).eps)
    for lo, hi in zip(low, truth):
        assert lo.dtype == np.dtype(dtype)
        err = np.max(np.abs(lo.astype(np.float64) - hi))
        # fp32: the fp32 angle of position < 8192 is off by <= half an ulp of 8192 (2^-11 rad)
        allowed = 2.0 ** -11 * 8 if dtype == np.float32 else 4 * eps_rel * np.max(np.abs(hi))
        assert 0 < err <= allowed


def test_a_non_finite_value_stays_in_its_head_and_token():
    q = np.ones((3, 2, 4))
    q[1, 0, 2] = np.nan
    out, _ = rope(q, q[:, :1], np.array([1, 2, 3]))
    assert np.isnan(out[1, 0]).any() and np.isfinite(out[[0, 2]]).all() and np.isfinite(out[1, 1]).all()
    assert np.isfinite(out[1, 0, [1, 3]]).all()  # neox pairs (0, 2) and (1, 3): only the NaN's own plane
