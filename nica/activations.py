"""Invertible elementwise activations with log-derivatives and inverses.

Every activation is a strictly increasing scalar function applied elementwise. It provides
``value(y)``, ``log_derivative(y)`` (``log sigma'(y)``, used in Eq. 9 of the paper) and
``inverse(z)``. Where no closed-form inverse exists, :func:`monotone_inverse` solves
``sigma(x) = z`` with a bracketed Newton iteration of fixed length, so it runs under ``jit`` and
``vmap`` and converges to machine precision.

Activations are frozen dataclasses: hashable, so they can live as static metadata on Flax NNX
modules and as static arguments of jitted functions.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Protocol

import jax
import jax.numpy as jnp

__all__ = [
    "ACTIVATIONS",
    "Activation",
    "Identity",
    "LeakyReLU",
    "LeakyTanh",
    "SmoothLeakyReLU",
    "make_activation",
    "monotone_inverse",
]


class Activation(Protocol):
    """Contract of an invertible elementwise activation (all arrays of any shape)."""

    def value(self, y: jax.Array) -> jax.Array: ...

    def log_derivative(self, y: jax.Array) -> jax.Array: ...

    def inverse(self, z: jax.Array) -> jax.Array: ...


def monotone_inverse(fn, derivative, z, *, slope_min: float, centre: float, iterations: int = 60):
    """Solves ``fn(x) = z`` elementwise for a strictly increasing ``fn``.

    Uses Newton steps safeguarded by bisection inside a bracket that provably holds the root:
    with ``fn' >= slope_min`` and ``fn(0) = centre``, the root lies within
    ``|z - centre| / slope_min`` of zero. A Newton step that leaves the bracket is replaced by
    bisection, so the iteration always converges; a fixed number of iterations keeps it
    ``jit``/``vmap`` friendly.

    Args:
      fn: the increasing scalar function, applied elementwise.
      derivative: its derivative, elementwise, strictly positive.
      z: target values, any shape.
      slope_min: a lower bound on ``derivative`` (> 0).
      centre: ``fn(0)``.
      iterations: number of safeguarded Newton iterations.

    Returns:
      ``x`` with ``fn(x) == z`` to machine precision, same shape and dtype as ``z``.
    """
    radius = jnp.abs(z - centre) / slope_min + 1.0
    lo, hi = -radius, radius
    x = jnp.zeros_like(z)

    def body(_, carry):
        x, lo, hi = carry
        residual = fn(x) - z
        # Shrink the bracket with the sign of the residual (fn is increasing).
        lo = jnp.where(residual < 0, x, lo)
        hi = jnp.where(residual > 0, x, hi)
        newton = x - residual / derivative(x)
        inside = (newton > lo) & (newton < hi)
        x = jnp.where(inside, newton, 0.5 * (lo + hi))
        x = jnp.where(residual == 0, carry[0], x)
        return x, lo, hi

    x, _, _ = jax.lax.fori_loop(0, iterations, body, (x, lo, hi))
    return x


@dataclasses.dataclass(frozen=True)
class Identity:
    """The identity map: log-derivative 0."""

    def value(self, y):
        return y

    def log_derivative(self, y):
        return jnp.zeros_like(y)

    def inverse(self, z):
        return z


@dataclasses.dataclass(frozen=True)
class SmoothLeakyReLU:
    """Smooth leaky ReLU ``sigma(y) = a*y + (1 - a)*softplus(y)``.

    ``sigma'(y) = a + (1 - a)*sigmoid(y)`` lies between ``min(a, 1)`` and ``max(a, 1)``.

    With ``sharpness`` k the softplus is ``softplus(k*y)/k``: the kink narrows to width ~1/k and
    the function tends to a leaky ReLU as k grows.

    Attributes:
      slope: the slope ``a > 0`` for ``y -> -inf`` (the slope for ``y -> +inf`` is 1). Slopes
        above 1 give the inverse shape of a leaky ReLU with slope below 1 (e.g. 5 vs 0.2).
      sharpness: ``k > 0``, the inverse width of the smooth kink.
    """

    slope: float = 0.2
    sharpness: float = 1.0

    def __post_init__(self):
        if not self.slope > 0:
            raise ValueError(f"SmoothLeakyReLU slope must be > 0, got {self.slope}")
        if not self.sharpness > 0:
            raise ValueError(f"SmoothLeakyReLU sharpness must be > 0, got {self.sharpness}")

    def value(self, y):
        k = self.sharpness
        return self.slope * y + (1.0 - self.slope) * jax.nn.softplus(k * y) / k

    def _derivative(self, y):
        return self.slope + (1.0 - self.slope) * jax.nn.sigmoid(self.sharpness * y)

    def log_derivative(self, y):
        return jnp.log(self._derivative(y))

    def inverse(self, z):
        return monotone_inverse(
            self.value,
            self._derivative,
            z,
            slope_min=min(self.slope, 1.0),
            centre=(1.0 - self.slope) * math.log(2.0) / self.sharpness,
        )


@dataclasses.dataclass(frozen=True)
class LeakyReLU:
    """``sigma(y) = y`` for ``y >= 0`` and ``slope*y`` otherwise; closed-form inverse.

    Not differentiable at 0 (a set of measure zero); exact inverse of the benchmark mixings'
    activation when ``slope`` is the reciprocal of theirs.
    """

    slope: float = 0.2

    def __post_init__(self):
        if not self.slope > 0:
            raise ValueError(f"LeakyReLU slope must be > 0, got {self.slope}")

    def value(self, y):
        return jnp.where(y >= 0, y, self.slope * y)

    def log_derivative(self, y):
        return jnp.where(y >= 0, 0.0, jnp.log(self.slope)).astype(y.dtype)

    def inverse(self, z):
        return jnp.where(z >= 0, z, z / self.slope)


@dataclasses.dataclass(frozen=True)
class LeakyTanh:
    """``sigma(y) = tanh(y) + beta*y``; ``sigma' = 1 - tanh(y)^2 + beta`` in (beta, 1 + beta].

    Attributes:
      beta: the linear leak (> 0), which keeps the map a bijection of the real line.
    """

    beta: float = 0.1

    def __post_init__(self):
        if not self.beta > 0:
            raise ValueError(f"LeakyTanh beta must be > 0, got {self.beta}")

    def value(self, y):
        return jnp.tanh(y) + self.beta * y

    def _derivative(self, y):
        return 1.0 - jnp.tanh(y) ** 2 + self.beta

    def log_derivative(self, y):
        return jnp.log(self._derivative(y))

    def inverse(self, z):
        return monotone_inverse(self.value, self._derivative, z, slope_min=self.beta, centre=0.0)


ACTIVATIONS: dict[str, type] = {
    "smooth_leaky_relu": SmoothLeakyReLU,
    "leaky_relu": LeakyReLU,
    "leaky_tanh": LeakyTanh,
    "identity": Identity,
}


def make_activation(name: str | Activation, **kwargs) -> Activation:
    """Builds an activation from its registry name (``ACTIVATIONS``) and keyword parameters.

    Args:
      name: a name in ``ACTIVATIONS`` or an activation instance (returned unchanged).
      **kwargs: parameters of the activation, e.g. ``slope=5.0`` or ``beta=0.1``.

    Raises:
      ValueError: unknown name or parameter.
    """
    if not isinstance(name, str):
        return name
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; known: {', '.join(ACTIVATIONS)}")
    try:
        return ACTIVATIONS[name](**kwargs)
    except TypeError as err:
        raise ValueError(f"bad parameters {kwargs} for activation {name!r}: {err}") from None
