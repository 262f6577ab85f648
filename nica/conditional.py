"""Conditional source priors ``log p_i(s_i | u)`` for the auxiliary-variable model (paper Eq. 4).

Each component is a location-scale density, Gaussian or Laplace, with closed-form normaliser:

    log p_i(s_i | u) = log q((s_i - loc_i(u)) / scale_i(u)) - log scale_i(u)

* :class:`SegmentPrior`: ``u`` is an integer segment label in ``0 .. n_segments - 1``; the
  per-segment, per-component location and log-scale are free parameters.
* :class:`ContinuousPrior`: ``u`` is a float vector ``(batch, aux_dim)``; a small MLP maps it to
  location and log-scale.

Their parameters get ordinary gradients; only the demixer's square layers get relative ones.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = [
    "CONDITIONAL_FAMILIES",
    "ContinuousPrior",
    "SegmentPrior",
    "standard_log_density",
]

#: Standardised log-densities ``log q(z)`` of the location-scale families.
CONDITIONAL_FAMILIES = {
    "gaussian": lambda z: -0.5 * z**2 - 0.5 * math.log(2.0 * math.pi),
    "laplace": lambda z: -jnp.abs(z) - math.log(2.0),
}


def standard_log_density(family: str):
    """Returns ``log q`` for a family name in ``CONDITIONAL_FAMILIES`` (ValueError otherwise)."""
    if family not in CONDITIONAL_FAMILIES:
        raise ValueError(
            f"unknown conditional prior family {family!r}; known: {', '.join(CONDITIONAL_FAMILIES)}"
        )
    return CONDITIONAL_FAMILIES[family]


def _location_scale_log_prob(family, s, loc, log_scale):
    return standard_log_density(family)((s - loc) * jnp.exp(-log_scale)) - log_scale


class SegmentPrior(nnx.Module):
    """Per-segment location and log-scale for each component (discrete ``u``).

    Args:
      n_segments: number of segment labels ``M``; ``u`` takes values ``0 .. M-1``.
      dim: number of components ``D``.
      family: ``"gaussian"`` or ``"laplace"``.
      learn_location: learn per-segment means (else fixed at 0).
      param_dtype: dtype of the parameters.
    """

    conditional = True

    def __init__(
        self,
        n_segments: int,
        dim: int,
        *,
        family: str = "gaussian",
        learn_location: bool = True,
        param_dtype=jnp.float32,
    ):
        standard_log_density(family)
        if n_segments < 1 or dim < 1:
            raise ValueError(f"n_segments and dim must be >= 1, got {n_segments}, {dim}")
        self.n_segments = n_segments
        self.family = family
        self.learn_location = learn_location
        self.log_scale = nnx.Param(jnp.zeros((n_segments, dim), param_dtype))
        self.loc = nnx.Param(jnp.zeros((n_segments, dim), param_dtype))

    def log_prob(self, s: jax.Array, u: jax.Array) -> jax.Array:
        """Per-component log-density, shape ``(batch, dim)``.

        Args:
          s: sources, shape ``(batch, dim)``.
          u: integer segment labels, shape ``(batch,)``.
        """
        loc = self.loc[...][u] if self.learn_location else 0.0
        return _location_scale_log_prob(self.family, s, loc, self.log_scale[...][u])


class ContinuousPrior(nnx.Module):
    """An MLP ``u -> (loc, log_scale)`` for a continuous auxiliary variable.

    Args:
      aux_dim: dimension ``d`` of ``u``.
      dim: number of components ``D``.
      family: ``"gaussian"`` or ``"laplace"``.
      hidden: widths of the hidden layers (tanh activations).
      rngs: key source for initialisation.
      param_dtype: dtype of the parameters.
    """

    conditional = True

    def __init__(
        self,
        aux_dim: int,
        dim: int,
        *,
        family: str = "gaussian",
        hidden: tuple[int, ...] = (32, 32),
        rngs: nnx.Rngs,
        param_dtype=jnp.float32,
    ):
        standard_log_density(family)
        self.family = family
        widths = (aux_dim, *hidden)
        self.hidden = nnx.List(
            [
                nnx.Linear(a, b, rngs=rngs, param_dtype=param_dtype)
                for a, b in zip(widths[:-1], widths[1:], strict=True)
            ]
        )
        self.head = nnx.Linear(
            widths[-1],
            2 * dim,
            kernel_init=nnx.initializers.zeros_init(),
            rngs=rngs,
            param_dtype=param_dtype,
        )

    def log_prob(self, s: jax.Array, u: jax.Array) -> jax.Array:
        """Per-component log-density, shape ``(batch, dim)``.

        Args:
          s: sources, shape ``(batch, dim)``.
          u: auxiliary variables, shape ``(batch, aux_dim)``.
        """
        h = u.astype(s.dtype)
        for layer in self.hidden:
            h = jnp.tanh(layer(h))
        loc, log_scale = jnp.split(self.head(h), 2, axis=-1)
        return _location_scale_log_prob(self.family, s, loc, log_scale)
