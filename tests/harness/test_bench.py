"""`nkilab bench`: problems found by any tail of their name (valid names listed on a miss), LNC modeled as
`kernel[lnc]` (default the target's), records as JSON lines, custom shapes and model configs, timelines."""

import json

import pytest

from nkilab.harness.cli import main
from nkilab.harness.report.records import validate_record

QKV_M8 = "llama-3.1-8b/decode/qmatmul/qkv-m8"


def _bench(argv, capsys):
    code = main(["bench", *argv, "--json"])
    captured = capsys.readouterr()
    return code, [json.loads(line) for line in captured.out.splitlines()], captured.err


@pytest.mark.parametrize("name", ["qkv-m8", "qmatmul/qkv-m8", "decode/qmatmul/qkv-m8", QKV_M8])
def test_bench_finds_a_problem_by_any_tail_of_its_name(name, capsys):
    code, records, _ = _bench(["--problem", name, "--target", "inf2"], capsys)
    assert code == 0
    (rec,) = records
    assert rec["problem"]["name"] == QKV_M8 and rec["status"] == "ok" and validate_record(rec) == []


@pytest.mark.parametrize("phase", ["prefill", "chunked", "mixed"])
def test_bench_models_paged_prefill_chunked_and_mixed_steps(phase, capsys):
    """One paged-attention call serves a prefill, a chunk over a cached context, or decode sequences and a chunk."""
    code, records, _ = _bench(["--kernel", "paged_attention", "--phase", phase, "--grid", "quick", "--target",
                               "inf2"], capsys)
    assert code == 0 and records
    for rec in records:
        q_lens = rec["problem"]["q_lens"]
        assert rec["status"] == "ok" and rec["problem"]["phase"] == phase and rec["perf"]["latency_s"] > 0
        assert rec["perf"]["tokens"] == sum(q_lens)
        if phase == "mixed":
            assert len(q_lens) > 1 and set(q_lens[:-1]) == {1} and q_lens[-1] > 1  # decode rows + one chunk
        else:
            assert len(q_lens) == 1 and q_lens[0] > 1


def test_bench_lists_the_valid_names_on_a_miss(capsys):
    assert main(["bench", "--problem", "qkv-m7"]) == 2
    err = capsys.readouterr().err
    assert "no problem named 'qkv-m7'" in err and "decode/qmatmul/qkv-m8" in err
    assert main(["bench", "--kernel", "attention", "--phase", "decode"]) == 2
    assert "its phases: prefill" in capsys.readouterr().err


def test_lnc_defaults_to_the_targets_and_is_modeled_as_kernel_lnc(capsys):
    """qkv at M=1 splits its N blocks over both cores of an LNC=2 trn2 core: the model must see the split."""
    _, (two,), _ = _bench(["--problem", "qkv-m1", "--target", "trn2"], capsys)
    _, (one,), _ = _bench(["--problem", "qkv-m1", "--target", "trn2", "--lnc", "1"], capsys)
    _, (inf2,), _ = _bench(["--problem", "qkv-m1", "--target", "inf2"], capsys)
    assert (two["lnc"], two["perf"]["lnc"], one["lnc"], inf2["lnc"]) == (2, 2, 1, 1)
    assert two["perf"]["latency_s"] < 0.85 * one["perf"]["latency_s"]
    assert two["perf"]["peak_flops"] == pytest.approx(2 * one["perf"]["peak_flops"])
    assert two["note"] is None  # qmatmul divides its work between the cores


def test_a_kernel_that_does_not_split_its_work_says_so_at_lnc_2(capsys):
    _, (rec,), _ = _bench(["--problem", "decode/write_kv_cache/t8-bs32", "--target", "trn2"], capsys)
    assert rec["lnc"] == 2 and "repeats the whole kernel" in rec["note"]


def test_bench_custom_batches_and_model_config(tmp_path, capsys):
    code, records, _ = _bench(["--kernel", "rms_norm", "--batches", "3,5", "--target", "inf2"], capsys)
    assert code == 0
    assert sorted({r["problem"]["rows"] for r in records}) == [3, 5]
    config = tmp_path / "tiny-llm.json"
    config.write_text(json.dumps({"hidden_size": 1024, "num_hidden_layers": 4, "num_attention_heads": 8,
                                  "num_key_value_heads": 2, "intermediate_size": 2816, "vocab_size": 32000}))
    code, records, _ = _bench(["--model-config", str(config), "--kernel", "qmatmul", "--batches", "2",
                               "--target", "inf2"], capsys)
    assert code == 0
    assert {r["problem"]["name"] for r in records} == {f"tiny-llm/decode/qmatmul/{p}-m2"
                                                       for p in ("qkv", "o", "gate_up", "down")}
    assert all(f"--model-config {config}" in r["command"] for r in records)
    assert next(r for r in records if r["problem"]["projection"] == "qkv")["problem"]["n"] == (8 + 2 * 2) * 128


def test_a_cache_hit_carries_the_command_of_its_own_invocation(tmp_path, capsys):
    """The record cache keys on the config's content, not its path: a hit must still name the path it was asked
    with (a stored command named the first asker's, which then no longer existed)."""
    content = json.dumps({"hidden_size": 512, "num_hidden_layers": 2, "num_attention_heads": 4,
                          "num_key_value_heads": 2, "intermediate_size": 1024, "vocab_size": 1000})
    cache = ["--cache", str(tmp_path / "cache")]
    paths = [tmp_path / where / "tiny.json" for where in ("a", "b")]  # the model's name is the file's stem
    commands = []
    for path in paths:
        path.parent.mkdir()
        path.write_text(content)
        _, (rec,), _ = _bench(["--model-config", str(path), "--problem", "qkv-m1", "--target", "inf2", *cache],
                              capsys)
        commands.append((rec["cache"], rec["command"]))
    assert [c for c, _ in commands] == ["miss", "hit"]
    assert all(f"--model-config {path}" in cmd for (_, cmd), path in zip(commands, paths))


def test_bad_model_config_is_a_usage_error(tmp_path, capsys):
    config = tmp_path / "bad.json"
    config.write_text(json.dumps({"hidden_size": 1024}))
    assert main(["bench", "--model-config", str(config), "--kernel", "qmatmul"]) == 2
    assert "missing num_hidden_layers" in capsys.readouterr().err


def test_timeline_needs_one_problem(capsys):
    assert main(["bench", "--kernel", "qmatmul", "--timeline", "x.json"]) == 2
    assert "one NKI problem" in capsys.readouterr().err


def test_bench_writes_a_timeline_and_a_gantt(tmp_path, capsys):
    trace, png = tmp_path / "t.json", tmp_path / "t.png"
    assert main(["bench", "--problem", "decode/rms_norm/r8-h4096", "--target", "trn2", "--timeline", str(trace),
                 "--timeline-png", str(png)]) == 0
    events = json.loads(trace.read_text())["traceEvents"]
    assert any(e["ph"] == "X" for e in events) and png.stat().st_size > 5000
