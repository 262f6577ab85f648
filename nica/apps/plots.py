"""Figures for fits and experiments (matplotlib, Agg), each readable at 100% zoom.

- :func:`plot_scatter_by_model`: true vs recovered sources, one row per model.
- :func:`plot_mcc_seeds`: every seed's MCC per setting and model, the median marked.
- :func:`plot_training_curves`: training (dashed) and validation (solid) NLL per epoch.

Every PNG is written atomically (unique temporary file + ``os.replace``).
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from nica.util.files import save_figure  # noqa: E402

__all__ = [
    "plot_matched_scatter",
    "plot_mcc_seeds",
    "plot_scatter_by_model",
    "plot_training_curves",
]

_DPI = 110


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
) -> Path:
    """One model's row of :func:`plot_scatter_by_model` (``s_true``, ``s_hat``: ``(N, D)``;
    ``matching``, ``correlations``: ``(D,)``)."""
    panels = {label: (s_true, s_hat, matching, correlations)}
    return plot_scatter_by_model(panels, path, title=title, max_points=max_points)


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
