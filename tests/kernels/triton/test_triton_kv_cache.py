"""Triton write_kv_cache writes exactly what the reference writes, skips -1 slots, and touches nothing else."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from strategies import head_dims, write_problems

from nkilab.kernels import write_kv_cache
from nkilab.reference.paged import write_kv_cache as reference_write_kv_cache

ALL_DTYPES = ("float32", "float16", "bfloat16")  # a copy needs no arithmetic, so bfloat16 runs in the interpreter


def _check(problem) -> None:
    key, value, key_cache, value_cache, slots = problem.inputs()
    expected_k, expected_v = reference_write_kv_cache(key, value, key_cache.copy(), value_cache.copy(), slots)
    out_k, out_v = write_kv_cache(key, value, key_cache, value_cache, slots, backend="triton")
    assert out_k is key_cache and out_v is value_cache  # in place, on the caller's arrays
    np.testing.assert_array_equal(out_k, expected_k)
    np.testing.assert_array_equal(out_v, expected_v)


@given(problem=write_problems(dims=head_dims(choices=(64, 80)), dtypes=st.sampled_from(ALL_DTYPES)))
def test_matches_reference_exactly(problem):
    _check(problem)


@pytest.mark.parametrize("slot_dtype", [torch.int32, torch.int64])
def test_torch_in_place_and_padding_skipped(slot_dtype):
    key = torch.randn(5, 2, 64)
    value = torch.randn(5, 2, 64)
    key_cache = torch.full((3, 4, 2, 64), float("nan"))
    value_cache = torch.full((3, 4, 2, 64), float("nan"))
    slots = torch.tensor([11, -1, 0, 5, -1], dtype=slot_dtype)
    write_kv_cache(key, value, key_cache, value_cache, slots, backend="triton")
    flat_k = key_cache.reshape(12, 2, 64)
    flat_v = value_cache.reshape(12, 2, 64)
    for t, slot in [(0, 11), (2, 0), (3, 5)]:
        assert torch.equal(flat_k[slot], key[t]) and torch.equal(flat_v[slot], value[t])
    untouched = [s for s in range(12) if s not in (11, 0, 5)]
    assert torch.isnan(flat_k[untouched]).all() and torch.isnan(flat_v[untouched]).all()


@pytest.mark.gpu
@given(problem=write_problems(max_tokens=200, max_kv_heads=8, dims=head_dims(choices=(64, 128, 256), max_head_dim=256),
                              dtypes=st.sampled_from(ALL_DTYPES)))
def test_gpu_matches_reference_exactly(problem):
    _check(problem)
