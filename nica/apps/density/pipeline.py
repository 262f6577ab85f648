"""``fit_density``: split, preprocess, fit (choosing among candidates) and evaluate on the held-out
test rows, next to the Gaussian baselines on the same rows."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

import jax
import numpy as np

from nica.apps.density.data import DensityData, prepare_density_data, training_class_log_prior
from nica.apps.density.fitting import density_batch_size, density_config, fit_nica
from nica.apps.density.gaussian import class_gaussian_log_likelihood, gaussian_log_likelihood
from nica.apps.density.model import DensityModel
from nica.apps.density.preprocessing import Preprocessing, resolve_copies
from nica.apps.density.selection import (
    DENSITY_CANDIDATES,
    DensityCandidate,
    Selection,
    select_nica,
)
from nica.fitting.config import FitConfig

__all__ = ["DensityFit", "fit_density"]

#: The default preprocessing: ``T`` is the identity.
_IDENTITY = Preprocessing()


@dataclasses.dataclass
class DensityFit:
    """A nica density fit and its held-out evaluation; every log-likelihood is per test row,
    shape ``(n_test,)``, in nats in the data's units (preprocessing Jacobian counted).

    Attributes:
      model: the :class:`DensityModel`.
      data: the split and preprocessed data it was fitted and tested on.
      test_log_likelihood: the model's ``log p(v | u)`` when conditional, else ``log p(v)``.
      gaussian_test_log_likelihood: ``log p(v)`` under the full-covariance Gaussian fitted to
        the preprocessed training rows (same preprocessing and Jacobian).
      wall_s: seconds spent training (every candidate).
      selection: the choice among :data:`DENSITY_CANDIDATES`, or ``None`` (one setting).
      marginal_test_log_likelihood: a conditional model's ``log p(v) = log sum_c p(c)
        p(v | c)``, ``p(c)`` the training class frequencies; ``None`` when unconditional.
      class_gaussian_test_log_likelihood: a conditional model's baseline ``log p(v | u)``
        (:func:`class_gaussian_log_likelihood`); ``None`` when unconditional.
    """

    model: DensityModel
    data: DensityData
    test_log_likelihood: np.ndarray
    gaussian_test_log_likelihood: np.ndarray
    wall_s: float
    selection: Selection | None = None
    marginal_test_log_likelihood: np.ndarray | None = None
    class_gaussian_test_log_likelihood: np.ndarray | None = None

    @property
    def conditional(self) -> bool:
        """Whether the model is conditioned on class labels."""
        return self.model.fitted.aux is not None


def fit_density(
    x,
    u=None,
    *,
    preprocessing: Preprocessing = _IDENTITY,
    seed: int = 0,
    test_fraction: float = 0.2,
    validation_fraction: float = 0.1,
    copies: int | None = None,
    config: FitConfig | None = None,
    candidates: Sequence[DensityCandidate] | None = DENSITY_CANDIDATES,
    progress: Callable | None = None,
    where: str = "data",
    **overrides,
) -> DensityFit:
    """Fits a density to ``x`` (optionally conditioned on labels ``u``) and evaluates it.

    ``seed``'s key is split into the data's (split and noise, :func:`prepare_density_data`)
    and the fit's (initialisation and shuffles, :func:`fit_nica`). The settings are
    :func:`density_config` of ``config`` and ``overrides``, with the minibatch of
    :func:`density_batch_size` unless ``batch_size`` is overridden. Each of ``candidates`` is
    fitted and the validation rows choose one (:func:`select_nica`); a ``depth`` in
    ``overrides``, or ``candidates=None``, fits that one setting instead.

    Args:
      x: data, shape ``(N, D)``, within the preprocessing's bounds.
      u: ``None``, or integer class labels ``(N,)`` for the conditional model (Eq. 4).
      preprocessing: the map ``T``.
      seed: seed of split, noise and fit.
      test_fraction, validation_fraction: shares of the rows held out for testing and for
        early stopping and the choice among candidates.
      copies: noise draws of each training row (``None``: :data:`DEQUANTISATION_COPIES`
        with dequantisation, else 1).
      config: base settings (default ``FitConfig()``); ``overrides`` replace fields.
      candidates: the settings the validation rows choose among (default
        :data:`DENSITY_CANDIDATES`).
      progress: called with a :class:`nica.ProgressEvent` after every epoch.
      where: the data's name in error messages.

    Raises:
      ValueError: bad data or settings. TrainingDivergedError: the fit diverged.
    """
    config = density_config(config, seed=seed, conditional=u is not None, **overrides)
    copies = resolve_copies(copies, preprocessing)
    data_key, fit_key = jax.random.split(jax.random.key(seed))
    data = prepare_density_data(
        data_key,
        x,
        u,
        preprocessing=preprocessing,
        test_fraction=test_fraction,
        validation_fraction=validation_fraction,
        copies=copies,
        where=where,
    )
    if "batch_size" not in overrides:
        batch = density_batch_size(*data.z_train.shape, config.loop.batch_size)
        config = config.replace(batch_size=batch)
    start = time.perf_counter()
    selection = None
    if candidates and "depth" not in overrides:
        fitted, selection = select_nica(fit_key, data, config, candidates, progress=progress)
    else:
        fitted = fit_nica(fit_key, data, config, progress=progress)
    wall = time.perf_counter() - start
    model = DensityModel(fitted, preprocessing)
    test = fitted.log_likelihood(data.z_test, data.u_test if fitted.aux else None)
    gaussian = gaussian_log_likelihood(data.z_train, data.z_test) + data.log_det_test
    fit = DensityFit(model, data, test + data.log_det_test, gaussian, wall, selection)
    if fitted.aux:
        v_test = data.v[data.split.test]
        log_prior = training_class_log_prior(data, fitted.aux["n_segments"])
        fit.marginal_test_log_likelihood = model.marginal_log_likelihood(v_test, log_prior)
        fit.class_gaussian_test_log_likelihood = (
            class_gaussian_log_likelihood(
                data.z_train, data.codes(data.u_train), data.z_test, data.codes(data.u_test)
            )
            + data.log_det_test
        )
    return fit
