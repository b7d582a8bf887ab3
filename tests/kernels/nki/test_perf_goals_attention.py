"""Modeled MFU floors of the NKI flash-attention kernel's goal rows (issue 11: prefill S=4096 / 8192, causal,
Llama-3.1-8B heads 32/8, D=128, bfloat16, trn2 LNC=1; inf2 and trn2 LNC=2 reported beside).

The performance model is deterministic, so each row is a benchmark guard, not a timed test: it traces the kernel,
models the trace and asserts the modeled MFU stays at or above the row's floor. MFU counts the op's useful FLOPs
only (4·D per visible (query, key) pair and head, `nkilab.kernels.ops.attention.visible_pairs`; the masked halves
of the diagonal blocks earn nothing) over the modeled kernel time (launch cost excluded) at the TensorE bf16 peak of
the cores used. The floors sit half a point to a point under the values modeled when they were set (in the
comments of ROWS; the real-shape S=4096 row's floor is its goal, 0.3 points under); GOALS keeps the issue's goals
(>= 70 % / >= 75 % on trn2 LNC=1) beside them.

Shapes: the S=4096 trn2 LNC=1 row runs the real shape (32/8 heads, ~20 s of trace mode). The other rows run fewer
heads with the same per-tile structure — the same 128-row query tiles, key steps, GQA blocks of 4 query heads and
resident kᵀ/v per kv head — because the kernel works through (b, kv head) groups one after another: S=8192 with 4/1
heads (one group), LNC=2 and inf2 with 8/2. Their values differ from the real shape's by the pipeline's start-up
and drain per call (trn2 S=8192: 76.5 % with 4/1 against 75.8 % at 32/8; S=4096: 71.7 % with 8/2 against 70.4 %;
the real shapes' figures are in the kernel's tunables note).
"""

import pytest

from nkilab.harness.perf.model import model_trace
from nkilab.kernels.nki import launch_attention
from nkilab.kernels.nki._launch import trace
from nkilab.kernels.ops.attention import visible_pairs

# row -> (target, S, Hq, Hkv, LNC, floor)
ROWS = {
    "trn2-s4096-lnc1": ("trn2", 4096, 32, 8, 1, 0.70),  # modeled 70.4 % when set (main before: 65.9 %)
    "trn2-s8192-lnc1": ("trn2", 8192, 4, 1, 1, 0.76),  # 76.5 % (before: 58.7 %; the real 32/8 shape: 75.8 %)
    "trn2-s4096-lnc2": ("trn2", 4096, 8, 2, 2, 0.68),  # 68.7 % (before: 58.6 %)
    "inf2-s4096": ("inf2", 4096, 8, 2, 1, 0.36),  # 36.9 % (before: 37.0 %)
}
GOALS = {"trn2-s4096-lnc1": 0.70, "trn2-s8192-lnc1": 0.75}


def _modeled_mfu(target, s, hq, hkv, lnc):
    problem = dict(b=1, sq=s, skv=s, hq=hq, hkv=hkv, head_dim=128, dtype="bfloat16", causal=True,
                   sliding_window=None, softcap=None)
    est = model_trace(trace(launch_attention.traceable, problem, target, lnc=lnc), target)
    useful = 4.0 * 128 * hq * visible_pairs(s, s, True, None)
    assert est.lnc == lnc
    # q read and out written once, k and v once per core (LNC=2 deals query rows: each core reads every kv head)
    assert est.hbm_bytes == 2 * 128 * (2 * s * hq + 2 * s * hkv * lnc)
    return useful / (est.latency_s * est.peak_flops)


@pytest.mark.parametrize("row", ROWS, ids=ROWS)
def test_modeled_mfu_floor(row):
    target, s, hq, hkv, lnc, floor = ROWS[row]
    mfu = _modeled_mfu(target, s, hq, hkv, lnc)
    assert mfu >= floor, f"{row}: modeled MFU {mfu:.3f} < floor {floor} (goal {GOALS.get(row, 'reported')})"
