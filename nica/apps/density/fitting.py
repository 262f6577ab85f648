"""One nica density fit: the density settings of ``FitConfig``, the minibatch size, and the
early-stopped fit of a :class:`~nica.apps.density.data.DensityData`'s training rows."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nica.apps.density.data import DensityData
from nica.core.activations import SmoothLeakyReLU
from nica.fitting import config as fc
from nica.fitting.build import build_model, make_optimizer
from nica.fitting.config import FitConfig
from nica.fitting.data import standardise
from nica.fitting.fitted import FittedModel
from nica.fitting.runs import train_runs
from nica.fitting.steps import RunData
from nica.fitting.stopping import TrainingDivergedError

__all__ = [
    "DENSITY_PRESET",
    "MIN_STEPS_PER_EPOCH",
    "density_batch_size",
    "density_config",
    "fit_nica",
]

#: The settings a density fit uses unless told otherwise (``FitConfig``'s own defaults are tuned
#: for source recovery): a Gaussian base density, as in MAF / Real NVP (the demixer makes the
#: shape); 3 layers of slope-2 smooth leaky ReLUs when the depth is fixed (:func:`fit_density`
#: by default chooses among :data:`DENSITY_CANDIDATES`, with the batch of
#: :func:`density_batch_size`); early stopping on the validation rows, since a density on a few
#: thousand samples overfits long before the epochs run out; one initialisation; the rate tuned
#: at the data's own dimension, so no kernel step scaling (docs/configuration.md,
#: results/density_real/report.md).
DENSITY_PRESET = fc.FitConfig(
    model=fc.ModelConfig(
        depth=3,
        activation=SmoothLeakyReLU(slope=2.0, sharpness=10.0),
        prior=fc.PriorSpec("gaussian"),
    ),
    optimizer=fc.OptimizerConfig(learning_rate=3e-3, lr_reference_dim=None),
    loop=fc.LoopConfig(epochs=300, batch_size=128, eval_every=5, patience=6),
    restarts=fc.RestartConfig(count=1),
)

#: A density fit's minibatch shrinks (to no less than ``max(D, 16)`` rows) so an epoch has at
#: least this many steps: with 105 training rows (iris) the former batch of 128 made one step
#: per epoch, and every fit still improved at its last epoch.
MIN_STEPS_PER_EPOCH = 8


def density_batch_size(
    n_train: int, dim: int, batch_size: int = DENSITY_PRESET.loop.batch_size
) -> int:
    """``batch_size``, or less on small data: about ``n_train / MIN_STEPS_PER_EPOCH`` rows,
    at least ``max(D, 16)`` (:data:`MIN_STEPS_PER_EPOCH`)."""
    return min(batch_size, max(n_train // MIN_STEPS_PER_EPOCH, dim, 16))


def density_config(config: FitConfig | None = None, **overrides) -> FitConfig:
    """``config`` (default :data:`DENSITY_PRESET`) with the flat settings ``overrides``
    replaced (``FitConfig.replace``: an unknown name or a bad value is a one-line ValueError)."""
    return (DENSITY_PRESET if config is None else config).replace(**overrides)


def fit_nica(
    key: jax.Array,
    data: DensityData,
    config: FitConfig,
    *,
    whiten: bool = False,
    progress: Callable | None = None,
) -> FittedModel:
    """Fits ``config``'s nica model to ``data.z_train``, early-stopped on ``data.z_val``.

    The model sees the training rows standardised (column mean and scale of ``z_train``); the
    returned model's ``log_likelihood`` is in ``T``'s units. ``config.loop.validation_fraction``
    is not used: the validation rows are ``data``'s. Conditional (Eq. 4) when ``data`` has
    labels and ``config.model.conditional``. With ``whiten`` the first layer starts at the whitening
    map of the standardised training rows (see :class:`DensityCandidate`).

    Raises:
      TrainingDivergedError: the fit diverged.
    """
    conditional = config.model.conditional and data.u_train is not None
    init_key, shuffle_key = jax.random.split(key)
    z_train, standardisation = standardise(data.z_train, where="training split")
    aux = data.aux if conditional else None
    model = build_model(config, z_train.shape[1], aux, key=init_key)
    if whiten:
        _whiten_first_layer(model, z_train)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    as_run = lambda a, dtype=jnp.float32: None if a is None else jnp.asarray(a, dtype)[None]  # noqa: E731
    run_data = RunData(
        as_run(z_train),
        as_run(data.codes(data.u_train) if conditional else None, jnp.int32),
        as_run(standardisation.apply(data.z_val)),
        as_run(data.codes(data.u_val) if conditional else None, jnp.int32),
    )
    no_split = config.replace(validation_fraction=0.0)
    best, (result,) = train_runs(
        graphdef,
        jax.tree.map(lambda a: a[None, None], params),
        rest,
        run_data,
        shuffle_key[None, None],
        optimizer=make_optimizer(no_split, z_train.shape[0]),
        gradient=config.optimizer.gradient,
        settings=config.loop,
        progress=progress,
        shard=False,
        nll_offset=np.array([np.log(standardisation.scale).sum()]),  # NLLs in T's units
    )
    if result.diverged is not None:
        raise TrainingDivergedError(
            result.diverged, epoch=result.epochs_run, history=result.history
        )
    model = nnx.merge(graphdef, jax.tree.map(lambda a: a[0, 0], best), rest)
    return FittedModel(model, config, standardisation, aux, result)


def _whiten_first_layer(model, z: np.ndarray) -> None:
    """Sets the demixer's first layer to ``x -> (x - mean) @ L^{-T}``, ``L L^T`` the covariance
    of ``z (N, D)``: its outputs have zero mean and identity covariance on ``z``."""
    kernel = np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False, bias=True))).T
    layer = model.demixer.layers[0]
    layer.kernel[...] = jnp.asarray(kernel, layer.kernel.dtype)
    layer.bias[...] = jnp.asarray(-z.mean(axis=0) @ kernel, layer.bias.dtype)
