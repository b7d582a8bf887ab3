"""The cost of a token at LNC=1 and LNC=2 (ranks per chip, HBM share, per-rank power, kernels that split or repeat
their work), and the measured path (`--measured FILE`, `--record-calls FILE`).

The measured tests compose hand-made records (synthetic latencies and joules written by `_record` below): they
show how measured records become a `kind: "measured"` row and when a row is refused; they measure nothing."""

import json
from types import SimpleNamespace

import pytest

from nkilab.harness.cache import Cache
from nkilab.harness.chips import get_target
from nkilab.harness.cli import main
from nkilab.harness.cost import composer, estimate
from nkilab.harness.cost import measured as measured_calls
from nkilab.harness.cost.calls import Step, step_calls
from nkilab.harness.cost.cli import _record_calls
from nkilab.harness.cost.composer import compose, step_plan
from nkilab.harness.cost.deployment import deploy, kv_bytes
from nkilab.harness.cost.estimate import CallCost
from nkilab.harness.cost.report import cost_text
from nkilab.harness.cost.waterfall import waterfall
from nkilab.harness.report.records import make_record, perf_field, write_jsonl
from nkilab.harness.workloads.models import MODELS

LLAMA = MODELS["llama-3.1-8b"]
DECODE = Step.decode(8, 4096)
REPEATS = "repeats the whole kernel"


def fake_cost(problem, target, kernels, cache, progress=None, *, lnc=1):
    """1 us + 1 ns per output element at any LNC; rms_norm says it repeats the whole kernel at LNC=2."""
    p = problem.params
    rows = p.get("m") or p.get("rows") or p.get("t") or p.get("num_seqs") or 1
    note = f"kernel[2] {REPEATS} (fake)" if lnc == 2 and problem.op == "rms_norm" else None
    return CallCost(1e-9 * rows * p.get("n", 1000) + 1e-6, 5e-6, 0.5, "fake", note=note)


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.setattr(composer, "call_cost", fake_cost)


def test_lnc2_halves_the_ranks_per_chip_and_doubles_their_hbm_and_power(fake, tmp_path):
    trn2 = get_target("trn2")
    one, two = (deploy(LLAMA, DECODE, None, trn2, lnc=lnc) for lnc in (1, 2))
    assert (one.lnc, one.ranks_per_chip, two.lnc, two.ranks_per_chip) == (1, 8, 2, 4)
    assert two.hbm_bytes == 2 * one.hbm_bytes == trn2.hbm_bytes / 4
    # bf16 Llama-3.1-8B + KV for 8 x 4096 exceeds 90 % of an LNC=1 rank's 12 GB: tp 2 there, tp 1 at LNC=2;
    # trn2.48xlarge's 16 chips hold 128 LNC=1 ranks (64 replicas) or 64 LNC=2 ranks (64 replicas)
    assert (one.tp, one.replicas, two.tp, two.replicas) == (2, 64, 1, 64)
    assert deploy(LLAMA, DECODE, None, trn2).lnc == 2  # trn2's default LNC
    c1, c2 = (compose("llama-3.1-8b", DECODE, "int4", "trn2", tp=1, lnc=lnc, cache=Cache(tmp_path)) for lnc in (1, 2))
    assert (c1.deployment["replicas"], c2.deployment["replicas"]) == (128, 64)
    assert c1.latency_s_per_step == c2.latency_s_per_step  # the fake ignores LNC: only the rank changes
    assert c2.joules_per_token == pytest.approx(2 * c1.joules_per_token)  # chip power x lnc / 8 cores per rank
    assert c2.tokens_per_s == pytest.approx(c1.tokens_per_s / 2) and "2 of 8 NeuronCores" in c2.energy_assumption
    assert c2.tokens_per_s_per_rank == c1.tokens_per_s_per_rank  # a rank of 2 cores: half as many per core
    assert c2.tokens_per_s_per_core == pytest.approx(c1.tokens_per_s_per_core / 2)
    assert c1.to_dict()["lnc"] == 1 and c2.to_dict()["lnc"] == 2
    assert compose("llama-3.1-8b", DECODE, "int4", "h100", cache=Cache(tmp_path)).lnc is None


def test_a_kernel_that_repeats_its_work_is_costed_as_traced_and_says_so(fake, tmp_path):
    c = compose("llama-3.1-8b", DECODE, "int4", "trn2", lnc=2, cache=Cache(tmp_path))
    notes = {b["kernel"]: b["note"] for b in c.breakdown}
    assert REPEATS in notes["rms_norm"] and REPEATS in notes["final rms_norm + residual"]
    assert notes["qmatmul qkv"] is None and notes["rope"] is None
    assert f"note: kernel[2] {REPEATS}" in cost_text(c) and "(LNC=2: 4 ranks per chip)" in cost_text(c)


def test_at_lnc2_a_kernel_that_splits_its_work_is_faster_and_one_that_repeats_it_is_not(tmp_path):
    calls = {c.name: c.problem for c in step_calls(LLAMA, Step.decode(1, 64), None)}  # one token: fast traces
    trn2, cache = get_target("trn2"), Cache(tmp_path)
    rope1, rope2 = (estimate.call_cost(calls["rope"], trn2, "nkilab", cache, lnc=lnc) for lnc in (1, 2))
    assert rope2.latency_s < rope1.latency_s and rope2.note is None  # its heads split over the two cores
    norm1, norm2 = (estimate.call_cost(calls["rms_norm"], trn2, "nkilab", cache, lnc=lnc) for lnc in (1, 2))
    assert norm2.latency_s >= norm1.latency_s and REPEATS in norm2.note and norm1.note is None
    assert estimate.call_cost(calls["rope"], trn2, "nkilab", cache, lnc=2) == rope2  # read back: LNC is in the key
    assert cache.hits == 1


def test_lnc_is_checked_against_the_target(capsys, tmp_path):
    for target, lnc, message in (("inf2", 2, "lnc: inf2 runs LNC 1 only"), ("trn2", 3, "lnc: trn2 runs LNC 1 or 2"),
                                 ("h100", 2, "lnc: a logical NeuronCore degree applies to Neuron targets")):
        with pytest.raises(ValueError, match=message):
            compose("llama-3.1-8b", DECODE, "int4", target, lnc=lnc, cache=Cache(tmp_path))
    assert main(["cost", "--target", "trn1", "--lnc", "2", "--cache", str(tmp_path)]) == 2
    assert "lnc: trn1 runs LNC 1 only" in capsys.readouterr().err


def _record(problem, latency_s, joules, device="NVIDIA H100 80GB HBM3", nvml=True):
    """A hand-made measured Triton record of `problem` in results.jsonl's schema (synthetic figures)."""
    energy = {"kind": "measured", "joules_per_token": joules / problem.tokens, "joules_per_call": joules,
              "method": "nvml:total_energy_consumption" if nvml else "neuron-sysfs", "assumption": None}
    perf = perf_field("measured", latency_s=latency_s, method="CUDA events (synthetic fixture)", device=device)
    return make_record(kernel=problem.op, backend="triton", target="cuda", problem=problem.record(), perf=perf,
                       energy=energy, stage="measure")


def _fixture(path, step, scheme="int4", target="h100", drop=(), **options):
    """Write a records file for the step's calls but `drop`, the i-th distinct one at (i + 1) x 10 us and
    (i + 1) x 1 mJ; returns [(call, i + 1)] (the final norm is the layer's rms_norm + residual: one record)."""
    _, calls = step_plan("llama-3.1-8b", step, scheme, get_target(target))
    first = {}
    for c in calls:
        first.setdefault(measured_calls.problem_identity(c.problem), c)
    number = {key: i + 1 for i, key in enumerate(first)}
    write_jsonl([_record(c.problem, number[key] * 1e-5, number[key] * 1e-3, **options)
                 for key, c in first.items() if c.name not in drop], path)
    return [(c, number[measured_calls.problem_identity(c.problem)]) for c in calls]


def test_a_measured_row_is_the_sum_of_the_measured_calls(tmp_path):
    path = tmp_path / "measured.jsonl"
    calls = _fixture(path, DECODE)
    m = measured_calls.load(str(path), get_target("h100"))
    c = compose("llama-3.1-8b", DECODE, "int4", "h100", measured=m, cache=Cache(tmp_path))
    assert len({i for _, i in calls}) == len(calls) - 1  # the final norm shares its record
    latency = sum(call.count * i * 1e-5 for call, i in calls)  # no modeled launch cost added
    joules = sum(call.count * i * 1e-3 for call, i in calls)
    assert c.latency_s_per_step == pytest.approx(latency) and c.joules_per_token == pytest.approx(joules / 8)
    assert (c.kind, c.energy_kind) == ("measured", "measured (NVML)")
    assert all(b["method"].startswith("measured: ") for b in c.breakdown)
    assert c.tokens_per_s == pytest.approx(8 / latency * 8)  # p5.48xlarge: 8 GPUs, one replica each
    assert c.usd_per_mtoken == pytest.approx(55.04 / (c.tokens_per_s * 3600) * 1e6)


def test_a_measured_row_is_refused_rather_than_mixed_with_modeled_figures(tmp_path):
    h100, path = get_target("h100"), str(tmp_path / "m.jsonl")
    _fixture(path, DECODE, drop=("lm_head",))
    with pytest.raises(ValueError, match=r"lacks 1 of the step's calls: qmatmul llama-3.1-8b/decode/lm_head-m8"):
        compose("llama-3.1-8b", DECODE, "int4", "h100", measured=measured_calls.load(path, h100))
    _fixture(path, DECODE)
    with pytest.raises(ValueError, match="lacks"):  # another scheme's GEMMs are other calls
        compose("llama-3.1-8b", DECODE, "int8", "h100", measured=measured_calls.load(path, h100))
    with pytest.raises(ValueError, match="tp: a measured row has no measured TP collectives"):
        compose("llama-3.1-8b", DECODE, "int4", "h100", tp=2, measured=measured_calls.load(path, h100))
    with pytest.raises(ValueError, match="kernels: a measured row composes nkilab's"):
        compose("llama-3.1-8b", DECODE, "int4", "h100", kernels="naive", measured=measured_calls.load(path, h100))
    with pytest.raises(ValueError, match=r"measured on \['NVIDIA H100 80GB HBM3'\], not on target 'h200'"):
        measured_calls.load(path, get_target("h200"))
    _fixture(path, DECODE, nvml=False)
    with pytest.raises(ValueError, match="has no NVML joules"):
        compose("llama-3.1-8b", DECODE, "int4", "h100", measured=measured_calls.load(path, h100))
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(ValueError, match="holds no measured Triton records"):
        measured_calls.load(str(tmp_path / "empty.jsonl"), h100)


def test_record_calls_measures_each_distinct_call_once_and_cost_composes_it(tmp_path, capsys):
    path = str(tmp_path / "rec.jsonl")
    seen = []

    def fake_measure(task):  # stands in for profile.measure_task (CUDA): synthetic figures
        seen.append((task.kind, task.backend, task.problem.name))
        return _record(task.problem, 2e-5, 3e-3)

    args = SimpleNamespace(model="llama-3.1-8b", scheme="int4", target="h100", tp=None, lnc=None, kv_dtype="auto",
                           record_calls=path)
    assert _record_calls(args, DECODE, measure=fake_measure) == 0
    _, calls = step_plan("llama-3.1-8b", DECODE, "int4", get_target("h100"))
    assert len(seen) == len({c.problem.name for c in calls}) and {s[:2] for s in seen} == {("measure", "triton")}
    assert main(["cost", "--target", "h100", "--scheme", "int4", "--measured", path, "--json",
                 "--cache", str(tmp_path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["kind"], out["energy_kind"], out["lnc"]) == ("measured", "measured (NVML)", None)
    assert out["latency_s_per_step"] == pytest.approx(2e-5 * sum(c.count for c in calls))
    assert _record_calls(SimpleNamespace(**{**vars(args), "target": "inf2"}), DECODE, fake_measure) == 2
    assert "--target must be one of h100, h200" in capsys.readouterr().err


def test_the_kv_cache_format_is_a_deployment_option(tmp_path):
    auto, fp8, int8 = (step_calls(LLAMA, DECODE, None, kv) for kv in ("auto", "fp8", "int8"))
    assert [c.name for c in auto] == [c.name for c in fp8] == [c.name for c in int8]
    for a, f, i in zip(auto, fp8, int8):
        paged = a.problem.op in ("paged_attention", "write_kv_cache")
        assert (f.problem.params.get("kv_cache_dtype"), i.problem.params.get("kv_cache_dtype")) == \
            (("fp8_e4m3", "int8") if paged else (None, None))
        assert paged or a.problem == f.problem == i.problem
    tokens, per_layer_heads = 8 * 4096, 32 * 8 * 128
    assert kv_bytes(LLAMA, tokens, "fp8") == kv_bytes(LLAMA, tokens) / 2 == tokens * 2 * per_layer_heads
    assert kv_bytes(LLAMA, tokens, "int8") == kv_bytes(LLAMA, tokens, "fp8") + tokens * 32 * 2 * 8 * 4  # scales
    gpu = {kv: compose("llama-3.1-8b", DECODE, "int4", "h100", kv_dtype=kv, cache=Cache(tmp_path)) for kv in
           ("auto", "fp8")}
    assert gpu["fp8"].tokens_per_s > gpu["auto"].tokens_per_s and gpu["fp8"].to_dict()["kv_dtype"] == "fp8"
    with pytest.raises(ValueError, match="kv_dtype: must be one of"):
        compose("llama-3.1-8b", DECODE, "int4", "h100", kv_dtype="int4", cache=Cache(tmp_path))


def test_the_waterfall_runs_its_neuron_steps_at_the_given_lnc(fake, tmp_path):
    default, one = (waterfall("llama-3.1-8b", DECODE, neuron="trn2", lnc=lnc, cache=Cache(tmp_path))
                    for lnc in (None, 1))
    assert [s.cost.lnc for s in default] == [None] + [2] * 5 and [s.to_dict()["lnc"] for s in one] == [None] + [1] * 5
