"""Conditional source priors ``log p_i(s_i | u)`` for the auxiliary-variable model (paper Eq. 4).

Each component is a location-scale density with closed-form normaliser:

    log p_i(s_i | u) = log q((s_i - loc_i(u)) / scale_i(u); beta_i) - log scale_i(u)

``q`` is Gaussian, Laplace, or (``gennorm``) a generalised normal whose shape ``beta_i`` is
learned per component between Laplace (1) and Gaussian (2).

* :class:`SegmentPrior`: ``u`` is an integer segment label in ``0 .. n_segments - 1``; the
  per-segment, per-component location and log-scale are free parameters.
* :class:`ContinuousPrior`: ``u`` is a float vector ``(batch, aux_dim)``; a small MLP maps it to
  location and log-scale.

Their parameters get ordinary gradients; only the demixer's square layers get relative ones.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = [
    "CONDITIONAL_FAMILIES",
    "ContinuousPrior",
    "Family",
    "SegmentPrior",
    "gennorm_raw_shape",
    "gennorm_shape",
    "get_family",
    "resolved_shape_init",
]

#: The interval ``(low, high)`` a ``gennorm`` shape is kept in: Laplace to Gaussian.
GENNORM_SHAPES = (1.0, 2.0)


@dataclasses.dataclass(frozen=True)
class Family:
    """A standardised density ``log q(z; shape)`` of a location-scale family.

    Attributes:
      log_density: ``(z (batch, dim), raw_shape (dim,) or None) -> (batch, dim)``.
      sample: ``(key, shape (n, dim), raw_shape (dim,) or None) -> z``, float32 draws of ``q``.
      shape_init: default initial shape of every component, or ``None`` for a family without
        one (then ``raw_shape`` is ``None``).
      raw_from_shape: a shape's unconstrained parameter (ValueError outside the family's range).
    """

    log_density: Callable[[jax.Array, jax.Array | None], jax.Array]
    sample: Callable[[jax.Array, tuple, jax.Array | None], jax.Array]
    shape_init: float | None = None
    raw_from_shape: Callable[[float], float] | None = None


def gennorm_shape(raw_shape: jax.Array) -> jax.Array:
    """The generalised normal's exponent ``beta`` in ``GENNORM_SHAPES`` from its raw parameter."""
    low, high = GENNORM_SHAPES
    return low + (high - low) * jax.nn.sigmoid(raw_shape)


def gennorm_raw_shape(beta: float) -> float:
    """Inverse of :func:`gennorm_shape` (ValueError unless ``beta`` is inside the range)."""
    low, high = GENNORM_SHAPES
    if not low < beta < high:
        raise ValueError(f"a gennorm shape must lie strictly between {low} and {high}, got {beta}")
    p = (beta - low) / (high - low)
    return math.log(p / (1.0 - p))


def _gennorm_log_density(z: jax.Array, raw_shape: jax.Array) -> jax.Array:
    """``log q(z) = log beta - log 2 - lgamma(1/beta) - |z|^beta`` (unit scale).

    ``|z|^beta`` is ``exp(beta log|z|)``: one log and one exp, whose derivatives reuse both
    (``a ** beta`` differentiates through two more powers: a 5-source epoch took 1.27x that of
    the Laplace prior, against 1.05-1.2x in the same noisy run; a whole default ``nica fit``
    took 1.22x). It is 0, with derivative 0 in ``beta``, at ``z = 0``.
    """
    beta = gennorm_shape(raw_shape)
    a = jnp.abs(z)
    positive = a > 0
    power = jnp.where(positive, jnp.exp(beta * jnp.log(jnp.where(positive, a, 1.0))), 0.0)
    return jnp.log(beta) - math.log(2.0) - jax.scipy.special.gammaln(1.0 / beta) - power


def _gennorm_sample(key: jax.Array, shape: tuple, raw_shape: jax.Array) -> jax.Array:
    """``|z|^beta`` is Gamma(1/beta, 1) distributed and the sign is fair."""
    beta = gennorm_shape(raw_shape).astype(jnp.float32)
    magnitude_key, sign_key = jax.random.split(key)
    power = jax.random.gamma(magnitude_key, jnp.broadcast_to(1.0 / beta, shape), shape)
    return jax.random.rademacher(sign_key, shape, jnp.float32) * power ** (1.0 / beta)


#: The location-scale families, by name.
CONDITIONAL_FAMILIES: dict[str, Family] = {
    "gaussian": Family(
        lambda z, _: -0.5 * z**2 - 0.5 * math.log(2.0 * math.pi),
        lambda key, shape, _: jax.random.normal(key, shape, jnp.float32),
    ),
    "laplace": Family(
        lambda z, _: -jnp.abs(z) - math.log(2.0),
        lambda key, shape, _: jax.random.laplace(key, shape, jnp.float32),
    ),
    # Starts at the Laplace end: started half-way, fits of Laplace sources lost MCC, while from
    # here Gaussian sources still move to beta ~ 2 (docs/configuration.md, "Prior").
    "gennorm": Family(
        _gennorm_log_density, _gennorm_sample, shape_init=1.02, raw_from_shape=gennorm_raw_shape
    ),
}


def get_family(family: str) -> Family:
    """Returns the :class:`Family` named ``family`` in ``CONDITIONAL_FAMILIES`` (ValueError
    otherwise)."""
    if family not in CONDITIONAL_FAMILIES:
        raise ValueError(
            f"unknown conditional prior family {family!r}; known: {', '.join(CONDITIONAL_FAMILIES)}"
        )
    return CONDITIONAL_FAMILIES[family]


def resolved_shape_init(family: str, shape_init: float | None) -> float | None:
    """The initial shape a prior of ``family`` starts from: ``shape_init`` or the family's
    default; ``None`` for a family without a shape (ValueError if ``shape_init`` was given, or
    is outside the family's range)."""
    kind = get_family(family)
    if kind.shape_init is None:
        if shape_init is not None:
            raise ValueError(f"the {family!r} prior has no shape to initialise")
        return None
    shape = kind.shape_init if shape_init is None else float(shape_init)
    kind.raw_from_shape(shape)
    return shape


def _raw_shape_param(family: str, dim: int, shape_init, param_dtype) -> nnx.Param | None:
    shape = resolved_shape_init(family, shape_init)
    if shape is None:
        return None
    raw = get_family(family).raw_from_shape(shape)
    return nnx.Param(jnp.full((dim,), raw, param_dtype))


def _location_scale_log_prob(family, s, loc, log_scale, raw_shape):
    raw = None if raw_shape is None else raw_shape[...]
    z = (s - loc) * jnp.exp(-log_scale)
    return get_family(family).log_density(z, raw) - log_scale


class SegmentPrior(nnx.Module):
    """Per-segment location and log-scale for each component (discrete ``u``).

    Args:
      n_segments: number of segment labels ``M``; ``u`` takes values ``0 .. M-1``.
      dim: number of components ``D``.
      family: a name of ``CONDITIONAL_FAMILIES``.
      learn_location: learn per-segment means (else fixed at 0).
      shape_init: initial shape of every component, for a family with one (``None``: the
        family's default, gennorm 1.02).
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
        shape_init: float | None = None,
        param_dtype=jnp.float32,
    ):
        get_family(family)
        if n_segments < 1 or dim < 1:
            raise ValueError(f"n_segments and dim must be >= 1, got {n_segments}, {dim}")
        self.n_segments = n_segments
        self.family = family
        self.learn_location = learn_location
        self.log_scale = nnx.Param(jnp.zeros((n_segments, dim), param_dtype))
        self.loc = nnx.Param(jnp.zeros((n_segments, dim), param_dtype))
        self.raw_shape = _raw_shape_param(family, dim, shape_init, param_dtype)

    def log_prob(self, s: jax.Array, u: jax.Array) -> jax.Array:
        """Per-component log-density, shape ``(batch, dim)``.

        Args:
          s: sources, shape ``(batch, dim)``.
          u: integer segment labels, shape ``(batch,)``.
        """
        loc = self.loc[...][u] if self.learn_location else 0.0
        log_scale = self.log_scale[...][u]
        return _location_scale_log_prob(self.family, s, loc, log_scale, self.raw_shape)


class ContinuousPrior(nnx.Module):
    """An MLP ``u -> (loc, log_scale)`` for a continuous auxiliary variable.

    Args:
      aux_dim: dimension ``d`` of ``u``.
      dim: number of components ``D``.
      family: a name of ``CONDITIONAL_FAMILIES``.
      hidden: widths of the hidden layers (tanh activations).
      rngs: key source for initialisation.
      shape_init: as for :class:`SegmentPrior`.
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
        shape_init: float | None = None,
        param_dtype=jnp.float32,
    ):
        self.family = family
        self.raw_shape = _raw_shape_param(family, dim, shape_init, param_dtype)
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
        return _location_scale_log_prob(self.family, s, loc, log_scale, self.raw_shape)
