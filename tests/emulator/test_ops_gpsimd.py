"""GpSimdE instructions (iota, affine_select, tensor_partition_reduce) value by value against NumPy, on every target
where they exist."""

import numpy as np
import pytest

from nkilab.harness.emulator import nisa, nl
from emulator_cases import ALL_TARGETS, bf16, new_like, uniform_f32


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_iota_and_affine_select(target, run_tiles):
    a = uniform_f32(32, 24, seed=27)

    def body(x):
        io = nl.ndarray((32, 4, 6), nl.int32)
        nisa.iota(dst=io, pattern=[[10, 4], [1, 6]], offset=3, channel_multiplier=100)
        fio = nl.ndarray((32, 24), nl.float32)
        nisa.iota(dst=fio, pattern=[[-1, 24]], offset=0, channel_multiplier=1)
        causal = new_like(x)  # keep x[p, f] where p - f >= 0
        nisa.affine_select(dst=causal, pattern=[[-1, 24]], channel_multiplier=1, on_true_tile=x,
                           on_false_value=-1e30, cmp_op=nl.greater_equal, offset=0)
        return io, fio, causal
    io, fio, causal = run_tiles(body, a, target=target)
    p = np.arange(32)[:, None, None]
    np.testing.assert_array_equal(io, 3 + 100 * p + 10 * np.arange(4)[None, :, None] + np.arange(6)[None, None, :])
    np.testing.assert_array_equal(fio, np.arange(32)[:, None] - np.arange(24)[None, :])
    mask = np.arange(32)[:, None] >= np.arange(24)[None, :]
    np.testing.assert_array_equal(causal, np.where(mask, a, np.float32(-1e30)))


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_affine_select_copies_bits_for_equal_dtypes(target, run_tiles):
    big = (np.arange(4 * 8, dtype=np.int32).reshape(4, 8) + 2**24 + 1) * 3  # not exact in float32
    x = uniform_f32(4, 8, seed=28)

    def body(i, x):
        keep_i = new_like(i)  # int32 -> int32: bit-exact
        nisa.affine_select(dst=keep_i, pattern=[[1, 8]], channel_multiplier=0, on_true_tile=i, on_false_value=-5.0,
                           cmp_op=nl.greater_equal, offset=-3)
        to_bf16 = new_like(x, nl.bfloat16)  # float32 -> bfloat16: cast (RNE)
        nisa.affine_select(dst=to_bf16, pattern=[[1, 8]], channel_multiplier=0, on_true_tile=x, on_false_value=0.0,
                           cmp_op=nl.greater_equal, offset=0)
        return keep_i, to_bf16
    keep_i, to_bf16 = run_tiles(body, big, x, target=target)
    np.testing.assert_array_equal(keep_i, np.where(np.arange(8) >= 3, big, -5))
    np.testing.assert_array_equal(to_bf16.view(np.uint16), x.astype(bf16).view(np.uint16))


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_tensor_partition_reduce(target, run_tiles):
    a = uniform_f32(32, 12, seed=52)

    def body(x):
        s, m = nl.ndarray((1, 12), nl.float32), nl.ndarray((1, 12), nl.float32)
        nisa.tensor_partition_reduce(dst=s, op=nl.add, data=x)
        nisa.tensor_partition_reduce(dst=m, op=nl.maximum, data=x)
        return s, m
    s, m = run_tiles(body, a, target=target)
    np.testing.assert_allclose(s, a.sum(0, keepdims=True), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(m, a.max(0, keepdims=True))
