"""Density estimation on the 2-D toy densities (the paper's Fig. 2).

For every density in ``synthetic.TOY2D``: an unconditional ``ICAModel`` (a deep square
``DemixingNetwork`` of width 2 and a standard Gaussian prior, Eq. 3) is fitted by maximum
likelihood with the relative gradient and Adam. Reported: the exact test NLL on a held-out set
(``ICAModel.log_likelihood``) against a full-covariance Gaussian fitted by maximum likelihood
(``scipy.stats.multivariate_normal`` on the training mean and covariance). The figure has one
row per density: training samples, the learned density ``exp(log p(x))`` on a grid, and samples
drawn through the exact inverse (``s ~ N(0, I)``, ``x = g^{-1}(s)``).

Since every layer is 2 x 2, capacity comes from depth. Defaults: depth 10, smooth leaky ReLU
(slope 0.2), Adam with a cosine-decayed learning rate from 1e-2, batch 256, 20000 training
points (10% of them for validation, which picks the best epoch), 5000 test points.

Command::

    .venv/bin/python -m experiments.density2d --out results/density2d

Writes ``results.json``, ``report.md`` and ``density2d.png``. ``--smoke`` fits two
densities with a small network for a few epochs (for the tests).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from scipy.stats import multivariate_normal

from experiments import harness
from nica import DemixingNetwork, ICAModel, make_prior, train
from synthetic.toy2d import TOY2D, sample_toy2d

GRID_LIMIT = 4.5


def gaussian_test_nll(x_train: np.ndarray, x_test: np.ndarray) -> float:
    """Mean test NLL of a full-covariance Gaussian fitted by maximum likelihood on ``x_train``.

    Args:
      x_train: shape ``(N, 2)``.
      x_test: shape ``(M, 2)``.
    """
    mean = x_train.mean(axis=0)
    cov = np.cov(x_train, rowvar=False, bias=True)
    return float(-multivariate_normal(mean, cov).logpdf(x_test).mean())


def fit_toy(
    key: jax.Array,
    x_train: np.ndarray,
    *,
    depth: int,
    activation: str,
    epochs: int,
    batch_size: int,
    learning_rate: float,
) -> tuple[ICAModel, dict]:
    """Fits an unconditional Gaussian-prior model to 2-D data with the relative gradient.

    Args:
      key: PRNG key (initialisation, validation split, shuffles).
      x_train: training points, shape ``(N, 2)``.
      depth: number of 2 x 2 layers.
      activation: activation name from ``nica.ACTIVATIONS``.
      epochs: training epochs.
      batch_size: minibatch size.
      learning_rate: peak Adam learning rate (cosine-decayed to 1% over training).

    Returns:
      ``(model, info)``: the model at its best validation epoch, and ``best_epoch``,
      ``best_val_nll``, ``seconds``.
    """
    init_key, fit_key = jax.random.split(key)
    seed = int(jax.random.randint(init_key, (), 0, 2**31 - 1))
    model = ICAModel(
        DemixingNetwork(2, depth, activation=activation, rngs=nnx.Rngs(seed)),
        make_prior("gaussian"),
    )
    n_train = x_train.shape[0] - int(round(0.1 * x_train.shape[0]))
    steps = epochs * max(1, n_train // batch_size)
    schedule = optax.cosine_decay_schedule(learning_rate, steps, alpha=0.01)
    result = train(
        fit_key,
        model,
        x_train,
        gradient="relative",
        optimizer=optax.adam(schedule),
        epochs=epochs,
        batch_size=batch_size,
        validation_fraction=0.1,
    )
    info = {
        "best_epoch": result.best_epoch,
        "best_val_nll": result.best_val_nll,
        "seconds": result.history["seconds"][-1],
    }
    return model, info


def density_grid(model: ICAModel, n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Learned density ``exp(log p(x))`` on an ``n x n`` grid over ``[-4.5, 4.5]^2``.

    Returns:
      ``(axis, density)`` with shapes ``(n,)`` and ``(n, n)`` (``density[i, j]`` at
      ``(axis[j], axis[i])``).
    """
    axis = np.linspace(-GRID_LIMIT, GRID_LIMIT, n, dtype=np.float32)
    xx, yy = np.meshgrid(axis, axis)
    pts = jnp.asarray(np.stack([xx.ravel(), yy.ravel()], axis=1))
    logp = jax.jit(lambda m, p: m.log_likelihood(p))
    return axis, np.exp(np.asarray(nnx.jit(logp)(model, pts))).reshape(n, n)


def sample_model(key: jax.Array, model: ICAModel, n: int) -> np.ndarray:
    """Draws ``n`` samples ``x = g^{-1}(s)``, ``s ~ N(0, I)``; shape ``(n, 2)``."""
    s = jax.random.normal(key, (n, 2), jnp.float32)
    return np.asarray(nnx.jit(lambda m, s: m.demixer.inverse(s))(model, s))


#: The settings recorded in ``results.json`` (argument destinations).
SETTINGS = ("depth", "activation", "epochs", "batch", "lr", "n_train", "n_test", "seed")


def run_toy(name: str, settings: dict, *, n_samples: int, grid: int) -> dict:
    """Fits one toy density and evaluates it.

    Args:
      name: a density of ``synthetic.TOY2D``.
      settings: the values of :data:`SETTINGS`.
      n_samples: samples drawn from the fitted model (for the plot).
      grid: side of the density grid.

    Returns:
      A dict with the table row (``name``, ``test_nll``, ``gaussian_test_nll``, fit info) and the
      plot arrays ``x_train``, ``axis``, ``density``, ``samples``.
    """
    seed = settings["seed"]
    x_train = sample_toy2d(seed, name, settings["n_train"]).astype(np.float32)
    x_test = sample_toy2d(seed + 10_000, name, settings["n_test"]).astype(np.float32)
    key = jax.random.key(seed)
    fit_key, sample_key = jax.random.split(key)
    model, info = fit_toy(
        fit_key,
        x_train,
        depth=settings["depth"],
        activation=settings["activation"],
        epochs=settings["epochs"],
        batch_size=settings["batch"],
        learning_rate=settings["lr"],
    )
    test_nll = float(-nnx.jit(lambda m, x: m.log_likelihood(x))(model, x_test).mean())
    axis, density = density_grid(model, grid)
    return {
        "name": name,
        "test_nll": test_nll,
        "gaussian_test_nll": gaussian_test_nll(x_train, x_test),
        **info,
        "x_train": x_train,
        "axis": axis,
        "density": density,
        "samples": sample_model(sample_key, model, n_samples),
    }


def to_markdown(rows: Sequence[dict], settings: dict) -> str:
    """Table of test NLLs (nats per point) of the model and the Gaussian fit."""
    header = ("density", "model test NLL", "Gaussian fit test NLL", "model better by", "best epoch")
    cells = [
        (
            r["name"],
            f"{r['test_nll']:.4f}",
            f"{r['gaussian_test_nll']:.4f}",
            f"{r['gaussian_test_nll'] - r['test_nll']:+.4f}",
            r["best_epoch"],
        )
        for r in rows
    ]
    return harness.markdown_document(
        "2-D toy densities: test NLL (nats per point, lower is better)",
        ", ".join(f"{k} {v}" for k, v in settings.items()) + "; relative gradient, Gaussian prior.",
        harness.markdown_table(header, cells),
    )


def plot(results: Sequence[dict], path: Path) -> None:
    """Figure with one row per density: data, learned density, model samples."""
    plt = harness.pyplot()
    fig, axes = plt.subplots(len(results), 3, figsize=(7.5, 2.5 * len(results)), squeeze=False)
    lim = (-GRID_LIMIT, GRID_LIMIT)
    for row, r in zip(axes, results, strict=True):
        n_show = min(3000, r["x_train"].shape[0], r["samples"].shape[0])
        row[0].scatter(*r["x_train"][:n_show].T, s=1, alpha=0.4, color="tab:blue")
        row[1].imshow(
            r["density"], origin="lower", extent=(*lim, *lim), cmap="magma", aspect="equal"
        )
        row[2].scatter(*r["samples"][:n_show].T, s=1, alpha=0.4, color="tab:red")
        for ax in row:
            ax.set_xlim(lim)
            ax.set_ylim(lim)
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
        row[0].set_ylabel(r["name"], fontsize=11)
    for ax, title in zip(axes[0], ("data", "learned density", "samples"), strict=True):
        ax.set_title(title, fontsize=11)
    fig.tight_layout()
    harness.save_figure(fig, path, dpi=100)


def main(argv: Sequence[str] | None = None) -> list[dict]:
    """Parses arguments, fits every density, writes JSON, Markdown and PNG; returns the rows."""
    smoke = {"names": list(TOY2D)[:2], "depth": 3, "epochs": 3, "n_train": 1000, "n_test": 500}
    parser = harness.experiment_parser(
        __doc__, out=Path("results/density2d"), smoke={**smoke, "grid": 40, "n_samples": 200}
    )
    parser.add_argument("--names", nargs="+", default=list(TOY2D), choices=list(TOY2D))
    parser.add_argument("--depth", type=harness.positive_int, default=10)
    parser.add_argument("--activation", default="smooth_leaky_relu")
    parser.add_argument("--epochs", type=harness.positive_int, default=100)
    parser.add_argument("--batch-size", dest="batch", type=harness.positive_int, default=256)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--n-train", type=harness.positive_int, default=20_000)
    parser.add_argument("--n-test", type=harness.positive_int, default=5_000)
    parser.add_argument("--grid", type=harness.positive_int, default=200, help="density grid")
    parser.add_argument("--n-samples", type=harness.positive_int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    settings = {k: getattr(args, k) for k in SETTINGS}
    results = []
    for name in args.names:
        r = run_toy(name, settings, n_samples=args.n_samples, grid=args.grid)
        print(f"{name}: test NLL {r['test_nll']:.4f} vs Gaussian {r['gaussian_test_nll']:.4f}")
        results.append(r)
    arrays = ("x_train", "axis", "density", "samples")
    rows = [{k: v for k, v in r.items() if k not in arrays} for r in results]
    record = {"settings": settings, "rows": rows}
    harness.write_report(args.out, record, to_markdown(rows, settings))
    plot(results, args.out / "density2d.png")
    return rows


if __name__ == "__main__":
    main()
