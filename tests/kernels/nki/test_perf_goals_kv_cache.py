"""Benchmark guard for the write_kv_cache rows of issue 11: each row's modeled MBU floor (the model is deterministic,
so this is not a timed test), and the goal itself where the issue sets one.

All figures are modeled (nkilab.harness.perf), LNC=1, Llama-3.1-8B shapes (8 kv heads of 128, bf16 new rows, block
size 16). MBU is the model's (`Estimate.mbu`, what `nkilab bench` prints): useful HBM bytes over the kernel time,
without the runtime's fixed launch cost (`launch_overhead_s`, reported apart by the model). The goal row: prefill
T = 2048-8192 at >= 75 % of the DMA (HBM) bandwidth on trn2. The decode rows (one token per sequence, T = batch)
guard the latency chain (slot load -> scatter) against slowing down; the quantized and inf2 rows are reported
beside them with no goal of their own. `nkilab bench --kernel write_kv_cache --grid full --target trn2 --lnc 1
--phase prefill` reproduces the prefill rows (`--phase decode` the decode ones, `--target inf2` the inf2 ones).
"""

import functools

import pytest

from nkilab.harness.perf import estimate
from nkilab.kernels.nki import launch_kv_cache

LLAMA = dict(hkv=8, head_dim=128, block_size=16, dtype="bfloat16")
PREFILL_GOAL = 0.75


def _row(target, t, floor, kv_cache_dtype="auto", goal=None):
    return dict(target=target, problem=dict(t=t, kv_cache_dtype=kv_cache_dtype, **LLAMA), floor=floor, goal=goal)


# id -> row; floor: the modeled MBU after this kernel's last change less about a point (decode: less about 10 %
# of the value, where a point is most of it)
ROWS = {
    "trn2-prefill-t2048": _row("trn2", 2048, 0.84, goal=PREFILL_GOAL),
    "trn2-prefill-t8192": _row("trn2", 8192, 0.87, goal=PREFILL_GOAL),
    "trn2-decode-t1": _row("trn2", 1, 0.0055),
    "trn2-decode-t8": _row("trn2", 8, 0.044),
    "trn2-decode-t32": _row("trn2", 32, 0.135),
    "trn2-decode-t128": _row("trn2", 128, 0.47),
    "trn2-decode-t256": _row("trn2", 256, 0.57),
    "trn2-fp8-prefill-t2048": _row("trn2", 2048, 0.71, "fp8_e4m3"),
    "trn2-int8-prefill-t2048": _row("trn2", 2048, 0.35, "int8"),
    "inf2-prefill-t2048": _row("inf2", 2048, 0.12),
    "inf2-decode-t8": _row("inf2", 8, 0.031),
}


@functools.cache
def _modeled(name):
    """Modeled MBU of row `name` (one trace per row and test session)."""
    row = ROWS[name]
    return _estimate(row["problem"], row["target"]).mbu


@pytest.mark.parametrize("name", ROWS)
def test_floor(name):
    row = ROWS[name]
    assert _modeled(name) >= row["floor"], f"{name}: modeled MBU {_modeled(name):.4f} < floor {row['floor']}"


@pytest.mark.parametrize("name", [name for name, row in ROWS.items() if row["goal"] is not None])
def test_goal(name):
    row = ROWS[name]
    assert _modeled(name) >= row["goal"], f"{name}: modeled MBU {_modeled(name):.3f} < goal {row['goal']}"


def test_tunables_reach_the_kernel():
    # staging T = 128 through SBUF is what the default buys (T in [stage_min_t, stage_max_t]): turned off, the
    # HBM -> HBM scatters model slower, and the trace loses the two staging loads
    problem = dict(t=128, **LLAMA)
    staged, direct = (_estimate(p) for p in (problem, dict(problem, tunables=dict(stage_max_t=0))))
    assert staged.latency_s < direct.latency_s
    assert staged.instruction_mix["dma"]["dma_copy"] == 1 + 2 * 2  # slots; per cache one load, one scatter
    assert direct.instruction_mix["dma"]["dma_copy"] == 1 + 2 * 128 * 2048 // (32 * 1024)  # 16-row scatters


@pytest.mark.parametrize("tunables,error,match", [
    (dict(stage_min_t=0), ValueError, "stage_min_t: must be an int >= 1, got 0"),
    (dict(scatter_bytes=2.5), TypeError, "scatter_bytes: must be an int"),
    (dict(rows=4), ValueError, "unknown parameter 'rows'"),
    ([("scatter_bytes", 4)], TypeError, "tunables: must be a dict"),
])
def test_bad_tunables_are_refused_naming_them(tunables, error, match):
    with pytest.raises(error, match=match):
        launch_kv_cache.traceable(dict(t=4, **LLAMA, tunables=tunables), "trn2")


def _estimate(problem, target="trn2"):
    kernel, args, kwargs = launch_kv_cache.traceable(problem, target)
    return estimate(kernel, *args, target=target, **kwargs)
