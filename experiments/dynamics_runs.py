"""The runs of the dynamics experiment (``experiments.dynamics``): full-batch training of many
initialisations at once under ``vmap``, with the learning rate tuned per (optimizer, gradient).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from experiments import harness
from experiments.dynamics_problem import make_model, make_problem
from nica import GRADIENTS
from nica.fitting.steps import make_epoch_fn, make_nll_fn

#: The gradient modes trained (names in the registry ``nica.GRADIENTS``).
MODES = harness.COMPARED_GRADIENTS


#: The relative-gradient modes, each compared with ``ordinary``.
RELATIVE_MODES = tuple(name for name in MODES if GRADIENTS[name].relative)


OPTIMIZERS = ("adam", "sgd")


LR_GRIDS = {"adam": (3e-3, 1e-2, 3e-2), "sgd": (1e-2, 3e-2, 1e-1)}


def full_batch_optimizer(name: str, epochs: int, learning_rate) -> optax.GradientTransformation:
    """``optax.adam`` or ``optax.sgd``, learning rate cosine-decayed to 5% over ``epochs`` steps.

    Not ``nica.fitting.build.make_optimizer``: no gradient clipping (the comparison is of
    the raw steps), and the rate decays to 5% of its peak instead of 0, so that the runs settle but
    keep moving. ``learning_rate`` may be a traced scalar (this is called inside ``vmap``).
    """
    schedule = optax.cosine_decay_schedule(learning_rate, epochs, alpha=0.05)
    return {"adam": optax.adam, "sgd": optax.sgd}[name](schedule)


def train_runs(
    key: jax.Array,
    x: jax.Array,
    *,
    seeds: Sequence[int],
    learning_rates: Sequence[float],
    gradient: str,
    optimizer: str,
    epochs: int,
    record_every: int = 1,
    depth: int = 2,
) -> tuple[np.ndarray, np.ndarray]:
    """Full-batch training of several runs at once under ``vmap``; exact NLL along the way.

    Args:
      key: PRNG key for the (irrelevant, full-batch) shuffles; the same for every run.
      x: training data, shape ``(N, 2)``.
      seeds: one ``nnx.Rngs`` initialisation seed per run.
      learning_rates: one peak learning rate per run (same length as ``seeds``).
      gradient: one of :data:`MODES`.
      optimizer: ``"adam"`` or ``"sgd"``.
      epochs: number of full-batch steps.
      record_every: keep the NLL every this many epochs (and at the first and last).
      depth: number of layers of the demixer.

    Returns:
      ``(curves, grad_norms)``: exact mean training NLL of shape ``(runs, points)`` at epochs
      :func:`recorded_epochs` (``nan`` from the first non-finite step of a run on), and the
      global norm of the exact NLL's (ordinary) gradient at the end, shape ``(runs,)``.
    """
    if len(seeds) != len(learning_rates):
        raise ValueError("give one learning rate per seed")
    states = []
    for seed in seeds:
        graphdef, params, rest = nnx.split(make_model(seed, depth=depth), nnx.Param, ...)
        states.append(params)
    params = jax.tree.map(lambda *p: jnp.stack(p), *states)
    nll_fn = make_nll_fn(graphdef, rest)
    keep = jnp.asarray(recorded_epochs(epochs, record_every)[1:] - 1)

    def one_run(params, lr):
        opt = full_batch_optimizer(optimizer, epochs, lr)
        epoch_fn = make_epoch_fn(graphdef, rest, opt, gradient=gradient, batch_size=x.shape[0])

        def body(carry, epoch_key):
            params, opt_state, ok = carry
            params, opt_state, _, finite = epoch_fn(params, opt_state, epoch_key, x, None)
            nll = nll_fn(params, x, None)
            ok = ok & finite & jnp.isfinite(nll)
            return (params, opt_state, ok), jnp.where(ok, nll, jnp.nan)

        keys = jax.random.split(key, epochs)
        carry = (params, opt.init(params), jnp.array(True))
        (final, _, ok), nlls = jax.lax.scan(body, carry, keys)
        grad_norm = optax.tree.norm(jax.grad(nll_fn)(final, x, None))
        curve = jnp.concatenate([nll_fn(params, x, None)[None], nlls[keep]])
        return curve, jnp.where(ok, grad_norm, jnp.nan)

    lrs = jnp.asarray(learning_rates, jnp.float32)
    curves, grad_norms = jax.jit(jax.vmap(one_run))(params, lrs)
    return np.asarray(curves), np.asarray(grad_norms)


def recorded_epochs(epochs: int, record_every: int) -> np.ndarray:
    """Epochs at which :func:`train_runs` keeps the NLL: 0, every ``record_every``, the last,
    and 50 log-spaced ones (so a log-scale epoch axis shows the start)."""
    log_spaced = np.geomspace(1, epochs, 50).round().astype(int)
    return np.unique(np.r_[np.arange(0, epochs, record_every), log_spaced, epochs])


def run_pair(
    key: jax.Array,
    x: jax.Array,
    *,
    optimizer: str,
    gradient: str,
    epochs: int,
    seeds: Sequence[int],
    tuning_seeds: Sequence[int],
    record_every: int,
) -> dict:
    """Runs every rate of ``LR_GRIDS[optimizer]`` from the tuning and the reported seeds at once.

    The rate with the lowest mean final NLL over ``tuning_seeds`` (a diverged run counts as
    +inf) is chosen; the reported runs are those from ``seeds`` at that rate.

    Returns:
      A dict: ``learning_rate`` (the chosen one), ``tuning`` (rate -> mean final NLL on the
      tuning seeds), ``grid_finals`` (rate -> final NLL per reported seed), ``curves``
      (``(len(seeds), points)``) and ``grad_norms`` (``(len(seeds),)``) at the chosen rate.
    """
    grid, all_seeds, n_tune = LR_GRIDS[optimizer], [*tuning_seeds, *seeds], len(tuning_seeds)
    curves, grad_norms = train_runs(
        key,
        x,
        seeds=all_seeds * len(grid),
        learning_rates=[lr for lr in grid for _ in all_seeds],
        gradient=gradient,
        optimizer=optimizer,
        epochs=epochs,
        record_every=record_every,
    )
    curves = curves.reshape(len(grid), len(all_seeds), -1)
    grad_norms = grad_norms.reshape(len(grid), len(all_seeds))
    tune = curves[:, :n_tune, -1]
    scores = np.where(np.isfinite(tune), tune, np.inf).mean(axis=1)
    best = int(np.argmin(scores))
    return {
        "learning_rate": float(grid[best]),
        "tuning": {f"{lr:g}": float(v) for lr, v in zip(grid, scores, strict=True)},
        "grid_finals": {f"{lr:g}": c[n_tune:, -1] for lr, c in zip(grid, curves, strict=True)},
        "curves": curves[best, n_tune:],
        "grad_norms": grad_norms[best, n_tune:],
    }


def run_all(
    *,
    data_seed: int,
    n: int,
    mixing: str,
    n_inits: int,
    tuning_seeds: Sequence[int],
    epochs: dict[str, int],
    record_every: int,
) -> dict:
    """Every (optimizer, gradient) pair on one problem and shared initialisations.

    Returns:
      A dict with ``reference_nll`` and, indexed ``[opt][grad]``, the :func:`run_pair` fields
      ``learning_rates``, ``tuning``, ``grid_finals``, ``curves`` (``(n_inits, points)``) and
      ``grad_norms`` (``(n_inits,)``); ``epochs_recorded[opt]``.
    """
    x_np, reference = make_problem(data_seed, n, mixing=mixing)
    x = jnp.asarray(x_np)
    key = jax.random.key(data_seed)
    fields = ("learning_rate", "tuning", "grid_finals", "curves", "grad_norms")
    names = ("learning_rates", "tuning", "grid_finals", "curves", "grad_norms")
    out: dict = {"reference_nll": reference, "epochs_recorded": {}}
    out.update({name: {} for name in names})
    for opt in epochs:
        out["epochs_recorded"][opt] = recorded_epochs(epochs[opt], record_every)
        for name in names:
            out[name][opt] = {}
        for g in MODES:
            pair = run_pair(
                key,
                x,
                optimizer=opt,
                gradient=g,
                epochs=epochs[opt],
                seeds=range(n_inits),
                tuning_seeds=tuning_seeds,
                record_every=record_every,
            )
            for name, field in zip(names, fields, strict=True):
                out[name][opt][g] = pair[field]
    return out
