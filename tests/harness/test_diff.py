"""`nkilab diff`: two run folders compared record by record — latency, MFU/MBU, status, errors."""

import copy

import pytest

from nkilab.harness.cli import main
from nkilab.harness.diff import compare, diff_rows, record_key, summary_line
from nkilab.harness.report.records import write_jsonl


def _model(name, latency, mfu=0.1, mbu=0.5, lnc=1, status="ok"):
    return {"kernel": "qmatmul", "backend": "nki", "target": "trn2", "stage": "model", "status": status,
            "lnc": lnc, "problem": {"name": f"llama-3.1-8b/decode/qmatmul/{name}", "dtype": "bfloat16"},
            "check": None, "energy": None,
            "perf": {"kind": "modeled", "latency_s": latency, "mfu": mfu, "mbu": mbu, "bottleneck": "dma"}}


def _check(status="ok", err=1e-3, wall=0.1):
    return {"kernel": "qmatmul", "backend": "nki", "target": "emulator", "stage": "check", "status": status,
            "problem": {"name": "smoke/qmatmul/int8", "dtype": "float16"}, "energy": None,
            "check": {"passed": status == "ok", "max_abs_err": err, "max_rel_err": 0.1, "bound": 5e-3},
            "perf": {"kind": "emulation-wall", "latency_s": wall}}


BEFORE = [_model("qkv-m8", 1e-4), _model("o-m8", 5e-5), _model("down-m8", 8e-5), _check()]


def test_pairs_by_key_and_reports_what_moved():
    after = [_model("qkv-m8", 0.8e-4, mfu=0.125, lnc=2), _model("o-m8", 5.01e-5), _model("gate_up-m8", 2e-4),
             _check(status="failed", err=9e-3, wall=0.5)]
    pairs = {p.key[4].rsplit("/", 1)[-1]: p for p in compare(BEFORE, after, rtol=0.01)}
    assert pairs["qkv-m8"].state == "changed" and not pairs["qkv-m8"].regression
    assert pairs["qkv-m8"].changed == {"latency_s": (1e-4, 0.8e-4), "mfu": (0.1, 0.125), "lnc": (1, 2)}
    assert pairs["o-m8"].state == "same"  # 0.2 % moves less than rtol
    assert pairs["down-m8"].state == "removed" and pairs["gate_up-m8"].state == "added"
    check = pairs["int8"]
    assert check.status_worse and check.regression and "latency_s" not in check.changed  # wall time not compared
    rows = diff_rows(list(pairs.values()))
    qkv = next(r for r in rows if r[1].endswith("qkv-m8"))
    assert qkv[:2] == ["changed", "nki/trn2 decode/qmatmul/qkv-m8"]
    assert qkv[3] == "100 us -> 80 us (x0.8)" and qkv[4] == "10.0% -> 12.5%" and "lnc 1 -> 2" in qkv[7]
    check_row = next(r for r in rows if r[1] == "nki/emulator smoke/qmatmul/int8 float16")
    assert check_row[0] == "failed now" and check_row[2] == "ok -> failed" and check_row[6] == "0.001 -> 0.009"
    assert not any(r[1].endswith("o-m8") for r in rows)  # unchanged records only with show_all
    assert len(diff_rows(list(pairs.values()), show_all=True)) == len(pairs)
    assert "1 unchanged, 2 changed, 1 only after, 1 only before; 1 failed or errored now, 0 slower" in summary_line(
        list(pairs.values()))


def test_a_field_one_run_lacks_is_not_a_change():
    old_schema = [dict(BEFORE[0], lnc=None)]
    (pair,) = compare(old_schema, [_model("qkv-m8", 1e-4, lnc=2)])
    assert pair.state == "same"


def test_slower_is_a_regression_and_bad_input_is_refused():
    slower = [_model("qkv-m8", 1.2e-4)]
    (pair,) = [p for p in compare(BEFORE[:1], slower) if p.state == "changed"]
    assert pair.regression and not pair.status_worse
    with pytest.raises(ValueError, match="rtol"):
        compare(BEFORE, BEFORE, rtol=-1)
    with pytest.raises(ValueError, match="two records share the key"):
        compare(BEFORE + BEFORE[:1], BEFORE)
    assert record_key(BEFORE[0]) == ("model", "qmatmul", "nki", "trn2", "llama-3.1-8b/decode/qmatmul/qkv-m8",
                                     "bfloat16")


def test_diff_command(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    write_jsonl(BEFORE, str(a / "results.jsonl"))
    after = copy.deepcopy(BEFORE)
    after[0]["perf"]["latency_s"] = 0.5e-4
    write_jsonl(after, str(b / "results.jsonl"))
    assert main(["diff", str(a), str(b)]) == 0
    text = capsys.readouterr().out
    assert "qkv-m8" in text and "x0.5" in text and "3 unchanged, 1 changed" in text
    after[3]["status"] = "error"
    write_jsonl(after, str(b / "results.jsonl"))
    assert main(["diff", str(a), str(b)]) == 1  # a record that errors now is a failure of the comparison
    assert main(["diff", str(a), str(tmp_path / "none")]) == 2
    assert "no such folder" in capsys.readouterr().err
