"""`nkilab tune` on rms_norm's one tunable (rows per tile): it beats a deliberately bad default, rejects the config
the emulator refuses, writes the tuning table, and the launcher reads that table. Latencies are modeled."""

import json

import numpy as np
import pytest

from nkilab import reference
from nkilab.harness.cli import main
from nkilab.harness.sweep.tasks import sweep_run_config
from nkilab.harness.tune.search import candidates, tune, updated_table, write_table
from nkilab.kernels.nki import _launch, launch_rms_norm
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
