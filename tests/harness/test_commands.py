"""The commands' sections: failed records exit 1, `report` keeps the run's calibration section, calibrate explains
its source tags and prints JSON records, and every modeled record's `nkilab bench` command finds its problem."""

import json

import pytest

from nkilab.harness import commands
from nkilab.harness.cli import main
from nkilab.harness.profile import RunConfig, bench_command, plan
from nkilab.harness.report.records import validate_record
from nkilab.harness.workloads import short_name

FAKE_CALIBRATION = [{"name": "bf16 2048^3 point", "target": "trn2", "structure": "all dims blocked",
                     "published": "60.6% MFU", "modeled": "71.0% MFU", "ratio": 1.17, "bottleneck": "tensor",
                     "source": "[AT] nki-autotune kernel_library README", "method": "profiler MFU",
                     "kernel_s": 2.9e-4, "launch_s": 1.5e-5, "roofline_s": 2e-4, "latency_s": 2.9e-4, "mfu": 0.71,
                     "engine_busy_s": {"tensor": 2.8e-4}}]


def test_failed_records_exit_non_zero(monkeypatch):
    real = commands.run

    def one_failure(config, on_record=None):
        records = real(config, on_record=on_record)
        records[0] = dict(records[0], status="failed")
        return records

    monkeypatch.setattr(commands, "run", one_failure)
    assert main(["check", "--ops", "write_kv_cache", "--backends", "reference"]) == 1

def test_report_keeps_the_runs_calibration_section(tmp_path, monkeypatch):
    monkeypatch.setattr(commands.calibration, "calibration_table", lambda points, progress=None: FAKE_CALIBRATION)
    out = tmp_path / "run"
    assert main(["run", "--quick", "--ops", "write_kv_cache", "--backends", "reference", "--out", str(out),
                 "--no-measure", "--no-plots"]) == 0
    assert "bf16 2048^3 point" in (out / "report.md").read_text()
    (out / "report.md").unlink()
    assert main(["report", str(out)]) == 0
    again = (out / "report.md").read_text()
    assert "## Calibration" in again and "bf16 2048^3 point" in again and "[AT]" in again


def test_calibrate_explains_its_source_tags(monkeypatch, capsys):
    monkeypatch.setattr(commands.calibration_report, "calibration_table",
                        lambda points, progress=None: FAKE_CALIBRATION)
    assert main(["calibrate"]) == 0
    text = capsys.readouterr().out
    assert "[AT]" in text and "awslabs/nki-autotune" in text


def test_calibrate_prints_json_records(monkeypatch, capsys):
    rows = [dict(FAKE_CALIBRATION[0], name=p.name, source=p.source) for p in commands.calibration.POINTS]
    monkeypatch.setattr(commands.calibration_report, "calibration_table", lambda points, progress=None: rows)
    assert main(["calibrate", "--json"]) == 0
    captured = capsys.readouterr()
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert len(records) == len(rows) and all(validate_record(r) == [] for r in records)
    assert all(r["stage"] == "calibrate" and r["calibration"]["source"] for r in records)
    assert "Model vs published" in captured.err  # the table goes to stderr with --json


@pytest.mark.parametrize("grid", ["quick", "default", "full"])
def test_every_modeled_record_names_a_problem_its_bench_command_finds(grid, monkeypatch):
    config = RunConfig(targets=("trn2",), grid=grid, check=False, measured=False, sizes={"batches": (2, 4)})
    seen = {}

    def fake_model_task(task, config, on_trace=None):  # records what bench would model, models nothing
        seen["task"] = task
        return {"status": "ok"}

    monkeypatch.setattr(commands, "model_task", fake_model_task)
    monkeypatch.setattr(commands, "cached_model_task", fake_model_task)  # bench models through the record cache
    monkeypatch.setattr(commands, "_bench_line", lambda p, rec, lnc: [])
    for task in plan(config):
        command = bench_command(task, config)
        assert command.split("--problem ")[1] == short_name(task.problem.name) and "--batches 2,4" in command
        seen.clear()
        assert main(command.split()[1:]) == 0  # the command as the record stores it
        assert seen["task"].problem.name == task.problem.name and seen["task"].lnc == 2
