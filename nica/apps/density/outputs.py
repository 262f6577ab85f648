"""What ``nica density`` writes into ``--out``: ``config.json``, ``metrics.json``, ``report.md``,
``samples.png``, ``training_curve.png`` and ``checkpoint/``, and the report it prints."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from nica.apps.density.pipeline import DensityFit
from nica.apps.density.summary import LOG_LIKELIHOOD_UNITS, compare_with_gaussian, summarise_fit
from nica.util.files import write_json, write_text
from nica.util.provenance import describe, environment

__all__ = ["DENSITY_OUTPUTS", "write_outputs"]

#: What ``nica density`` writes into ``--out``; ``--force`` replaces these.
DENSITY_OUTPUTS = (
    "config.json",
    "metrics.json",
    "report.md",
    "samples.png",
    "training_curve.png",
    "checkpoint",
)

#: Units and direction of each column, as printed and written.
_NATS = "nats/sample (higher is better)"
_PER_DIM = "nats/dim (higher is better)"
_BITS = "bits/dim (lower is better)"
_CURVE_UNITS = "nats/sample of T(x), the preprocessed data; lower is better"


def _nica_name(result: DensityFit) -> str:
    """The nica model as the report names it: its depth, and how the depth was set."""
    fitted = result.model.fitted
    name = "nica, conditional on the class" if result.conditional else "nica"
    if result.selection is None:
        return f"{name} (depth {fitted.config.model.depth}, set by --depth)"
    chosen = result.selection.candidates[result.selection.chosen].name
    return f"{name} ({chosen}, chosen on the validation rows)"


def _metrics(result: DensityFit, wall: float) -> dict:
    """``metrics.json``: every test log-likelihood labelled with model, quantity and units,
    the comparisons with the Gaussian baselines, the selection, the split and the timing."""
    fitted = result.model.fitted
    summaries = summarise_fit(result)
    for key in summaries:
        if summaries[key]["model"].startswith("nica"):
            summaries[key]["model"] = _nica_name(result)
    comparisons = compare_with_gaussian(result)
    return {
        "units": LOG_LIKELIHOOD_UNITS,
        **summaries,
        "comparisons": comparisons,
        "nica_loses_to_gaussian": any(c["nica_loses"] for c in comparisons),
        "verdict": [c["line"] for c in comparisons],
        "selection": None if result.selection is None else result.selection.to_dict(),
        "n_train": int(result.data.split.train.size),
        "n_validation": int(result.data.split.validation.size),
        "n_test": int(result.data.split.test.size),
        "batch_size": fitted.config.loop.batch_size,
        "best_epoch": fitted.result.best_epoch,
        "epochs_run": fitted.result.epochs_run,
        "wall_s": wall,
    }


def _summaries(metrics: dict) -> list[dict]:
    keys = ("test", "marginal_test", "gaussian_test", "class_gaussian_test")
    return [metrics[k] for k in keys if k in metrics]


def write_outputs(out: Path, args, result, x: np.ndarray, copies: int, wall: float) -> None:
    """Writes every file of :data:`DENSITY_OUTPUTS` into ``out`` and prints the report.

    ``args`` are the parsed ``nica density`` arguments, ``result`` the :class:`DensityFit`,
    ``x (N, D)`` the data as read, ``copies`` the noise draws per training row and ``wall``
    the seconds the fit took."""
    from nica.apps.plots import plot_training_curves

    dim = x.shape[1]
    fitted = result.model.fitted
    metrics = _metrics(result, wall)
    config = {
        **fitted.config.to_dict(),
        "depth_chosen_on_validation_rows": result.selection is not None,
        "preprocessing": result.model.preprocessing.to_dict(),
        "copies": copies,
        "test_fraction": args.test_fraction,
        "validation_fraction": args.validation_fraction,
        "data": str(Path(args.data).resolve()),
        "environment": environment(),
    }
    metrics["environment"] = config["environment"]
    write_json(out / "config.json", config)
    result.model.save(out / "checkpoint")
    n_show = 10 if args.image_shape else 1000
    labels = None
    if fitted.aux:
        labels = result.model.labels[np.arange(n_show) % len(result.model.labels)]
    samples = result.model.sample(jax.random.key(args.seed + 1), n_show, labels)
    data_rows = x[result.data.split.test][:n_show]
    title = f"Test data and samples through the exact inverse of\n{metrics['test']['model']}"
    if fitted.aux:
        title += f", given the classes {', '.join(map(str, result.model.labels[:3]))}, ... in turn"
    _plot_samples(data_rows, samples, args.image_shape, out / "samples.png", title)
    plot_training_curves(
        _curves(result),
        out / "training_curve.png",
        title="nica density, every candidate",
        units=_CURVE_UNITS,
    )
    write_text(out / "report.md", _report(metrics, config, dim))
    write_json(out / "metrics.json", metrics)
    print(_printed_report(metrics, dim), flush=True)
    print(f"nica density: wrote {out}", flush=True)


def _curves(result: DensityFit) -> dict[str, dict]:
    """Training histories by name, the chosen fit marked."""
    selection = result.selection
    if selection is None:
        return {"fit": result.model.fitted.result.history}
    return {
        c.name + (" (chosen)" if k == selection.chosen else ""): fit.result.history
        for k, (c, fit) in enumerate(zip(selection.candidates, selection.fits, strict=True))
        if fit is not None
    }


def _printed_report(metrics: dict, dim: int) -> str:
    """What ``nica density`` prints: one labelled row per quantity, one line per comparison."""
    rows = [
        f"nica density: test split of {metrics['n_test']} rows, D = {dim}; log-likelihoods in "
        "the data's units: nats per sample and per dimension (higher is better), bits/dim = "
        "-log p / (D log 2) (lower is better)"
    ]
    summaries = _summaries(metrics)
    width = max(len(m["model"]) for m in summaries)
    quantity_width = max(len(m["quantity"]) for m in summaries)
    for m in summaries:
        rows.append(
            f"  {m['model']:<{width}}  {m['quantity']:<{quantity_width}}  "
            f"{m['log_likelihood']:.3f} {_NATS}  {m['log_likelihood_per_dim']:.4f} "
            f"{_PER_DIM}  {m['bits_per_dim']:.4f} {_BITS}"
        )
    rows += metrics["verdict"]
    return "\n".join(rows)


def _report(metrics: dict, config: dict, dim: int) -> str:
    rows = [
        f"| {m['model']} | {m['quantity']} | {m['log_likelihood']:.3f} ± "
        f"{2 * m['log_likelihood_stderr']:.3f} | {m['log_likelihood_per_dim']:.4f} | "
        f"{m['bits_per_dim']:.4f} |"
        for m in _summaries(metrics)
    ]
    lines = [
        "# nica density: test log-likelihood",
        "",
        f"{metrics['n_test']} test rows ({metrics['n_train']} training, "
        f"{metrics['n_validation']} validation), D = {dim}; preprocessing "
        f"{config['preprocessing']}; {config['copies']} noise copies; prior {config['prior']}, "
        f"gradient {config['gradient']}, batch {config['batch_size']}; best epoch "
        f"{metrics['best_epoch']} of {metrics['epochs_run']}.",
        "",
        "Log-likelihoods are of the test rows in the data's units (the preprocessing's "
        "Jacobian counted): nats per sample and nats per dimension, higher is better; bits "
        "per dimension are -log p / (D log 2), a code length, lower is better. log p(x | u) "
        "is conditional on the class, log p(x) is not: compare like with like (a "
        "conditional model's log p(x) mixes its classes, p(c) the training class "
        "frequencies).",
        "",
        "| model | quantity | nats per sample ± 2 s.e. (higher is better) | nats per dim "
        "(higher is better) | bits per dim (lower is better) |",
        "|---|---|---|---|---|",
        *rows,
        "",
        *(f"**{c['line']}**" if c["nica_loses"] else c["line"] for c in metrics["comparisons"]),
        "",
    ]
    if metrics["selection"] is not None:
        lines += _selection_lines(metrics["selection"])
    if "environment" in config:
        lines += ["", f"Written with {describe(config['environment'])}.", ""]
    return "\n".join(lines)


def _selection_lines(selection: dict) -> list[str]:
    cells = [
        f"| {c['name']} | {c['val_log_likelihood']:.3f} | "
        f"{c['stderr_of_difference_to_best']:.3f} | {c['best_epoch']} / {c['epochs_run']} | "
        f"{'yes' if c['chosen'] else ''} |"
        for c in selection["candidates"]
    ]
    return [
        "## Depth chosen on the validation rows",
        "",
        f"Rule: {selection['rule']}. Chosen: {selection['chosen']}.",
        "",
        "| candidate | validation log-likelihood, nats per sample (higher is better) | s.e. "
        "of its difference to the best | best epoch / epochs run | chosen |",
        "|---|---|---|---|---|",
        *cells,
        f"| full-covariance Gaussian (reference, not a candidate) | "
        f"{selection['gaussian_val_log_likelihood']:.3f} | | | |",
        "",
    ]


def _plot_samples(data_rows, samples, image_shape, path: Path, title: str) -> None:
    """Data next to model samples: an image grid, or scatters of column pairs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nica.util.files import save_figure

    if image_shape:
        fig, axes = plt.subplots(2, len(samples), figsize=(0.9 * len(samples) + 1, 2.2))
        low, high = float(data_rows.min()), float(data_rows.max())
        for row, (label, images) in zip(
            axes, (("data", data_rows), ("samples", samples)), strict=True
        ):
            for ax, image in zip(row, images, strict=True):
                ax.imshow(image.reshape(image_shape), cmap="gray_r", vmin=low, vmax=high)
                ax.set_xticks([])
                ax.set_yticks([])
            row[0].set_ylabel(label, fontsize=8)
    else:
        pairs = [(j, j + 1) for j in range(0, min(data_rows.shape[1] - 1, 6), 2)] or [(0, 0)]
        fig, axes = plt.subplots(1, len(pairs), figsize=(3.2 * len(pairs), 3.2), squeeze=False)
        for ax, (a, b) in zip(axes[0], pairs, strict=True):
            ax.scatter(data_rows[:, a], data_rows[:, b], s=3, alpha=0.4, label="test data")
            ax.scatter(samples[:, a], samples[:, b], s=3, alpha=0.4, label="samples")
            ax.set(xlabel=f"x{a}", ylabel=f"x{b}")
        axes[0, 0].legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    try:
        save_figure(fig, path, dpi=100)
    finally:
        plt.close(fig)
