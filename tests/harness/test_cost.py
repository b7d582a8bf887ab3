"""The cost of a token: the composer's arithmetic (fake per-call costs), the layer count, the TP split, the HBM
capacity rule, prices (a missing one is None with a reason), the JSON fields, the cache's hit path, the waterfall."""

import json
import os
from types import SimpleNamespace

import pytest
from rich.console import Console

from nkilab.harness import cache as cache_mod
from nkilab.harness.cache import Cache, get_or_compute, key_of
from nkilab.harness.chips import LINKS, get_target
from nkilab.harness.cli import main
from nkilab.harness.cost import composer, estimate
from nkilab.harness.cost.cli import append_to_run
from nkilab.harness.cost.calls import Step, step_calls
from nkilab.harness.cost.composer import SCHEMES, compose
from nkilab.harness.cost.deployment import USABLE_HBM, collective_time, deploy, kv_bytes, weight_bytes
from nkilab.harness.cost.estimate import CallCost
from nkilab.harness.cost.prices import INSTANCES, PRICES, price_of
from nkilab.harness.cost.waterfall import STEPS, waterfall
from nkilab.harness.workloads.models import MODELS

LLAMA = MODELS["llama-3.1-8b"]
DECODE = Step.decode(8, 4096)
ISSUE_FIELDS = ("model", "phase", "target", "instance", "scheme", "batch", "ctx", "tp", "latency_s_per_step",
                "tokens_per_s", "joules_per_token", "energy_kind", "usd_per_hour", "price_source", "usd_per_mtoken",
                "kind", "breakdown")


def fake_cost(problem, target, kernels, cache, progress=None, *, lnc=1):
    """A per-call cost that depends on the call (its M x N) and nothing slow: 1 ns per output element + 1 us
    (the same at any LNC)."""
    p = problem.params
    rows = p.get("m") or p.get("rows") or p.get("t") or p.get("num_seqs") or p.get("sq") or 1
    return CallCost(latency_s=1e-9 * rows * p.get("n", 1000) + 1e-6, launch_s=5e-6, utilization=0.5,
                    method="fake")


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.setattr(composer, "call_cost", fake_cost)


def test_step_latency_is_the_sum_of_the_calls_plus_launches_plus_collectives(fake, tmp_path):
    for tp in (1, 2):
        c = compose("llama-3.1-8b", DECODE, "int4", "inf2", tp=tp, cache=Cache(tmp_path))
        shape = type(LLAMA)(**{**LLAMA.__dict__, "tp": tp})
        calls = step_calls(shape, DECODE, SCHEMES["int4"])
        expected = sum(call.count * fake_cost(call.problem, None, None, None).total_s for call in calls)
        coll_s, coll_n = collective_time(shape, DECODE, get_target("inf2"), tp)
        assert c.latency_s_per_step == pytest.approx(expected + coll_s, rel=1e-12)
        assert sum(b["share"] for b in c.breakdown) == pytest.approx(1.0)
        assert sum(b["latency_s"] for b in c.breakdown) == pytest.approx(c.latency_s_per_step)
        assert c.tokens_per_s_per_replica == pytest.approx(8 / c.latency_s_per_step)
        assert c.tokens_per_s == pytest.approx(c.tokens_per_s_per_replica * c.deployment["replicas"])
        assert (coll_n, any(b["kernel"] == "TP collectives" for b in c.breakdown)) == \
            ((0, False) if tp == 1 else (2 * 32 + 1, True))


LAYER = {"rms_norm", "qmatmul qkv", "rope", "write_kv_cache", "paged_attention", "qmatmul o", "rms_norm + residual",
         "qmatmul gate_up", "silu_mul", "qmatmul down"}


@pytest.mark.parametrize("model", ["llama-3.1-8b", "qwen2.5-7b"])
def test_every_layer_call_runs_once_per_layer_then_final_norm_and_lm_head(model):
    calls = step_calls(MODELS[model], DECODE, SCHEMES["int8"])
    per_layer = [c for c in calls if c.count == MODELS[model].layers]
    assert sorted(c.name for c in per_layer) == sorted(LAYER)  # the issue's ten calls, each once per layer
    final, head = calls[len(per_layer):]
    assert (final.name, final.count, head.name) == ("final rms_norm + residual", 1, "lm_head")
    vocab = MODELS[model].vocab  # in launches of at most 16384 columns that cover the vocab once
    assert head.count == -(-vocab // 16384) and vocab <= head.count * head.problem.params["n"] < vocab + head.count
    prefill = {c.name: c.problem.params for c in step_calls(MODELS[model], Step("prefill", prefill=256), None)}
    assert set(prefill) == LAYER - {"paged_attention"} | {"attention", "final rms_norm + residual", "lm_head"}
    assert prefill["attention"]["sq"] == 256 and prefill["attention"]["causal"]
    assert prefill["lm_head"]["m"] == 1  # the last token's logits only
    long = {c.name: c for c in step_calls(MODELS[model], Step("prefill", prefill=4000), None)}
    gate_up = long["qmatmul gate_up"]  # 4000 rows as 4 launches of 1000 per layer
    assert (gate_up.count, gate_up.problem.params["m"]) == (4 * MODELS[model].layers, 1000)
    assert long["rms_norm"].problem.params["rows"] == 4000 and long["attention"].problem.params["sq"] == 4000


def test_tp_splits_the_projections_heads_and_vocab():
    shape = type(LLAMA)(**{**LLAMA.__dict__, "tp": 2})
    by_name = {c.name: c.problem.params for c in step_calls(shape, DECODE, SCHEMES["int4"])}
    assert (by_name["qmatmul qkv"]["k"], by_name["qmatmul qkv"]["n"]) == (4096, (16 + 2 * 4) * 128)
    assert (by_name["qmatmul o"]["k"], by_name["qmatmul down"]["k"]) == (2048, 7168)
    head = next(c for c in step_calls(shape, DECODE, None) if c.name == "lm_head")
    assert head.count * head.problem.params["n"] == 128256 // 2
    assert (by_name["paged_attention"]["hq"], by_name["paged_attention"]["hkv"]) == (16, 4)
    # the ring all-reduce: 2 (tp-1)/tp of the activations per layer and collective, plus the link latency
    tgt = get_target("trn1")
    one_chip, _ = collective_time(shape, DECODE, tgt, 2)
    act = 8 * 4096 * 2
    logits = 8 * 128256 * 2
    bw = tgt.hbm_bw / tgt.cores / 2
    lat = LINKS["trn1"].latency_s
    assert one_chip == pytest.approx(64 * (lat + act / bw) + lat + 0.5 * logits / bw)


def test_hbm_capacity_rule_picks_the_least_tp_that_fits():
    tgt = get_target("inf2")
    w_bf16 = weight_bytes(LLAMA, None)
    assert w_bf16 == pytest.approx(2 * 8.03e9, rel=0.01)  # Llama-3.1-8B: 8.03 B parameters in bf16
    assert kv_bytes(LLAMA, 8 * 4096) == 8 * 4096 * 32 * 2 * 8 * 128 * 2
    per_rank = tgt.hbm_bytes / tgt.cores
    assert w_bf16 + kv_bytes(LLAMA, 8 * 4096) > USABLE_HBM * per_rank  # so bf16 needs two cores
    bf16, int4 = deploy(LLAMA, DECODE, None, tgt), deploy(LLAMA, DECODE, SCHEMES["int4"], tgt)
    assert (bf16.tp, bf16.replicas, bf16.instance) == (2, 1, "inf2.xlarge")
    assert (int4.tp, int4.replicas) == (1, 2)
    with pytest.raises(ValueError, match="tp: 1 does not fit on inf2"):
        deploy(LLAMA, DECODE, None, tgt, tp=1)
    with pytest.raises(ValueError, match="tp: must be an int >= 1 dividing"):
        deploy(LLAMA, DECODE, None, tgt, tp=3)
    big = deploy(MODELS["llama-3.1-70b"], DECODE, None, tgt)
    # 141 GB of bf16 weights: 8 cores hold 17.6 GB each (> 90 % of 16 GiB), so 16 cores, i.e. 8 of inf2.48xlarge's 12 chips
    assert (big.tp, big.chips_per_replica, big.instance, big.replicas) == (16, 8, "inf2.48xlarge", 1)


def test_a_missing_price_is_none_with_a_reason_and_overrides_win(fake, tmp_path, monkeypatch):
    c = compose("llama-3.1-8b", DECODE, "int8", "trn2", cache=Cache(tmp_path))
    assert c.instance == "trn2.48xlarge"
    assert (c.usd_per_hour, c.usd_per_mtoken, c.price_source) == (None, None, None)
    assert "trn2.48xlarge" in c.price_reason
    priced = compose("llama-3.1-8b", DECODE, "int8", "trn2", prices={"trn2.48xlarge": 36.0}, cache=Cache(tmp_path))
    assert priced.usd_per_mtoken == pytest.approx(36.0 / (priced.tokens_per_s * 3600) * 1e6)
    monkeypatch.setenv("NKILAB_PRICES", "trn2.48xlarge=40,inf2.xlarge=0.5")
    assert price_of("trn2.48xlarge").usd_per_hour == 40.0
    assert price_of("trn2.48xlarge", {"trn2.48xlarge": 41.0}).usd_per_hour == 41.0
    assert all(p.usd_per_hour is None or (p.source and p.date) for p in PRICES.values())
    monkeypatch.setenv("NKILAB_PRICES", "trn2.48xlarge=free")
    with pytest.raises(ValueError, match="NKILAB_PRICES: price: trn2.48xlarge's USD must be a number"):
        price_of("trn2.48xlarge")


def test_cost_json_has_the_issue_fields(tmp_path, capsys):
    # h100 rows are the roofline-efficiency model only: no trace, so the real composition runs in milliseconds
    code = main(["cost", "--model", "llama-3.1-8b", "--phase", "decode", "--batch", "8", "--ctx", "4096",
                 "--scheme", "int4", "--target", "h100", "--cache", str(tmp_path), "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert set(ISSUE_FIELDS) <= set(out)
    assert (out["kind"], out["energy_kind"], out["instance"], out["tp"]) == ("modeled", "modeled", "p5.48xlarge", 1)
    assert {"kernel", "calls", "latency_s", "share"} <= set(out["breakdown"][0])
    assert out["usd_per_mtoken"] == pytest.approx(55.04 / (out["tokens_per_s"] * 3600) * 1e6)
    assert main(["cost", "--target", "inf2", "--tp", "3", "--cache", str(tmp_path)]) == 2
    assert "tp: must be" in capsys.readouterr().err


def test_cache_hits_skip_the_computation_and_keys_follow_every_part(tmp_path):
    calls = []
    c = Cache(tmp_path)
    assert c.get_or_compute({"a": 1, "b": [2, 3]}, lambda: calls.append(1) or {"x": 1.5}) == {"x": 1.5}
    assert c.get_or_compute({"b": [2, 3], "a": 1}, lambda: calls.append(1) or {"x": 9}) == {"x": 1.5}
    assert (len(calls), c.hits, c.misses) == (1, 1, 1)
    assert key_of({"a": 1}) != key_of({"a": 2})
    c.path(key_of({"a": 1, "b": [2, 3]})).write_text("{truncated")  # an unreadable entry is recomputed
    assert get_or_compute({"a": 1, "b": [2, 3]}, lambda: {"x": 2}, directory=tmp_path) == {"x": 2}
    with pytest.raises(TypeError, match="key_parts"):
        key_of({"a": object()})


def test_a_traced_call_is_read_back_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(cache_mod.CACHE_ENV, str(tmp_path))
    problem = next(c.problem for c in step_calls(LLAMA, Step.decode(1, 64), None) if c.name == "rms_norm")  # 1 row
    first = estimate.call_cost(problem, get_target("inf2"), "nkilab", Cache())
    assert first.method.startswith("NKI trace") and first.latency_s > 0 and first.launch_s == 19e-6

    def no_trace(*args, **kwargs):
        raise AssertionError("traced again despite the cache")

    monkeypatch.setattr(estimate.nki, "trace", no_trace)
    again = Cache()
    assert estimate.call_cost(problem, get_target("inf2"), "nkilab", again) == first
    # trn1 is the same NeuronCore-v2 with the same HBM share: its trace is inf2's
    assert estimate.call_cost(problem, get_target("trn1"), "nkilab", again) == first
    assert (again.hits, again.misses) == (2, 0)
    with pytest.raises(AssertionError, match="traced again"):  # trn2 (NeuronCore-v3) is another core: a miss
        estimate.call_cost(problem, get_target("trn2"), "nkilab", again)


def test_naive_gemms_dequantize_then_multiply_and_bf16_has_no_nki_gemm(tmp_path):
    def gate_up(quant):
        return next(c.problem for c in step_calls(LLAMA, DECODE, quant) if c.name == "qmatmul gate_up")  # M = 8

    tgt = get_target("inf2")
    naive = estimate.call_cost(gate_up(SCHEMES["int4"]), tgt, "naive", Cache(tmp_path))
    bf16 = estimate.call_cost(gate_up(None), tgt, "nkilab", Cache(tmp_path))
    k, n = 4096, 2 * 14336
    bw = tgt.bandwidth(lnc=1) * 0.6
    packed = k * n / 2 + (k // 128) * n * 4
    assert naive.latency_s == pytest.approx((packed + 2 * k * n) / bw + (2 * k * n + 2 * 8 * (k + n)) / bw)
    assert naive.launch_s == 2 * tgt.launch_s and bf16.launch_s == tgt.launch_s
    assert bf16.latency_s == pytest.approx((2 * k * n + 2 * 8 * (k + n)) / bw)


def test_waterfall_changes_one_thing_per_step_and_reports_percent_change(fake, tmp_path):
    steps = waterfall("llama-3.1-8b", DECODE, cache=Cache(tmp_path))
    assert [(s.cost.target, s.cost.scheme, s.cost.kernels) for s in steps] == \
        [("h100" if role == "gpu" else "inf2", scheme, kernels) for _, role, scheme, kernels in STEPS]
    assert steps[0].usd_change_pct is None
    for prev, cur in zip(steps, steps[1:]):
        assert cur.usd_change_pct == pytest.approx(100 * (cur.cost.usd_per_mtoken / prev.cost.usd_per_mtoken - 1))
        assert cur.joules_change_pct == pytest.approx(
            100 * (cur.cost.joules_per_token / prev.cost.joules_per_token - 1))
    trn2 = waterfall("llama-3.1-8b", DECODE, neuron="trn2", cache=Cache(tmp_path))
    assert trn2[1].usd_change_pct is None and trn2[1].joules_change_pct is not None  # no trn2 price


def test_steps_reject_bad_input():
    with pytest.raises(ValueError, match="batch: must be an int >= 1"):
        Step.decode(0, 10)
    with pytest.raises(ValueError, match="contexts: 2 KV lengths for batch 3"):
        Step.decode(3, contexts=(5, 6))
    with pytest.raises(ValueError, match="phase 'decode': needs"):
        Step("decode", (), 4)
    with pytest.raises(ValueError, match="scheme: must be one of"):
        compose("llama-3.1-8b", DECODE, "int3", "inf2")
    def calls(step):
        return {c.name: c.problem.params for c in step_calls(LLAMA, step, None)}

    ragged = calls(Step.decode(3, contexts=(5, 600, 70)))["paged_attention"]
    assert ragged["seq_lens"] == (5, 600, 70) and ragged["q_lens"] == (1, 1, 1) and "context" not in ragged
    mixed = calls(Step("mixed", (100, 200), 64))
    assert mixed["qmatmul qkv"]["m"] == 66 and mixed["paged_attention"]["q_lens"] == (1, 1, 64)
    assert mixed["lm_head"]["m"] == 3


def test_the_run_hook_appends_the_cost_table_and_waterfall(fake, tmp_path, monkeypatch):
    monkeypatch.setenv(cache_mod.CACHE_ENV, str(tmp_path / "cache"))
    report = tmp_path / "report.md"
    report.write_text("# run\n")
    config = SimpleNamespace(model="llama-3.1-8b", phases=("decode",), targets=("trn3", "inf2"), grid="quick", lnc=None)
    append_to_run(str(tmp_path), str(report), config, quick=False, console=Console(file=open(os.devnull, "w")))
    text = report.read_text()
    assert text.startswith("# run\n") and "## Cost of a token (modeled" in text and "### Waterfall" in text
    assert text.count("| llama-3.1-8b | decode |") == 3 * 4  # inf2 (trn3 has no instance), h100, h200 x 4 schemes
    assert (tmp_path / "cost_waterfall.png").stat().st_size > 0
    stored = json.loads((tmp_path / "cost.json").read_text())
    assert len(stored["headline"]) == 12 and [s["target"] for s in stored["waterfalls"][0]["steps"]][:2] == \
        ["h100", "inf2"]


def test_every_priced_target_has_a_link_row_with_its_source():
    for target in {i.target for i in INSTANCES.values()}:
        link = LINKS[target]
        assert link.bw > 0 and link.latency_s > 0 and "[" in link.source, target
