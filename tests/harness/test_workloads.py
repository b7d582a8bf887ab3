"""Workloads: per-rank model shapes, token counts, FLOP/byte formulas, and inputs the public API accepts."""

import dataclasses
import json

import numpy as np
import pytest

from nkilab.harness.workloads import (
    GRIDS,
    MODELS,
    Quant,
    grid_sizes,
    make_inputs,
    model_from_config,
    model_problems,
    select_problem,
    short_name,
    smoke_problems,
)
from nkilab.kernels import nki
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


@pytest.mark.parametrize("grid", ["quick", "default", "full"])
def test_paged_prefill_chunked_and_mixed_workloads(grid):
    sizes = GRIDS[grid]
    prefill = model_problems(phase="prefill", grid=grid, ops=("paged_attention",))
    assert [p.params["q_lens"] for p in prefill] == [(s,) for s in sizes["paged_prefill"]]
    assert all(p.params["seq_lens"] == p.params["q_lens"] and p.tokens == p.params["q_lens"][0] for p in prefill)
    chunked = model_problems(phase="chunked", grid=grid, ops=("paged_attention",))
    assert chunked and {(p.params["q_lens"][0], p.params["seq_lens"][0]) for p in chunked} == {
        (c, ctx) for c in sizes["chunks"] for ctx in sizes["chunk_contexts"] if ctx >= c}
    mixed = model_problems(phase="mixed", grid=grid, ops=("paged_attention",))
    assert mixed
    for p in mixed:
        q, lens = p.params["q_lens"], p.params["seq_lens"]
        assert q[:-1] == (1,) * (len(q) - 1) and q[-1] == sizes["chunks"][0]  # decode sequences + one chunk
        assert len(q) - 1 in sizes["mixed_batches"] and p.tokens == sum(q) == p.params["num_seqs"] - 1 + q[-1]
        assert all(q_len <= length for q_len, length in zip(q, lens))
    # only paged attention serves a chunk or a mixed step; the other ops keep to decode and prefill
    assert {p.op for phase in ("chunked", "mixed") for p in model_problems(phase=phase, grid=grid)} == {
        "paged_attention"}


def test_a_mixed_step_flops_and_bytes_count_every_sequence():
    (p,) = model_problems(phase="mixed", grid="quick", ops=("paged_attention",))
    d, hq, hkv = p.params["head_dim"], p.params["hq"], p.params["hkv"]
    pairs = sum(visible_pairs(q, s, True, None) for q, s in zip(p.params["q_lens"], p.params["seq_lens"]))
    assert p.flops() == 4.0 * hq * pairs * d
    assert p.hbm_bytes() >= 2 * sum(p.params["seq_lens"]) * hkv * d * 2


def test_new_workloads_run_on_the_reference_and_trace_on_every_generation():
    for phase in ("prefill", "chunked", "mixed"):
        (p,) = [x for x in model_problems(phase=phase, grid="quick", ops=("paged_attention",))]
        small = dataclasses.replace(p, params=dict(p.params, hq=4, hkv=2))
        args, kwargs = make_inputs(small, np.random.default_rng(0))
        out = small.family.api(*args, **kwargs, backend="reference")
        assert out.shape == (small.tokens, 4, small.params["head_dim"]) and np.isfinite(out.astype(np.float64)).all()
    (p,) = model_problems(phase="mixed", grid="quick", ops=("paged_attention",))
    for target in ("inf2", "trn2"):
        trace = nki.trace("paged_attention", {**p.params, **p.spec()}, target)
        assert trace.flops > 0


def test_grid_overrides():
    sizes = grid_sizes("default", batches=(3,), contexts=(1024,), prefill_lengths=(256,), chunks=(128,))
    assert sizes["batches"] == sizes["mixed_batches"] == (3,)
    assert sizes["contexts"] == sizes["chunk_contexts"] == (1024,)
    assert sizes["prefill"] == sizes["prefill_gemm"] == sizes["paged_prefill"] == (256,)
    assert "max_kv_tokens" not in sizes  # the user's sizes are modeled as given
    assert grid_sizes("default", batches=None) == GRIDS["default"]
    with pytest.raises(ValueError, match="batches: must be a non-empty list of positive ints"):
        grid_sizes("default", batches=(0,))
    with pytest.raises(ValueError, match="layers: not a grid override"):
        grid_sizes("default", layers=(1,))


def test_model_from_config(tmp_path):
    path = tmp_path / "my-model.json"
    path.write_text(json.dumps({"hidden_size": 2048, "num_hidden_layers": 16, "num_attention_heads": 16,
                                "num_key_value_heads": 4, "intermediate_size": 5632, "vocab_size": 32000,
                                "sliding_window": 1024, "use_sliding_window": False, "torch_dtype": "bfloat16"}))
    m = model_from_config(str(path))
    assert (m.name, m.hidden, m.head_dim, m.kv_heads, m.sliding_window, m.tp) == ("my-model", 2048, 128, 4, None, 1)
    assert (m.rope_theta, m.rope_scaling) == (10000.0, None)
    llama = {"hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
             "intermediate_size": 14336, "vocab_size": 128256, "rope_theta": 500000,
             "rope_scaling": {**MODELS["llama-3.1-8b"].rope_scaling.to_config(), "rope_type": "llama3"}}
    path.write_text(json.dumps(llama))
    assert dataclasses.replace(model_from_config(str(path)), name="llama-3.1-8b") == MODELS["llama-3.1-8b"]
    names = {p.name for p in model_problems(m, phase="decode", grid="quick", ops=("qmatmul",))}
    assert "my-model/decode/qmatmul/qkv-m8" in names
    for bad, match in [({"hidden_size": 2048}, "missing num_hidden_layers"),
                       ({"hidden_size": 2048, "num_hidden_layers": 2, "num_attention_heads": 6,
                         "num_key_value_heads": 4, "intermediate_size": 8, "vocab_size": 8}, "multiple of"),
                       ({"hidden_size": -1, "num_hidden_layers": 2, "num_attention_heads": 2,
                         "intermediate_size": 8, "vocab_size": 8}, "hidden_size must be a positive int"),
                       ({**llama, "rope_theta": 0}, "rope_theta must be a number > 0"),
                       ({**llama, "rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "rope_scaling: rope_type")]:
        path.write_text(json.dumps(bad))
        with pytest.raises(ValueError, match=match):
            model_from_config(str(path))
    with pytest.raises(ValueError, match="no such file"):
        model_from_config(str(tmp_path / "none.json"))


def test_select_problem_by_any_tail_of_the_name():
    problems = model_problems(phase="decode", grid="quick") + model_problems(phase="prefill", grid="quick")
    for query in ("qkv-m8", "qmatmul/qkv-m8", "decode/qmatmul/qkv-m8", "llama-3.1-8b/decode/qmatmul/qkv-m8"):
        assert select_problem(problems, query).name == "llama-3.1-8b/decode/qmatmul/qkv-m8"
    assert short_name("llama-3.1-8b/decode/qmatmul/qkv-m8") == "decode/qmatmul/qkv-m8"
    with pytest.raises(ValueError, match="valid names: decode/qmatmul/qkv-m1"):
        select_problem(problems, "m8")  # a tail must be whole "/"-separated parts
    two_models = problems + model_problems("mistral-7b", phase="decode", grid="quick", ops=("qmatmul",))
    with pytest.raises(ValueError, match="matches 2 problems .*llama-3.1-8b/decode/qmatmul/qkv-m8"):
        select_problem(two_models, "qmatmul/qkv-m8")
