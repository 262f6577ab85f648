"""Density estimation with the exact likelihood: preprocessing, splits, fits, samples.

A density model here is a preprocessing map ``T`` (identity, or dequantisation + logit for
bounded or discrete data) followed by a fitted nica model (standardisation, demixer ``g``,
factorised prior). Its log-density in the units of the data counts the log-Jacobian of every
step (change of variables):

    log p(v) = log p_model(T(v)) + sum_i log|dT_i/dv_i|

so test log-likelihoods compare with the literature (MAF, Real NVP); bits per dimension are
``-log p / (D log 2)``. Everything here works in float64 NumPy except the model itself
(float32, as fitted).

Modules, one job each:

* :mod:`~nica.apps.density.preprocessing`: the map ``T`` and its log-Jacobian.
* :mod:`~nica.apps.density.data`: the train / validation / test split mapped through ``T``.
* :mod:`~nica.apps.density.gaussian`: the Gaussian baselines.
* :mod:`~nica.apps.density.model`: :class:`DensityModel` (log-density, samples, checkpoint).
* :mod:`~nica.apps.density.fitting`: the density settings and one early-stopped nica fit.
* :mod:`~nica.apps.density.selection`: the choice among candidates on the validation rows.
* :mod:`~nica.apps.density.pipeline`: :func:`fit_density`, fit and held-out evaluation.
* :mod:`~nica.apps.density.summary`: reported numbers, units and comparisons.
* :mod:`~nica.apps.density.cli` and :mod:`~nica.apps.density.outputs`: ``nica density``.
"""

from nica.apps.density.data import (
    DensityData,
    Split,
    prepare_density_data,
    split_indices,
    training_class_log_prior,
)
from nica.apps.density.fitting import (
    DENSITY_PRESET,
    MIN_STEPS_PER_EPOCH,
    density_batch_size,
    density_config,
    fit_nica,
)
from nica.apps.density.gaussian import (
    CLASS_GAUSSIAN,
    GAUSSIAN,
    class_gaussian_log_likelihood,
    gaussian_log_likelihood,
)
from nica.apps.density.model import DensityModel, load_density, sample_prior
from nica.apps.density.pipeline import DensityFit, fit_density
from nica.apps.density.preprocessing import DEQUANTISATION_COPIES, Preprocessing, resolve_copies
from nica.apps.density.selection import (
    DENSITY_CANDIDATES,
    DensityCandidate,
    Selection,
    one_standard_error_choice,
    select_nica,
)
from nica.apps.density.summary import (
    LOG_LIKELIHOOD_UNITS,
    bits_per_dim,
    compare_with_gaussian,
    summarise,
    summarise_fit,
)

__all__ = [
    "CLASS_GAUSSIAN",
    "DENSITY_CANDIDATES",
    "DENSITY_PRESET",
    "DEQUANTISATION_COPIES",
    "GAUSSIAN",
    "LOG_LIKELIHOOD_UNITS",
    "MIN_STEPS_PER_EPOCH",
    "DensityCandidate",
    "DensityData",
    "DensityFit",
    "DensityModel",
    "Preprocessing",
    "Selection",
    "Split",
    "bits_per_dim",
    "class_gaussian_log_likelihood",
    "compare_with_gaussian",
    "density_batch_size",
    "density_config",
    "fit_density",
    "fit_nica",
    "gaussian_log_likelihood",
    "load_density",
    "one_standard_error_choice",
    "prepare_density_data",
    "resolve_copies",
    "sample_prior",
    "select_nica",
    "split_indices",
    "summarise",
    "summarise_fit",
    "training_class_log_prior",
]
