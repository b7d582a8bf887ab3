"""Sweep plots draw each latency line's roofline bound from the stored records; energy plots draw none."""

import matplotlib.pyplot as plt
import pytest

from nkilab.harness.report.plots import sweep_figure, sweep_plot, write_plots


def _record(kernel, target, *, batch, context, latency_s, roofline_s, jpt, projection=None):
    problem = {"phase": "decode", "context": context, "num_seqs": batch, "m": batch, "t": batch}
    if projection:
        problem["projection"] = projection
    return {"kernel": kernel, "target": target, "status": "ok", "problem": problem,
            "perf": {"kind": "modeled", "latency_s": latency_s, "roofline_s": roofline_s, "flops": 1e9,
                     "hbm_bytes": 1e8, "lnc": 2},
            "energy": {"kind": "modeled", "joules_per_token": jpt}}


RECORDS = [
    _record("paged_attention", "trn2", batch=b, context=c, latency_s=1e-6 * b * c, roofline_s=4e-7 * b * c,
            jpt=1e-4 * c)
    for b in (1, 8) for c in (512, 2048)
] + [
    _record("qmatmul", "trn2", batch=b, context=None, latency_s=5e-5, roofline_s=2e-5, jpt=1e-3 / b,
            projection="qkv")
    for b in (1, 8, 32)
]


def _axes(records, **kwargs):
    """The panels of a trn2 sweep figure (closed at once: its artists stay readable)."""
    fig = sweep_figure(records, ["trn2"], **kwargs)
    plt.close(fig)
    return fig.axes


def _dashed(ax):
    return [line for line in ax.get_lines() if line.get_linestyle() == "--" and len(line.get_xdata())]


def test_latency_vs_context_draws_each_batch_bound_dashed_in_its_color():
    (ax,) = _axes(RECORDS, x="context", energy=False)
    batch_of_color = {line.get_color(): int(line.get_label().split()[1])
                      for line in ax.get_lines() if line.get_linestyle() == "-"}
    assert sorted(batch_of_color.values()) == [1, 8]
    dashed = _dashed(ax)
    assert len(dashed) == 2
    for line in dashed:
        batch = batch_of_color[line.get_color()]
        assert list(line.get_xdata()) == [512, 2048]
        assert list(line.get_ydata()) == pytest.approx([4e-7 * batch * c * 1e6 for c in (512, 2048)])
    assert "[us]" in ax.get_ylabel() and "[tokens]" in ax.get_xlabel()
    assert "roofline bound" in " ".join(t.get_text() for t in ax.get_legend().get_texts())


def test_latency_vs_batch_bounds_every_series_in_numeric_order():
    (ax,) = _axes(RECORDS, x="batch", energy=False)
    labels = [line.get_label() for line in ax.get_lines() if line.get_linestyle() == "-"]
    assert labels == ["paged_attention ctx 512", "paged_attention ctx 2048", "qmatmul qkv"]  # numeric order
    assert len(_dashed(ax)) == 3
    assert "[sequences]" in ax.get_xlabel()


def test_energy_plots_carry_no_bound_and_name_their_unit():
    (ax,) = _axes(RECORDS, x="batch", energy=True)
    assert _dashed(ax) == []
    assert "[J/token]" in ax.get_ylabel()


def test_a_series_without_a_stored_bound_gets_no_dashed_line():
    records = [dict(r, perf={k: v for k, v in r["perf"].items() if k != "roofline_s"}) for r in RECORDS]
    (ax,) = _axes(records, x="context", energy=False)
    assert _dashed(ax) == [] and not any(line.get_linestyle() == "--" for line in ax.get_lines())


def test_nothing_to_draw_and_bad_axis(tmp_path):
    assert sweep_plot(RECORDS, ["trn3"], str(tmp_path / "x.png"), x="context", energy=False) is None
    with pytest.raises(ValueError, match="x: must be one of"):
        sweep_figure(RECORDS, ["trn2"], x="layers", energy=False)


def test_write_plots_names_the_files_it_wrote(tmp_path):
    names = write_plots(RECORDS, str(tmp_path))
    assert set(names) == {"roofline_trn2.png", "latency_vs_batch.png", "latency_vs_context.png",
                          "energy_vs_batch.png", "energy_vs_context.png"}
    assert all((tmp_path / n).stat().st_size > 1000 for n in names)
