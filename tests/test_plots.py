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


def _recovered(dim, n=300):
    """True sources ``(n, dim)`` and a noisy, permuted, partly sign-flipped copy of them."""
    rng = np.random.default_rng(dim)
    s = rng.laplace(size=(n, dim))
    signs = np.where(np.arange(dim) % 2 == 0, -1.0, 1.0)
    return s, (s * signs)[:, rng.permutation(dim)] + 0.3 * rng.normal(size=(n, dim))


@pytest.mark.parametrize(("dim", "rows"), [(2, 1), (13, 3)])
def test_sources_show_every_source_in_order_each_signed_to_rise(figures, tmp_path, dim, rows):
    """All D panels (13 sources: rows of 6, 6, 1), in true-source order, every ``r`` and every
    panel's own correlation positive, flipped sources labelled ``−ŝ``."""
    s, s_hat = _recovered(dim)
    plots.plot_sources(s, s_hat, tmp_path / "s.png", title="demo")
    (fig,) = figures
    assert plots.source_grid(dim, 6) == (rows, min(dim, 6))
    assert len(fig.axes) == dim
    assert len({round(ax.get_position().y0, 3) for ax in fig.axes}) == rows
    assert [ax.get_xlabel() for ax in fig.axes] == [f"true s{plots._sub(i)}" for i in range(dim)]
    shown = [float(ax.get_title().removeprefix("r = ")) for ax in fig.axes]
    assert all(r > 0.9 for r in shown)
    for ax in fig.axes:
        (points,) = [c for c in ax.collections if isinstance(c, PathCollection)]
        assert np.corrcoef(points.get_offsets().T)[0, 1] > 0.9
    flipped = ["−ŝ" in ax.get_ylabel() for ax in fig.axes]
    assert any(flipped) and not all(flipped)
    assert "demo" in fig._suptitle.get_text() and "MCC" in fig._suptitle.get_text()
    _assert_readable(fig)


def test_more_sources_make_a_taller_figure(figures, tmp_path):
    """Rows of 6 (50 sources: 9 rows), each as tall as a row of a 6-source figure."""
    assert plots.source_grid(50, 6) == (9, 6) and plots.source_grid(6, 6) == (1, 6)
    for dim in (6, 19):
        plots.plot_sources(*_recovered(dim, n=50), tmp_path / f"{dim}.png")
    six, nineteen = figures
    assert len(nineteen.axes) == 19
    assert nineteen.get_size_inches()[1] > 3 * six.get_size_inches()[1]
    assert nineteen.get_size_inches()[0] == six.get_size_inches()[0]


def test_sources_of_different_shapes_are_one_line(tmp_path):
    s, s_hat = _recovered(3)
    with pytest.raises(ValueError, match=r"^plot_sources needs .* one shape \(N, D\)[^\n]*$"):
        plots.plot_sources(s, s_hat[:, :2], tmp_path / "s.png")
    assert not list(tmp_path.iterdir())


def test_matched_scatter_shows_all_sources_signed(figures, tmp_path):
    """``nica fit``'s scatter.png: every source (no "first 6 of"), each panel rising."""
    s, s_hat = _recovered(8)
    from nica.core.metrics import mean_correlation_coefficient

    matched = mean_correlation_coefficient(s, s_hat)
    plots.plot_matched_scatter(
        s, s_hat, matched.matching, matched.correlations, tmp_path / "s.png", label="fastica"
    )
    (fig,) = figures
    assert len(fig.axes) == 8
    assert all(ax.get_title().startswith("fastica: r = +") for ax in fig.axes)


@pytest.fixture(scope="module")
def searched():
    """A tiny fit with a restart phase and a depth search, and what it was fitted on."""
    import nica
    from synthetic import make_preset

    data = make_preset("tiny", 0)
    small = dict(epochs=4, restarts=2, eval_every=1, progress=None)
    return nica.fit(data.x, data.u, depth=[1, 2], **small), data, small


def _curves(history):
    """A history's numbers as one ``(3, records)`` array (not its wall times)."""
    return np.array([history[k] for k in ("epoch", "train_nll", "val_nll")])


def test_a_fit_records_each_restart_and_each_depths_main_fit(searched):
    """Two restarts of ``restart_epochs`` epochs and two depths' main fits of 4 epochs, whose
    best validation NLLs are the ones the fit chose by."""
    fitted, _, _ = searched
    restarts, mains = fitted.histories["restarts"], fitted.histories["depths"]
    epochs = fitted.config.resolve().restart_epochs
    assert [h["epoch"] for h in restarts] == [list(range(epochs + 1))] * 2
    assert [h["epoch"] for h in mains] == [list(range(5))] * 2
    best = [min(h["val_nll"]) for h in restarts]
    assert best == fitted.restarts["val_nll"]
    assert fitted.restarts["chosen"] == int(np.argmin(best))
    assert [min(h["val_nll"]) for h in mains] == fitted.depth_search["val_nll"]
    kept = fitted.depth_search["depths"].index(fitted.depth_search["chosen"])
    assert mains[kept] == fitted.result.history
    assert set(fitted.depth_search) == {"depths", "val_nll", "chosen"}  # as before


def test_recording_the_phases_changes_no_fit(searched):
    """Each depth's record is that depth's own fit, restarts included, number for number."""
    import nica

    fitted, data, small = searched
    for depth, main in zip(fitted.depth_search["depths"], fitted.histories["depths"], strict=True):
        alone = nica.fit(data.x, data.u, depth=depth, **small)
        np.testing.assert_array_equal(_curves(alone.result.history), _curves(main))
        if depth == fitted.depth_search["chosen"]:
            assert alone.restarts == fitted.restarts
            for mine, theirs in zip(
                alone.histories["restarts"], fitted.histories["restarts"], strict=True
            ):
                np.testing.assert_array_equal(_curves(mine), _curves(theirs))
            np.testing.assert_array_equal(alone.transform(data.x), fitted.transform(data.x))


def test_fit_phases_show_restarts_and_each_depth(figures, searched, tmp_path):
    fitted, _, _ = searched
    plots.plot_fit_phases(fitted, tmp_path / "t.png", title="tiny")
    (fig,) = figures
    restarts, main = fig.axes
    assert restarts.get_title().startswith("1. restarts: 2 initialisations")
    assert main.get_title() == "2. main fit"
    assert len(restarts.get_lines()) == 4 and len(main.get_lines()) == 4  # val + train each
    legend = [t.get_text() for t in main.get_legend().get_texts()]
    chosen = fitted.depth_search["chosen"]
    other = ({1, 2} - {chosen}).pop()
    depths = [f"depth {d}" + (" (kept)" if d == chosen else "") for d in (1, 2)]
    assert legend == depths + ["validation", "train"]
    widths = {t.get_text(): h.get_linewidth() for t, h in zip(
        main.get_legend().get_texts(), main.get_legend().legend_handles, strict=True
    )}  # fmt: skip
    assert widths[f"depth {chosen} (kept)"] > widths[f"depth {other}"]
    kept = fitted.restarts["chosen"]
    assert [t.get_text() for t in restarts.get_legend().get_texts()][0] == f"restart {kept} (kept)"
    assert restarts.get_ylabel() == "NLL (nats per sample, units of x)"
    assert restarts.get_xlabel() == main.get_xlabel() == "epoch"
    _assert_readable(fig)


def test_fit_phases_of_a_warm_start_show_the_linear_fit_first(figures, searched, tmp_path):
    import nica

    _, data, small = searched
    warm = nica.fit(data.x, data.u, depth=[2, 3], warm_start="linear", **small)
    plots.plot_fit_phases(warm, tmp_path / "t.png")
    (fig,) = figures
    restarts, main = fig.axes
    assert restarts.get_title() == "1. restarts: 2 initialisations (depth 1)"
    legend = [t.get_text() for t in main.get_legend().get_texts()]
    chosen = warm.depth_search["chosen"]
    depths = [f"depth {d}" + (" (kept)" if d == chosen else "") for d in (2, 3)]
    assert legend == ["depth 1 (warm start)", *depths, "validation", "train"]
    assert len(main.get_lines()) == 6  # the linear fit's and each depth's val + train


def test_fit_phases_without_restarts_or_search_is_one_panel(figures, searched, tmp_path):
    import dataclasses

    fitted, _, _ = searched
    plain = dataclasses.replace(fitted, restarts=None, depth_search=None, histories=None)
    plots.plot_fit_phases(plain, tmp_path / "t.png")
    (fig,) = figures
    (ax,) = fig.axes
    assert ax.get_title() == "main fit" and ax.get_ylabel().startswith("NLL (nats per sample")
    assert [t.get_text() for t in ax.get_legend().get_texts()][
        0
    ] == f"depth {plain.config.model.depth}"


def test_fit_phases_of_a_loaded_model_is_one_line(searched, tmp_path):
    import nica

    fitted, _, _ = searched
    loaded = nica.load(fitted.save(tmp_path / "fit"))
    with pytest.raises(ValueError, match="no training record"):
        plots.plot_fit_phases(loaded, tmp_path / "t.png")


def test_new_figures_are_written_whole(searched, tmp_path):
    fitted, data, _ = searched
    written = [
        plots.plot_fit_phases(fitted, tmp_path / "phases.png"),
        plots.plot_sources(data.s, fitted.transform(data.x), tmp_path / "sources.png"),
    ]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in written)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["phases.png", "sources.png"]
