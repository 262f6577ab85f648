"""Invertible elementwise activations with log-derivatives and inverses, and their registry.

Every activation is a strictly increasing scalar function applied elementwise. It provides
``value(y)``, ``log_derivative(y)`` (``log sigma'(y)``, used in Eq. 9 of the paper) and
``inverse(z)``; where no closed-form inverse exists, it is
:func:`nica.core.monotone.monotone_inverse`.

Static activations (this module) are frozen dataclasses: hashable, so they can live as static
metadata on Flax NNX modules, as static arguments of jitted functions, and as the activation
setting of a fit (``nica.fitting.config.ModelConfig``), where one instance is shared by every
hidden layer. The learnable families (:mod:`nica.core.monotone`) are ``nnx.Module``s with
parameters per unit, built once per hidden layer; a fit's setting names one by its spec
(:class:`MonotoneSplineSpec`, :class:`MonotoneMixtureSpec`), which carries its settings and
builds it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar, Protocol

import jax
import jax.numpy as jnp
from flax import nnx

from nica.core.monotone import MonotoneMixture, MonotoneSpline, monotone_inverse
from nica.util.checks import at_least, positive

__all__ = [
    "ACTIVATIONS",
    "Activation",
    "Identity",
    "LeakyReLU",
    "LeakyTanh",
    "LearnableSpec",
    "MonotoneMixture",
    "MonotoneMixtureSpec",
    "MonotoneSpline",
    "MonotoneSplineSpec",
    "SmoothLeakyReLU",
    "is_learnable",
    "make_activation",
    "monotone_inverse",
    "network_arguments",
    "value_and_log_derivative",
]


class Activation(Protocol):
    """Contract of an invertible elementwise activation (all arrays of any shape)."""

    def value(self, y: jax.Array) -> jax.Array: ...

    def log_derivative(self, y: jax.Array) -> jax.Array: ...

    def inverse(self, z: jax.Array) -> jax.Array: ...


def value_and_log_derivative(activation: Activation, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(activation.value(y), activation.log_derivative(y))``, from the activation's own
    ``value_and_log_derivative`` when it has one (sharing the work of both)."""
    both = getattr(activation, "value_and_log_derivative", None)
    if both is not None:
        return both(y)
    return activation.value(y), activation.log_derivative(y)


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
        positive(owner="SmoothLeakyReLU", slope=self.slope, sharpness=self.sharpness)

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
        positive(owner="LeakyReLU", slope=self.slope)

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
    "monotone_mixture": MonotoneMixture,
    "monotone_spline": MonotoneSpline,
}


def is_learnable(activation: str | Activation) -> bool:
    """Whether an activation (registry name or instance) has parameters (an ``nnx.Module``).

    A :class:`nica.core.network.DemixingNetwork` builds one learnable activation per hidden layer.

    Raises:
      ValueError: unknown name.
    """
    if isinstance(activation, str):
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; known: {', '.join(ACTIVATIONS)}")
        return issubclass(ACTIVATIONS[activation], nnx.Module)
    return isinstance(activation, nnx.Module)


def make_activation(name: str | Activation, **kwargs) -> Activation:
    """Builds an activation from its registry name (``ACTIVATIONS``) and keyword parameters.

    Args:
      name: a name in ``ACTIVATIONS`` or an activation instance (returned unchanged).
      **kwargs: parameters of the activation, e.g. ``slope=5.0`` or ``beta=0.1``; a learnable
        one also takes ``dim`` (and ``param_dtype``), e.g. ``make_activation("monotone_mixture",
        dim=5, knots=9)``.

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


class LearnableSpec:
    """The settings of a learnable activation, without its parameters: frozen, hashable, and
    built once per hidden layer (``build``) with that layer's width."""

    #: The family's name in :data:`ACTIVATIONS`.
    name: ClassVar[str]

    def kwargs(self) -> dict:
        """The family's keyword parameters (``make_activation(name, dim=..., **kwargs())``)."""
        raise NotImplementedError

    def build(self, dim: int, *, param_dtype=jnp.float32) -> nnx.Module:
        """One activation of ``dim`` units with the initial parameters these settings give."""
        return ACTIVATIONS[self.name](dim, param_dtype=param_dtype, **self.kwargs())


@dataclasses.dataclass(frozen=True)
class MonotoneSplineSpec(LearnableSpec):
    """Settings of a :class:`MonotoneSpline` (the default activation of a fit).

    Attributes:
      knots: knots per unit on ``[-4, 4]``, odd and >= 3 (``None``: the family's default, 17).
      tail_slope: initial slope in both tails, > 0 (1: starts at the identity; > 1 expansive,
        < 1 compressive).
    """

    name: ClassVar[str] = "monotone_spline"
    knots: int | None = None
    tail_slope: float = 1.0

    def __post_init__(self):
        at_least(3, owner="MonotoneSpline", optional=("knots",), knots=self.knots)
        if self.knots is not None and self.knots % 2 == 0:
            raise ValueError(
                f"MonotoneSpline knots must be odd and >= 3 (0 is the centre knot), got "
                f"{self.knots}"
            )
        positive(owner="MonotoneSpline", tail_slope=self.tail_slope)

    def kwargs(self) -> dict:
        knots = {} if self.knots is None else {"knots": self.knots}
        return {**knots, "init_tail_slope": self.tail_slope}


@dataclasses.dataclass(frozen=True)
class MonotoneMixtureSpec(LearnableSpec):
    """Settings of a :class:`MonotoneMixture` (smoother than the spline, costlier per epoch).

    Attributes:
      knots: knots per unit on ``[-4, 4]``, >= 1 (``None``: the family's default, 9).
      sharpness: > 0; a slope change is smoothed over about ``1 / sharpness`` (the knot
        spacing is ``8 / (knots - 1)``).
      tail_slope: initial slope in both tails, > 0 (1: starts at the identity).
    """

    name: ClassVar[str] = "monotone_mixture"
    knots: int | None = None
    sharpness: float = 6.0
    tail_slope: float = 1.0

    def __post_init__(self):
        at_least(1, owner="MonotoneMixture", optional=("knots",), knots=self.knots)
        positive(owner="MonotoneMixture", sharpness=self.sharpness, tail_slope=self.tail_slope)

    def kwargs(self) -> dict:
        knots = {} if self.knots is None else {"knots": self.knots}
        return {**knots, "sharpness": self.sharpness, "init_tail_slope": self.tail_slope}


def network_arguments(activation: Activation | LearnableSpec) -> dict:
    """``DemixingNetwork``'s ``activation`` and ``activation_kwargs`` for an activation
    setting: a static activation is itself (shared by every hidden layer); a learnable spec is
    its family's name and parameters (one module per hidden layer)."""
    if isinstance(activation, LearnableSpec):
        return {"activation": activation.name, "activation_kwargs": activation.kwargs()}
    return {"activation": activation, "activation_kwargs": None}
