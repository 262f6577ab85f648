"""Density estimation with the exact likelihood: preprocessing, splits, fits, samples.

A density model here is a preprocessing map ``T`` (identity, or dequantisation + logit for
bounded or discrete data) followed by a fitted nica model (standardisation, demixer ``g``,
factorised prior). Its log-density in the units of the data counts the log-Jacobian of every
step (change of variables):

    log p(v) = log p_model(T(v)) + sum_i log|dT_i/dv_i|

so test log-likelihoods compare with the literature (MAF, Real NVP): for discrete data ``v``
is the dequantised datum ``x + U``, ``U ~ U(0, 1)^D``, whose density in the data's integer units
bounds the log-probability of ``x`` from below (Theis et al. 2016). Bits per dimension are
``-log p / (D log 2)``.

Logit preprocessing (Real NVP's, with MAF's alpha-shrink), data in ``[low, high]``:

    y = (v - low) / width               width = high - low (+ 1 when dequantised)
    p = alpha + (1 - 2 alpha) y         in [alpha, 1 - alpha]: the logit stays finite
    z = log p - log(1 - p)
    log|dz/dv| = log(1 - 2 alpha) - log width - log p - log(1 - p)     (per dimension)

Everything in this module works in float64 NumPy except the model itself (float32, as fitted).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nica.core.conditional import SegmentPrior, get_family
from nica.core.priors import GaussianPrior, LaplacePrior, LogisticPrior
from nica.fitting.auxiliary import encode_aux, known_labels, read_aux
from nica.fitting.data import check_labels, check_observations, standardise
from nica.fitting.estimator import FitConfig, FittedModel, build_model, load, make_optimizer
from nica.fitting.training import RunData, TrainingDivergedError, train_runs
from nica.util.files import read_json, write_json

__all__ = [
    "CLASS_GAUSSIAN",
    "DENSITY_CANDIDATES",
    "DENSITY_OVERRIDES",
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

#: The ``FitConfig`` settings a density fit uses unless told otherwise (``FitConfig``'s own
#: defaults are tuned for source recovery). A Gaussian base density, as in MAF / Real NVP: the
#: demixer makes the shape (on the digits it beat Laplace by 2.8 nats of test
#: log-likelihood). A demixer of 3 layers with activations of slope 2 (4 layers, or slope 3,
#: overfitted the digits sooner) when the depth is fixed; :func:`fit_density` by default
#: chooses among :data:`DENSITY_CANDIDATES` instead, with the batch of
#: :func:`density_batch_size`. Early stopping on the validation split: a density on a few
#: thousand samples overfits long before the epochs run out. One initialisation. The learning
#: rate was tuned at the data's own dimension (64 on the digits), so no step scaling by D.
DENSITY_OVERRIDES: dict = {
    "prior": "gaussian",
    "depth": 3,
    "activation": "smooth_leaky_relu",
    "slope": 2.0,
    "epochs": 300,
    "learning_rate": 3e-3,
    "lr_reference_dim": None,
    "batch_size": 128,
    "eval_every": 5,
    "patience": 6,
    "restarts": 1,
}

#: Mean log-likelihoods are reported in three units; every number saved or printed says which.
LOG_LIKELIHOOD_UNITS = {
    "log_likelihood": "mean test log-likelihood, nats per sample in the data's units (higher is"
    " better)",
    "log_likelihood_stderr": "standard error of that mean, nats per sample",
    "log_likelihood_per_dim": "log_likelihood / D, nats per dimension (higher is better)",
    "bits_per_dim": "-log_likelihood / (D log 2), bits per dimension, a code length (lower is"
    " better)",
}

#: The baseline every density fit is compared with (same split, preprocessing and Jacobian).
GAUSSIAN = "full-covariance Gaussian"


@dataclasses.dataclass(frozen=True)
class DensityCandidate:
    """One setting the default density fit tries; the validation rows choose among them.

    Attributes:
      depth: square layers of the demixer (1: linear, with the Gaussian base a Gaussian).
      whiten: the first layer starts at the whitening map of the standardised training rows
        (bias included), not at a random orthogonal matrix. At depth 1 that start is the
        full-covariance Gaussian's maximum-likelihood fit, so early stopping can keep it.
    """

    depth: int
    whiten: bool = False

    @property
    def name(self) -> str:
        """``"depth 2, whitened start"``."""
        return f"depth {self.depth}" + (", whitened start" if self.whiten else "")

    def to_dict(self) -> dict:
        """JSON-ready fields and the name."""
        return {"name": self.name, **dataclasses.asdict(self)}


#: What the default ``nica density`` tries, simplest first; :func:`one_standard_error_choice`
#: of the validation log-likelihoods picks one. On scikit-learn's small tabular sets (wine,
#: iris: 105-124 training rows) the former single default (3 layers, random start) lost to
#: the full-covariance Gaussian on test (wine -20.6 against -19.4 nats, mean of 10 seeds);
#: 15-18 validation rows cannot rank deep demixers reliably, and the plain maximum still
#: picked losers, hence the one-standard-error rule and a depth-1 candidate that starts at the
#: Gaussian's fit. On the digits a whitened start helped 2 layers and hurt 3 (seeds 0-2: -98.2,
#: -98.4, -97.6 nats against -98.9, -99.4, -98.1 for 3 random-start layers and -100.2, -100.2,
#: -99.2 for 3 whitened ones), so the 3-layer candidate keeps the random start. Measured by
#: ``experiments/density_tabular.py`` (``results/density_tabular/``) and
#: ``experiments/density_real.py`` (the digits: -98.1 nats against the former -98.8).
DENSITY_CANDIDATES = (
    DensityCandidate(1, whiten=True),
    DensityCandidate(2, whiten=True),
    DensityCandidate(3),
)

#: A density fit's minibatch shrinks (to no less than ``max(D, 16)`` rows) so an epoch has at
#: least this many steps: with 105 training rows (iris) the former batch of 128 made one step
#: per epoch, and every fit still improved at its last epoch.
MIN_STEPS_PER_EPOCH = 8

#: Noise draws of each training row when dequantising (on the digits 1, 4 and 8 copies gave
#: test log-likelihoods of -107.5, -102.2 and -99.9 nats with a 2-layer demixer).
DEQUANTISATION_COPIES = 8

_LOG2 = math.log(2.0)


def resolve_copies(copies: int | None, preprocessing: Preprocessing) -> int:
    """``copies``, or its default: :data:`DEQUANTISATION_COPIES` when dequantising, else 1."""
    if copies is None:
        return DEQUANTISATION_COPIES if preprocessing.dequantise else 1
    return copies


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """The map ``T`` from data units to the model's space, with its log-Jacobian.

    Attributes:
      logit: apply the logit map on ``[low, high]`` (else ``T`` is the identity).
      low, high: the data's bounds (required with ``logit``; ``low < high``).
      dequantise: the data are integers in ``[low, high]``: add ``U(0, 1)`` noise first
        (the bin ``[x, x + 1)``), so the width is ``high - low + 1``.
      alpha: the logit's shrink towards ``1/2``, in ``(0, 1/2)`` (default MAF's 1e-6 for
        MNIST; Real NVP used 0.05; on the digits 1e-6 gave the higher test likelihood, for the
        Gaussian as for nica).
    """

    logit: bool = False
    low: float | None = None
    high: float | None = None
    dequantise: bool = False
    alpha: float = 1e-6

    def validate(self) -> Preprocessing:
        """Returns self, or raises a one-line ``ValueError`` naming the bad setting."""
        if not self.logit:
            if self.dequantise or self.low is not None or self.high is not None:
                raise ValueError("bounds and dequantisation need the logit preprocessing")
            return self
        if self.low is None or self.high is None:
            raise ValueError("the logit preprocessing needs the data's bounds low and high")
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low < self.high):
            raise ValueError(f"bounds must be finite with low < high, got {self.low}, {self.high}")
        if not 0.0 < self.alpha < 0.5:
            raise ValueError(f"alpha must be in (0, 0.5), got {self.alpha}")
        if self.dequantise and (self.low != round(self.low) or self.high != round(self.high)):
            raise ValueError("dequantisation needs integer bounds")
        return self

    @property
    def width(self) -> float:
        """Length of the interval mapped to ``(0, 1)``: ``high - low`` (+1 when dequantised)."""
        return float(self.high - self.low + (1 if self.dequantise else 0))

    def check(self, x, *, where: str = "data") -> np.ndarray:
        """Checks that ``x (N, D)`` lies in the bounds (integers when dequantised).

        Returns ``x`` as float64; a one-line ``ValueError`` naming a bad value otherwise.
        """
        x = check_observations(x, where=where).x
        if not self.logit:
            return x
        bad = (x < self.low) | (x > self.high)
        if bad.any():
            i, j = np.unravel_index(int(np.argmax(bad)), x.shape)
            raise ValueError(
                f"{where}: 'x' has {int(bad.sum())} values outside the bounds [{self.low:g},"
                f" {self.high:g}] of the logit preprocessing (first x[{i}, {j}] = {x[i, j]:g})"
            )
        if self.dequantise and np.any(x != np.round(x)):
            i, j = np.unravel_index(int(np.argmax(x != np.round(x))), x.shape)
            raise ValueError(
                f"{where}: dequantisation needs integer data, got x[{i}, {j}] = {x[i, j]:g}"
            )
        return x

    def dequantised(self, key: jax.Array, x: np.ndarray) -> np.ndarray:
        """``x + U(0, 1)`` with noise drawn from ``key`` when dequantising, else ``x``.

        Shapes ``(N, D) -> (N, D)``, float64.
        """
        x = np.asarray(x, np.float64)
        if not self.dequantise:
            return x
        return x + np.asarray(jax.random.uniform(key, x.shape), np.float64)

    def forward_and_log_det(self, v) -> tuple[np.ndarray, np.ndarray]:
        """``(T(v), log|det dT/dv|)`` with shapes ``(N, D), (N,)``; ``v`` already dequantised."""
        v = np.asarray(v, np.float64)
        if not self.logit:
            return v, np.zeros(v.shape[0])
        p = self.alpha + (1.0 - 2.0 * self.alpha) * (v - self.low) / self.width
        z = np.log(p) - np.log1p(-p)
        per_dim = math.log(1.0 - 2.0 * self.alpha) - math.log(self.width) - np.log(p)
        return z, (per_dim - np.log1p(-p)).sum(axis=1)

    def inverse(self, z) -> np.ndarray:
        """``v = T^{-1}(z)``, shape ``(N, D)`` (dequantised values in ``[low, high + 1)``)."""
        z = np.asarray(z, np.float64)
        if not self.logit:
            return z
        y = (1.0 / (1.0 + np.exp(-z)) - self.alpha) / (1.0 - 2.0 * self.alpha)
        return self.low + self.width * y

    def to_dict(self) -> dict:
        """JSON-ready fields."""
        return dataclasses.asdict(self)


def density_batch_size(
    n_train: int, dim: int, batch_size: int = DENSITY_OVERRIDES["batch_size"]
) -> int:
    """``batch_size``, or less on small data: about ``n_train / MIN_STEPS_PER_EPOCH`` rows,
    at least ``max(D, 16)`` (:data:`MIN_STEPS_PER_EPOCH`)."""
    return min(batch_size, max(n_train // MIN_STEPS_PER_EPOCH, dim, 16))


def bits_per_dim(log_likelihood: float, dim: int) -> float:
    """``-log p / (D log 2)``: a mean log-likelihood in nats per sample as bits per dimension."""
    return -log_likelihood / (dim * _LOG2)


class Split(NamedTuple):
    """Row indices of the three parts of a data set, each sorted."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray


def split_indices(
    key: jax.Array, n: int, test_fraction: float, validation_fraction: float
) -> Split:
    """A random train / validation / test split of ``n`` rows (fractions of ``n``)."""
    n_test = int(round(test_fraction * n))
    n_val = int(round(validation_fraction * n))
    if not (0 < test_fraction < 1 and 0 < validation_fraction < 1) or min(n_test, n_val) < 1:
        raise ValueError(
            f"test_fraction={test_fraction} and validation_fraction={validation_fraction} must"
            f" each leave at least one of {n} rows"
        )
    if n - n_test - n_val < 2:
        raise ValueError(f"the test and validation splits leave under 2 of {n} rows to train on")
    order = np.asarray(jax.random.permutation(key, n))
    parts = order[n_test + n_val :], order[n_test : n_test + n_val], order[:n_test]
    return Split(*(np.sort(p) for p in parts))


def gaussian_log_likelihood(z_train: np.ndarray, z_test: np.ndarray) -> np.ndarray:
    """Log-density ``(M,)`` of ``z_test (M, D)`` under the maximum-likelihood full-covariance
    Gaussian of ``z_train (N, D)``."""
    mean = z_train.mean(axis=0)
    return _gaussian_log_density(z_test - mean, np.cov(z_train, rowvar=False, bias=True))


def class_gaussian_log_likelihood(
    z_train: np.ndarray, u_train: np.ndarray, z_test: np.ndarray, u_test: np.ndarray
) -> np.ndarray:
    """``log p(z | u)``, shape ``(M,)``, under the maximum-likelihood Gaussian with one mean per
    class and a pooled full covariance (linear discriminant analysis's density), fitted to
    ``z_train (N, D)`` with label codes ``u_train (N,)`` (``0..M-1``, see
    :func:`nica.fitting.auxiliary.encode_aux`); a class without training rows gets the overall mean.
    The baseline of a conditional model's ``log p(x | u)``."""
    n_classes = int(max(u_train.max(), u_test.max())) + 1
    means = np.repeat(z_train.mean(axis=0, keepdims=True), n_classes, axis=0)
    for c in np.unique(u_train):
        means[c] = z_train[u_train == c].mean(axis=0)
    residual = z_train - means[u_train]
    cov = residual.T @ residual / z_train.shape[0]
    return _gaussian_log_density(z_test - means[u_test], cov)


def _gaussian_log_density(centred: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """``log N(centred; 0, cov)`` per row, ``(M, D) -> (M,)``."""
    dim = centred.shape[1]
    chol = np.linalg.cholesky(np.reshape(cov, (dim, dim)))
    white = np.linalg.solve(chol, centred.T)
    log_det = 2.0 * np.log(np.diag(chol)).sum()
    return -0.5 * (white**2).sum(axis=0) - 0.5 * log_det - 0.5 * dim * math.log(2.0 * math.pi)


def _standard_draw(key: jax.Array, family: str, shape: tuple) -> jax.Array:
    draw = {"gaussian": jax.random.normal, "laplace": jax.random.laplace}
    draw["logistic"] = jax.random.logistic
    return draw[family](key, shape, jnp.float32)


_FAMILY = {GaussianPrior: "gaussian", LaplacePrior: "laplace", LogisticPrior: "logistic"}


def sample_prior(key: jax.Array, prior, dim: int, n: int, u=None) -> np.ndarray:
    """``n`` draws ``s (n, dim)`` from a factorised prior: one of ``nica.core.priors``, or a
    :class:`SegmentPrior` given label codes ``u (n,)`` (``0..M-1``, the prior's rows: a
    component's location and scale per label)."""
    if isinstance(prior, SegmentPrior):
        if u is None or np.shape(u) != (n,):
            raise ValueError(f"sampling a segment prior needs labels u of shape ({n},)")
        labels = check_labels(u)
        raw_shape = None if prior.raw_shape is None else prior.raw_shape[...]
        eps = get_family(prior.family).sample(key, (n, dim), raw_shape)
        loc = prior.loc[...][labels] if prior.learn_location else 0.0
        return np.asarray(loc + jnp.exp(prior.log_scale[...][labels]) * eps, np.float64)
    if type(prior) not in _FAMILY:
        raise ValueError(f"cannot sample from a prior of type {type(prior).__name__}")
    return np.asarray(_standard_draw(key, _FAMILY[type(prior)], (n, dim)), np.float64)


@dataclasses.dataclass
class DensityModel:
    """A fitted nica model behind a preprocessing map: a density in the data's units.

    Attributes:
      fitted: the nica model of ``T(v)`` (with its standardisation).
      preprocessing: the map ``T``.
    """

    fitted: FittedModel
    preprocessing: Preprocessing

    @property
    def dim(self) -> int:
        """Data dimension ``D``."""
        return self.fitted.dim

    def log_likelihood(self, v, u=None) -> np.ndarray:
        """``log p(v | u)`` per sample, shape ``(N,)``, in the data's units; ``v (N, D)`` is
        already dequantised (see :meth:`Preprocessing.dequantised`)."""
        z, log_det = self.preprocessing.forward_and_log_det(v)
        return self.fitted.log_likelihood(z, u) + log_det

    def class_log_likelihoods(self, v) -> np.ndarray:
        """``log p(v | c)`` for every class ``c`` of a conditional (segment-label) model,
        shape ``(N, n_classes)``; ``v (N, D)`` already dequantised."""
        if not self.fitted.aux or self.fitted.aux["kind"] != "segments":
            raise ValueError("class log-likelihoods need a model conditioned on labels")
        n = np.shape(v)[0]
        columns = [self.log_likelihood(v, np.repeat(c, n)) for c in self.labels]
        return np.stack(columns, axis=1)

    @property
    def labels(self) -> np.ndarray | None:
        """The class labels of a conditional model, in the column order of
        :meth:`class_log_likelihoods`; ``None`` for an unconditional one."""
        if not self.fitted.aux or self.fitted.aux["kind"] != "segments":
            return None
        return known_labels(self.fitted.aux)

    def marginal_log_likelihood(self, v, class_log_prior) -> np.ndarray:
        """``log p(v) = log sum_c p(c) p(v | c)`` of a conditional model, shape ``(N,)``.

        Args:
          v: dequantised data, ``(N, D)``.
          class_log_prior: ``log p(c)``, shape ``(n_classes,)`` (e.g. training frequencies).
        """
        joint = self.class_log_likelihoods(v) + np.asarray(class_log_prior, np.float64)
        peak = joint.max(axis=1, keepdims=True)
        return (peak + np.log(np.exp(joint - peak).sum(axis=1, keepdims=True)))[:, 0]

    def sample(self, key: jax.Array, n: int, u=None) -> np.ndarray:
        """``n`` samples ``v = T^{-1}(g^{-1}(s))``, ``s`` from the prior; shape ``(n, D)``.

        Args:
          key: PRNG key of the source draws.
          n: number of samples (``len(u)`` for a conditional model).
          u: ``(n,)`` class labels of a conditional model (among :attr:`labels`), else
            ``None``.
        """
        codes = encode_aux(u, self.fitted.aux, where="u")
        s = sample_prior(key, self.fitted.model.prior, self.dim, n, codes)
        return self.preprocessing.inverse(self.fitted.inverse(s))

    def save(self, directory: str | os.PathLike) -> Path:
        """Writes the nica checkpoint and ``preprocessing.json`` into ``directory``."""
        directory = self.fitted.save(directory)
        write_json(directory / "preprocessing.json", self.preprocessing.to_dict())
        return directory


def load_density(directory: str | os.PathLike) -> DensityModel:
    """Reloads a :class:`DensityModel` written by :meth:`DensityModel.save`."""
    try:
        record = read_json(Path(directory) / "preprocessing.json")
        preprocessing = Preprocessing(**record).validate()
    except (OSError, ValueError, TypeError) as err:
        raise ValueError(f"{directory}: not a nica density checkpoint ({err})") from None
    return DensityModel(load(directory), preprocessing)


@dataclasses.dataclass(frozen=True)
class DensityData:
    """One seed's data in the model's space, split once and shared by every model compared.

    Attributes:
      split: the row indices of the input.
      v: the dequantised input (one noise draw; the input itself without dequantisation),
        shape ``(N, D)``: validation and test rows are evaluated at these values.
      z_train: ``T`` of the training rows, ``copies`` times with fresh noise each,
        shape ``(copies * n_train, D)``.
      z_val, z_test: ``T(v)`` of the validation and test rows.
      log_det_val, log_det_test: ``log|det dT/dv|`` of the validation and test rows,
        ``(n_val,)`` and ``(n_test,)``.
      u_train, u_val, u_test: the labels of those rows as given (``u_train`` repeated like
        ``z_train``), or ``None``.
      aux: how the labels were read (``nica.fitting.auxiliary.read_aux``: the sorted label set), or
        ``None``; :meth:`codes` maps labels to their rows ``0..M-1``.
    """

    split: Split
    v: np.ndarray
    z_train: np.ndarray
    z_val: np.ndarray
    z_test: np.ndarray
    log_det_val: np.ndarray
    log_det_test: np.ndarray
    u_train: np.ndarray | None
    u_val: np.ndarray | None
    u_test: np.ndarray | None
    aux: dict | None = None

    def codes(self, u: np.ndarray | None) -> np.ndarray | None:
        """Label codes ``0..M-1`` of labels ``u`` (one of ``u_train``, ``u_val``, ``u_test``)."""
        return None if u is None else encode_aux(u, self.aux)


def prepare_density_data(
    key: jax.Array,
    x,
    u=None,
    *,
    preprocessing: Preprocessing,
    test_fraction: float = 0.2,
    validation_fraction: float = 0.1,
    copies: int = 1,
    where: str = "data",
) -> DensityData:
    """Checks ``x (N, D)`` (and labels ``u (N,)``), splits it and maps it through ``T``.

    ``key`` is split into the split's key and the noise's. With dequantisation, the
    training rows appear ``copies`` times with independent noise (the objective is the
    expectation over the noise; copies estimate it better than one draw, and no noise draw of
    a validation or test row is ever trained on).
    """
    preprocessing = preprocessing.validate()
    if copies < 1 or (copies > 1 and not preprocessing.dequantise):
        raise ValueError(f"copies={copies}: more than 1 copy needs dequantisation")
    x = preprocessing.check(x, where=where)
    labels, aux = _read_labels(u, x.shape[0], where)
    split_key, noise_key = jax.random.split(key)
    split = split_indices(split_key, x.shape[0], test_fraction, validation_fraction)
    keys = jax.random.split(noise_key, copies)
    v = preprocessing.dequantised(keys[0], x)
    extra = [preprocessing.dequantised(k, x[split.train]) for k in keys[1:]]
    z_train = preprocessing.forward_and_log_det(np.concatenate([v[split.train], *extra]))[0]
    z_val, log_det_val = preprocessing.forward_and_log_det(v[split.validation])
    z_test, log_det_test = preprocessing.forward_and_log_det(v[split.test])
    pick = lambda idx, k=1: None if labels is None else np.tile(labels[idx], k)  # noqa: E731
    return DensityData(
        split,
        v,
        z_train,
        z_val,
        z_test,
        log_det_val,
        log_det_test,
        pick(split.train, copies),
        pick(split.validation),
        pick(split.test),
        aux,
    )


def density_config(config: FitConfig | None = None, **overrides) -> FitConfig:
    """``config`` (default ``FitConfig()``) with :data:`DENSITY_OVERRIDES`, then
    ``overrides``, applied; validated."""
    config = FitConfig() if config is None else config
    fields = {f.name for f in dataclasses.fields(FitConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown FitConfig setting(s) {unknown}")
    return dataclasses.replace(config, **{**DENSITY_OVERRIDES, **overrides}).validate()


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
    returned model's ``log_likelihood`` is in ``T``'s units. ``config.validation_fraction``
    is not used: the validation rows are ``data``'s. Conditional (Eq. 4) when ``data`` has
    labels and ``config.conditional``. With ``whiten`` the first layer starts at the whitening
    map of the standardised training rows (see :class:`DensityCandidate`).

    Raises:
      TrainingDivergedError: the fit diverged.
    """
    conditional = config.conditional and data.u_train is not None
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
    no_split = dataclasses.replace(config, validation_fraction=0.0)
    best, (result,) = train_runs(
        graphdef,
        jax.tree.map(lambda a: a[None, None], params),
        rest,
        run_data,
        shuffle_key[None, None],
        optimizer=make_optimizer(no_split, z_train.shape[0]),
        gradient=config.gradient,
        settings=config.settings(config.epochs, config.patience),
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


def one_standard_error_choice(val_log_likelihood: np.ndarray) -> tuple[int, np.ndarray]:
    """The one-standard-error rule over candidates ordered simplest first.

    Args:
      val_log_likelihood: per-row validation log-likelihoods, ``(K, n_val)``, one row per
        candidate (``-inf`` rows for candidates that failed).

    Returns:
      ``(chosen, stderr)``: the first candidate whose mean is at least the best mean less the
      standard error of its per-row difference to the best (a paired error, ``(K,)``; 0 for
      the best itself), so a more flexible candidate must win by more than the noise of the
      validation rows.
    """
    val = np.asarray(val_log_likelihood, np.float64)
    val = np.where(np.isnan(val), -np.inf, val)
    means = val.mean(axis=1)
    best = int(np.argmax(means))
    stderr = np.zeros(val.shape[0])
    for k in range(val.shape[0]):
        diff = val[best] - val[k]
        if k != best and np.all(np.isfinite(diff)) and diff.size > 1:
            stderr[k] = float(np.std(diff, ddof=1) / math.sqrt(diff.size))
    chosen = next(k for k in range(val.shape[0]) if means[k] >= means[best] - stderr[k])
    return chosen, stderr


@dataclasses.dataclass
class Selection:
    """The choice among candidate settings, made on the validation rows only.

    Attributes:
      candidates: the settings tried, simplest first.
      val_log_likelihood: each fit's mean validation log-likelihood in the data's units
        (nats per sample, higher is better), ``(K,)``; ``-inf`` for a fit that diverged.
      stderr: standard error of each one's per-row difference to the best, ``(K,)``.
      chosen: index of the kept candidate (:func:`one_standard_error_choice`).
      fits: the fitted models (``None`` where a fit diverged), for their training curves.
      gaussian_val_log_likelihood: the full-covariance Gaussian's on the same rows.
    """

    candidates: tuple[DensityCandidate, ...]
    val_log_likelihood: np.ndarray
    stderr: np.ndarray
    chosen: int
    fits: list
    gaussian_val_log_likelihood: float

    def to_dict(self) -> dict:
        """JSON-ready record: the rule, and per candidate its score, error and epochs."""
        rows = []
        for k, candidate in enumerate(self.candidates):
            fit = self.fits[k]
            rows.append(
                {
                    **candidate.to_dict(),
                    "val_log_likelihood": float(self.val_log_likelihood[k]),
                    "stderr_of_difference_to_best": float(self.stderr[k]),
                    "best_epoch": None if fit is None else fit.result.best_epoch,
                    "epochs_run": None if fit is None else fit.result.epochs_run,
                    "chosen": k == self.chosen,
                }
            )
        return {
            "rule": "one-standard-error rule on the validation rows (never the test rows):"
            " the simplest candidate whose mean validation log-likelihood is within one"
            " standard error (paired, per row) of the best one's",
            "val_log_likelihood_units": "nats per sample in the data's units (higher is better)",
            "chosen": self.candidates[self.chosen].name,
            "gaussian_val_log_likelihood": self.gaussian_val_log_likelihood,
            "candidates": rows,
        }


def select_nica(
    key: jax.Array,
    data: DensityData,
    config: FitConfig,
    candidates: Sequence[DensityCandidate] = DENSITY_CANDIDATES,
    *,
    progress: Callable | None = None,
) -> tuple[FittedModel, Selection]:
    """Fits ``config`` at each candidate's setting (same key) and keeps one, chosen by the
    validation rows' log-likelihood alone (:func:`one_standard_error_choice`).

    The test rows are never read. ``progress`` events carry the candidate's name as phase.

    Raises:
      TrainingDivergedError: every candidate diverged (the last one's error).
    """
    fits, scores, error = [], [], None
    for candidate in candidates:
        named = None
        if progress is not None:
            named = lambda event, c=candidate: progress(event._replace(phase=c.name))  # noqa: E731
        try:
            fitted = fit_nica(
                key,
                data,
                dataclasses.replace(config, depth=candidate.depth),
                whiten=candidate.whiten,
                progress=named,
            )
        except TrainingDivergedError as err:
            fits.append(None)
            scores.append(np.full(data.z_val.shape[0], -np.inf))
            error = err
            continue
        ll = fitted.log_likelihood(data.z_val, data.u_val if fitted.aux else None)
        fits.append(fitted)
        scores.append(ll + data.log_det_val)
    if all(fit is None for fit in fits):
        raise error
    chosen, stderr = one_standard_error_choice(np.stack(scores))
    gaussian = gaussian_log_likelihood(data.z_train, data.z_val) + data.log_det_val
    selection = Selection(
        tuple(candidates),
        np.stack(scores).mean(axis=1),
        stderr,
        chosen,
        fits,
        float(gaussian.mean()),
    )
    return fits[chosen], selection


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


def _read_labels(u, n: int, where: str) -> tuple[np.ndarray | None, dict | None]:
    """Class labels ``u`` as given ``(N,)`` (one-hot rows as column indices) and their label
    set; a one-line ValueError for covariates or a wrong length."""
    if u is None:
        return None, None
    u = np.asarray(u)
    if u.ndim == 0 or u.shape[0] != n:
        raise ValueError(f"{where}: 'u' has shape {u.shape} but 'x' has {n} rows")
    reading = read_aux(u, where=where)
    if reading.aux["kind"] != "segments":
        raise ValueError(f"{where}: density conditioning needs class labels; {reading.description}")
    labels = np.asarray(reading.aux["labels"])[reading.values]
    return labels, reading.aux


def fit_density(
    x,
    u=None,
    *,
    preprocessing: Preprocessing = Preprocessing(),
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
      progress: called with a :class:`nica.fitting.training.ProgressEvent` after every epoch.
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
        batch = density_batch_size(*data.z_train.shape, config.batch_size)
        config = dataclasses.replace(config, batch_size=batch)
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


def training_class_log_prior(data: DensityData, n_classes: int) -> np.ndarray:
    """``log p(c)``, shape ``(n_classes,)``: the class frequencies of the training rows, in
    the order of the label set (``data.aux["labels"]``)."""
    counts = np.bincount(data.codes(data.u_train), minlength=n_classes).astype(np.float64)
    with np.errstate(divide="ignore"):
        return np.log(counts / counts.sum())


def summarise(
    log_likelihood: np.ndarray, dim: int, *, model: str | None = None, quantity: str | None = None
) -> dict:
    """Mean test log-likelihood (nats per sample), its standard error, per dimension and in
    bits per dimension, from per-sample values ``(N,)`` (units: :data:`LOG_LIKELIHOOD_UNITS`);
    labelled with ``model`` and ``quantity`` (e.g. ``"log p(x | u)"``) when given."""
    mean = float(np.mean(log_likelihood))
    labels = {"model": model, "quantity": quantity}
    return {
        **{k: v for k, v in labels.items() if v is not None},
        "log_likelihood": mean,
        "log_likelihood_stderr": float(np.std(log_likelihood) / math.sqrt(log_likelihood.size)),
        "log_likelihood_per_dim": mean / dim,
        "bits_per_dim": bits_per_dim(mean, dim),
    }


#: The baseline of a conditional model's ``log p(x | u)``.
CLASS_GAUSSIAN = "Gaussian with class means and a pooled full covariance"
# Quantities, as they are labelled in reports.
_MARGINAL = "log p(x)"
_CONDITIONAL = "log p(x | u)"
_MIXTURE = "log p(x) = log sum_c p(c) p(x | c)"


def summarise_fit(fit: DensityFit) -> dict[str, dict]:
    """Labelled :func:`summarise` of every test log-likelihood of ``fit``: ``test`` (the
    model's own: ``log p(x | u)`` when conditional, else ``log p(x)``), ``gaussian_test``,
    and when conditional ``marginal_test`` (the mixture over classes, ``p(c)`` the training
    class frequencies) and ``class_gaussian_test``."""
    dim = fit.model.dim
    nica = "nica, conditional on the class" if fit.conditional else "nica"
    summaries = {
        "test": summarise(
            fit.test_log_likelihood,
            dim,
            model=nica,
            quantity=_CONDITIONAL if fit.conditional else _MARGINAL,
        ),
        "gaussian_test": summarise(
            fit.gaussian_test_log_likelihood, dim, model=GAUSSIAN, quantity=_MARGINAL
        ),
    }
    if fit.conditional:
        summaries["marginal_test"] = {
            **summarise(fit.marginal_test_log_likelihood, dim, model=nica, quantity=_MIXTURE),
            "class_prior": "p(c): the class frequencies of the training rows",
        }
        summaries["class_gaussian_test"] = summarise(
            fit.class_gaussian_test_log_likelihood, dim, model=CLASS_GAUSSIAN, quantity=_CONDITIONAL
        )
    return summaries


def compare_with_gaussian(fit: DensityFit) -> list[dict]:
    """Like-with-like test comparisons of the nica fit with its Gaussian baselines.

    ``log p(x)`` against the full-covariance Gaussian's (a conditional model's mixture over
    the classes), and for a conditional model also ``log p(x | u)`` against
    :data:`CLASS_GAUSSIAN`'s. Each record has both means (nats per sample), the difference
    nica minus baseline with the standard error of the per-row differences, ``nica_loses``
    (difference below 0) and ``line``, a sentence saying so.
    """
    marginal = fit.marginal_test_log_likelihood if fit.conditional else fit.test_log_likelihood
    pairs = [(_MARGINAL, marginal, fit.gaussian_test_log_likelihood, GAUSSIAN)]
    if fit.conditional:
        pairs.append(
            (
                _CONDITIONAL,
                fit.test_log_likelihood,
                fit.class_gaussian_test_log_likelihood,
                CLASS_GAUSSIAN,
            )
        )
    records = []
    for quantity, mine, theirs, baseline in pairs:
        diff = np.asarray(mine) - np.asarray(theirs)
        mean = float(diff.mean())
        stderr = float(np.std(diff, ddof=1) / math.sqrt(diff.size)) if diff.size > 1 else 0.0
        verdict = "loses to" if mean < 0 else "beats"
        noise = ", within noise (2 s.e.)" if abs(mean) <= 2 * stderr else ""
        line = (
            f"nica {verdict} the {baseline} on the test split: {quantity} "
            f"{float(np.mean(mine)):.3f} against {float(np.mean(theirs)):.3f} nats per sample "
            f"(higher is better); difference {mean:+.3f} ± {stderr:.3f} (1 s.e.){noise}"
        )
        records.append(
            {
                "quantity": quantity,
                "baseline": baseline,
                "nica_log_likelihood": float(np.mean(mine)),
                "baseline_log_likelihood": float(np.mean(theirs)),
                "difference": mean,
                "difference_stderr": stderr,
                "nica_loses": mean < 0,
                "line": line,
            }
        )
    return records
