"""report.md and the console summary say what was run and what every figure is: model and its per-layer shapes,
qmatmul scheme, LNC per target, "one layer" on tokens/s and J/token, and the rule that decides a check's PASS."""

import io

from rich.console import Console

from nkilab.harness.report.console import summary
from nkilab.harness.report.markdown import CHECK_HEADER, CHECK_RULE, PER_LAYER, check_rows, headline, write_report


def _model(name, m, lnc=2, target="trn2", phase="decode", tokens=None):
    return {"kernel": "qmatmul", "backend": "nki", "target": target, "status": "ok", "stage": "model", "lnc": lnc,
            "problem": {"name": f"llama-3.1-8b/{phase}/qmatmul/{name}", "phase": phase, "model": "llama-3.1-8b",
                        "m": m, "projection": "qkv", "scheme": "int4-g128"},
            "check": None, "energy": {"kind": "modeled", "joules_per_token": 1e-4},
            "perf": {"kind": "modeled", "latency_s": 1e-4, "flops": 1e8, "hbm_bytes": 2.5e7, "tokens": tokens or m,
                     "tokens_per_s": 8e4, "mfu": 0.05, "mbu": 0.6, "bottleneck": "dma", "roofline_s": 7e-5,
                     "lnc": lnc}}


CHECK = {"kernel": "qmatmul", "backend": "nki", "target": "emulator", "status": "ok", "stage": "check", "lnc": 1,
         "problem": {"name": "smoke/qmatmul/int8", "dtype": "float16"}, "wall_s": 0.01,
         "check": {"passed": True, "max_abs_err": 0.0044, "max_rel_err": 0.396, "bound": 0.00682},
         "perf": None, "energy": None}
RECORDS = [CHECK, _model("qkv-m1", 1), _model("qkv-m8", 8), _model("qkv-m32", 32), _model("qkv-m8", 8, 1, "inf2"),
           _model("qkv-m512", 512, phase="prefill")]


def test_report_states_model_scheme_lnc_and_per_layer(tmp_path):
    info = {"command": "nkilab run --scheme int4 --group-size 128", "wall_s": 12.5, "model": "llama-3.1-8b",
            "grid": "default"}
    text = open(write_report(RECORDS, str(tmp_path), plots=[], info=info)).read()
    assert "- command: `nkilab run --scheme int4 --group-size 128`" in text and "- wall time: 12.5 s" in text
    assert "- model: `llama-3.1-8b`: hidden 4096, 32 layers, 32 query / 8 KV heads x 128" in text
    assert "- qmatmul weight scheme: int4-g128" in text
    assert "inf2 1, trn2 2" in text and "## Modeled profile on `trn2`, LNC=2" in text
    assert PER_LAYER in text and "tokens/s (1 layer)" in text and "J/token (1 layer, kind)" in text
    assert "decode/qmatmul/qkv-m8" in text  # problems named as `nkilab bench --problem` takes them


def test_the_check_table_explains_its_rule_and_the_large_relative_error(tmp_path):
    text = open(write_report(RECORDS, str(tmp_path), plots=[])).read()
    assert CHECK_RULE in text and "never decides PASS" in CHECK_RULE and "bound" in CHECK_RULE
    (row,) = check_rows(RECORDS)
    assert dict(zip(CHECK_HEADER, row))["abs err / bound"] == "0.65"
    assert dict(zip(CHECK_HEADER, row))["bound (abs)"] == "0.00682"
    out = Console(file=io.StringIO(), width=200)
    summary(RECORDS, out)
    printed = out.file.getvalue()
    assert "never decides PASS" in printed and "one kernel call of one transformer layer" in printed


def test_headline_picks_batch_8_and_the_largest_call_of_the_other_phases():
    picked = {(r["target"], r["problem"]["phase"]): r["problem"]["name"].rsplit("/", 1)[-1] for r in headline(RECORDS)}
    assert picked == {("trn2", "decode"): "qkv-m8", ("inf2", "decode"): "qkv-m8", ("trn2", "prefill"): "qkv-m512"}
