"""The shared strategies draw what they promise: bounds, valid page tables, unique live slots, poisoned caches."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from strategies import (
    QWEN_HEADS,
    attention_problems,
    block_tables,
    head_counts,
    head_dims,
    matmul_problems,
    paged_problems,
    quant_configs,
    sequence_shapes,
    slot_mappings,
    write_problems,
)

from nkilab.reference.quant import FP8_SCHEMES


@given(heads=head_counts(max_q_heads=6))
def test_head_counts_divide(heads):
    hq, hkv = heads
    assert hq % hkv == 0 and (hq <= 6 or heads == QWEN_HEADS)


@given(d=head_dims(max_head_dim=80))
def test_head_dims_respect_bound(d):
    assert d in (64, 80)


@given(config=quant_configs())
def test_quant_configs_are_consistent(config):
    assert config.symmetric or config.scheme == "int4"
    assert not config.w8a8 or (config.scheme in FP8_SCHEMES and config.group_size is None)


@given(problem=matmul_problems(max_m=3, max_n=4))
def test_matmul_problems(problem):
    x, qw = problem.inputs()
    assert problem.k % (problem.quant.group_size or 1) == 0 and qw.shape == (problem.k, problem.n)
    assert 1 <= problem.m <= 3 and 1 <= problem.n <= 4 and x.shape == (problem.m, problem.k)


@given(problem=attention_problems(max_batch=1, max_seq=5))
def test_attention_problems(problem):
    q, k, v = problem.inputs()
    assert q.shape == (1, problem.sq, problem.hq, problem.d) and k.shape == v.shape == (1, problem.skv, problem.hkv, problem.d)
    assert q.dtype.name == problem.dtype and problem.sq <= 5 and problem.skv <= 5
    assert problem.sliding_window is None or problem.sliding_window >= 1


@given(shapes=sequence_shapes(max_seqs=3, max_seq_len=9, kinds=("decode", "chunked")))
def test_sequence_shapes_kinds(shapes):
    seq_lens, q_lens = shapes
    assert 1 <= len(seq_lens) <= 3
    for length, q_len in zip(seq_lens, q_lens):
        assert 1 <= q_len <= length <= 9
        assert q_len == 1 or q_len < length  # decode or chunked: never a whole prefill


@given(shapes=sequence_shapes(max_seqs=3, max_seq_len=9, kinds=("idle",)))
def test_idle_sequences_have_keys_but_no_query_tokens(shapes):
    seq_lens, q_lens = shapes
    assert all(length >= 1 for length in seq_lens) and set(q_lens) == {0}


@given(data=st.data(), seq_lens=st.lists(st.integers(0, 20), min_size=1, max_size=4), block_size=st.sampled_from([1, 4, 16]))
def test_block_tables_used_entries_in_range_and_unique_unless_shared(data, seq_lens, block_size):
    table = data.draw(block_tables(seq_lens, block_size=block_size))
    arr = table.array()
    assert arr.dtype == np.int32 and arr.shape[0] == len(seq_lens)
    used = [arr[i, : table.live_blocks(i)] for i in range(len(seq_lens))]
    for row in used:
        assert np.all((row >= 0) & (row < table.num_blocks))
        assert len(set(row.tolist())) == len(row)  # a sequence never maps two logical blocks to one physical block
    if table.layout != "shared":
        flat = np.concatenate(used)
        assert len(set(flat.tolist())) == len(flat)
    if table.layout == "identity":
        assert np.concatenate(used).tolist() == list(range(sum(map(len, used))))


@given(data=st.data(), t=st.integers(1, 10), num_slots=st.integers(1, 12))
def test_slot_mappings_live_slots_unique_and_in_range(data, t, num_slots):
    slots = np.array(data.draw(slot_mappings(num_tokens=t, num_slots=num_slots)))
    live = slots[slots >= 0]
    assert len(slots) == t and np.all(slots >= -1) and np.all(live < num_slots)
    assert len(np.unique(live)) == len(live)


@given(problem=write_problems(max_tokens=6))
def test_write_problems(problem):
    key, _, kc, _, slots = problem.inputs()
    assert slots.dtype == np.int32 and len(slots) == key.shape[0] <= 6
    assert np.all(slots < problem.num_blocks * problem.block_size)


@given(problem=paged_problems(max_seqs=3, max_seq_len=12, dims=st.just(64)))
def test_paged_problems_poison_exactly_the_dead_slots(problem):
    q, kc, vc, tables, seq_lens, qsl = problem.inputs()
    assert qsl[0] == 0 and qsl[-1] == q.shape[0] and np.all(np.diff(qsl) <= seq_lens)
    live = problem.table.live_slots()
    flat_nan = np.isnan(kc.astype(np.float64)).reshape(-1, problem.hkv * problem.d).all(axis=1)
    assert set(np.flatnonzero(~flat_nan).tolist()) == live
    assert "PagedProblem(seq_len/q_len=[" in repr(problem)
