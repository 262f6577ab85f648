"""Figures: matched true-vs-recovered scatter grids and training curves (matplotlib, Agg)."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["plot_matched_scatter", "plot_training_curves"]


def _save(fig, path: str | os.PathLike) -> Path:
    path = Path(path)
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)
    return path


def plot_matched_scatter(
    s_true: np.ndarray,
    s_hat: np.ndarray,
    matching: np.ndarray,
    correlations: np.ndarray,
    path: str | os.PathLike,
    *,
    title: str = "",
    max_points: int = 3000,
) -> Path:
    """Scatter of each true source against its matched recovered source.

    Args:
      s_true: true sources, shape ``(N, D)``.
      s_hat: recovered sources, shape ``(N, D)``.
      matching: for each true component, the index of its recovered component, shape ``(D,)``.
      correlations: matched correlations, shape ``(D,)`` (shown in the panel titles).
      path: where to write the PNG.
      title: figure title.
      max_points: points drawn per panel (an evenly spaced subset).
    """
    dim = s_true.shape[1]
    cols = min(dim, 5)
    rows = -(-dim // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.5 * rows), squeeze=False)
    step = max(1, s_true.shape[0] // max_points)
    for i, ax in enumerate(axes.flat):
        if i >= dim:
            ax.axis("off")
            continue
        ax.scatter(s_true[::step, i], s_hat[::step, matching[i]], s=2, alpha=0.4)
        ax.set_title(f"s{i} vs ŝ{matching[i]}: r={correlations[i]:+.3f}", fontsize=8)
        ax.tick_params(labelsize=6)
    fig.suptitle(title or "true (x) vs recovered (y) sources", fontsize=10)
    return _save(fig, path)


def plot_training_curves(curves: dict[str, dict], path: str | os.PathLike) -> Path:
    """Validation (solid) and training (dashed) NLL against epoch for one or more fits.

    Args:
      curves: label -> history dict with ``epoch``, ``val_nll`` and ``train_nll`` lists.
      path: where to write the PNG.
    """
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for label, history in curves.items():
        epochs = np.asarray(history["epoch"])
        (line,) = ax.plot(epochs[1:], history["val_nll"][1:], label=f"{label} (val)")
        ax.plot(epochs[1:], history["train_nll"][1:], "--", color=line.get_color(), alpha=0.6)
    ax.set_xlabel("epoch")
    ax.set_ylabel("NLL per sample")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _save(fig, path)
