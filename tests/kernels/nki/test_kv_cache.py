"""NKI write_kv_cache writes exactly what the reference writes on every target, skips -1 slots, works in place."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import block_sizes, head_dims, write_problems

import nkilab.kernels.nki as nki_backend
from nkilab.harness.emulator import run
from nkilab.kernels.nki import launch_kv_cache
from nkilab.reference.paged import gather_kv
from nkilab.reference.paged import write_kv_cache as reference_write_kv_cache

TARGETS = ("inf2", "trn1", "trn2")
ALL_DTYPES = ("float32", "float16", "bfloat16")  # a copy does no arithmetic: every dtype must match bit for bit


def _bits(a: np.ndarray) -> np.ndarray:
    """Raw bytes, so NaN payloads compare bit for bit."""
    return np.ascontiguousarray(a).view(np.uint8)


def _check(problem, target: str) -> None:
    key, value, key_cache, value_cache, slots = problem.inputs()
    expected_k, expected_v = reference_write_kv_cache(key, value, key_cache.copy(), value_cache.copy(), slots)
    out_k, out_v = launch_kv_cache.write_kv_cache(key, value, key_cache, value_cache, slots, target=target)
    assert out_k is key_cache and out_v is value_cache  # in place, on the caller's arrays
    np.testing.assert_array_equal(_bits(out_k), _bits(expected_k))
    np.testing.assert_array_equal(_bits(out_v), _bits(expected_v))


@pytest.mark.parametrize("target", TARGETS)
@given(problem=write_problems(dims=head_dims(), sizes=block_sizes(choices=(1, 4, 16, 32, 128)),
                              dtypes=st.sampled_from(ALL_DTYPES)))
def test_matches_reference_bitwise(problem, target):
    _check(problem, target)


# every scatter path of the kernel on v3+ (`_kv_cache_tunables`): the defaults (T = 300: 16-row HBM -> HBM
# scatters), staged through SBUF, one row per HBM -> HBM scatter, one scatter per tile
PATHS = {"default": None, "staged": dict(stage_min_t=1, stage_max_t=4096), "row-dmas": dict(scatter_bytes=1),
         "tile-dmas": dict(scatter_bytes=1 << 20)}


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("block_size", [16, 32, 128])
@pytest.mark.parametrize("path", PATHS)
def test_round_trip_through_gather_and_padding_untouched(target, block_size, path):
    # 300 tokens (two whole index tiles, one slot DMA, and a ragged one) of two sequences, scattered over permuted
    # blocks, every third token padding.
    rng = np.random.default_rng(block_size)
    hkv, d, t = 2, 64, 300
    num_blocks = -(-t // block_size) + 2
    cache_shape = (num_blocks, block_size, hkv, d)
    key_cache, value_cache = np.full(cache_shape, np.nan, np.float32), np.full(cache_shape, np.nan, np.float32)
    before_k, before_v = key_cache.copy(), value_cache.copy()
    table = rng.permutation(num_blocks).astype(np.int32)
    slots = (table[np.arange(t) // block_size] * block_size + np.arange(t) % block_size).astype(np.int32)
    padded = np.arange(t) % 3 == 2
    slots[padded] = -1
    key = rng.standard_normal((t, hkv, d)).astype(np.float32)
    value = rng.standard_normal((t, hkv, d)).astype(np.float32)
    launch_kv_cache.write_kv_cache(key, value, key_cache, value_cache, slots, target=target, tunables=PATHS[path])
    k, v = gather_kv(key_cache, value_cache, table, t)
    np.testing.assert_array_equal(k[~padded], key[~padded])
    np.testing.assert_array_equal(v[~padded], value[~padded])
    # slots of padding tokens and slots no token names keep their old bits
    written = np.zeros(num_blocks * block_size, bool)
    written[slots[slots >= 0]] = True
    written = written.reshape(num_blocks, block_size)
    np.testing.assert_array_equal(_bits(key_cache[~written]), _bits(before_k[~written]))
    np.testing.assert_array_equal(_bits(value_cache[~written]), _bits(before_v[~written]))


def test_all_padding_leaves_cache_untouched():
    key_cache = np.arange(2 * 4 * 1 * 64, dtype=np.float32).reshape(2, 4, 1, 64)
    value_cache = -key_cache
    before = key_cache.copy(), value_cache.copy()
    new = np.ones((3, 1, 64), np.float32)
    launch_kv_cache.write_kv_cache(new, new, key_cache, value_cache, np.full(3, -1, np.int32), target="trn2")
    np.testing.assert_array_equal(key_cache, before[0])
    np.testing.assert_array_equal(value_cache, before[1])


def test_public_api_dispatches_to_nki(monkeypatch):
    from nkilab.kernels import write_kv_cache

    monkeypatch.setenv("NEURON_PLATFORM_TARGET_OVERRIDE", "trn1")
    key = np.ones((2, 1, 64), np.float32)
    key_cache = np.zeros((1, 4, 1, 64), np.float32)
    value_cache = np.zeros((1, 4, 1, 64), np.float32)
    out_k, _ = write_kv_cache(key, 2 * key, key_cache, value_cache, np.array([3, -1]), backend="nki")
    assert out_k is key_cache
    np.testing.assert_array_equal(key_cache[0, :, 0, 0], [0, 0, 0, 1])
    np.testing.assert_array_equal(value_cache[0, :, 0, 0], [0, 0, 0, 2])


LLAMA_DECODE_WRITE = dict(t=8, hkv=8, head_dim=128, block_size=32, dtype="bfloat16")


@pytest.mark.parametrize("target,dmas", [("trn2", 1 + 2), ("trn1", 1 + 2 * 8), ("gen2", 1 + 2 * 8)])
def test_trace_llama_decode_follows_the_target(target, dmas):
    # Llama-3.1-8B decode, batch 8: one index load + one scatter per cache on v3; one DMA per token on v2.
    trace = nki_backend.trace("write_kv_cache", LLAMA_DECODE_WRITE, target)
    assert trace.target == {"gen2": "trn1"}.get(target, target)
    mix = trace.instruction_mix()
    assert mix["dma"]["dma_copy"] == dmas
    assert sum(sum(c.values()) for e, c in mix.items() if e != "dma") == 0
    kernel, args, kwargs = launch_kv_cache.traceable(LLAMA_DECODE_WRITE, target)
    again = run(kernel, *args, target=target, mode="trace", **kwargs).trace  # the launcher's hook, run by hand
    assert again.instruction_mix() == mix


@pytest.mark.parametrize("target", ["h100", "cpu", "trn9"])
def test_trace_refuses_a_target_that_is_not_a_neuron_core(target):
    with pytest.raises(ValueError, match="target"):
        nki_backend.traceable("write_kv_cache", LLAMA_DECODE_WRITE, target)
    with pytest.raises(ValueError, match="target"):
        nki_backend.trace("write_kv_cache", LLAMA_DECODE_WRITE, target)
