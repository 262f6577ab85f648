"""``nica density``: fit a density to a tabular ``.npz`` and report its test log-likelihood.

    nica density --data FILE.npz --out DIR [--logit LOW HIGH] [--dequantise] [--alpha A]
                 [--copies K] [--test-fraction F] [--image-shape H W] [--conditional]
                 [--seed N] [--epochs E] [--depth L] [--prior NAME] [--gradient MODE]
                 [--force] [--quiet]

Writes ``config.json``, ``metrics.json`` (test log-likelihood in nats per sample, per
dimension and in bits per dimension, and the full-covariance Gaussian's on the same split),
``report.md``, ``samples.png`` (data next to samples drawn through the exact inverse; an image
grid with ``--image-shape``), ``training_curve.png`` and ``checkpoint/``. The parsing lives
here; :mod:`nica.cli` only hooks it in.
"""

from __future__ import annotations

import time
from pathlib import Path

import jax
import numpy as np

from nica.data import load_observations
from nica.density import (
    DENSITY_OVERRIDES,
    Preprocessing,
    fit_density,
    resolve_copies,
    summarise,
)
from nica.estimator import FitConfig
from nica.progress import fit_progress, progress_enabled
from nica.storage import write_json, write_text

__all__ = ["DENSITY_OUTPUTS", "add_density_parser"]

#: What ``nica density`` writes into ``--out``; ``--force`` replaces these.
DENSITY_OUTPUTS = (
    "config.json",
    "metrics.json",
    "report.md",
    "samples.png",
    "training_curve.png",
    "checkpoint",
)


def add_density_parser(commands, formatter_class) -> None:
    """Adds the ``density`` subcommand to ``commands`` (an argparse subparsers object)."""
    defaults = FitConfig(**{**DENSITY_OVERRIDES, "conditional": False})
    cmd = commands.add_parser(
        "density",
        help="fit a density to an .npz file (test log-likelihood, samples)",
        description="Splits x into train/validation/test, fits an unconditional nica density "
        "(a Gaussian base through the demixer) and reports the exact test log-likelihood in "
        "the data's units, counting the preprocessing's log-Jacobian.",
        formatter_class=formatter_class,
    )
    cmd.add_argument("--data", required=True, metavar="FILE", help=".npz with x (N, D)")
    cmd.add_argument("--out", required=True, metavar="DIR", help="output folder")
    cmd.add_argument(
        "--logit",
        nargs=2,
        type=float,
        metavar=("LOW", "HIGH"),
        default=None,
        help="data bounded in [LOW, HIGH]: model logit((x - LOW) / width) (default: x as is)",
    )
    cmd.add_argument(
        "--dequantise",
        action="store_true",
        help="integer data: add U(0, 1) noise first (needs --logit with integer bounds)",
    )
    cmd.add_argument("--alpha", type=float, default=Preprocessing().alpha, help="logit shrink")
    cmd.add_argument(
        "--copies",
        type=int,
        default=None,
        metavar="K",
        help="noise draws per training row (default: 8 with --dequantise, else 1)",
    )
    for flag, default, text in (
        ("--test-fraction", 0.2, "share of rows held out for the test log-likelihood"),
        ("--validation-fraction", 0.1, "share of rows held out for early stopping"),
    ):
        cmd.add_argument(flag, type=float, default=default, metavar="F", help=text)
    cmd.add_argument(
        "--image-shape", nargs=2, type=int, metavar=("H", "W"), help="show rows as H x W images"
    )
    cmd.add_argument(
        "--conditional", action="store_true", help="condition on the labels u of the file"
    )
    cmd.add_argument("--seed", type=int, default=0, metavar="N", help="split, noise, fit")
    cmd.add_argument("--epochs", type=int, default=defaults.epochs, metavar="E")
    cmd.add_argument("--depth", type=int, default=defaults.depth, metavar="L")
    cmd.add_argument("--prior", default=defaults.prior, metavar="NAME", help="base density")
    cmd.add_argument("--gradient", default=defaults.gradient, metavar="MODE")
    cmd.add_argument("--learning-rate", type=float, default=defaults.learning_rate, metavar="LR")
    cmd.add_argument("--force", action="store_true", help="replace an earlier run in --out")
    cmd.add_argument("--quiet", action="store_true", help="no progress bars")
    cmd.set_defaults(handler=run_density)


def _preprocessing(args) -> Preprocessing:
    if args.logit is None:
        if args.dequantise:
            raise ValueError("--dequantise needs --logit LOW HIGH (the data's integer bounds)")
        return Preprocessing()
    low, high = args.logit
    return Preprocessing(
        logit=True, low=low, high=high, dequantise=args.dequantise, alpha=args.alpha
    ).validate()


def _prepare_out(out: Path, force: bool) -> None:
    earlier = [name for name in DENSITY_OUTPUTS if (out / name).exists()]
    if earlier and not force:
        raise ValueError(
            f"--out {out} holds an earlier run ({', '.join(earlier)}); pass --force to replace it"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"--out {out}: cannot write there ({err.strerror or err})") from None


def run_density(args) -> int:
    """The ``nica density`` handler: fit, evaluate, write; returns the exit status."""
    data = load_observations(args.data)
    if args.conditional and data.u is None:
        raise ValueError(f"{args.data}: --conditional needs labels u in the file")
    if args.image_shape and args.image_shape[0] * args.image_shape[1] != data.x.shape[1]:
        raise ValueError(
            f"--image-shape {args.image_shape} does not hold {data.x.shape[1]} columns"
        )
    preprocessing = _preprocessing(args)
    copies = resolve_copies(args.copies, preprocessing)
    out = Path(args.out)
    _prepare_out(out, args.force)
    u = data.u if args.conditional else None
    overrides = {
        name: getattr(args, name)
        for name in ("epochs", "depth", "prior", "gradient", "learning_rate")
    }
    start = time.perf_counter()
    with fit_progress(progress_enabled(args.quiet)) as progress:
        result = fit_density(
            data.x,
            u,
            preprocessing=preprocessing,
            seed=args.seed,
            test_fraction=args.test_fraction,
            validation_fraction=args.validation_fraction,
            copies=copies,
            progress=progress,
            where=str(args.data),
            **overrides,
        )
    wall = time.perf_counter() - start
    _write_outputs(out, args, result, data.x, copies, wall)
    return 0


def _write_outputs(out: Path, args, result, x: np.ndarray, copies: int, wall: float) -> None:
    from nica.plots import plot_training_curves

    dim = x.shape[1]
    fitted = result.model.fitted
    metrics = {
        "test": summarise(result.test_log_likelihood, dim),
        "gaussian_test": summarise(result.gaussian_test_log_likelihood, dim),
        "n_train": int(result.data.split.train.size),
        "n_validation": int(result.data.split.validation.size),
        "n_test": int(result.data.split.test.size),
        "best_epoch": fitted.result.best_epoch,
        "epochs_run": fitted.result.epochs_run,
        "wall_s": wall,
    }
    config = {
        **fitted.config.to_dict(),
        "preprocessing": result.model.preprocessing.to_dict(),
        "copies": copies,
        "test_fraction": args.test_fraction,
        "validation_fraction": args.validation_fraction,
        "data": str(Path(args.data).resolve()),
    }
    write_json(out / "config.json", config)
    result.model.save(out / "checkpoint")
    n_show = 10 if args.image_shape else 1000
    labels = None
    if fitted.aux:
        labels = np.arange(n_show, dtype=np.int32) % fitted.aux["n_segments"]
    samples = result.model.sample(jax.random.key(args.seed + 1), n_show, labels)
    data_rows = x[result.data.split.test][:n_show]
    _plot_samples(data_rows, samples, args.image_shape, out / "samples.png")
    plot_training_curves({"fit": fitted.result.history}, out / "training_curve.png")
    write_text(out / "report.md", _report(metrics, config, dim))
    write_json(out / "metrics.json", metrics)
    test = metrics["test"]
    print(
        f"nica density: test log-likelihood {test['log_likelihood']:.3f} nats per sample "
        f"({test['bits_per_dim']:.4f} bits/dim; Gaussian "
        f"{metrics['gaussian_test']['log_likelihood']:.3f}); wrote {out}",
        flush=True,
    )


def _report(metrics: dict, config: dict, dim: int) -> str:
    rows = [
        f"| {name} | {m['log_likelihood']:.3f} ± {2 * m['log_likelihood_stderr']:.3f} | "
        f"{m['log_likelihood_per_dim']:.4f} | {m['bits_per_dim']:.4f} |"
        for name, m in (("nica", metrics["test"]), ("Gaussian", metrics["gaussian_test"]))
    ]
    return "\n".join(
        [
            "# nica density: test log-likelihood",
            "",
            f"{metrics['n_test']} test rows, D = {dim}; preprocessing "
            f"{config['preprocessing']}; {config['copies']} noise copies; depth "
            f"{config['depth']}, prior {config['prior']}, gradient {config['gradient']}; best "
            f"epoch {metrics['best_epoch']} of {metrics['epochs_run']}.",
            "",
            "| model | nats per sample ± 2 s.e. | nats per dim | bits per dim |",
            "|---|---|---|---|",
            *rows,
            "",
        ]
    )


def _plot_samples(data_rows, samples, image_shape, path: Path) -> None:
    """Data next to model samples: an image grid, or scatters of column pairs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nica.storage import save_figure

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
    fig.suptitle("Test data and samples through the exact inverse", fontsize=10)
    try:
        save_figure(fig, path, dpi=100)
    finally:
        plt.close(fig)
