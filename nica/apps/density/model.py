"""A fitted density model: a nica model behind the preprocessing map ``T``.

Its log-density in the data's units counts ``T``'s log-Jacobian; it samples through the exact
inverse, and saves and reloads as a nica checkpoint plus ``preprocessing.json``.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from nica.apps.density.preprocessing import Preprocessing
from nica.core.conditional import SegmentPrior, get_family
from nica.core.priors import GaussianPrior, LaplacePrior, LogisticPrior
from nica.fitting.auxiliary import encode_aux, known_labels
from nica.fitting.data import check_labels
from nica.fitting.fitted import FittedModel, load
from nica.util.files import read_json, write_json

__all__ = ["DensityModel", "load_density", "sample_prior"]


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
