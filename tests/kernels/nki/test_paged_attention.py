"""NKI paged attention matches the float64 reference on every target for mixed decode / prefill / chunked batches;
NaN-poisoned dead slots, -1 or junk table padding and the block order never change the output."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import (
    PagedProblem,
    PageTable,
    block_sizes,
    head_counts,
    head_dims,
    paged_problems,
    pinned_paged_problem,
)

from nkilab.harness.checks import compare
from nkilab.harness.emulator import run
from nkilab.kernels.nki import launch_kv_cache, launch_paged
from nkilab.kernels.nki.paged_attention import span_runs
from nkilab.reference.dtypes import numpy_dtype
from nkilab.reference.paged import paged_attention as reference_paged_attention

TARGETS = ("inf2", "trn1", "trn2")
# float32 outputs: the kernel (fp32 TensorE sums in another order, exp(a * x + b) with its own roundings,
# reciprocal-then-multiply) and the naive float32 reference are both a few ulps from float64, so "2 x naive + 2 ulps"
# can sit inside that reordering noise (seen: 4.5 ulps vs a 4.4-ulp bound, 1 of 3584 elements). 8 ulps at
# max|ref| (~1e-6 relative) stays orders of magnitude below what a masking or indexing bug produces.
FLOAT32_FLOOR_ULPS = 8


def _nki(inputs, options, target):
    d = inputs[0].shape[-1]
    return launch_paged.paged_attention(*inputs, scale=d**-0.5, target=target, **options)


def _run(problem: PagedProblem, target: str):
    inputs = problem.inputs()
    out = _nki(inputs, problem.options(), target)
    ref64 = reference_paged_attention(*inputs, **problem.options())
    ref_low = reference_paged_attention(*inputs, **problem.options(), compute_dtype=numpy_dtype(problem.dtype))
    assert out.shape == ref64.shape and out.dtype == inputs[0].dtype
    floor = None
    if out.dtype == np.float32:
        floor = FLOAT32_FLOOR_ULPS * float(np.finfo(np.float32).eps) * float(np.nanmax(np.abs(ref64), initial=0.0))
    result = compare(out, ref64, ref_low, floor=floor)
    assert result.passed, str(result)
    return out


def _pinned(*args, dtype="bfloat16", **kwargs) -> PagedProblem:
    return pinned_paged_problem(*args, dtype=dtype, **kwargs)


PINNED = [
    pytest.param(_pinned([37, 5, 64], [1, 1, 1], 32, 8, 128, 16), id="llama8b-heads-decode-bs16"),
    pytest.param(_pinned([20, 9, 13], [20, 1, 6], 28, 4, 64, 4), id="qwen-28/4-mixed"),
    pytest.param(_pinned([11, 7], [4, 7], 4, 2, 80, 1, dtype="float32"), id="d80-block1-chunked"),
    pytest.param(_pinned([30, 3], [10, 3], 4, 1, 64, 32, window=4, softcap=20.0), id="window-softcap-bs32"),
    # v3+ key-major decode tiles (one kv head: `paged_attention/keymajor.py`), several gathers a sequence
    pytest.param(_pinned([300, 5, 64, 129], [1, 1, 1, 1], 8, 1, 128, 16), id="70b-tp8-key-major-decode"),
    pytest.param(_pinned([200, 33], [1, 1], 7, 1, 64, 32, window=50), id="key-major-window"),
    pytest.param(_pinned([200, 33], [1, 1], 7, 1, 64, 32, window=50, softcap=20.0), id="one-kv-head-softcap-decode"),
    pytest.param(_pinned([300, 77], [1, 1], 8, 1, 128, 32, dtype="float32"), id="key-major-float32-dead-rows"),
    pytest.param(_pinned([150, 20, 7], [1, 20, 3], 8, 1, 128, 16), id="key-major-decode-beside-prefill"),
    # gathers of runs under 4 slots (block size 1, 8 KiB slots: MHA 32 x 128 bf16, fp32 Llama-8B) keep row-major
    # tiles: their 512-key gather step spans several gathers, which key-major bounds do not model
    pytest.param(_pinned([300], [1], 8, 1, 64, 1), id="one-kv-head-decode-block1"),
    pytest.param(_pinned([300, 700], [1, 1], 32, 32, 128, 16), id="mha-decode-8k-slots"),
    pytest.param(_pinned([300, 700], [1, 1], 32, 8, 128, 16, dtype="float32"), id="llama8b-float32-decode"),
    # float32 key-major k^T of 8 stacked heads: 4-byte PSUM columns, 512 a bank (`keymajor.transposes`)
    pytest.param(_pinned([277, 107, 560, 774, 115], [277, 1, 1, 1, 115], 8, 8, 64, 32, window=209, dtype="float32"),
                 id="key-major-float32-stacked-window-beside-prefill"),
    pytest.param(_pinned([9, 9], [3, 9], 2, 2, 64, 4, causal=False, pad=10**6), id="noncausal-junk-padding"),
    pytest.param(_pinned([8, 12], [0, 5], 4, 2, 64, 4, dtype="float32"), id="empty-query-sequence"),
    pytest.param(_pinned([300, 2], [130, 1], 2, 1, 128, 128, dtype="float16"), id="two-kv-tiles-bs128-fp16"),
    pytest.param(_pinned([200], [1], 2, 2, 64, 256, dtype="float32", window=70), id="block-larger-than-chunk"),
    pytest.param(_pinned([50], [30], 6, 3, 64, 16, dtype="float32"), id="ragged-head-groups"),
    pytest.param(PagedProblem((1,), 28, 4, 128, PageTable((13,), 4, 4, ((0, 1, 2, 3),), "identity"), True, None, None,
                              "float32", 0), id="fp32-ulp-noise-28/4-d128"),  # found by hypothesis: FLOAT32_FLOOR_ULPS
    pytest.param(_pinned([700, 3], [1, 1], 8, 4, 64, 16, softcap=30.0), id="stacked-heads-two-tiles-softcap"),
    # v3+ gathers of 8-slot runs (256-byte, 512-byte, 1 KiB rows: one 1024-key score tile of two PSUM banks a
    # gather, `tuning.max_run`) and of 16- and 32-slot runs of 128-byte rows (2 KiB a partition; 32: a whole block,
    # one gather of 4096 keys): comb-index masks (`index.add_comb`) with a window, chunks, softcap
    pytest.param(_pinned([4050, 3001], [5, 1], 8, 1, 128, 32, window=1000), id="run8-window-chunk"),
    pytest.param(_pinned([2000, 1500], [1, 40], 28, 4, 64, 32), id="run8-chunk"),
    pytest.param(_pinned([990, 700], [1, 1], 28, 4, 128, 32, softcap=30.0), id="run8-softcap"),
    pytest.param(_pinned([4050, 3001], [5, 1], 4, 1, 64, 32, window=1000), id="run16-window-chunk"),
    pytest.param(_pinned([2040, 700], [40, 1], 8, 1, 64, 32, dtype="float16", softcap=30.0), id="run16-chunk-softcap"),
    pytest.param(_pinned([4050, 700], [3, 1], 2, 1, 32, 32, window=700), id="run32-window-chunk"),
    # chunk items of two row blocks sharing their gathers (`tuning.ITEM_BLOCKS`), the last one half padding; fp32 p
    # in two PSUM pieces (`tiles.bank_pieces`)
    pytest.param(_pinned([300, 40], [96, 1], 8, 2, 64, 16, window=50, softcap=25.0), id="row-blocks-window-softcap"),
    pytest.param(_pinned([260, 90], [70, 1], 8, 1, 128, 32, dtype="float32"), id="row-blocks-run16-fp32"),
]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("problem", PINNED)
def test_pinned_cases(problem, target):
    _run(problem, target)


@pytest.mark.parametrize("target", TARGETS)
@given(problem=paged_problems(max_seqs=3, max_seq_len=40, heads=head_counts(max_q_heads=4),
                              dims=head_dims(), sizes=block_sizes(choices=(1, 4, 16, 32, 128)),
                              dtypes=st.sampled_from(("float32", "bfloat16"))))
def test_matches_reference(problem, target):
    _run(problem, target)


@pytest.mark.parametrize("target", ["trn1", "trn2"])
def test_block_table_order_does_not_matter(target):
    # The same sequences laid out through another physical block order give the same output, bit for bit.
    problem = _pinned([13, 6], [5, 1], 4, 2, 64, 4, dtype="float32", seed=5)
    q, kc, vc, bt, sl, qsl = problem.inputs()
    out = _nki((q, kc, vc, bt, sl, qsl), problem.options(), target)
    perm = np.random.default_rng(0).permutation(kc.shape[0])
    inverse = np.argsort(perm)
    live = bt >= 0
    moved = np.where(live, inverse[np.where(live, bt, 0)], bt).astype(np.int32)
    out_moved = _nki((q, kc[perm], vc[perm], moved, sl, qsl), problem.options(), target)
    np.testing.assert_array_equal(out, out_moved)


@pytest.mark.parametrize("target", ["trn1", "trn2"])
def test_dead_slots_never_leak(target):
    # Overwriting every slot no sequence reads (NaN, inf, huge) changes nothing, bit for bit.
    problem = _pinned([21, 3, 16], [4, 1, 16], 4, 2, 64, 16, dtype="float32", seed=3)
    q, kc, vc, bt, sl, qsl = problem.inputs()
    out = _nki((q, kc, vc, bt, sl, qsl), problem.options(), target)
    dead = np.isnan(kc)
    for fill in (np.inf, -3e38, 0.0):
        out_fill = _nki((q, np.where(dead, fill, kc), np.where(dead, fill, vc), bt, sl, qsl), problem.options(),
                        target)
        np.testing.assert_array_equal(out, out_fill)


def test_decode_is_a_mixed_batch_with_q_len_one():
    # A decode row gives the same result alone or inside a mixed batch (whose work items hold more rows).
    mixed = _pinned([17, 12], [1, 6], 4, 2, 64, 4, dtype="float32", seed=6)
    q, kc, vc, bt, sl, qsl = mixed.inputs()
    out_mixed = _nki((q, kc, vc, bt, sl, qsl), mixed.options(), "trn2")
    out_alone = _nki((q[:1], kc, vc, bt[:1], sl[:1], qsl[:2]), mixed.options(), "trn2")
    np.testing.assert_allclose(out_mixed[:1], out_alone, rtol=1e-6, atol=1e-6)  # fp32 sums may reorder only


def test_public_api_dispatches_to_nki(monkeypatch):
    from nkilab.kernels import paged_attention

    monkeypatch.setenv("NEURON_PLATFORM_TARGET_OVERRIDE", "inf2")
    problem = _pinned([10, 4], [3, 1], 4, 2, 64, 4, dtype="float32", seed=8)
    inputs = problem.inputs()
    out = paged_attention(*inputs, backend="nki")
    result = compare(out, reference_paged_attention(*inputs),
                     reference_paged_attention(*inputs, compute_dtype=np.float32))
    assert result.passed, str(result)


def test_work_plan_covers_every_query_once():
    # decode items (q_len 1: sequence 0) first with one row each, then prefill items of 16 rows (q_len 0: none)
    qsl = np.array([0, 1, 41, 41, 44])
    seq_lens = np.array([9, 40, 5, 7])
    item_seq, item_q0, row_pos, row_dst, tile_live, classes = launch_paged.work_plan(
        qsl, seq_lens, t_total=44, rows=16, positions=1024)
    assert classes == ((1, 1), (3 + 1, 16))  # sequence 0 decodes; 40 tokens of sequence 1 in 3 items, 3 of seq 3
    np.testing.assert_array_equal(item_seq, [0, 1, 1, 1, 3])
    assert row_pos.shape == row_dst.shape == (1 + 4 * 16,)
    assert sorted(row_dst[row_dst >= 0].tolist()) == list(range(44))
    bq = np.array([1] + [16] * 4)
    first = np.concatenate([[0], np.cumsum(bq)[:-1]])
    assert np.all(item_q0 + bq <= 44) and np.all(item_q0 >= 0)
    token_seq = np.searchsorted(qsl, np.arange(44), side="right") - 1
    expected_pos = seq_lens[token_seq] - (qsl[token_seq + 1] - np.arange(44))
    for w in range(5):
        dst, pos = row_dst[first[w] : first[w] + bq[w]], row_pos[first[w] : first[w] + bq[w]]
        live = dst >= 0
        np.testing.assert_array_equal(dst[live], (item_q0[w] + np.arange(bq[w]))[live])
        assert np.all(token_seq[dst[live]] == item_seq[w])
        np.testing.assert_array_equal(pos[live], expected_pos[dst[live]])
        assert np.all(pos[~live] == -1)
    assert tile_live.shape == (5, 2) and tile_live[:, 1].sum() == 0  # no sequence reaches key 512
    assert tile_live[:, 0].tolist() == [1, 1, 1, 1, 1]


def test_work_plan_tile_live_follows_each_items_keys():
    # causal: a chunk item sees keys up to its last row's position; a sliding window skips the tiles below it
    qsl = np.array([0, 1, 3])
    seq_lens = np.array([1500, 700])  # decode at position 1499; chunk of 2 at positions 698, 699
    *_, tile_live, _ = launch_paged.work_plan(qsl, seq_lens, t_total=3, rows=2, positions=2048)
    assert tile_live.tolist() == [[1, 1, 1, 0], [1, 1, 0, 0]]
    *_, tile_live, _ = launch_paged.work_plan(qsl, seq_lens, t_total=3, rows=2, positions=2048, sliding_window=600)
    assert tile_live.tolist() == [[0, 1, 1, 0], [1, 1, 0, 0]]  # keys 900..1499; 99..699
    *_, tile_live, _ = launch_paged.work_plan(np.array([0, 1, 1]), np.array([0, 600]), t_total=1, rows=2,
                                             positions=1024)
    assert tile_live.tolist() == [[0, 0]]  # an empty sequence's decode item sees no key: no tile runs


def test_tile_trips_one_loop_per_span_runs_the_live_tiles():
    # spans of 2 tiles, runs (0, 1), (0, 2), (1, 2): item 0 lives in tiles 1..3 (span 0: run (1, 2); span 1: the
    # first tile, run (0, 1)), item 1 in no tile; an odd tile count pads the last span
    runs = span_runs(2)
    assert runs == [(0, 1), (0, 2), (1, 2)]
    trips = launch_paged.tile_trips(np.array([[0, 1, 1], [0, 0, 0]]), 2)
    assert trips.shape == (2, 2, 3)
    assert trips[0].tolist() == [[0, 0, 1], [1, 0, 0]] and trips[1].sum() == 0
    with pytest.raises(ValueError, match="not contiguous"):
        launch_paged.tile_trips(np.array([[1, 0, 1]]), 3)
    # units of 2 tiles (one gather of 8 score tiles' worth would be unit 8): tiles 2, 3 = unit 1 of span 0
    assert launch_paged.tile_trips(np.array([[0, 0, 1, 1, 0, 0]]), 2, unit=2).tolist() == [[[0, 0, 1], [0, 0, 0]]]


def test_unsupported_reasons():
    assert launch_paged.unsupported(head_dim=128, block_size=32, dtype="bfloat16") is None
    assert "head_dim" in launch_paged.unsupported(head_dim=256, block_size=32, dtype="bfloat16")
    assert "power of two" in launch_paged.unsupported(head_dim=64, block_size=5, dtype="float32")
    assert "dtype" in launch_kv_cache.unsupported(head_dim=64, block_size=5, dtype="int8")


LLAMA_DECODE = dict(num_seqs=8, q_len=1, context=4096, hq=32, hkv=8, head_dim=128, block_size=32, dtype="bfloat16")


def _trace_llama(target):
    kernel, args, kwargs = launch_paged.traceable(LLAMA_DECODE, target)
    return run(kernel, *args, target=target, mode="trace", **kwargs).trace


def test_trace_llama_decode_trn2():
    # Llama-3.1-8B paged decode (batch 8, context 4096, block 32, 32/8 heads, D 128, bf16) validates on trn2.
    # All 8 kv heads share one 32-row group, in key-major tiles (paged_attention/keymajor.py): per (sequence,
    # 512-key tile) one range_select, 8x4 QK (s^T per head and chunk, no zero-masked q columns) + 8x4 PV matmuls,
    # the neg_max broadcast and the tile_sum matmul; every live K/V byte is gathered exactly once (GQA: one gather
    # serves all query heads), one gather of 128 runs of 4 slots per tile.
    trace = _trace_llama("trn2")
    mix = trace.instruction_mix()
    tiles = 8 * (4096 // 512)
    assert mix["vector"]["range_select"] == tiles
    # + once for the 8 items' table rows (one `index.load_tables` batch): the entry 0 broadcast and the expansion
    assert mix["tensor"]["nc_matmul"] == tiles * (8 * 4 + 8 * 4 + 2) + 2
    gathers = [i for i in trace if i.opcode == "dma_copy" and i.attrs["indirect"] and i.attrs["bytes"] == 128 * 8192]
    assert len(gathers) == 8 * 2 * (4096 // 512)
    assert all(i.attrs["chunks"] == 128 for i in gathers)  # one descriptor per partition run of 4 slots
    assert sum(i.attrs["bytes"] for i in gathers) == 2 * 8 * 4096 * 8 * 128 * 2
    # dead V rows are zeroed only in the loop unit holding seq_len - 1 with positions after it: none at 4096 (the
    # only GpSimd selections are the tiles' [32, 32] neg_max diagonals)
    selects = [i for i in trace if i.opcode == "affine_select"]
    assert len(selects) == tiles and all(i.operands[0].shape == (32, 32) for i in selects)


def test_a_table_batch_is_at_most_one_psum_bank_of_items():
    # 513 decode items of one-gather rows: `items.table_batches` caps a batch at PSUM_FMAX items (the moving free
    # size of the matmul broadcasting their block 0 entries)
    problem = pinned_paged_problem([20] * 513, [1] * 513, 8, 1, 64, 16, dtype="bfloat16")
    _run(problem, "trn2")


def test_key_major_int8_cache_stays_within_psum():
    # an int8 cache's 1 KiB slots gather 8 chunks: Llama-3.1-8B's 8 kv heads x 8 chunks of k^T fill eight PSUM
    # banks; key-major tiles transpose `tuning.KT_BANKS` of them ahead, the rest when evacuated (the emulator checks
    # PSUM capacity by liveness, so an overfull schedule raises here)
    problem = dict(LLAMA_DECODE, num_seqs=1, context=2048, kv_cache_dtype="int8")
    kernel, args, kwargs = launch_paged.traceable(problem, "trn2")
    mix = run(kernel, *args, target="trn2", mode="trace", **kwargs).trace.instruction_mix()
    assert mix["vector"]["range_select"] == 2048 // 1024  # one key-major tile per gather of 8 chunks


def test_dead_rows_zeroed_in_the_last_unit_only():
    # contexts 4000 and 4096 (512-position loop units, `launch_paged.unit_dead`): one select, in sequence 0's unit 7
    assert launch_paged.unit_dead(np.array([4000, 4096, 0]), 4096, 512).tolist() == [[0] * 7 + [1], [0] * 8, [0] * 8]
    kernel, args, kwargs = launch_paged.traceable(dict(LLAMA_DECODE, num_seqs=2, context=None, seq_lens=[4000, 4096]),
                                                  "trn2")
    trace = run(kernel, *args, target="trn2", mode="trace", **kwargs).trace
    # the dead-row select, on a [128, 4, 1024] V gather (the others are key-major tiles' [32, 32] neg_max diagonals)
    selects = [i for i in trace if i.opcode == "affine_select" and i.operands[0].shape != (32, 32)]
    assert len(selects) == 1


@pytest.mark.parametrize("target", ["inf2", "trn1"])
def test_trace_llama_decode_gen2(target):
    # Same shape on NeuronCore-v2: scalar-offset block loads, a shared score mask, K chunks cleaned of non-finite
    # elements (`paged_attention/finite.py`), dead V rows zeroed on GpSimd.
    trace = _trace_llama(target)
    mix = trace.instruction_mix()
    tiles = 8 * (4096 // 512)
    # per (sequence, 512 keys), all heads: one masked score tile, one zeroing of p's non-finite entries, and the
    # cleaning of its 4 K chunks
    assert mix["vector"]["select_reduce"] == (2 + 4) * tiles
    assert mix["vector"]["tensor_copy_predicated"] == tiles  # bad keys flagged into the score tile
    assert mix["gpsimd"]["affine_select"] == 8 * (4096 // 128)  # dead-row zeroing of every V chunk
    blocks = [i for i in trace if i.opcode == "dma_copy" and i.attrs["bytes"] == 32 * 2048]
    assert len(blocks) == 8 * 2 * (4096 // 32)  # one scalar-offset DMA per live block of K and of V


@pytest.mark.parametrize(("seq_lens", "q_lens"), [([37, 5, 64], [1, 3, 1]), ([20], [1])],
                         ids=["odd-items", "one-item"])
def test_lnc2_matches_lnc1_bitwise(seq_lens, q_lens):
    # LNC=2 deals work items to the two cores (p, p + 2, ...); with a single item the second core has none.
    problem = pinned_paged_problem(seq_lens, q_lens, 8, 2, 64, 16, dtype="bfloat16", seed=6)
    inputs = problem.inputs()
    args, kwargs = launch_paged._kernel_args(*inputs, scale=inputs[0].shape[-1] ** -0.5, **problem.options())
    one, two = (run(launch_paged.paged_attention_kernel, *args, target="trn2", lnc=lnc, quant=None, **kwargs).outputs
                for lnc in (1, 2))
    np.testing.assert_array_equal(two, one)
