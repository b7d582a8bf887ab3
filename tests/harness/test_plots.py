"""Plots a person can read: one panel per kernel and target, few lines per panel, batch ticks at the batches
modeled, each latency line's roofline bound from the stored records, labelled roofline points, LNC in every title
and "one layer" on the energy plots."""

import matplotlib.pyplot as plt
import pytest

from nkilab.harness.report.plots import roofline_figure, sweep_figure, sweep_plot, write_plots


def _record(kernel, target, *, batch, context, latency_s, roofline_s, jpt, projection=None, phase="decode",
            name=None):
    problem = {"phase": phase, "context": context, "num_seqs": batch, "m": batch, "t": batch,
               "name": name or f"llama-3.1-8b/{phase}/{kernel}/b{batch}-ctx{context}"}
    if projection:
        problem["projection"] = projection
    return {"kernel": kernel, "target": target, "status": "ok", "stage": "model", "lnc": 2, "problem": problem,
            "perf": {"kind": "modeled", "latency_s": latency_s, "roofline_s": roofline_s, "flops": 1e9 * batch,
                     "hbm_bytes": 1e8, "lnc": 2},
            "energy": {"kind": "modeled", "joules_per_token": jpt}}


RECORDS = [
    _record("paged_attention", "trn2", batch=b, context=c, latency_s=1e-6 * b * c, roofline_s=4e-7 * b * c,
            jpt=1e-4 * c)
    for b in (1, 8) for c in (512, 2048)
] + [
    _record("qmatmul", "trn2", batch=b, context=None, latency_s=5e-5, roofline_s=2e-5, jpt=1e-3 / b,
            projection=proj, name=f"llama-3.1-8b/decode/qmatmul/{proj}-m{b}")
    for b in (1, 8, 32) for proj in ("qkv", "o")
]


def _axes(records, targets=("trn2",), **kwargs):
    """The visible panels of a sweep figure (closed at once: its artists stay readable)."""
    fig = sweep_figure(records, list(targets), **kwargs)
    plt.close(fig)
    return [ax for ax in fig.axes if ax.get_visible()]


def _solid(ax):
    return [line for line in ax.get_lines() if line.get_linestyle() == "-" and len(line.get_xdata())]


def _dashed(ax):
    return [line for line in ax.get_lines() if line.get_linestyle() == "--" and len(line.get_xdata())]


def test_each_kernel_gets_its_own_panel_with_only_its_lines():
    axes = _axes(RECORDS, x="batch", energy=False)
    titles = [ax.get_title() for ax in axes]
    assert titles == ["qmatmul on trn2 (LNC=2)", "paged_attention on trn2 (LNC=2)"]  # rows in OPS order
    qmatmul, paged = axes
    assert [line.get_label() for line in _solid(qmatmul)] == ["qmatmul o", "qmatmul qkv"]
    assert [line.get_label() for line in _solid(paged)] == ["paged_attention ctx 512", "paged_attention ctx 2048"]
    for ax in axes:
        assert len(_dashed(ax)) == len(_solid(ax))  # every line has its bound, dashed in its colour
        assert {line.get_color() for line in _dashed(ax)} == {line.get_color() for line in _solid(ax)}


def test_batch_ticks_sit_at_the_batches_modeled():
    qmatmul, paged = _axes(RECORDS, x="batch", energy=False)
    assert list(qmatmul.get_xticks()) == [1, 8, 32]
    assert [t.get_text() for t in qmatmul.get_xticklabels()] == ["1", "8", "32"]
    assert list(paged.get_xticks()) == [1, 8]
    assert "[sequences]" in paged.get_xlabel()


def test_latency_vs_context_draws_each_batch_bound_dashed_in_its_color():
    (ax,) = _axes(RECORDS, x="context", energy=False)
    batch_of_color = {line.get_color(): int(line.get_label().split()[1]) for line in _solid(ax)}
    assert sorted(batch_of_color.values()) == [1, 8]
    dashed = _dashed(ax)
    assert len(dashed) == 2
    for line in dashed:
        batch = batch_of_color[line.get_color()]
        assert list(line.get_xdata()) == [512, 2048]
        assert list(line.get_ydata()) == pytest.approx([4e-7 * batch * c * 1e6 for c in (512, 2048)])
    assert list(ax.get_xticks()) == [512, 2048]
    assert "[us]" in ax.get_ylabel() and "[tokens]" in ax.get_xlabel()
    assert "roofline bound" in " ".join(t.get_text() for t in ax.get_legend().get_texts())


def test_panels_per_target_share_a_row():
    records = RECORDS + [dict(r, target="inf2", lnc=1, perf=dict(r["perf"], lnc=1)) for r in RECORDS]
    axes = _axes(records, targets=("inf2", "trn2"), x="batch", energy=False)
    assert [ax.get_title() for ax in axes] == ["qmatmul on inf2 (LNC=1)", "qmatmul on trn2 (LNC=2)",
                                              "paged_attention on inf2 (LNC=1)", "paged_attention on trn2 (LNC=2)"]


def test_energy_plots_say_one_layer_carry_no_bound_and_name_their_unit():
    fig = sweep_figure(RECORDS, ["trn2"], x="batch", energy=True)
    plt.close(fig)
    assert "one layer" in fig._suptitle.get_text()
    for ax in fig.axes:
        assert _dashed(ax) == []
    assert "one layer [J/token]" in fig.axes[0].get_ylabel()


def test_roofline_points_are_labelled_with_their_problem():
    fig = roofline_figure(RECORDS, "trn2")
    plt.close(fig)
    (ax,) = fig.axes
    labels = sorted(t.get_text() for t in ax.texts)
    assert labels == sorted(r["problem"]["name"].rsplit("/", 1)[-1] for r in RECORDS)
    assert "LNC=2" in ax.get_title()
    assert "qmatmul (decode)" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_a_series_without_a_stored_bound_gets_no_dashed_line():
    records = [dict(r, perf={k: v for k, v in r["perf"].items() if k != "roofline_s"}) for r in RECORDS]
    (ax,) = _axes(records, x="context", energy=False)
    assert _dashed(ax) == []


def test_nothing_to_draw_and_bad_axis(tmp_path):
    assert sweep_plot(RECORDS, ["trn3"], str(tmp_path / "x.png"), x="context", energy=False) is None
    with pytest.raises(ValueError, match="x: must be one of"):
        sweep_figure(RECORDS, ["trn2"], x="layers", energy=False)


def test_write_plots_names_the_files_it_wrote_and_reports_progress(tmp_path):
    seen = []
    names = write_plots(RECORDS, str(tmp_path), on_plot=seen.append)
    assert set(names) == {"roofline_trn2.png", "latency_vs_batch.png", "latency_vs_context.png",
                          "energy_vs_batch.png", "energy_vs_context.png"}
    assert seen == ["roofline_trn2.png", "latency_vs_batch.png", "latency_vs_context.png", "energy_vs_batch.png",
                    "energy_vs_context.png"]
    assert all((tmp_path / n).stat().st_size > 1000 for n in names)
