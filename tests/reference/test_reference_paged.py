"""nkilab.reference.paged: cache writes, and paged attention equal to dense attention on each sequence's history."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from brute_force import brute_force_attention
from strategies import attention_options, head_counts, paged_problems, slot_mappings, write_problems

from nkilab.reference import attention, build_paged_cache, gather_kv, paged_attention, write_kv_cache

SMALL = dict(heads=head_counts(max_q_heads=4), dims=st.just(64), dtypes=st.just("float32"))


def dense_history(problem, key_cache, value_cache, i):
    """Sequence i's keys and values by walking its table position by position (independent of gather_kv)."""
    bs = problem.table.block_size
    rows = problem.table.rows[i]
    keys = [key_cache[rows[pos // bs], pos % bs] for pos in range(problem.seq_lens[i])]
    values = [value_cache[rows[pos // bs], pos % bs] for pos in range(problem.seq_lens[i])]
    return np.stack(keys).astype(np.float64), np.stack(values).astype(np.float64)


@given(problem=paged_problems(max_seqs=3, max_seq_len=12, dims=st.just(16), options=attention_options(causal=None)))
def test_paged_matches_brute_force_per_sequence(problem):
    """Default heads include Qwen's 28/4; tables are permuted / gapped / shared with -1 or junk padding and every
    dead slot NaN."""
    q, key_cache, value_cache, block_tables, seq_lens, qsl = problem.inputs()
    out = paged_attention(q, key_cache, value_cache, block_tables, seq_lens, qsl, **problem.options())
    assert np.all(np.isfinite(out)), "a NaN-poisoned dead slot leaked into the output"
    for i in range(len(problem.seq_lens)):
        k, v = dense_history(problem, key_cache, value_cache, i)
        rows = slice(qsl[i], qsl[i + 1])
        expected = brute_force_attention(q[None, rows].astype(np.float64), k[None], v[None], **problem.options())[0]
        np.testing.assert_allclose(out[rows], expected, rtol=0, atol=1e-12, err_msg=f"sequence {i}")


@given(problem=paged_problems(**SMALL, layouts=("identity", "permuted", "gaps")), data=st.data())
def test_block_table_permutation_does_not_change_output(problem, data):
    """Relabel physical blocks by a random permutation (moving the cache with them): same output."""
    q, key_cache, value_cache, block_tables, seq_lens, qsl = problem.inputs()
    perm = np.array(data.draw(st.permutations(range(problem.table.num_blocks))))
    moved_k, moved_v = np.empty_like(key_cache), np.empty_like(value_cache)
    moved_k[perm], moved_v[perm] = key_cache, value_cache
    live = np.arange(block_tables.shape[1])[None, :] < -(-seq_lens[:, None] // problem.table.block_size)
    new_tables = np.where(live, perm[np.clip(block_tables, 0, len(perm) - 1)], -1).astype(np.int32)
    before = paged_attention(q, key_cache, value_cache, block_tables, seq_lens, qsl, **problem.options())
    after = paged_attention(q, moved_k, moved_v, new_tables, seq_lens, qsl, **problem.options())
    np.testing.assert_array_equal(before, after)


def test_mixed_batch_decode_prefill_chunked_in_one_call():
    rng = np.random.default_rng(0)
    seq_lens, q_lens, bs = [5, 7, 9], [1, 7, 3], 4  # decode, prefill, chunked prefill
    keys = [rng.standard_normal((n, 2, 8)) for n in seq_lens]
    values = [rng.standard_normal((n, 2, 8)) for n in seq_lens]
    tables = np.array([[5, 0, -1], [3, 1, -1], [4, 2, 6]], dtype=np.int32)
    kc, vc = build_paged_cache(keys, values, tables, num_blocks=7, block_size=bs)
    q = rng.standard_normal((sum(q_lens), 6, 8))
    qsl = np.array([0, 1, 8, 11], dtype=np.int32)
    out = paged_attention(q, kc, vc, tables, np.array(seq_lens), qsl)
    for i in range(3):
        expected = attention(q[None, qsl[i] : qsl[i + 1]], keys[i][None], values[i][None], causal=True)[0]
        np.testing.assert_allclose(out[qsl[i] : qsl[i + 1]], expected, rtol=0, atol=1e-12)


def test_build_paged_cache_fills_dead_slots_and_gather_round_trips():
    rng = np.random.default_rng(1)
    keys = [rng.standard_normal((3, 1, 2)), rng.standard_normal((2, 1, 2))]
    tables = np.array([[2, 0], [1, -1]], dtype=np.int32)
    kc, vc = build_paged_cache(keys, keys, tables, num_blocks=3, block_size=2)
    assert np.isnan(kc[0, 1]).all() and not np.isnan(kc[2]).any()
    for i, k in enumerate(keys):
        gk, gv = gather_kv(kc, vc, tables[i], len(k))
        np.testing.assert_array_equal(gk, k)
        np.testing.assert_array_equal(gv, k)


@given(problem=write_problems(dims=st.just(8), dtypes=st.just("float32")))
def test_write_then_gather_round_trips_and_padding_leaves_cache_untouched(problem):
    key, value, kc, vc, slots = problem.inputs()
    kc0, vc0 = kc.copy(), vc.copy()
    out_k, out_v = write_kv_cache(key, value, kc, vc, slots)
    assert out_k is kc and out_v is vc
    written = set()
    for t, slot in enumerate(problem.slots):
        if slot >= 0:
            block, offset = divmod(slot, problem.block_size)
            np.testing.assert_array_equal(kc[block, offset], key[t])
            np.testing.assert_array_equal(vc[block, offset], value[t])
            written.add((block, offset))
    untouched = [(b, o) for b in range(problem.num_blocks) for o in range(problem.block_size) if (b, o) not in written]
    for b, o in untouched:
        np.testing.assert_array_equal(kc[b, o], kc0[b, o])
        np.testing.assert_array_equal(vc[b, o], vc0[b, o])


def test_write_all_padding_is_a_no_op():
    kc = np.arange(8.0).reshape(2, 2, 1, 2)
    before = kc.copy()
    write_kv_cache(np.ones((3, 1, 2)), np.ones((3, 1, 2)), kc, kc, np.full(3, -1))
    np.testing.assert_array_equal(kc, before)


@pytest.mark.parametrize("block_size", [1, 3, 16])
def test_gather_reads_only_live_entries(block_size):
    kc = np.full((4, block_size, 1, 1), np.nan)
    kc[2] = 1.0
    k, _ = gather_kv(kc, kc, np.array([2, -1, 10**6]), block_size)  # entries past the live one are junk
    np.testing.assert_array_equal(k, np.ones((block_size, 1, 1)))


class CacheWrites(RuleBasedStateMachine):
    """Sequences of write_kv_cache calls agree with a dict model {slot: (key, value)}; padding never writes."""

    NUM_BLOCKS, BLOCK_SIZE, HKV, D = 3, 4, 2, 4

    def __init__(self):
        super().__init__()
        shape = (self.NUM_BLOCKS, self.BLOCK_SIZE, self.HKV, self.D)
        self.key_cache, self.value_cache = np.full(shape, np.nan), np.full(shape, np.nan)
        self.model = {}

    @rule(data=st.data(), t=st.integers(1, 5), seed=st.integers(0, 2**16))
    def write(self, data, t, seed):
        slots = data.draw(slot_mappings(num_tokens=t, num_slots=self.NUM_BLOCKS * self.BLOCK_SIZE))
        rng = np.random.default_rng(seed)
        key, value = rng.standard_normal((t, self.HKV, self.D)), rng.standard_normal((t, self.HKV, self.D))
        write_kv_cache(key, value, self.key_cache, self.value_cache, np.array(slots, dtype=np.int32))
        for tok, slot in enumerate(slots):
            if slot >= 0:
                self.model[slot] = (key[tok], value[tok])

    @invariant()
    def cache_matches_model(self):
        flat_k = self.key_cache.reshape(-1, self.HKV, self.D)
        flat_v = self.value_cache.reshape(-1, self.HKV, self.D)
        for slot in range(flat_k.shape[0]):
            if slot in self.model:
                np.testing.assert_array_equal(flat_k[slot], self.model[slot][0])
                np.testing.assert_array_equal(flat_v[slot], self.model[slot][1])
            else:
                assert np.isnan(flat_k[slot]).all() and np.isnan(flat_v[slot]).all()


CacheWrites.TestCase.settings = settings(max_examples=10, stateful_step_count=6, deadline=None)
TestCacheWrites = CacheWrites.TestCase


def test_sequence_with_no_query_tokens_and_partial_last_block():
    """Sequence 1 has q_len 0 (its rows are empty); sequence 0 (seq_len 3, block_size 2) queries all 3 positions.

    Keys [8, 9, 0] from blocks 4 then 0 with equal scores: causal rows see the running means 8, 8.5, 17/3.
    """
    kc = np.arange(10.0).reshape(5, 2, 1, 1)
    tables = np.array([[4, 0], [1, -1]], dtype=np.int32)
    out = paged_attention(np.zeros((3, 1, 1)), kc, kc, tables, np.array([3, 2]), np.array([0, 3, 3]))
    np.testing.assert_allclose(out.ravel(), [8.0, 8.5, 17 / 3], rtol=0, atol=1e-12)


@pytest.mark.parametrize("entry", [-1, 5])
def test_used_block_table_entry_out_of_range_raises(entry):
    """NumPy would read block -1 as the last block; a used entry must be in [0, num_blocks) instead."""
    kc = np.zeros((5, 2, 1, 1))
    with pytest.raises(ValueError, match=f"used entry {entry} is outside"):
        paged_attention(np.zeros((1, 1, 1)), kc, kc, np.array([[0, entry]]), np.array([3]), np.array([0, 1]))


@pytest.mark.parametrize("slot", [-2, 8])
def test_write_out_of_range_slot_raises(slot):
    """NumPy would write slot -2 into the last block; only -1 (skip) and [0, num_blocks * block_size) are slots."""
    kc = np.zeros((2, 4, 1, 1))
    with pytest.raises(ValueError, match=rf"slot_mapping\[1\] = {slot} is outside"):
        write_kv_cache(np.ones((2, 1, 1)), np.ones((2, 1, 1)), kc, kc.copy(), np.array([0, slot]))
