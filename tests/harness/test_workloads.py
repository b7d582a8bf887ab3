"""Workloads: per-rank model shapes, token counts, FLOP/byte formulas, and inputs the public API accepts."""

import numpy as np
import pytest

from nkilab.harness.workloads import GRIDS, MODELS, Quant, make_inputs, model_problems, smoke_problems
from nkilab.kernels.ops.attention import visible_pairs


def test_llama70b_at_tp8_has_per_rank_shapes():
    m = MODELS["llama-3.1-70b"]
    assert (m.q_heads_per_rank, m.kv_heads_per_rank) == (8, 1)
    assert m.projections() == {"qkv": (8192, 1280), "o": (1024, 8192), "gate_up": (8192, 7168),
                               "down": (3584, 8192)}


def test_llama8b_projections_match_vllm_weight_shapes():
    assert MODELS["llama-3.1-8b"].projections() == {"qkv": (4096, 6144), "o": (4096, 4096),
                                                     "gate_up": (4096, 28672), "down": (14336, 4096)}
    assert MODELS["qwen2.5-7b"].projections()["qkv"] == (3584, 4608)


@pytest.mark.parametrize("model", sorted(MODELS))
def test_decode_and_prefill_problems_carry_tokens_and_scheme(model):
    decode = model_problems(model, phase="decode", grid="quick", quant=Quant("int4", 128))
    assert {p.op for p in decode} == {"qmatmul", "paged_attention", "write_kv_cache", "rms_norm", "rope", "silu_mul"}
    for p in decode:
        batch = p.params[p.family.plot.size]  # m, num_seqs, t, rows, tokens
        assert batch in GRIDS["quick"]["batches"] and p.tokens == batch
        if p.op == "qmatmul":
            assert p.record()["scheme"] == "int4-g128" and p.spec()["group_size"] == 128
    prefill = model_problems(model, phase="prefill", grid="quick")
    attn = [p for p in prefill if p.op == "attention"]
    assert attn and all(p.tokens == p.params["sq"] and p.params["causal"] for p in attn)
    if MODELS[model].sliding_window:
        assert all(p.params["sliding_window"] == 4096 for p in attn)


def test_default_grid_bounds_kv_tokens():
    for p in model_problems("llama-3.1-8b", phase="decode", grid="default"):
        if p.op == "paged_attention":
            assert p.params["num_seqs"] * p.params["context"] <= 65536


def test_bad_names_are_rejected():
    with pytest.raises(ValueError, match="model"):
        model_problems("gpt-5")
    with pytest.raises(ValueError, match="grid"):
        model_problems(grid="huge")


@pytest.mark.parametrize("sq, skv, causal, window, expected", [
    (4, 4, True, None, 10),      # lower triangle
    (2, 5, True, None, 4 + 5),   # bottom-right alignment: query i sees i + 3 + 1 keys
    (4, 4, False, None, 16),
    (4, 4, True, 2, 7),          # each query sees itself and one before (the first only itself)
])
def test_visible_pairs(sq, skv, causal, window, expected):
    assert visible_pairs(sq, skv, causal, window) == expected


def test_formulas():
    mm = next(p for p in model_problems(phase="decode", grid="quick") if p.op == "qmatmul")
    k, n = mm.params["k"], mm.params["n"]
    assert mm.flops() == 2 * mm.params["m"] * k * n
    assert mm.hbm_bytes() >= k * n  # int8 weights read once
    paged = next(p for p in model_problems(phase="decode", grid="quick") if p.op == "paged_attention")
    kv = 2 * paged.params["num_seqs"] * paged.params["context"] * paged.params["hkv"] * 128 * 2
    assert kv <= paged.hbm_bytes() <= 1.01 * kv + 1e6


@pytest.mark.parametrize("problem", smoke_problems(), ids=lambda p: p.name)
def test_smoke_inputs_run_on_the_reference_backend(problem):
    import nkilab.kernels as api

    args, kwargs = make_inputs(problem, np.random.default_rng(0))
    out = getattr(api, problem.op)(*args, **kwargs, backend="reference")
    if problem.op == "write_kv_cache":
        # untouched slots keep their NaN poison (an int8 cache's untouched slots: random codes, NaN scales)
        poisoned = kwargs["k_scale_cache"] if problem.params.get("kv_cache_dtype") == "int8" else out[0]
        assert np.isnan(poisoned.astype(np.float64)).any()
    else:  # one array, or a tuple of them (rope's q and k have different shapes)
        outputs = out if isinstance(out, tuple) else (out,)
        assert all(np.isfinite(np.asarray(o, dtype=np.float64)).all() for o in outputs)


def test_zero_inputs_for_trace_mode_have_the_problem_shapes():
    p = next(p for p in model_problems(phase="decode", grid="quick") if p.op == "paged_attention")
    (q, kc, vc, tables, seq_lens, qsl), _ = make_inputs(p, zeros=True)
    assert q.shape == (p.params["num_seqs"], p.params["hq"], 128)
    assert kc.shape[1:] == (p.params["block_size"], p.params["hkv"], 128)
    assert (seq_lens == p.params["context"]).all() and qsl[-1] == p.params["num_seqs"]
    assert not kc.any()
