"""The low-level trainers of Flax modules: :func:`train` (one module) and :func:`train_seeds`
(one module per seed, in one vmapped program), on :func:`nica.fitting.runs.train_runs`.

Their loop defaults are :data:`nica.fitting.config.TRAINER_LOOP`. The trainer's pieces live in
:mod:`nica.fitting.steps`, :mod:`nica.fitting.stopping` and :mod:`nica.fitting.runs`;
:func:`nica.fit` is the estimator on the same trainer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from nica.core.gradients import DEFAULT_GRADIENT, GradientMode, check_gradient
from nica.core.model import ICAModel
from nica.fitting.config import TRAINER_LOOP, LoopConfig, check_setting_names
from nica.fitting.data import check_observations
from nica.fitting.runs import train_runs
from nica.fitting.steps import (
    split_runs_data,
)
from nica.fitting.stopping import FitResult, ProgressEvent, TrainingDivergedError

__all__ = ["train", "train_seeds"]


def _check_models(models: Sequence[ICAModel]):
    """Splits ``S`` models of one structure: ``(graphdef, params (S, 1, ...), rest)``."""
    graphdef, params0, rest = nnx.split(models[0], nnx.Param, ...)
    per_seed = [params0]
    for model in models[1:]:
        other_graphdef, params, other_rest = nnx.split(model, nnx.Param, ...)
        same_rest = jax.tree.structure(other_rest) == jax.tree.structure(rest) and all(
            np.array_equal(a, b)
            for a, b in zip(jax.tree.leaves(other_rest), jax.tree.leaves(rest), strict=True)
        )
        if other_graphdef != graphdef or not same_rest:
            raise ValueError("train_seeds needs models of the same structure and settings")
        per_seed.append(params)
    stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves)[:, None], *per_seed)
    return graphdef, stacked, rest


def _checked_data(models, xs, us):
    """Validates every seed's ``x`` (and ``u``) against the models; returns numpy lists."""
    model = models[0]
    if us is None and model.conditional:
        raise ValueError("the model's prior is conditional: pass the auxiliary variable u")
    checked = [
        check_observations(x, None if us is None else us[i], where=f"seed {i}")
        for i, x in enumerate(xs)
    ]
    shapes = {(c.x.shape, None if c.u is None else c.u.shape) for c in checked}
    if len(shapes) > 1:
        raise ValueError(f"all seeds' x (and u) must have the same shape, got {shapes}")
    if checked[0].x.shape[1] != model.demixer.dim:
        raise ValueError(
            f"x has {checked[0].x.shape[1]} columns but the model expects dim={model.demixer.dim}"
        )
    return [c.x for c in checked], None if us is None else [c.u for c in checked]


def train_seeds(
    keys,
    models: Sequence[ICAModel],
    xs,
    us=None,
    *,
    gradient: str | GradientMode = DEFAULT_GRADIENT,
    optimizer: optax.GradientTransformation | None = None,
    progress: Callable[[ProgressEvent], None] | None = None,
    shard: bool | None = None,
    loop: LoopConfig = TRAINER_LOOP,
    **settings,
) -> list[FitResult]:
    """Trains ``S`` modules at once (one vmapped program); each is updated to its best params.

    Seed ``i`` gets what :func:`train` gives for ``(keys[i], models[i], xs[i], us[i])`` (up to
    floating-point reassociation in batched kernels); the seed axis is sharded over local
    devices (see :func:`seed_sharding`).

    Args:
      keys: ``S`` PRNG keys (validation split and shuffles).
      models: ``S`` :class:`ICAModel` s of the same structure.
      xs: ``S`` observation arrays of one shape ``(N, D)``.
      us: ``None``, or ``S`` auxiliary arrays of one shape.
      gradient: the gradient mode (name or object); default ``"auto"``
        (:func:`nica.core.gradients.resolve_gradient`).
      optimizer: any Optax transformation; default ``optax.adam(1e-3)``.
      progress: called with a :class:`ProgressEvent` after every epoch.
      shard: shard the seed axis over local devices (``None``: when there are several).
      loop: the loop settings (default :data:`nica.fitting.config.TRAINER_LOOP`: 100 epochs,
        batches of 100, evaluated every epoch).
      **settings: :class:`nica.fitting.config.LoopConfig` fields replacing ``loop``'s
        (epochs, batch_size, validation_fraction, patience, min_delta, eval_every,
        explode_nats).

    Returns:
      One :class:`FitResult` per seed; a diverged seed has ``diverged`` set.

    Raises:
      ValueError: bad shapes, NaN/Inf, models of different structure, bad settings.
    """
    check_setting_names(settings, [f.name for f in dataclasses.fields(LoopConfig)], "LoopConfig")
    settings = dataclasses.replace(loop, **settings)
    mode = check_gradient(gradient)
    if not models or len(keys) != len(models) or len(xs) != len(models):
        raise ValueError("keys, models and xs must have the same non-zero length")
    if us is not None and len(us) != len(models):
        raise ValueError("us must have one entry per model")
    graphdef, params, rest = _check_models(models)
    xs, us = _checked_data(models, xs, us)
    split_keys, shuffle_keys = zip(*(jax.random.split(k) for k in keys), strict=True)
    dtype = models[0].demixer.layers[0].kernel[...].dtype
    data = split_runs_data(
        split_keys, xs, us or [None] * len(xs), settings.validation_fraction, dtype
    )
    best, results = train_runs(
        graphdef,
        params,
        rest,
        data,
        jnp.stack(shuffle_keys)[:, None],
        optimizer=optax.adam(1e-3) if optimizer is None else optimizer,
        gradient=mode,
        settings=settings,
        progress=progress,
        shard=shard,
    )
    for i, model in enumerate(models):
        nnx.update(model, jax.tree.map(lambda leaf, i=i: leaf[i, 0], best))
    return results


def train(
    key: jax.Array,
    model: ICAModel | nnx.Module,
    x,
    u=None,
    *,
    prior: str | nnx.Module | None = None,
    **kwargs,
) -> FitResult:
    """Fits one module by maximum likelihood; it is updated in place to its best parameters.

    Args:
      key: PRNG key for the validation split and the per-epoch shuffles.
      model: an :class:`ICAModel`, or a demixing network (then ``prior`` names its prior).
      x: observations, shape ``(N, D)``.
      u: auxiliary variable, ``(N,)`` integer labels or ``(N, d)`` floats, for a conditional
        prior; ``None`` for the unconditional model.
      prior: with a bare demixer, a prior name from ``nica.core.priors.PRIORS`` or a prior module
        (default Laplace).
      **kwargs: ``gradient``, ``optimizer``, ``progress``, ``loop`` and the
        :class:`nica.fitting.config.LoopConfig` fields, as in :func:`train_seeds`.

    Returns:
      A :class:`FitResult`.

    Raises:
      ValueError: bad shapes, NaN/Inf in the data, unknown names, bad settings.
      TrainingDivergedError: non-finite loss or parameters; the best parameters are kept.
    """
    if not isinstance(model, ICAModel):
        from nica.core.priors import make_prior

        model = ICAModel(model, make_prior("laplace" if prior is None else prior))
    elif prior is not None:
        raise ValueError("pass prior only with a bare demixer; an ICAModel has its own prior")
    (result,) = train_seeds([key], [model], [x], None if u is None else [u], shard=False, **kwargs)
    if result.diverged is not None:
        raise TrainingDivergedError(
            result.diverged, epoch=result.epochs_run, history=result.history
        )
    return result
