"""Figures, checked as a reader would: labels, legends, titles that do not overprint, font sizes
readable at 100% zoom, the seeds and their median shown, files written atomically."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.collections import LineCollection, PathCollection

from nica.apps import plots

MIN_FONT_PT = 7  # at the figures' 110 dpi, about 11 pixels


@pytest.fixture
def figures(monkeypatch):
    """Keeps each figure open (instead of saving it) so a test can inspect it."""
    kept = []

    def keep(fig, path):
        fig.canvas.draw()
        kept.append(fig)
        return path

    monkeypatch.setattr(plots, "_save", keep)
    yield kept
    for fig in kept:
        plt.close(fig)


def _panels(models=("conditional", "unconditional", "fastica"), n=200, dim=3):
    rng = np.random.default_rng(0)
    s = rng.normal(size=(n, dim))
    matching = np.arange(dim)[::-1]
    return {m: (s, s[:, matching], matching, np.full(dim, 0.9)) for m in models}


def _texts(fig):
    return [t for t in fig.findobj(plt.Text) if t.get_text() and t.get_visible()]


def _assert_readable(fig):
    small = [
        (t.get_text(), t.get_fontsize()) for t in _texts(fig) if t.get_fontsize() < MIN_FONT_PT
    ]
    assert not small, small


def test_scatter_has_a_row_per_model_and_labelled_axes(figures, tmp_path):
    plots.plot_scatter_by_model(_panels(), tmp_path / "s.png", title="demo, seed 0")
    (fig,) = figures
    axes = np.array(fig.axes).reshape(3, 3)
    assert [ax.get_title().split(":")[0] for ax in axes[:, 0]] == [
        "conditional",
        "unconditional",
        "fastica",
    ]
    assert [ax.get_xlabel() for ax in axes[0]] == ["true s₀", "true s₁", "true s₂"]
    assert [ax.get_ylabel() for ax in axes[0]] == ["recovered ŝ₂", "recovered ŝ₁", "recovered ŝ₀"]
    assert all("r = +0.900" in ax.get_title() for ax in axes.flat)
    _assert_readable(fig)


def test_scatter_title_sits_above_the_panel_titles(figures, tmp_path):
    plots.plot_scatter_by_model(_panels(dim=2), tmp_path / "s.png", title="a long figure title")
    (fig,) = figures
    renderer = fig.canvas.get_renderer()
    suptitle = fig._suptitle.get_window_extent(renderer)
    highest_panel_title = max(ax.title.get_window_extent(renderer).y1 for ax in fig.axes)
    assert suptitle.y0 >= highest_panel_title


def test_scatter_of_many_sources_says_which_are_shown(figures, tmp_path):
    plots.plot_scatter_by_model(_panels(("fit",), dim=10), tmp_path / "s.png", title="x")
    (fig,) = figures
    assert len(fig.axes) == 6 and "first 6 of 10 sources" in fig._suptitle.get_text()


def test_mcc_figure_shows_every_seed_and_marks_the_median(figures, tmp_path):
    mcc = {("a", "conditional"): [0.9, 0.95, 0.99], ("a", "fastica"): [0.5, 0.7]}
    mcc[("b", "conditional")] = [0.2, 0.98, 0.97, 0.96]
    plots.plot_mcc_seeds(mcc, ["a", "b"], ["conditional", "fastica"], tmp_path / "m.png")
    (fig,) = figures
    (ax,) = fig.axes
    points = [c.get_offsets() for c in ax.collections if isinstance(c, PathCollection)]
    heights = sorted(float(y) for offsets in points for _, y in offsets)
    assert heights == sorted(v for values in mcc.values() for v in values)
    medians = [
        seg[0][1]
        for c in ax.collections
        if isinstance(c, LineCollection)
        for seg in c.get_segments()
    ]
    assert sorted(medians) == sorted(float(np.median(v)) for v in mcc.values())
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["conditional", "fastica", "median"]
    assert "seed" in ax.get_ylabel()
    _assert_readable(fig)


def test_training_curves_tell_train_from_validation(figures, tmp_path):
    history = {"epoch": [0, 1, 2], "train_nll": [np.nan, 3.0, 2.0], "val_nll": [4.0, 3.5, 2.5]}
    curves = {"conditional": history, "unconditional": history}
    plots.plot_training_curves(curves, tmp_path / "t.png", title="demo, seed 3")
    (fig,) = figures
    (ax,) = fig.axes
    legend = {
        t.get_text(): h
        for t, h in zip(ax.get_legend().get_texts(), ax.get_legend().legend_handles, strict=True)
    }
    assert set(legend) == {"conditional", "unconditional", "validation", "train"}
    assert legend["train"].get_linestyle() == "--" and legend["validation"].get_linestyle() == "-"
    styles = sorted(line.get_linestyle() for line in ax.get_lines())
    assert styles == ["-", "-", "--", "--"]
    assert "demo" in ax.get_title() and "seed 3" in ax.get_title()
    _assert_readable(fig)


def test_figures_are_written_whole_with_nothing_left_beside_them(tmp_path):
    path = plots.plot_matched_scatter(*_panels(("fit",))["fit"], tmp_path / "scatter.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["scatter.png"]
