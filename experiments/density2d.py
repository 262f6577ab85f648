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

    .venv/bin/python experiments/density2d.py --out results/density2d

Writes ``density2d.json``, ``density2d.md`` and ``density2d.png``. ``--smoke`` fits two
densities with a small network for a few epochs (for the tests).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from scipy.stats import multivariate_normal

from nica import DemixingNetwork, ICAModel, fit, make_prior
from nica.storage import write_json
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
    result = fit(
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


def run_toy(
    name: str,
    *,
    seed: int,
    n_train: int,
    n_test: int,
    n_samples: int,
    grid: int,
    **fit_kwargs,
) -> dict:
    """Fits one toy density and evaluates it.

    Returns:
      A dict with the table row (``name``, ``test_nll``, ``gaussian_test_nll``, fit info) and the
      plot arrays ``x_train``, ``axis``, ``density``, ``samples``.
    """
    x_train = sample_toy2d(seed, name, n_train).astype(np.float32)
    x_test = sample_toy2d(seed + 10_000, name, n_test).astype(np.float32)
    key = jax.random.key(seed)
    fit_key, sample_key = jax.random.split(key)
    model, info = fit_toy(fit_key, x_train, **fit_kwargs)
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
    lines = [
        "# 2-D toy densities: test NLL (nats per point, lower is better)",
        "",
        ", ".join(f"{k} {v}" for k, v in settings.items()) + "; relative gradient, Gaussian prior.",
        "",
        "| density | model test NLL | Gaussian fit test NLL | model better by | best epoch |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        gain = r["gaussian_test_nll"] - r["test_nll"]
        lines.append(
            f"| {r['name']} | {r['test_nll']:.4f} | {r['gaussian_test_nll']:.4f} | {gain:+.4f} "
            f"| {r['best_epoch']} |"
        )
    return "\n".join(lines) + "\n"


def plot(results: Sequence[dict], path: Path) -> None:
    """Figure with one row per density: data, learned density, model samples."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> list[dict]:
    """Parses arguments, fits every density, writes JSON, Markdown and PNG; returns the rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", nargs="+", default=list(TOY2D), choices=list(TOY2D))
    parser.add_argument("--depth", type=int, default=10)
    parser.add_argument("--activation", default="smooth_leaky_relu")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--n-train", type=int, default=20_000)
    parser.add_argument("--n-test", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("results/density2d"))
    parser.add_argument("--smoke", action="store_true", help="2 densities, tiny network")
    args = parser.parse_args(argv)
    grid, n_samples = 200, 3000
    if args.smoke:
        args.names, args.depth, args.epochs = args.names[:2], 3, 3
        args.n_train, args.n_test, grid, n_samples = 1000, 500, 40, 200
    if min(args.depth, args.epochs, args.batch_size, args.n_train, args.n_test) < 1:
        parser.error("sizes must be >= 1")
    settings = {
        "depth": args.depth,
        "activation": args.activation,
        "epochs": args.epochs,
        "batch": args.batch_size,
        "lr": args.lr,
        "n_train": args.n_train,
        "n_test": args.n_test,
        "seed": args.seed,
    }
    results = []
    for name in args.names:
        r = run_toy(
            name,
            seed=args.seed,
            n_train=args.n_train,
            n_test=args.n_test,
            n_samples=n_samples,
            grid=grid,
            depth=args.depth,
            activation=args.activation,
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.lr,
        )
        print(f"{name}: test NLL {r['test_nll']:.4f} vs Gaussian {r['gaussian_test_nll']:.4f}")
        results.append(r)
    arrays = ("x_train", "axis", "density", "samples")
    rows = [{k: v for k, v in r.items() if k not in arrays} for r in results]
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "density2d.json", {"settings": settings, "rows": rows})
    table = to_markdown(rows, settings)
    (args.out / "density2d.md").write_text(table)
    plot(results, args.out / "density2d.png")
    print(table)
    return rows


if __name__ == "__main__":
    main()
