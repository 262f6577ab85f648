"""Factorised source priors ``log p_i(s_i)`` for the unconditional model (paper Eq. 3).

A prior is an ``nnx.Module`` with ``log_prob(s, u=None) -> (batch, dim)``: one log-density per
sample and component, so conditional priors ``log p_i(s_i | u)`` (Eq. 4, see
:mod:`nica.core.conditional`) fill the same slot. The unconditional ones ignore ``u`` and have no
parameters.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = ["PRIORS", "GaussianPrior", "LaplacePrior", "LogisticPrior", "make_prior"]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


class GaussianPrior(nnx.Module):
    """Standard normal components: ``log p(s) = -s^2/2 - log(2 pi)/2``."""

    conditional = False

    def log_prob(self, s: jax.Array, u: jax.Array | None = None) -> jax.Array:
        """Per-component log-density, shape ``(batch, dim)``."""
        del u
        return -0.5 * s**2 - _HALF_LOG_2PI


class LaplacePrior(nnx.Module):
    """Unit-scale Laplace components: ``log p(s) = -|s| - log 2`` (super-Gaussian)."""

    conditional = False

    def log_prob(self, s: jax.Array, u: jax.Array | None = None) -> jax.Array:
        """Per-component log-density, shape ``(batch, dim)``."""
        del u
        return -jnp.abs(s) - math.log(2.0)


class LogisticPrior(nnx.Module):
    """Standard logistic components (smooth super-Gaussian).

    ``log p(s) = -|s| - 2 log(1 + exp(-|s|))``.
    """

    conditional = False

    def log_prob(self, s: jax.Array, u: jax.Array | None = None) -> jax.Array:
        """Per-component log-density, shape ``(batch, dim)``."""
        del u
        a = jnp.abs(s)
        return -a - 2.0 * jax.nn.softplus(-a)


PRIORS: dict[str, type] = {
    "gaussian": GaussianPrior,
    "laplace": LaplacePrior,
    "logistic": LogisticPrior,
}


def make_prior(name: str | nnx.Module) -> nnx.Module:
    """Returns the unconditional prior registered as ``name`` (a module is returned unchanged).

    Raises:
      ValueError: the name is not in ``PRIORS``.
    """
    if not isinstance(name, str):
        return name
    if name not in PRIORS:
        raise ValueError(f"unknown prior {name!r}; known: {', '.join(PRIORS)}")
    return PRIORS[name]()
