"""`nkilab` CLI: a cut-down run writes a valid run folder; exit codes; argument validation naming the valid
choices; help text and defaults on every option; GPU-only options; `report` keeps the run's metadata; `targets
--sources`; calibrate's tags; unavailable backends never crash a run."""

import argparse
import json
import os

import pytest

from nkilab.harness import cli
from nkilab.harness.chips import NEURON_TARGETS, NeuronTarget, Target
from nkilab.harness.cli import build_parser, main
from nkilab.harness.report.records import read_jsonl, validate_record
from nkilab.kernels import _backends
from nkilab.reference.quant import SCHEMES

def test_quick_run_writes_results_run_info_report_and_plots(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["run", "--quick", "--out", str(out), "--ops", "qmatmul,write_kv_cache,paged_attention",
                 "--backends", "reference,nki", "--no-measure", "--calibrate", "none"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "Correctness" in printed and "Modeled NKI kernels" in printed and "one layer" in printed
    records = read_jsonl(str(out / "results.jsonl"))
    assert records and all(validate_record(r) == [] for r in records)
    checks = [r for r in records if r["stage"] == "check"]
    assert checks and all(r["check"]["passed"] for r in checks if r["status"] == "ok")
    assert {r["lnc"] for r in checks if r["backend"] == "nki"} == {1}
    modeled = [r for r in records if r["stage"] == "model" and r["status"] == "ok"]
    assert {r["kernel"] for r in modeled} == {"qmatmul", "write_kv_cache", "paged_attention"}
    for r in modeled:
        perf, energy = r["perf"], r["energy"]
        assert r["lnc"] == perf["lnc"] == 2  # trn2's default logical NeuronCore degree
        assert perf["kind"] == "modeled" and perf["method"]
        assert perf["latency_s"] >= perf["roofline_s"] > 0  # the model never beats the roofline
        assert perf["bottleneck"] in ("tensor", "vector", "scalar", "gpsimd", "dma", "latency")
        assert energy["kind"] == "modeled" and energy["method"] and "assumed" in energy["assumption"]
        assert "--lnc 2" in r["command"]
    info = json.loads((out / "run.json").read_text())
    assert info["command"].startswith("nkilab run --quick") and info["wall_s"] > 0 and info["lnc"] == {"trn2": 2}
    report = (out / "report.md").read_text()
    assert "roofline_trn2.png" in report and "What limits each kernel" in report and "LNC=2" in report
    # the report states what was modeled: model and its shapes, qmatmul scheme, "one layer", the check rule
    assert "- model: `llama-3.1-8b`: hidden 4096" in report and "- qmatmul weight scheme: int8" in report
    assert "one kernel call of one transformer layer" in report and "never decides PASS" in report
    for name in ("roofline_trn2.png", "latency_vs_batch.png"):
        assert os.path.getsize(out / name) > 1000


def test_run_takes_custom_sweeps_and_a_model_config(tmp_path):
    config = tmp_path / "tiny-llm.json"
    config.write_text(json.dumps({"hidden_size": 1024, "num_hidden_layers": 4, "num_attention_heads": 8,
                                  "num_key_value_heads": 2, "intermediate_size": 2816, "vocab_size": 32000}))
    out = tmp_path / "run"
    assert main(["run", "--quick", "--ops", "paged_attention", "--backends", "nki", "--no-check", "--no-measure",
                 "--no-plots", "--calibrate", "none", "--batches", "2,3", "--contexts", "1024",
                 "--model-config", str(config), "--out", str(out)]) == 0
    records = read_jsonl(str(out / "results.jsonl"))
    assert sorted(r["problem"]["name"] for r in records) == sorted(  # the model-dtype cache, then the quantized ones
        f"tiny-llm/decode/paged_attention/{kv}b{b}-ctx1024-bs32" for kv in ("", "fp8_e4m3/", "int8/") for b in (2, 3))
    assert all(r["status"] == "ok" and r["problem"]["hkv"] == 2 for r in records)
    report = (out / "report.md").read_text()
    assert all(f"decode/paged_attention/b{b}-ctx1024-bs32" in report for b in (2, 3))  # as bench --problem takes it
    assert "- model: `tiny-llm`: hidden 1024, 4 layers, 8 query / 2 KV heads x 128" in report
    info = json.loads((out / "run.json").read_text())
    assert info["model"] == "tiny-llm" and info["sizes"] == {"batches": [2, 3], "contexts": [1024]}


def test_check_reports_an_unavailable_backend_without_crashing(tmp_path, monkeypatch):
    real = _backends._import_backend

    def no_triton(backend, module):
        if backend == "triton":
            raise ImportError("triton backend switched off by the test")
        return real(backend, module)

    monkeypatch.setattr(_backends, "_import_backend", no_triton)
    code = main(["check", "--ops", "write_kv_cache", "--backends", "reference,triton", "--out", str(tmp_path)])
    assert code == 0
    records = read_jsonl(str(tmp_path / "results.jsonl"))
    by_backend = {r["backend"]: r for r in records}
    assert by_backend["triton"]["status"] == "unavailable" and "switched off" in by_backend["triton"]["note"]
    assert by_backend["reference"]["status"] == "ok"


def test_errored_records_exit_non_zero(monkeypatch, tmp_path):
    """A run whose every NKI record errors (a bad target in the environment) must not exit 0."""
    monkeypatch.setenv("NEURON_PLATFORM_TARGET_OVERRIDE", "trn9")
    assert main(["check", "--ops", "write_kv_cache", "--backends", "nki", "--out", str(tmp_path)]) == 1
    records = read_jsonl(str(tmp_path / "results.jsonl"))
    assert records and all(r["status"] == "error" and "trn9" in r["note"] for r in records)


def test_check_json_prints_the_results_jsonl_records(tmp_path, capsys):
    assert main(["check", "--ops", "write_kv_cache", "--backends", "reference", "--json", "--out", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    printed = [json.loads(line) for line in captured.out.splitlines()]
    assert printed == read_jsonl(str(tmp_path / "results.jsonl")) and all(validate_record(r) == [] for r in printed)
    assert "Correctness" in captured.err  # the table goes to stderr


@pytest.mark.parametrize("argv, named", [
    (["run", "--scheme", "int3"], SCHEMES),
    (["bench", "--kernel", "qmatmul", "--scheme", "int3"], SCHEMES),
    (["run", "--targets", "tpu"], NEURON_TARGETS),
    (["run", "--ops", "softmax"], ("qmatmul", "paged_attention")),
    (["run", "--phases", "decode,train"], ("decode", "prefill", "chunked", "mixed")),
    (["run", "--power-w", "trn2"], NEURON_TARGETS),
    (["run", "--lnc", "4"], ("1", "2")),
    (["run", "--batches", "8,x"], ("positive ints",)),
    (["run", "--group-size", "0"], ("positive int",)),
])


def test_bad_arguments_exit_2_naming_the_valid_choices(argv, named, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert all(name in err for name in named), err


def test_lnc_2_on_a_target_without_it_is_refused(capsys):
    assert main(["run", "--lnc", "2", "--targets", "inf2,trn2", "--no-check", "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert "inf2" in err and "trn2, trn3" in err


def _subparsers(parser):
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


@pytest.mark.parametrize("gpu", [False, True])
def test_every_option_has_help_and_states_its_default(gpu, monkeypatch):
    monkeypatch.setattr(cli, "has_cuda_device", lambda: gpu)
    for name, sub in _subparsers(build_parser()).items():
        if name == "cost":  # `nkilab cost` is the cost issue's command (nkilab.harness.cost.cli), its own rules
            continue
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"{name} {action.dest} has no help"
            flag = isinstance(action, argparse._StoreTrueAction)
            positional = not action.option_strings
            assert flag or positional or "default" in action.help, f"{name} {action.option_strings}: no default"


def test_gpu_only_options_are_explained_without_a_gpu(capsys, monkeypatch):
    monkeypatch.setattr(cli, "has_cuda_device", lambda: False)
    bench = _subparsers(build_parser())["bench"]
    backend = next(a for a in bench._actions if a.dest == "backend")
    assert "needs a CUDA GPU" in backend.help and "{nki}" == backend.metavar
    target = next(a for a in bench._actions if a.dest == "target")
    assert tuple(target.choices) == NEURON_TARGETS  # h100 / h200 / cpu have nothing to bench
    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "--kernel", "qmatmul", "--backend", "triton"])
    assert "triton needs a CUDA GPU" in capsys.readouterr().err
    monkeypatch.setattr(cli, "has_cuda_device", lambda: True)
    assert build_parser().parse_args(["bench", "--kernel", "qmatmul", "--backend", "triton"]).backend == "triton"


def test_report_keeps_the_runs_command_and_wall_time(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--quick", "--ops", "write_kv_cache", "--backends", "reference", "--out", str(out),
                 "--no-measure", "--calibrate", "none"]) == 0
    first = (out / "report.md").read_text()
    (out / "report.md").unlink()
    assert main(["report", str(out)]) == 0
    again = (out / "report.md").read_text()
    command = next(line for line in first.splitlines() if line.startswith("- command:"))
    wall = next(line for line in first.splitlines() if line.startswith("- wall time:"))
    info = json.loads((out / "run.json").read_text())
    assert "nkilab run --quick" in command and command in again
    assert wall == f"- wall time: {info['wall_s']:.1f} s" and wall in again and info["wall_s"] > 0
    assert f"re-rendered by `nkilab report {out}`" in again
    assert "## Cost of a token" in first and "## Cost of a token" in again  # the run's cost section is kept


def test_report_of_a_missing_folder_is_a_clear_error(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main(["report", str(tmp_path)]) == 2
    assert "not a run folder (no results.jsonl" in capsys.readouterr().err


def test_report_rerenders_from_stored_records(tmp_path, capsys):
    rec = {"kernel": "qmatmul", "backend": "nki", "target": "trn2", "status": "ok", "stage": "model",
           "problem": {"name": "m/decode/qmatmul/qkv-m8", "phase": "decode", "m": 8, "projection": "qkv"},
           "check": None, "energy": None,
           "perf": {"kind": "modeled", "latency_s": 1e-4, "flops": 1e8, "hbm_bytes": 2.5e7, "tokens": 8,
                    "tokens_per_s": 8e4, "mfu": 0.05, "mbu": 0.6, "bottleneck": "dma", "roofline_s": 7e-5,
                    "lnc": 1}}
    (tmp_path / "results.jsonl").write_text(json.dumps(rec) + "\n")
    assert main(["report", str(tmp_path)]) == 0
    assert "drawing roofline_trn2.png" in capsys.readouterr().out  # progress, also when stdout is not a terminal
    report = (tmp_path / "report.md").read_text()
    assert "decode/qmatmul/qkv-m8" in report and "command: `(not recorded)`" in report
    assert (tmp_path / "roofline_trn2.png").exists()


def test_targets_shows_sources(capsys):
    assert main(["targets"]) == 0
    plain = capsys.readouterr().out
    assert "[HW]" in plain and "--sources" in plain
    assert main(["targets", "--sources"]) == 0
    text = capsys.readouterr().out
    own = set(NeuronTarget.__dataclass_fields__) - set(Target.__dataclass_fields__)
    assert all(name in text for name in own)
    assert "[LNC]" in text and "logical-neuroncore-config" in text  # a tag and its definition
    assert "trainium2_arch" in text and "assumed:" in text
