"""NKI rope matches the float64 reference within the naive working-precision error, on every target; its layout,
gather branch, table sharing, in-place mode and per-token NaN isolation."""

import numpy as np
import pytest
from hypothesis import given
from strategies import RopeProblem, rope_problems

from nkilab.harness.checks import check_output
from nkilab.harness.emulator import run
from nkilab.harness.perf.model import model_trace
from nkilab.kernels import _registry, nki
from nkilab.kernels.nki import launch_rope
from nkilab.kernels.nki import rope as rope_module
from nkilab.kernels.nki.rope import layout, rope_kernel
from nkilab.reference import RopeScaling
from nkilab.reference import rope as reference_rope

TARGETS = ("inf2", "trn1", "trn2")
OP = _registry.get("rope")


def _check(problem: RopeProblem, target: str) -> None:
    (q, k, pos), opts = problem.inputs()
    out = launch_rope.rope(q, k, pos, **{**opts, "scaling": RopeScaling.from_config(opts["scaling"])}, target=target)
    assert [(o.shape, o.dtype) for o in out] == [(q.shape, q.dtype), (k.shape, k.dtype)]
    result = check_output(OP, out, (q, k, pos), opts)
    assert result.passed, str(result)


@pytest.mark.parametrize("target", TARGETS)
@given(problem=rope_problems())
def test_matches_reference(problem, target):
    _check(problem, target)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_pinned_shapes(target, dtype):
    # Llama-3.1 decode heads (q cut into head groups), and three token tiles of partial gptj rotary
    _check(RopeProblem(8, 32, 8, 128, 128, "neox", 500000.0, True, 131072, dtype, seed=7), target)
    _check(RopeProblem(300, 3, 1, 80, 32, "gptj", 10000.0, False, 8192, dtype, seed=8), target)


@pytest.mark.parametrize("target", TARGETS)
def test_float32_is_as_exact_as_its_fp32_table(target):
    # stricter than the check: the host table's cos/sin are float64 values rounded once to fp32, so at any position
    # the result is within a few fp32 ulps of the float64 truth (the fp32-angle naive run is ~1e-3 off at 131072)
    (q, k, pos), opts = RopeProblem(40, 4, 2, 64, 64, "neox", 500000.0, True, 131072, "float32", seed=9).inputs()
    opts["scaling"] = None
    got = launch_rope.rope(q, k, pos, **opts, target=target)
    for g, want in zip(got, reference_rope(q, k, pos, **opts)):
        assert np.max(np.abs(g - want)) <= 4 * np.finfo(np.float32).eps * np.max(np.abs(want))


@pytest.mark.parametrize("target", TARGETS)
def test_a_non_finite_value_stays_in_its_plane_head_and_token(target):
    (q, k, pos), opts = RopeProblem(20, 4, 2, 16, 16, "neox", 10000.0, False, 8192, "float32", seed=1).inputs()
    q[3, 1, 2], k[7, 0, 9] = np.nan, np.inf
    qo, ko = launch_rope.rope(q, k, pos, **opts, target=target)
    bad_q, bad_k = np.zeros(qo.shape, bool), np.zeros(ko.shape, bool)
    bad_q[3, 1, [2, 10]] = True  # the neox plane of dim 2 is (2, 10); of dim 9, (1, 9)
    bad_k[7, 0, [1, 9]] = True
    assert not np.isfinite(qo[bad_q]).any() and np.isfinite(qo[~bad_q]).all()
    assert not np.isfinite(ko[bad_k]).all() and np.isfinite(ko[~bad_k]).all()


@pytest.mark.parametrize("target", TARGETS)
def test_in_place_writes_over_q_and_k(target):
    (q, k, pos), opts = RopeProblem(10, 4, 2, 32, 16, "gptj", 10000.0, False, 100, "bfloat16", seed=2).inputs()
    rows, table = launch_rope.cos_sin_table(pos, 16, 10000.0)
    fresh = run(rope_kernel, q, k, rows, table, True, False, target=target).outputs
    qi, ki = q.copy(), k.copy()
    res = run(rope_kernel, qi, ki, rows, table, True, True, target=target).outputs
    for mine, returned, want in zip((qi, ki), res, fresh):  # the caller's arrays hold the result, as returned
        np.testing.assert_array_equal(mine.view(np.uint16), want.view(np.uint16))
        np.testing.assert_array_equal(np.asarray(returned).view(np.uint16), want.view(np.uint16))
    assert not np.array_equal(qi.view(np.uint16), q.view(np.uint16))


def _mix(problem: dict, target: str):
    kernel, args, kwargs = launch_rope.traceable(problem, target)
    return run(kernel, *args, target=target, mode="trace", **kwargs).trace


LLAMA_DECODE = dict(tokens=8, q_heads=32, kv_heads=8, head_dim=128, rotary_dim=128, style="neox", dtype="bfloat16")


def test_decode_cuts_tokens_into_head_groups_that_fill_the_partitions():
    assert layout(8, 32, 128) == (16, 2)  # q: 8 tokens x 16 groups of 2 heads = 128 rows
    assert layout(8, 8, 128) == (8, 1)  # k: 64 rows of one head
    assert layout(2048, 32, 128) == (1, 32)  # prefill: whole tokens
    trace = _mix(LLAMA_DECODE, "trn2")
    loads = [i for i in trace.instructions if i.engine == "dma" and i.operands[0].shape[1] == 256]
    assert loads and loads[0].operands[0].shape == (128, 256)  # [128 rows, 2 heads x 128]


@pytest.mark.parametrize("target", TARGETS)
def test_head_groups_beat_tokens_on_partitions_at_decode(target, monkeypatch):
    """The decode layout is modeled faster than one token per partition (RMSNorm's layout)."""
    groups = model_trace(nki.trace("rope", LLAMA_DECODE, target), target).latency_s
    monkeypatch.setattr(rope_module, "layout", lambda tokens, heads, head_dim: (1, heads))
    tokens = model_trace(nki.trace("rope", LLAMA_DECODE, target), target).latency_s
    assert groups < tokens / 2


@pytest.mark.parametrize("target, per_token", [("inf2", True), ("trn1", True), ("trn2", False)])
def test_the_gather_branch_by_generation(target, per_token):
    mix = _mix(LLAMA_DECODE, target).instruction_mix()
    # per tile (q: 1, k: 1): the index load, x in, the table rows, x out; v2 gathers one DMA per token
    assert mix["dma"]["dma_copy"] == 2 * (3 + (8 if per_token else 1))
    assert mix["vector"]["tensor_tensor"] == 2 * 3  # a, x1, x2 per tile
    assert mix["gpsimd"]["tensor_tensor"] == 2 * 2  # b1, b2 per tile


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("tokens, heads", [(300, (4, 2)), (9, (32, 8))])
def test_consecutive_positions_read_one_run_of_table_rows_per_tile(target, tokens, heads):
    (q, k, _), opts = RopeProblem(tokens, *heads, 64, 64, "gptj", 10000.0, False, 1, "bfloat16", seed=6).inputs()
    pos = np.arange(tokens, dtype=np.int32) + 4000  # one sequence's prefill, resumed at position 4000
    assert launch_rope.consecutive(pos) and not launch_rope.consecutive(pos[::-1])
    assert not launch_rope.consecutive(pos[:1])  # one token: a decode step's gather
    out = launch_rope.rope(q, k, pos, **opts, target=target)
    assert check_output(OP, out, (q, k, pos), opts).passed
    rows, table = launch_rope.cos_sin_table(pos, 64, 10000.0)
    general = run(rope_kernel, q, k, rows, table, True, False, False, target=target).outputs
    assert all(np.array_equal(a.view(np.uint16), b.view(np.uint16)) for a, b in zip(out, general))
    problem = dict(tokens=tokens, q_heads=heads[0], kv_heads=heads[1], head_dim=64, rotary_dim=64, style="gptj",
                   dtype="bfloat16", consecutive=True)
    trace = _mix(problem, target)
    table_reads = [i for i in trace.instructions if i.engine == "dma" and i.attrs.get("indirect")]
    q_tiles, k_tiles = (len(range(0, tokens, 128 // layout(tokens, h, 64)[0])) for h in heads)
    shared = layout(tokens, heads[0], 64)[0] == layout(tokens, heads[1], 64)[0]
    assert len(table_reads) == q_tiles + (0 if shared else k_tiles)  # one run per tile (q and k share one)
    assert all(i.attrs["dge"] != "swdge" for i in table_reads)  # scalar offsets, no vector_offset gather
    mix = trace.instruction_mix()  # v2's GpSimd writes no per-token descriptors here, so it takes x2's sums
    per_tile = {"vector": 2, "gpsimd": 3} if target != "trn2" else {"vector": 3, "gpsimd": 2}
    assert {e: mix[e]["tensor_tensor"] for e in per_tile} == {e: n * (q_tiles + k_tiles) for e, n in per_tile.items()}


@pytest.mark.parametrize("target", TARGETS)
def test_q_and_k_tiles_of_the_same_tokens_share_one_gather(target):
    problem = dict(tokens=130, q_heads=3, kv_heads=1, head_dim=80, rotary_dim=32, style="gptj", dtype="float32")
    trace = _mix(problem, target)
    gathers = [i for i in trace.instructions if i.engine == "dma" and i.attrs.get("indirect")]
    assert len(gathers) == (130 if target != "trn2" else 2)  # two token tiles, q and k alike: one gather each


def test_unsupported():
    assert "float64" in launch_rope.unsupported(dtype="float64", head_dim=64)
    assert "empty problem" in launch_rope.unsupported(dtype="float32", head_dim=64, empty=True)
    assert "head_dim 8192" in launch_rope.unsupported(dtype="float32", head_dim=8192)
    assert launch_rope.unsupported(dtype="bfloat16", head_dim=256, q_heads=64, kv_heads=8) is None


def test_cos_sin_table_has_one_row_per_distinct_position():
    rows, table = launch_rope.cos_sin_table(np.array([7, 3, 7, 0]), 4, 100.0, None)
    assert rows.dtype == np.int32 and rows.tolist() == [2, 1, 2, 0] and table.shape == (3, 4)
    np.testing.assert_allclose(table[2], np.float32([np.cos(7), np.cos(0.7), np.sin(7), np.sin(0.7)]), rtol=1e-7)


def test_kernel_entry_takes_positional_defaults():
    q = np.ones((2, 1, 2), np.float32)
    rows, table = launch_rope.cos_sin_table(np.array([0, 0]), 2, 10000.0)
    qo, ko = run(rope_kernel, q, q.copy(), rows, table, target="trn2").outputs
    np.testing.assert_array_equal(qo, q)


def test_lnc2_splits_the_tiles_between_the_two_cores():
    (q, k, pos), opts = RopeProblem(300, 4, 2, 64, 64, "neox", 10000.0, False, 9000, "float32", seed=5).inputs()
    rows, table = launch_rope.cos_sin_table(pos, 64, 10000.0)
    one = run(rope_kernel, q, k, rows, table, target="trn2").outputs
    two = run(rope_kernel, q, k, rows, table, target="trn2", lnc=2).outputs
    assert all(np.array_equal(a, b) for a, b in zip(one, two))
    prefill = dict(LLAMA_DECODE, tokens=2048)
    kernel, args, kwargs = launch_rope.traceable(prefill, "trn2")
    lat = [model_trace(run(kernel, *args, target="trn2", mode="trace", lnc=n, **kwargs).trace, "trn2").latency_s
           for n in (1, 2)]
    assert lat[1] < 0.6 * lat[0]  # alternate token tiles (each q and k pair sharing a gather) per core
