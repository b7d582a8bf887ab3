"""NKI paged attention: a non-finite element reaches only the outputs that depend on it, on every target.

A NaN / inf in one query element must change out[t, h] of that query only: every other output of the batch stays
bit-for-bit what it is without it (issue 10, item 1: on NeuronCore-v2 a PE transpose is a matmul with the identity,
so a NaN in q or in one row of p used to reach every row of the work item). A NaN / inf in one key reaches exactly
the rows of its kv head that see it: not the other kv heads stacked in the same score matmul, not the rows the
causal mask hides it from (v2: K is cleaned before its transposes and the bad keys flagged back into the scores,
`paged_attention/finite.py`).
"""

import numpy as np
import pytest
from strategies import pinned_paged_problem

from nkilab.kernels.nki import launch_paged
from nkilab.reference.paged import paged_attention as reference_paged_attention

TARGETS = ("inf2", "trn1", "trn2")
# (seq_lens, q_lens, hq, hkv, d, block_size): every shape puts several query tokens / heads into one work item
SHAPES = {
    "prefill-one-head-per-group": ([13, 6], [5, 1], 8, 1, 64, 4),  # BQ = 3 tokens x 8 heads per item
    "decode-stacked-heads": ([37, 5, 64], [1, 1, 1], 32, 8, 128, 16),  # all 8 kv heads stacked in one group
    "chunked-stacked-heads": ([20, 9], [6, 3], 8, 4, 64, 4),  # BQ = 4 tokens, 2 kv heads per group
    # v3+: decode items of one kv head run key-major tiles (`paged_attention/keymajor.py`): 8 heads in each s^T
    # tile's columns, the neg_max broadcast back over them by a matmul
    "decode-key-major": ([300, 5, 64], [1, 1, 1], 8, 1, 128, 16),
}


def _nki(inputs, problem, target):
    return launch_paged.paged_attention(*inputs, scale=inputs[0].shape[-1] ** -0.5, target=target,
                                        **problem.options())


def _changed(out, clean):
    """bool [T, Hq]: outputs that differ from the clean run (NaN counts as a change, NaN == NaN does not)."""
    same = (out == clean) | (np.isnan(out) & np.isnan(clean))
    return ~same.all(axis=-1)


def _only(shape, index):
    """bool `shape`: True exactly at `index` (the outputs a non-finite input may change)."""
    mask = np.zeros(shape, bool)
    mask[index] = True
    return mask


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("shape", list(SHAPES), ids=list(SHAPES))
def test_non_finite_query_reaches_only_its_output(shape, value, target):
    problem = pinned_paged_problem(*SHAPES[shape], dtype="float32", seed=1)
    q, *rest = problem.inputs()
    clean = _nki((q, *rest), problem, target)
    t, h = q.shape[0] // 2, q.shape[1] - 1  # a token inside a multi-token item (prefill) / a stacked head (decode)
    bad_q = q.copy()
    bad_q[t, h, 3] = value
    out = _nki((bad_q, *rest), problem, target)
    np.testing.assert_array_equal(_changed(out, clean), _only(out.shape[:2], (t, h)))
    ref = reference_paged_attention(bad_q, *rest, **problem.options())
    np.testing.assert_array_equal(np.isnan(out[t, h]), np.isnan(ref[t, h]))  # ±inf in q: NaN row, as the ref


def _with_bad_key(problem, target, kv_head, position, value=np.nan, seq=0):
    """(out, changed [T, Hq]) of the kernel with key_cache[slot of `position` of sequence `seq`, kv_head, 0] = value,
    `changed` against the clean run."""
    inputs = problem.inputs()
    q, key_cache, value_cache, block_tables, seq_lens, qsl = inputs
    bad = key_cache.copy()
    block_size = key_cache.shape[1]
    bad[block_tables[seq, position // block_size], position % block_size, kv_head, 0] = value
    out = _nki((q, bad, value_cache, block_tables, seq_lens, qsl), problem, target)
    return out, _changed(out, _nki(inputs, problem, target))


@pytest.mark.parametrize("target", TARGETS)
def test_nan_key_reaches_the_rows_that_see_it(target):
    # Every row of sequence 0 sees position 2: exactly its rows turn NaN, sequence 1 is unchanged.
    problem = pinned_paged_problem([13, 6], [5, 1], 4, 1, 64, 4, dtype="float32", seed=2)
    out, changed = _with_bad_key(problem, target, kv_head=0, position=2)
    np.testing.assert_array_equal(changed, _only(changed.shape, np.s_[:5]))
    assert np.isnan(out[:5]).all()


# A non-finite key changes exactly the rows that see it. Which of them turn NaN differs with the value and target
# (-inf · q > 0 is a -inf score, weight 0, in IEEE arithmetic; v2 flags every bad key it cleaned as NaN), so these
# tests compare the set of changed outputs.
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_nan_key_stays_in_its_kv_head_when_heads_are_stacked(value, target):
    problem = pinned_paged_problem(*SHAPES["decode-stacked-heads"], dtype="float32", seed=3)
    out, changed = _with_bad_key(problem, target, kv_head=0, position=5, value=value)
    # sequence 0's decode row, the 4 query heads of kv head 0
    np.testing.assert_array_equal(changed, _only(changed.shape, np.s_[0, :4]))


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_nan_key_hidden_by_the_causal_mask_changes_nothing(value, target):
    # Prefill of 12 tokens, NaN in the key at position 8: queries at positions 0..7 cannot see it.
    problem = pinned_paged_problem([12], [12], 2, 1, 64, 4, dtype="float32", seed=4)
    out, changed = _with_bad_key(problem, target, kv_head=0, position=8, value=value)
    np.testing.assert_array_equal(changed, _only(changed.shape, np.s_[8:]))


@pytest.mark.parametrize("target", TARGETS)
def test_nan_key_reaches_its_kv_head_rows_that_see_it_in_a_stacked_chunk(target):
    # Chunked prefill, 2 kv heads stacked per group: sequence 0's queries sit at positions 14..19; a NaN key of kv
    # head 1 at position 16 reaches its query heads 2, 3 of the tokens at positions >= 16 only.
    problem = pinned_paged_problem(*SHAPES["chunked-stacked-heads"], dtype="float32", seed=5)
    out, changed = _with_bad_key(problem, target, kv_head=1, position=16)
    np.testing.assert_array_equal(changed, _only(changed.shape, np.s_[2:6, 2:4]))
    assert np.isnan(out[2:6, 2:4]).all()


@pytest.mark.parametrize("target", TARGETS)
def test_nan_key_stays_in_its_kv_head_when_stacked_heads_have_their_own_pe_tiles(target):
    # BQ = 8 tokens x 4 query heads = 32 rows per kv head, both kv heads stacked (v3+: one PE column tile each).
    # Sequence 0's queries sit at positions 8..19; a NaN key of kv head 1 at position 14 reaches its query heads
    # 4..7 of the tokens at positions >= 14 only.
    problem = pinned_paged_problem([20, 9], [12, 4], 8, 2, 64, 4, dtype="float32", seed=7)
    out, changed = _with_bad_key(problem, target, kv_head=1, position=14)
    np.testing.assert_array_equal(changed, _only(changed.shape, np.s_[6:12, 4:8]))
    assert np.isnan(out[6:12, 4:8]).all()
