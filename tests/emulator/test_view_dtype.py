"""NkiTensor.view(dtype): bit reinterpretation of the same bytes (values, shapes, aliasing, trace footprints, rules)."""

import ml_dtypes
import numpy as np
import pytest

from nkilab.harness.emulator import NkiValidationError, nisa, nl, run

FP8 = np.dtype(ml_dtypes.float8_e4m3)


def _bytes(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def test_uint8_uint32_fp8_round_trip(run_tiles):
    a = _bytes((4, 16))

    def body(t):
        w32 = t.view(nl.uint32)
        f8 = w32.view(nl.float8_e4m3)
        assert w32.shape == (4, 4) and w32.dtype == np.uint32
        assert f8.shape == (4, 16) and f8.dtype == FP8
        return w32, f8, f8.view(nl.uint8)

    w32, f8, back = run_tiles(body, a)
    np.testing.assert_array_equal(w32, a.view(np.uint32))  # little-endian: byte j of a word is column 4i + j
    np.testing.assert_array_equal(f8.view(np.uint8), a)
    np.testing.assert_array_equal(back, a)


def test_nibbles_read_as_fp8_are_exact_multiples_of_2_pow_minus_9():
    u = np.arange(16, dtype=np.uint8)  # 0..7 subnormal (u/8)·2^-6; 8..15 exponent field 1, (1 + (u-8)/8)·2^-6
    np.testing.assert_array_equal(u.view(FP8).astype(np.float64) * 2.0**9, u.astype(np.float64))


def test_writes_through_a_view_are_seen_by_the_tensor(run_tiles):
    a = _bytes((2, 8), seed=1)

    def body(t):
        w32 = t.view(nl.uint32)
        nisa.tensor_scalar(dst=w32, data=w32, op0=nl.bitwise_and, operand0=0x0F0F0F0F, op1=nl.bitwise_xor,
                           operand1=0x08080808)
        return (t,)

    (out,) = run_tiles(body, a)
    np.testing.assert_array_equal(out, (a & 0x0F) ^ 0x08)


def test_fp8_view_feeds_tensor_engine(run_tiles):
    u = (_bytes((32, 8), seed=2) & 0x0F).astype(np.uint8)
    x = np.random.default_rng(3).standard_normal((32, 4)).astype(ml_dtypes.bfloat16)

    def body(ut, xt):
        ps = nl.ndarray((8, 4), nl.float32, buffer=nl.psum)
        nisa.nc_matmul(dst=ps, stationary=ut.view(nl.float8_e4m3), moving=xt)
        return (ps,)

    (out,) = run_tiles(body, u, x)
    expect = (u.astype(np.float64) * 2.0**-9).T @ x.astype(np.float64)
    np.testing.assert_allclose(out, expect, rtol=1e-6, atol=1e-9)


def test_shape_scaling_of_sliced_and_3d_views():
    def kernel():
        t = nl.ndarray((128, 3, 16), nl.uint8, buffer=nl.sbuf)
        v = t[:, 1, 4:12].view(nl.uint32)
        assert v.shape == (128, 2) and v.strides == (12, 1) and v.offset == 5
        assert t.view(nl.uint16).shape == (128, 3, 8)
        w = nl.ndarray((64, 4), nl.uint32, buffer=nl.sbuf)
        assert w.view(nl.uint8).shape == (64, 16) and w[:, 1:3].view(nl.bfloat16).shape == (64, 4)
        h = nl.ndarray((6, 8), nl.float32, buffer=nl.shared_hbm)
        assert h.view(nl.uint8).shape == (6, 32) and h[2].view(nl.bfloat16).shape == (16,)
    run(kernel)


def test_trace_footprints_meet_in_the_allocations_elements():
    def kernel():
        t = nl.ndarray((128, 64), nl.uint8, buffer=nl.sbuf)
        nisa.memset(dst=t[:, 32:48], value=0)
        w32 = t.view(nl.uint32)
        nisa.tensor_scalar(dst=w32[:, 8:12], data=w32[:, 8:12], op0=nl.bitwise_xor, operand0=1)

    trace = run(kernel, mode="trace").trace
    memset, xor = trace.instructions
    (written,) = [o.access for o in memset.operands if o.is_write]
    (read,) = [o.access for o in xor.operands if not o.is_write]
    assert (read.start, read.stop) == (32, 48) and read.overlaps(written)


@pytest.mark.parametrize("make, dtype, rule", [
    (lambda: nl.ndarray((8, 6), nl.uint8, buffer=nl.sbuf), nl.uint32, "last dim bytes"),
    (lambda: nl.ndarray((8, 6), nl.uint8, buffer=nl.sbuf)[:, 0:4], nl.uint32, "partition rows"),
    (lambda: nl.ndarray((8, 8), nl.uint8, buffer=nl.sbuf)[:, 1:5], nl.uint32, "offset and strides"),
    (lambda: nl.ndarray((8, 16), nl.uint8, buffer=nl.sbuf)[:, 0:16:2], nl.uint32, "contiguous last dim"),
    (lambda: nl.ndarray((6, 10), nl.uint8, buffer=nl.shared_hbm)[:, 0:8], nl.uint32, "offset and strides"),
    (lambda: nl.ndarray((8, 8), nl.float32, buffer=nl.psum), nl.bfloat16, "kept in PSUM"),
], ids=["ragged-last-dim", "partition-row-split", "misaligned-offset", "strided-last-dim", "hbm-row-stride",
        "psum-itemsize"])
def test_illegal_views_raise(make, dtype, rule):
    def kernel():
        with pytest.raises(NkiValidationError, match=rule):
            make().view(dtype)
    run(kernel)


def test_same_itemsize_psum_view_is_allowed():
    def kernel():
        ps = nl.ndarray((8, 8), nl.float32, buffer=nl.psum)
        assert ps.view(nl.int32).shape == (8, 8)
    run(kernel)
