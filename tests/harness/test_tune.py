"""`nkilab tune` on rms_norm's one tunable (rows per tile): it beats a deliberately bad default, rejects the config
the emulator refuses, writes the tuning table, and the launcher reads that table; on qmatmul's and attention's
declared tunables it runs on one tiny problem and rejects the value the emulator refuses. Latencies are modeled."""

import json
from dataclasses import replace

import numpy as np
import pytest

from nkilab import reference
from nkilab.harness.cli import main
from nkilab.harness.sweep.tasks import sweep_run_config
from nkilab.harness.tune import search
from nkilab.harness.tune.search import candidates, tune, updated_table, write_table
from nkilab.harness.workloads import model_problems
from nkilab.kernels.nki import _launch, launch_attention, launch_qmatmul, launch_rms_norm
from nkilab.kernels.nki.rms_norm import rms_norm_kernel

BAD = {"op": "rms_norm", "default": {"rows_per_tile": 16}, "targets": {}}  # a deliberately bad default


def test_candidates_grid_and_budget():
    grid = candidates({"a": (1, 2), "b": (3, 4, 5)})
    assert len(grid) == 6 and {"a": 2, "b": 5} in grid
    sample = candidates({"a": (1, 2), "b": (3, 4, 5)}, budget=3, seed=1)
    assert len(sample) == 3 and all(c in grid for c in sample)
    with pytest.raises(ValueError, match="budget"):
        candidates({"a": (1,)}, budget=0)


def test_tune_beats_a_bad_default_on_ray(tmp_path, ray_cluster):
    results = tune("rms_norm", str(tmp_path / "results.jsonl"), model="llama-3.1-8b", grid="quick",
                   phases=("prefill",), targets=("trn2",), table=BAD, run=sweep_run_config({}, None, use_cache=False),
                   workers=2)
    (res,) = results
    assert (res.target, res.shape_class, res.before) == ("trn2", "rows>128", {"rows_per_tile": 16})
    assert res.after["rows_per_tile"] > 16
    assert res.rows and all(after < before for _, before, after in res.rows)
    assert any('"rows_per_tile": 256' in config for config in res.rejected)  # more rows than partitions
    table = updated_table(BAD, results)
    assert table["targets"]["trn2"]["rows>128"] == res.after and table["default"] == BAD["default"]


def test_cli_tune_writes_the_table_the_launcher_reads(tmp_path, monkeypatch, capsys):
    table = tmp_path / "launch_rms_norm.tuning.json"
    monkeypatch.setattr(launch_rms_norm, "TUNING_TABLE", table)
    write_table(BAD, table)
    assert launch_rms_norm.tuned({"rows": 512}, "trn2") == {"rows_per_tile": 16}
    code = main(["tune", "--kernel", "rms_norm", "--model", "llama-3.1-8b", "--grid", "quick", "--phases",
                 "prefill", "--target", "trn2", "--workers", "1", "--no-cache", "--out", str(tmp_path / "run"),
                 "--table", str(table)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "rows>128" in printed and "rejected" in printed
    written = json.loads(table.read_text())
    best = written["targets"]["trn2"]["rows>128"]
    assert best["rows_per_tile"] > 16
    assert launch_rms_norm.tuned({"rows": 512}, "trn2") == best
    assert launch_rms_norm.tuned({"rows": 8}, "trn2") == {"rows_per_tile": 16}  # another class: the default
    assert launch_rms_norm.tuned({"rows": 8, "tunables": {"rows_per_tile": 32}}, "trn2") == {"rows_per_tile": 32}
    with pytest.raises(ValueError, match="tunables"):
        launch_rms_norm.tuned({"rows": 8, "tunables": {"cols": 1}}, "trn2")


def test_rms_norm_rows_per_tile_changes_the_schedule_not_the_values():
    rng = np.random.default_rng(0)
    x, res, w = (rng.standard_normal(s).astype(np.float32) for s in ((130, 64), (130, 64), (64,)))
    outs = {n: _launch.launch(rms_norm_kernel, x, w, res, 1e-6, target="trn2", rows_per_tile=n) for n in (16, 128)}
    for a, b in zip(outs[16], outs[128]):  # rows never mix, so each row's arithmetic is the same: bit-equal
        np.testing.assert_array_equal(a, b)
    want_y, want_h = reference.rms_norm(x.astype(np.float64), w.astype(np.float64), eps=1e-6,
                                        residual=res.astype(np.float64))
    np.testing.assert_allclose(outs[16][1], want_h, rtol=1e-6, atol=1e-6)  # one fp32 rounding of the add
    np.testing.assert_allclose(outs[16][0], want_y, rtol=1e-5, atol=1e-5)  # fp32 statistics over 64 columns


# one tiny problem per kernel whose trace the emulator refuses at one of the launcher's declared values: qmatmul's
# x^T and resident weights (M 1024, K 14336) outgrow trn2's SBUF with prefill_sbuf_bytes 512 KiB; attention's 4096
# keys per step need more PSUM banks than there are (the kernel's score_buffers rule on trn2)
TINY = {"qmatmul": ("prefill", "qkv-m512", {"m": 1024, "k": 14336, "n": 1024}, "prefill_sbuf_bytes", 512 * 1024),
        "attention": ("prefill", "s512", {"sq": 1024, "skv": 8192, "hq": 2, "hkv": 1, "causal": False}, "kv_step",
                      4096)}


@pytest.mark.parametrize("op", sorted(TINY))
def test_cli_tune_runs_the_declared_tunables_and_rejects_what_the_emulator_refuses(op, tmp_path, monkeypatch,
                                                                                    capsys):
    phase, name, params, tunable, refused = TINY[op]
    launcher = {"qmatmul": launch_qmatmul, "attention": launch_attention}[op]
    (problem,) = [p for p in model_problems("llama-3.1-8b", phase=phase, grid="quick", ops=(op,))
                  if p.name.endswith("/" + name)]
    tiny = replace(problem, name=f"{problem.name}-tiny", params={**problem.params, **params})
    spec = {**tiny.params, **tiny.spec()}  # the launcher's problem dict
    monkeypatch.setattr(search, "model_problems", lambda *args, **kwargs: [tiny])
    choices = launcher.TUNING_CHOICES[tunable]  # the declared values of the one tunable the emulator refuses
    assert refused in choices
    monkeypatch.setattr(launcher, "TUNING_CHOICES", {tunable: choices})
    table = tmp_path / "table.json"
    write_table(json.loads(launcher.TUNING_TABLE.read_text()), table)
    monkeypatch.setattr(launcher, "TUNING_TABLE", table)
    code = main(["tune", "--kernel", op, "--model", "llama-3.1-8b", "--phases", phase, "--target", "trn2",
                 "--workers", "1", "--no-cache", "--out", str(tmp_path / "run"), "--table", str(table)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert f'rejected trn2/{launcher.shape_class(spec)} {{"{tunable}": {refused}}}' in printed
    assert "PSUM" in printed or "SBUF" in printed  # the reason: the emulator's capacity check or the kernel's rule
    records = [json.loads(line) for line in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    assert len(records) == 1 + len(choices)  # the table's config (the kernel's defaults) and each declared value
    statuses = {r["config"].get(tunable): r["status"] for r in records}
    assert statuses[refused] == "error" and statuses[None] == "ok"  # None: the kernel's own default
    (row,) = json.loads(table.read_text())["targets"]["trn2"].values()
    assert row.get(tunable) != refused
    assert launcher.tuned(spec, "trn2") == row  # the launcher reads what tune wrote
