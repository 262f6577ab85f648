"""The summary of the dynamics experiment (``experiments.dynamics``): final-NLL statistics per
(optimizer, gradient) and each relative mode's gaps to ``ordinary``, from :func:`run_all`'s
result (``experiments.dynamics_runs``).
"""

from __future__ import annotations

import numpy as np

from experiments.dynamics_runs import MODES, RELATIVE_MODES

#: A run has reached the global basin when its final NLL is within this of the best run's.
BASIN_TOLERANCE = 0.01


def _gap(a: float, b: float) -> float:
    """Relative gap ``|a - b| / |b|``."""
    return abs(a - b) / abs(b)


def _nan_stats(finals: np.ndarray) -> dict:
    """Mean, median and minimum of the finite final NLLs (``nan`` if none is finite)."""
    ok = np.isfinite(finals)
    pick = lambda f: float(f(finals[ok])) if ok.any() else float("nan")  # noqa: E731
    return {"mean": pick(np.mean), "median": pick(np.median), "min": pick(np.min)}


def _final_row(result, opt, g, curves, basin, stats) -> dict:
    """One (optimizer, gradient) row: final NLL statistics and convergence indicators."""
    epochs = result["epochs_recorded"][opt]
    tail = int(np.searchsorted(epochs, 0.9 * epochs[-1]))
    f = curves[:, -1]
    ok = np.isfinite(f)
    return {
        "optimizer": opt,
        "gradient": g,
        "learning_rate": result["learning_rates"][opt][g],
        "epochs": int(epochs[-1]),
        "initial_nll": float(np.mean(curves[:, 0])),
        "final_nll_mean": stats["mean"],
        "final_nll_std": float(np.std(f[ok])) if ok.any() else float("nan"),
        "final_nll_median": stats["median"],
        "final_nll_min": stats["min"],
        "in_global_basin": int(np.sum(basin)),
        "diverged": int(np.sum(~ok)),
        "inits": int(f.size),
        "grad_norm_median": float(np.nanmedian(result["grad_norms"][opt][g])),
        "last_10pct_change_max": float(np.nanmax(np.abs(curves[:, -1] - curves[:, tail]))),
    }


def _gap_row(opt, mode, finals, stats, basin) -> dict:
    """A relative mode against ``ordinary`` for one optimizer (tuned rates)."""
    rel, ordi = stats[mode], stats["ordinary"]
    paired = np.abs(finals[mode] - finals["ordinary"]) / np.abs(finals["ordinary"])
    both = basin[mode] & basin["ordinary"]
    return {
        "optimizer": opt,
        "gradient": mode,
        "mean_gap": _gap(rel["mean"], ordi["mean"]),
        "median_gap": _gap(rel["median"], ordi["median"]),
        "best_gap": _gap(rel["min"], ordi["min"]),
        "paired_gap_median": float(np.median(paired)),
        "paired_within_1pct": int(np.sum(paired < 0.01)),
        "same_basin": int(np.sum(basin[mode] == basin["ordinary"])),
        "both_in_global_basin": int(np.sum(both)),
        "paired_gap_max_both_global": float(np.max(paired[both])) if both.any() else None,
        "inits": int(paired.size),
    }


def _shared_rows(result: dict) -> list[dict]:
    """Each relative mode against ``ordinary`` at every shared rate of the grid."""
    shared = []
    for opt, by_grad in result["grid_finals"].items():
        for mode in RELATIVE_MODES:
            for lr in by_grad[mode]:
                rel, ordi = by_grad[mode][lr], by_grad["ordinary"][lr]
                paired = np.abs(rel - ordi) / np.abs(ordi)
                shared.append(
                    {
                        "optimizer": opt,
                        "gradient": mode,
                        "learning_rate": float(lr),
                        "relative_mean": float(np.mean(rel)),
                        "ordinary_mean": float(np.mean(ordi)),
                        "mean_gap": _gap(float(np.mean(rel)), float(np.mean(ordi))),
                        "paired_within_1pct": int(np.sum(paired < 0.01)),
                        "inits": int(paired.size),
                    }
                )
    return shared


def summarise(result: dict) -> tuple[list[dict], list[dict], list[dict]]:
    """Final-NLL rows per (optimizer, gradient), gap rows per optimizer, shared-rate rows.

    Gap and shared-rate rows compare each mode of :data:`RELATIVE_MODES` with ``ordinary``; the
    shared-rate rows do so at every rate of the grid (same rate for both, reported
    initialisations): mean final NLLs, their gap and the paired count < 1%.

    A diverged run has a ``nan`` final NLL; means, medians and minima skip it (and it is
    counted), a paired gap with it is ``nan``.
    """
    finals_all = [c[:, -1] for by in result["curves"].values() for c in by.values()]
    best = float(np.nanmin(np.concatenate(finals_all)))
    rows, gaps = [], []
    for opt, by_grad in result["curves"].items():
        finals = {g: by_grad[g][:, -1] for g in MODES}
        basin = {g: finals[g] <= best * (1 + BASIN_TOLERANCE) for g in MODES}
        stats = {g: _nan_stats(finals[g]) for g in MODES}
        rows += [_final_row(result, opt, g, by_grad[g], basin[g], stats[g]) for g in MODES]
        gaps += [_gap_row(opt, mode, finals, stats, basin) for mode in RELATIVE_MODES]
    return rows, gaps, _shared_rows(result)
