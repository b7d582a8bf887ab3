"""The results.jsonl schema: required fields, kinds, nulls for unknowns, and a JSON round trip."""

import json
import math

import pytest

from nkilab.harness.measure.energy import EnergyResult
from nkilab.harness.report.records import (
    PERF_KINDS,
    energy_field,
    make_record,
    perf_field,
    read_jsonl,
    validate_record,
    write_jsonl,
)


def _record(**overrides):
    fields = dict(kernel="qmatmul", backend="nki", target="trn2", problem={"m": 1, "k": 4096, "n": 6144,
                  "scheme": "int8-per-channel", "dtype": "bfloat16"},
                  perf=perf_field("modeled", latency_s=2e-4, method="model", flops=5e7, hbm_bytes=2.5e7, tokens=8,
                                  mfu=0.01, mbu=0.7, bottleneck="dma"),
                  energy=energy_field(EnergyResult(1e-3, "modeled", "latency x power", "accelerator",
                                                   "500 W assumed").per_token(8)))
    fields.update(overrides)
    return make_record(**fields)


def test_record_keeps_the_required_fields_and_derives_tokens_per_s():
    rec = _record()
    for key in ("kernel", "backend", "target", "problem", "check", "perf", "energy"):
        assert key in rec
    assert rec["check"] is None
    assert rec["perf"]["tokens_per_s"] == pytest.approx(8 / 2e-4)
    assert rec["energy"]["joules_per_token"] == pytest.approx(1e-3 / 8)
    assert rec["energy"]["kind"] == "modeled" and rec["energy"]["method"]
    assert rec["git_commit"] is None or len(rec["git_commit"]) == 40


def test_unknowns_are_null_not_invented():
    perf = perf_field("emulation-wall", latency_s=0.5, method="wall")
    assert perf["tokens_per_s"] is None and perf["mfu"] is None and perf["flops"] is None
    assert perf_field("measured", latency_s=float("nan"), method="x")["latency_s"] is None
    assert energy_field(None) is None
    null = energy_field(EnergyResult(None, "measured", "nvml", "gpu", reason="NVML unavailable").per_token(4))
    assert null["joules_per_token"] is None and null["reason"] == "NVML unavailable"


def test_schema_violations_are_reported():
    with pytest.raises(ValueError, match="kind"):
        perf_field("guessed", latency_s=1.0, method="x")
    rec = _record()
    rec["energy"] = {"kind": "estimated", "joules_per_token": 1.0, "method": "", "assumption": ""}
    errors = validate_record(rec)
    assert any("energy.kind" in e for e in errors) and any("energy.method" in e for e in errors)
    del rec["perf"]
    assert validate_record(rec) == ["missing field 'perf'"]
    assert set(PERF_KINDS) == {"measured", "modeled", "emulation-wall"}


def test_jsonl_round_trip_writes_nan_as_null(tmp_path):
    rec = _record(extra_value=float("inf"))
    path = tmp_path / "results.jsonl"
    write_jsonl([rec, rec], str(path))
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and all(json.loads(line)["kernel"] == "qmatmul" for line in lines)
    back = read_jsonl(str(path))
    assert back[0]["extra_value"] is None
    assert back[0]["perf"]["latency_s"] == rec["perf"]["latency_s"]
    assert not any(isinstance(v, float) and not math.isfinite(v) for v in back[0]["perf"].values())
