"""The outputs of the dynamics experiment (``experiments.dynamics``): the Markdown report, the
JSON record and the figure, from the runs (``experiments.dynamics_runs``) and their summary
(``experiments.dynamics_summary``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from experiments import harness
from experiments.dynamics_runs import LR_GRIDS, MODES, OPTIMIZERS
from experiments.dynamics_summary import BASIN_TOLERANCE

SUMMARY_COLUMNS = (
    "optimizer|gradient|lr|epochs|initial NLL|final NLL (mean +- std)|median|best"
    "|in global basin|diverged|median grad|last-10% change"
).split("|")


GAP_COLUMNS = (
    "optimizer|relative mode|mean gap|median gap|best-run gap|paired gap (median)"
    "|paired gap < 1%|same basin|both in global basin|max paired gap, both global"
).split("|")


SHARED_COLUMNS = (
    "optimizer|relative mode|shared lr|relative mean final NLL"
    "|ordinary mean final NLL|mean gap|paired gap < 1%"
).split("|")


def _summary_cells(r: dict) -> tuple:
    """One row of the final-NLL table."""
    n = r["inits"]
    return (
        r["optimizer"],
        r["gradient"],
        f"{r['learning_rate']:g}",
        r["epochs"],
        f"{r['initial_nll']:.4f}",
        f"{r['final_nll_mean']:.4f} +- {r['final_nll_std']:.4f}",
        f"{r['final_nll_median']:.4f}",
        f"{r['final_nll_min']:.4f}",
        f"{r['in_global_basin']}/{n}",
        f"{r['diverged']}/{n}",
        f"{r['grad_norm_median']:.2g}",
        f"{r['last_10pct_change_max']:.2g}",
    )


def _gap_cells(r: dict) -> tuple:
    """One row of the gap table (percentages, counts out of the initialisations)."""
    n, both_max = r["inits"], r["paired_gap_max_both_global"]
    percent = (r[k] for k in ("mean_gap", "median_gap", "best_gap", "paired_gap_median"))
    return (
        r["optimizer"],
        r["gradient"],
        *(f"{100 * v:.3f}%" for v in percent),
        f"{r['paired_within_1pct']}/{n}",
        f"{r['same_basin']}/{n}",
        f"{r['both_in_global_basin']}/{n}",
        "-" if both_max is None else f"{100 * both_max:.3f}%",
    )


def _shared_cells(r: dict) -> tuple:
    """One row of the shared-rate table."""
    return (
        r["optimizer"],
        r["gradient"],
        f"{r['learning_rate']:g}",
        f"{r['relative_mean']:.4f}",
        f"{r['ordinary_mean']:.4f}",
        f"{100 * r['mean_gap']:.3f}%",
        f"{r['paired_within_1pct']}/{r['inits']}",
    )


def to_markdown(
    rows: Sequence[dict], gaps: Sequence[dict], shared: Sequence[dict], *, result: dict, args
) -> str:
    """Formats :func:`summarise` output as Markdown: final NLLs, gaps, shared-rate gaps."""
    problem = {
        "teacher": "inverse of a random 2-layer smooth-leaky-ReLU teacher (model class "
        "contains the truth)",
        "leaky_relu": "2-layer leaky-ReLU MLP mixing (no finite optimum for a smooth demixer)",
    }[args.mixing]
    finals = harness.markdown_table(SUMMARY_COLUMNS, [_summary_cells(r) for r in rows])
    gap_table = harness.markdown_table(GAP_COLUMNS, [_gap_cells(r) for r in gaps])
    shared_table = harness.markdown_table(SHARED_COLUMNS, [_shared_cells(r) for r in shared])
    return harness.markdown_document(
        "Full-batch training dynamics: relative vs ordinary gradient",
        f"2-D Laplace sources, {problem}, N = {args.n} (full batch), {rows[0]['inits']} shared "
        f"initialisations (seeds 0-{rows[0]['inits'] - 1}); exact training NLL in nats per "
        f"sample. NLL of the generating model on this sample: {result['reference_nll']:.4f}.",
        "Learning rate: tuned separately for each optimizer and gradient by the same rule (grid "
        f"{', '.join(f'{o} {list(LR_GRIDS[o])}' for o in OPTIMIZERS)}; lowest mean final NLL "
        f"from {len(args.tuning_seeds)} tuning initialisations, seeds "
        f"{args.tuning_seeds[0]}-{args.tuning_seeds[-1]}, with the same epoch budget), peak "
        "of a cosine decay to 5%. Global basin: final NLL within "
        f"{100 * BASIN_TOLERANCE:g}% of the best run. |grad|: norm of the exact NLL's gradient "
        "at the end (median); last-10% change: largest NLL change of a run over the last 10% "
        "of epochs.",
        finals,
        "Each relative mode vs ordinary, gaps as |relative - ordinary| / |ordinary|. Unpaired: "
        "of the means, medians and best runs over initialisations. Paired: per shared "
        "initialisation.",
        gap_table,
        "Check of the tuning: each relative mode and ordinary at the *same* rate, every rate of "
        "the grid, reported initialisations (nan: some run diverged).",
        shared_table,
    )


def plot(result: dict, path: Path) -> None:
    """NLL vs epoch, one panel per optimizer: every run thin, the median over runs thick."""
    curves = result["curves"]
    fig, axes = harness.pyplot().subplots(
        1, len(curves), figsize=(5.5 * len(curves), 4.0), squeeze=False
    )
    palette = ("tab:green", "tab:red", "tab:blue", "tab:orange", "tab:purple", "tab:brown")
    colors = dict(zip(MODES, palette[: len(MODES)], strict=True))
    finals = np.concatenate([c[:, -1] for by in curves.values() for c in by.values()])
    low, high = np.nanmin(finals), np.nanmax(finals)
    span = max(high - low, 1e-3)
    for ax, (opt, by_grad) in zip(axes[0], curves.items(), strict=True):
        epochs = np.maximum(result["epochs_recorded"][opt], 1)
        for g in MODES:
            lr = result["learning_rates"][opt][g]
            ax.plot(epochs, by_grad[g].T, color=colors[g], alpha=0.3, linewidth=0.8)
            ax.plot(epochs, np.nanmedian(by_grad[g], axis=0), color=colors[g], linewidth=2.2,
                    label=f"{g} (lr {lr:g}), median")  # fmt: skip
        ax.axhline(result["reference_nll"], color="k", linestyle=":", label="generating model")
        ax.set_xscale("log")
        ax.set_ylim(low - 0.1 * span, high + 1.0 * span)
        ax.set_xlabel("epoch (one full-batch step)")
        ax.set_ylabel("exact training NLL")
        ax.set_title(opt)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    harness.save_figure(fig, path, dpi=120)


def _rounded(a) -> list[float | None]:
    """Flattened values rounded to 5 decimals, ``None`` for a non-finite one (JSON)."""
    return [None if not np.isfinite(v) else round(float(v), 5) for v in np.ravel(a)]


def to_record(rows, gaps, shared, *, result: dict, args) -> dict:
    """The JSON record: settings, tuning, the :func:`summarise` tables and the NLL curves."""
    return {
        "n": args.n,
        "mixing": args.mixing,
        "seed": args.seed,
        "reference_nll": result["reference_nll"],
        "learning_rates": result["learning_rates"],
        "lr_grids": LR_GRIDS,
        "tuning_seeds": args.tuning_seeds,
        "tuning_mean_final_nll": result["tuning"],
        "summary": rows,
        "gaps": gaps,
        "shared_rate": shared,
        "grid_final_nll": {
            o: {g: {lr: _rounded(v) for lr, v in f.items()} for g, f in by.items()}
            for o, by in result["grid_finals"].items()
        },
        "epochs_recorded": {o: e.tolist() for o, e in result["epochs_recorded"].items()},
        "final_nll": {
            o: {g: _rounded(c[:, -1]) for g, c in by.items()} for o, by in result["curves"].items()
        },
        "grad_norms": {
            o: {g: _rounded(v) for g, v in by.items()} for o, by in result["grad_norms"].items()
        },
        "curves": {
            o: {g: [_rounded(run) for run in c] for g, c in by.items()}
            for o, by in result["curves"].items()
        },
    }
