"""`nkilab` CLI smoke: a cut-down run writes a valid run folder; unavailable backends never crash a run."""

import json
import os

import pytest

from nkilab.harness.cli import main
from nkilab.harness.report.records import read_jsonl, validate_record
from nkilab.kernels import _backends


def test_quick_run_writes_results_report_and_plots(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["run", "--quick", "--out", str(out), "--ops", "qmatmul,write_kv_cache,paged_attention",
                 "--backends", "reference,nki", "--no-measure", "--calibrate", "none"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "Correctness" in printed and "Modeled NKI kernels" in printed
    records = read_jsonl(str(out / "results.jsonl"))
    assert records and all(validate_record(r) == [] for r in records)
    checks = [r for r in records if r["stage"] == "check"]
    assert checks and all(r["check"]["passed"] for r in checks if r["status"] == "ok")
    modeled = [r for r in records if r["stage"] == "model" and r["status"] == "ok"]
    assert {r["kernel"] for r in modeled} == {"qmatmul", "write_kv_cache", "paged_attention"}
    for r in modeled:
        perf, energy = r["perf"], r["energy"]
        assert perf["kind"] == "modeled" and perf["method"]
        assert perf["latency_s"] >= perf["roofline_s"] > 0  # the model never beats the roofline
        assert perf["bottleneck"] in ("tensor", "vector", "scalar", "gpsimd", "dma", "latency")
        assert energy["kind"] == "modeled" and energy["method"] and "assumed" in energy["assumption"]
    report = (out / "report.md").read_text()
    assert "roofline_trn2.png" in report and "What limits each kernel" in report
    for name in ("roofline_trn2.png", "latency_vs_batch.png"):
        assert os.path.getsize(out / name) > 1000


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


def test_targets_and_bad_arguments(capsys):
    assert main(["targets"]) == 0
    assert "trn2" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["run", "--targets", "tpu"])
    with pytest.raises(SystemExit):
        main(["run", "--power-w", "trn2"])


def test_report_rerenders_from_stored_records(tmp_path):
    rec = {"kernel": "qmatmul", "backend": "nki", "target": "trn2", "status": "ok", "stage": "model",
           "problem": {"name": "m/decode/qmatmul/qkv-m8", "phase": "decode", "m": 8, "projection": "qkv"},
           "check": None, "energy": None,
           "perf": {"kind": "modeled", "latency_s": 1e-4, "flops": 1e8, "hbm_bytes": 2.5e7, "tokens": 8,
                    "tokens_per_s": 8e4, "mfu": 0.05, "mbu": 0.6, "bottleneck": "dma", "roofline_s": 7e-5,
                    "lnc": 1}}
    (tmp_path / "results.jsonl").write_text(json.dumps(rec) + "\n")
    assert main(["report", str(tmp_path)]) == 0
    assert "qkv-m8" in (tmp_path / "report.md").read_text()
    assert (tmp_path / "roofline_trn2.png").exists()
