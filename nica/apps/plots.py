"""Figures for fits and experiments (matplotlib, Agg), each readable at 100% zoom.

- :func:`plot_sources`: every true source against its matched, sign-corrected recovered one.
- :func:`plot_fit_phases`: a fit's NLL per epoch, restarts and each candidate depth's main fit.
- :func:`plot_scatter_by_model`: true vs recovered sources, one row per model.
- :func:`plot_mcc_seeds`: every seed's MCC per setting and model, the median marked.
- :func:`plot_training_curves`: training (dashed) and validation (solid) NLL per epoch.
- :func:`plot_reliability`: each component's matched ``|corr|`` across seeds (``nica.stability``).

Every PNG is written atomically (unique temporary file + ``os.replace``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from nica.core.metrics import mean_correlation_coefficient  # noqa: E402
from nica.util.files import save_figure  # noqa: E402

if TYPE_CHECKING:
    from nica.fitting.fitted import FittedModel
    from nica.fitting.stability import Stability

__all__ = [
    "NLL_AXIS",
    "plot_fit_phases",
    "plot_matched_scatter",
    "plot_mcc_seeds",
    "plot_reliability",
    "plot_scatter_by_model",
    "plot_sources",
    "plot_training_curves",
    "source_grid",
]

_DPI = 110

#: The y label of every NLL figure of a fit (``nica fit`` records NLLs in x's units).
NLL_AXIS = "NLL (nats per sample, units of x)"


def _save(fig, path: str | os.PathLike) -> Path:
    """Saves ``fig`` to ``path`` atomically (``nica.util.files.save_figure``) and closes it."""
    try:
        return save_figure(fig, path, dpi=_DPI)
    finally:
        plt.close(fig)


def plot_scatter_by_model(
    panels: dict[str, tuple],
    path: str | os.PathLike,
    *,
    title: str = "",
    max_sources: int = 6,
    max_points: int = 2000,
) -> Path:
    """Scatter of each true source against its matched recovered source, one row per model.

    Args:
      panels: model name -> ``(s_true, s_hat, matching, correlations)`` with ``s_true`` and
        ``s_hat`` of shape ``(N, D)``, ``matching`` ``(D,)`` (recovered index of each true
        component) and ``correlations`` ``(D,)`` (matched correlations, shown as ``r``).
      path: where to write the PNG.
      title: figure title (above the panel titles, never over them).
      max_sources: columns shown (the first sources; the title says when some are left out).
      max_points: points drawn per panel (an evenly spaced subset).
    """
    dim = max(p[0].shape[1] for p in panels.values())
    cols = min(dim, max_sources)
    if cols < dim:
        title = f"{title} (first {cols} of {dim} sources)"
    fig, axes = plt.subplots(
        len(panels), cols, figsize=(2.3 * cols + 0.4, 2.3 * len(panels) + 0.5), squeeze=False,
        layout="constrained",
    )  # fmt: skip
    for row, (model, (s, s_hat, matching, corr)) in zip(axes, panels.items(), strict=True):
        step = max(1, s.shape[0] // max_points)
        for i, ax in enumerate(row):
            j = int(matching[i])
            ax.scatter(s[::step, i], s_hat[::step, j], s=3, alpha=0.35, linewidths=0)
            ax.set_title(f"{model}: r = {corr[i]:+.3f}", fontsize=9)
            ax.set_xlabel(f"true s{_sub(i)}", fontsize=9)
            ax.set_ylabel(f"recovered ŝ{_sub(j)}", fontsize=9)
            ax.tick_params(labelsize=7)
    fig.suptitle(title or "True vs recovered sources", fontsize=11)
    return _save(fig, path)


def _sub(i: int) -> str:
    """``i`` as Unicode subscript digits (``12`` -> ``₁₂``)."""
    return str(i).translate(str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉"))


def plot_sources(
    s_true: np.ndarray,
    s_hat: np.ndarray,
    path: str | os.PathLike,
    *,
    correlation: str = "pearson",
    columns: int = 6,
    max_points: int = 2000,
    title: str = "",
) -> Path:
    """Every true source against its matched recovered source, signed so that every panel rises.

    The sources are matched by :func:`nica.mean_correlation_coefficient` (Hungarian matching on
    ``|corr|``); each recovered source is multiplied by the sign of its matched correlation
    (its y label then reads ``-ŝ``), so each panel's ``r`` is ``|corr| >= 0``. Panels are in
    true-source order, in rows of ``columns``: all ``D`` sources are shown (50 sources, 6
    columns: 9 rows) and the figure grows with the rows.

    Args:
      s_true: true sources, shape ``(N, D)``.
      s_hat: recovered sources, shape ``(N, D)`` (any order, sign and scale).
      path: where to write the PNG.
      correlation: ``"pearson"`` or ``"spearman"`` (matching, ``r`` and the title's MCC).
      columns: panels per row (at least 1).
      max_points: points drawn per panel (an evenly spaced subset of the rows).
      title: what the sources are of; the title adds the MCC.

    Returns:
      ``path`` as a :class:`~pathlib.Path`.

    Raises:
      ValueError: one line, when the shapes differ or are not ``(N, D)``, ``columns < 1``, or
        the correlation is unknown.
    """
    s_true, s_hat = np.asarray(s_true), np.asarray(s_hat)
    if s_true.ndim != 2 or s_true.shape != s_hat.shape:
        raise ValueError(
            f"plot_sources needs s_true and s_hat of one shape (N, D), got {s_true.shape}"
            f" and {s_hat.shape}"
        )
    matched = mean_correlation_coefficient(s_true, s_hat, method=correlation)
    head = title or "True vs recovered sources"
    heading = f"{head} ({correlation.capitalize()} MCC {matched.mcc:.3f})"
    return _draw_sources(
        s_true, s_hat, matched.matching, matched.correlations, path,
        heading=heading, columns=columns, max_points=max_points,
    )  # fmt: skip


def source_grid(dim: int, columns: int) -> tuple[int, int]:
    """``(rows, columns)`` of :func:`plot_sources`' panels: ``dim`` panels in rows of at most
    ``columns`` (ValueError when ``columns < 1``)."""
    if columns < 1:
        raise ValueError(f"columns must be at least 1, got {columns}")
    return -(-dim // columns), min(dim, columns)


def _draw_sources(
    s, s_hat, matching, correlations, path, *, heading, columns, max_points, label=""
):
    """:func:`plot_sources` with its matching given: ``s``, ``s_hat`` ``(N, D)``,
    ``matching``, ``correlations`` ``(D,)`` (signed); ``label`` prefixes each panel's ``r``."""
    rows, cols = source_grid(s.shape[1], columns)
    fig, axes = plt.subplots(
        rows, cols, figsize=(2.3 * cols + 0.4, 2.3 * rows + 0.5), squeeze=False,
        layout="constrained",
    )  # fmt: skip
    shown = np.unique(np.linspace(0, s.shape[0] - 1, min(s.shape[0], max_points)).astype(int))
    prefix = f"{label}: " if label else ""
    for i, ax in enumerate(axes.flat):
        if i >= s.shape[1]:
            ax.remove()  # the last row's empty places
            continue
        j, sign = int(matching[i]), -1.0 if correlations[i] < 0 else 1.0
        ax.scatter(s[shown, i], sign * s_hat[shown, j], s=3, alpha=0.35, linewidths=0)
        ax.set_title(f"{prefix}r = {sign * correlations[i]:+.3f}", fontsize=9)
        ax.set_xlabel(f"true s{_sub(i)}", fontsize=9)
        ax.set_ylabel(f"recovered {'−' if sign < 0 else ''}ŝ{_sub(j)}", fontsize=9)
        ax.tick_params(labelsize=7)
    fig.suptitle(heading, fontsize=11)
    return _save(fig, path)


def plot_matched_scatter(
    s_true: np.ndarray,
    s_hat: np.ndarray,
    matching: np.ndarray,
    correlations: np.ndarray,
    path: str | os.PathLike,
    *,
    title: str = "",
    label: str = "fit",
    max_points: int = 2000,
    columns: int = 6,
) -> Path:
    """:func:`plot_sources` with the matching given (``nica fit``'s ``scatter.png``): all
    sources, each recovered one signed by its correlation, ``label: r = ...`` per panel.

    Args:
      s_true, s_hat: ``(N, D)``. matching: ``(D,)``, the column of ``s_hat`` matched to each
        true source. correlations: ``(D,)``, the matched (signed) correlations.
      path: where to write the PNG. title: the figure's title. label: the model, per panel.
      max_points, columns: as in :func:`plot_sources`.
    """
    heading = title or "True vs recovered sources"
    return _draw_sources(
        np.asarray(s_true), np.asarray(s_hat), np.asarray(matching), np.asarray(correlations),
        path, heading=heading, columns=columns, max_points=max_points, label=label,
    )  # fmt: skip


def plot_mcc_seeds(
    mcc: dict[tuple[str, str], list[float]],
    settings: list[str],
    models: list[str],
    path: str | os.PathLike,
    *,
    sweep: str = "setting",
) -> Path:
    """Every seed's MCC as a (jittered) point per setting and model, the median as a bar.

    Args:
      mcc: ``(setting, model)`` -> the seeds' Pearson MCCs, shape ``(seeds,)`` (may be empty).
      settings: x-axis order. models: offset order within a setting, one colour each.
      path: where to write the PNG. sweep: x-axis label.
    """
    fig, ax = plt.subplots(figsize=(max(4.5, 1.3 * len(settings) + 2.5), 3.8), layout="constrained")
    jitter = np.random.default_rng(0)  # fixed: the same data draw the same figure
    width = 0.8 / len(models)
    for k, model in enumerate(models):
        colour = f"C{k}"
        for x, setting in enumerate(settings):
            values = np.asarray(mcc.get((setting, model), []), float)
            if values.size == 0:
                continue
            centre = x - 0.4 + width * (k + 0.5)
            xs = centre + jitter.uniform(-0.25, 0.25, values.size) * width
            ax.scatter(xs, values, s=18, color=colour, alpha=0.7, linewidths=0)
            ax.hlines(np.median(values), centre - 0.4 * width, centre + 0.4 * width, colors=colour)
        ax.scatter([], [], s=18, color=colour, label=model)
    ax.plot([], [], color="0.3", label="median")
    ax.set_xticks(
        range(len(settings)), settings, rotation=30 if sum(map(len, settings)) > 40 else 0
    )
    ax.set(xlabel=sweep, ylabel="Pearson MCC (one point per seed)", ylim=(0, 1.02))
    ax.set_xlim(-0.5, len(settings) - 0.5)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))  # off the points
    return _save(fig, path)


def plot_training_curves(
    curves: dict[str, dict],
    path: str | os.PathLike,
    *,
    title: str = "",
    units: str = "nats per sample, units of x",
) -> Path:
    """Validation (solid) and training (dashed) NLL against epoch for one or more fits.

    Args:
      curves: label -> history dict with ``epoch``, ``val_nll`` and ``train_nll`` lists
        (equal lengths; the first record, before any step, is not drawn).
      path: where to write the PNG.
      title: what the curves are of (e.g. ``"demo, seed 0"``).
      units: the unit of the NLLs, in the axis label.
    """
    fig, ax = plt.subplots(figsize=(5.5, 3.8), layout="constrained")
    handles = []
    for k, (label, history) in enumerate(curves.items()):
        epochs = np.asarray(history["epoch"])[1:]
        ax.plot(epochs, history["val_nll"][1:], color=f"C{k}")
        ax.plot(epochs, history["train_nll"][1:], "--", color=f"C{k}", alpha=0.7)
        handles.append(Line2D([], [], color=f"C{k}", label=label))
    handles.append(Line2D([], [], color="0.3", label="validation"))
    handles.append(Line2D([], [], color="0.3", linestyle="--", label="train"))
    ax.set(xlabel="epoch", ylabel=f"NLL ({units})")
    ax.set_title(f"Training curves: {title}" if title else "Training curves", fontsize=10)
    ax.legend(handles=handles, fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_fit_phases(fitted: FittedModel, path: str | os.PathLike, *, title: str = "") -> Path:
    """A fit's training curves, phase by phase: validation NLL (solid) and training NLL (dashed)
    against epoch.

    Left panel (with restarts): the short fit of each initialisation, thin and grey, the kept
    one in colour. Right panel: the main fit of each candidate depth (``depth L``, the kept one
    bold; one curve without a depth search), each started from its own kept restart. The first
    record of each run (epoch 0, before any step) is not drawn.

    Args:
      fitted: a :class:`nica.FittedModel` from a fit (its ``result``, ``restarts``,
        ``depth_search`` and ``histories``); NLLs in nats per sample in the units of ``x``.
      path: where to write the PNG.
      title: what was fitted (e.g. ``"ivae.npz, seed 0"``).

    Returns:
      ``path`` as a :class:`~pathlib.Path`.

    Raises:
      ValueError: ``fitted`` keeps no training record (a model from :func:`nica.load`).
    """
    restarts, kept_restart, mains, kept, restart_depth = _fit_phases(fitted)
    fig, axes = plt.subplots(
        1, 2 if restarts else 1, figsize=(9.0 if restarts else 5.8, 4.0), sharey=True,
        squeeze=False, layout="constrained", width_ratios=[1, 2] if restarts else None,
    )  # fmt: skip
    if restarts:
        colour = "C0" if restart_depth != mains[kept][0] else f"C{kept}"
        _draw_restarts(axes[0, 0], restarts, kept_restart, colour=colour, depth=restart_depth)
    _draw_main_fits(axes[0, -1], mains, kept, numbered=bool(restarts))
    axes[0, 0].set_ylabel(NLL_AXIS)
    fig.suptitle(f"Training curves: {title}" if title else "Training curves", fontsize=11)
    return _save(fig, path)


def _fit_phases(fitted: FittedModel) -> tuple[list[dict], int | None, list[tuple], int, int]:
    """``(restart histories, kept restart or None, [(depth label, main-fit history)], kept
    index, the restarts' depth)`` of a fit (``[]`` restarts without a restart phase; one depth
    without a search; a warm start's fit first, the restarts then being its own)."""
    if fitted.result is None:
        raise ValueError(
            "plot_fit_phases: this model keeps no training record (nica.load restores the model"
            " only); plot the FittedModel that nica.fit returned"
        )
    histories = fitted.histories or {}
    restarts = list(histories.get("restarts") or [])
    kept_restart = int(fitted.restarts["chosen"]) if restarts and fitted.restarts else None
    search = fitted.depth_search
    if search is not None and histories.get("depths"):
        mains = list(zip(search["depths"], histories["depths"], strict=True))
        kept = list(search["depths"]).index(search["chosen"])
    else:
        mains, kept = [(fitted.config.model.depth, fitted.result.history)], 0
    warm = histories.get("warm_start")
    if warm is None:
        return restarts, kept_restart, mains, kept, mains[kept][0]
    return restarts, kept_restart, [("1 (warm start)", warm), *mains], kept + 1, 1


def _curve(ax, history: dict, *, colour, width: float, alpha: float = 1.0) -> None:
    """One run's validation (solid) and training (dashed) NLL, from its first step on."""
    epochs = np.asarray(history["epoch"])[1:]
    few = epochs.size < 3  # a line of one point would not show: mark the points
    style = dict(color=colour, linewidth=width, markersize=4)
    ax.plot(epochs, history["val_nll"][1:], "-", marker="o" if few else None, alpha=alpha, **style)
    train = dict(marker="x" if few else None, alpha=0.7 * alpha)
    ax.plot(epochs, history["train_nll"][1:], "--", **train, **style)


def _draw_restarts(ax, restarts: list[dict], kept: int | None, *, colour, depth) -> None:
    """The restart phase: every initialisation thin and grey, the ``kept`` one in colour."""
    for k, history in enumerate(restarts):
        if k != kept:
            _curve(ax, history, colour="0.55", width=0.8, alpha=0.8)
    if kept is not None:
        _curve(ax, restarts[kept], colour=colour, width=1.8)
    handles = [
        Line2D([], [], color=colour, linewidth=1.8, label=f"restart {kept} (kept)"),
        Line2D([], [], color="0.55", linewidth=0.8, label="other restarts"),
    ]
    ax.legend(handles=handles, fontsize=8)
    ax.set_title(f"1. restarts: {len(restarts)} initialisations (depth {depth})", fontsize=10)
    _epoch_axis(ax)


def _epoch_axis(ax) -> None:
    """x: ``epoch``, integer ticks from 0 (the phase's start)."""
    ax.set_xlabel("epoch")
    ax.set_xlim(left=0)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)


def _draw_main_fits(ax, mains: list[tuple], kept: int, *, numbered: bool) -> None:
    """The main fit of each candidate depth, the ``kept`` one bold; the line styles' legend."""
    handles = []
    for k, (depth, history) in enumerate(mains):
        width = 2.2 if k == kept and len(mains) > 1 else 1.2
        _curve(ax, history, colour=f"C{k}", width=width)
        label = f"depth {depth}" + (" (kept)" if k == kept and len(mains) > 1 else "")
        handles.append(Line2D([], [], color=f"C{k}", linewidth=width, label=label))
    handles.append(Line2D([], [], color="0.3", label="validation"))
    handles.append(Line2D([], [], color="0.3", linestyle="--", label="train"))
    ax.legend(handles=handles, fontsize=8)
    ax.set_title(f"{'2. ' if numbered else ''}main fit", fontsize=10)
    _epoch_axis(ax)


def plot_reliability(stability: Stability, path: str | os.PathLike) -> Path:
    """Each reference component's matched ``|corr|`` across the other fits, most reliable on top.

    One row per component of the reference fit (``nica.stability``): a bar to the median (the
    reliability) and a dot per other fit.

    Args:
      stability: a :class:`nica.Stability` (``reliability (D,)``, ``matched (R - 1, D)``,
        ``order (D,)``).
      path: where to write the PNG.
    """
    order, matched = np.asarray(stability.order), np.asarray(stability.matched)
    reliability = np.asarray(stability.reliability)
    dim = order.size
    fig, ax = plt.subplots(figsize=(6.5, 1.3 + 0.32 * dim), layout="constrained")
    rows = np.arange(dim)[::-1]  # the most reliable component at the top
    ax.barh(rows, reliability[order], height=0.6, color="C0", alpha=0.35)
    jitter = np.random.default_rng(0)  # fixed: the same data draw the same figure
    for row, component in zip(rows, order, strict=True):
        values = matched[:, component]
        ys = row + jitter.uniform(-0.18, 0.18, values.size)
        ax.scatter(values, ys, s=16, color="C0", alpha=0.8, linewidths=0)
    labels = [f"ŝ{_sub(int(c))}  {reliability[c]:.2f}" for c in order]
    ax.set_yticks(rows, labels, fontsize=8)
    ax.set(xlabel="matched |correlation| with the reference fit", xlim=(0, 1.02))
    ax.set_ylabel("component of the reference fit", fontsize=9)
    ax.set_ylim(-0.6, dim - 0.4)
    ax.grid(axis="x", alpha=0.3)
    fits = len(stability.seeds)
    how = "bootstrap resamples" if stability.bootstrap else "the same data"
    left_out = f", {stability.diverged} diverged" if stability.diverged else ""
    ax.set_title(
        f"Component reliability: {fits} fits on {how}{left_out}\n"
        f"reference: seed {stability.seeds[stability.reference]} ({stability.correlation})",
        fontsize=10,
    )
    handles = [
        Patch(color="C0", alpha=0.35, label="median (reliability)"),
        Line2D([], [], marker="o", linestyle="", color="C0", markersize=4, label="one other fit"),
    ]
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    return _save(fig, path)
