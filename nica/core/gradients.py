"""Gradient modes: how the square layers and ``log|det W|`` take part in the loss, as values.

A mode is one frozen object. It says

* how a dense layer ``z @ W + b`` is applied (:meth:`GradientMode.dense`; the relative modes use
  a custom VJP that returns a relative gradient for ``(W, b)``),
* how ``log|det W|`` enters the loss (:meth:`GradientMode.log_abs_det`),
* how the whole network's log-determinant terms are formed (:meth:`GradientMode.terms`;
  layer by layer for all but ``autodiff``),
* how the optimizer is wrapped (:meth:`GradientMode.wrap_optimizer`, an Optax
  ``GradientTransformation``; ``relative_coords`` maps the updates of the square kernels back
  with ``W U``, ``relative_pooled`` pools Adam's second moment over each square kernel; both
  select the kernels by the mask :func:`nica.core.relative.square_kernel_mask`),
* whether the whole training step, optimizer update included, stays O(L B D^2) when D > B
  (``bd2_step``: no D x D x D product and no decomposition; checked on the step's jaxpr by
  the tests).

The trainer always builds its step from ``mode.wrap_optimizer(optimizer)``, so a mode that needs
a wrapped optimizer is never run without it. Adding a mode means adding a class and a registry
entry here. Modes are registered in :data:`GRADIENTS`; :func:`get_gradient` turns a name (CLI,
configs) into the object.

The default, :data:`DEFAULT_GRADIENT` = ``"auto"``, is a rule rather than a mode:
:func:`resolve_gradient` makes it ``relative_coords`` while ``D <= B`` (its ``W U`` map-back,
``L D^3`` per step, is then within the gradient's own ``O(L B D^2)``, and it trains best on the
benchmarks) and ``relative_pooled`` when ``D > B`` (no ``D^3`` anywhere in its step). The
trainers resolve it once the data dimension ``D`` and batch size ``B`` are known.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import optax

from nica.core.pooling import pool_second_moment
from nica.core.relative import (
    coordinate_dense,
    coordinate_log_abs_det,
    in_relative_coordinates,
    relative_dense,
    relative_kernel_dense,
    relative_kernel_log_abs_det,
    relative_log_abs_det,
)

if TYPE_CHECKING:
    from nica.core.network import DemixingNetwork

__all__ = [
    "DEFAULT_GRADIENT",
    "GRADIENTS",
    "Autodiff",
    "GradientMode",
    "Ordinary",
    "Relative",
    "RelativeCoordinates",
    "RelativePooled",
    "get_gradient",
]


@dataclasses.dataclass(frozen=True)
class GradientMode:
    """Base mode: the ordinary gradient (autodiff through ``slogdet`` of each ``W``).

    Attributes:
      name: the registry name.
      relative: whether the training step is free of slogdet, inverses and LU.
      bd2_step: whether the whole training step (gradient, optimizer update, parameter update)
        costs O(L B D^2) when D > B: no D x D x D product and no decomposition anywhere.
    """

    name: str = "ordinary"
    relative: bool = False
    bd2_step: bool = False

    def dense(self, z: jax.Array, kernel: jax.Array, bias: jax.Array) -> jax.Array:
        """``z @ kernel + bias``, shapes ``(batch, dim), (dim, dim), (dim,) -> (batch, dim)``."""
        return z @ kernel + bias

    def log_abs_det(self, kernel: jax.Array, bias: jax.Array) -> jax.Array:
        """``log|det W|`` as it enters the loss (a scalar)."""
        del bias
        return jnp.linalg.slogdet(kernel)[1]

    def terms(
        self, network: DemixingNetwork, x: jax.Array
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """``(s, logdet_activations, logdet_weights)``, shapes ``(batch, dim), (batch,), ()``."""
        return network.layer_terms(x, self)

    def wrap_optimizer(self, optimizer: optax.GradientTransformation):
        """The optimizer this mode's gradients must be fed to."""
        return optimizer


@dataclasses.dataclass(frozen=True)
class Ordinary(GradientMode):
    """Ordinary gradient: ``W^{-T}`` from autodiff of slogdet (an LU per layer and step)."""


@dataclasses.dataclass(frozen=True)
class Relative(GradientMode):
    """The augmented relative gradient ``What What^T G`` (docs/math.md); zero log-det carrier."""

    name: str = "relative"
    relative: bool = True
    bd2_step: bool = True

    def dense(self, z, kernel, bias):
        return relative_dense(z, kernel, bias)

    def log_abs_det(self, kernel, bias):
        return relative_log_abs_det(kernel, bias)


@dataclasses.dataclass(frozen=True)
class RelativeCoordinates(GradientMode):
    """The optimizer runs on ``E`` of ``W (I + E)``: gradients ``W^T G_W``, updates ``W U``.

    Biases and prior parameters keep ordinary gradients. With plain SGD this is the relative
    gradient step of docs/math.md; with Adam the elementwise scaling acts on the equivariant ``E``.
    The map-back ``W U`` is one D x D x D product per layer and step (O(B D^2) only while
    D <= B).
    """

    name: str = "relative_coords"
    relative: bool = True

    def dense(self, z, kernel, bias):
        return coordinate_dense(z, kernel, bias)

    def log_abs_det(self, kernel, bias):
        del bias
        return coordinate_log_abs_det(kernel)

    def wrap_optimizer(self, optimizer):
        return in_relative_coordinates(optimizer)


@dataclasses.dataclass(frozen=True)
class RelativePooled(GradientMode):
    """Relative gradient in ``W`` with ordinary biases; Adam's second moment pooled per kernel.

    Kernels get ``W W^T G_W = (W Y0^T) Delta - W`` (the ``relative_coords`` gradient already
    mapped back, O(B D^2)), biases and prior parameters their ordinary gradients. The optimizer
    runs on these as given, except that its elementwise second moment is pooled over each
    square kernel (:func:`nica.core.pooling.pool_second_moment`): Adam's momentum stays in ``W`` on
    the relative direction, its scaling is one scalar per matrix (``pool="matrix"``) or per
    output unit (``"columns"``). With plain SGD it is exactly the ``relative_coords`` step.
    The whole step is O(L B D^2).

    Attributes:
      pool: ``"matrix"`` or ``"columns"`` (see :data:`nica.core.pooling.POOLS`).
    """

    name: str = "relative_pooled"
    relative: bool = True
    bd2_step: bool = True
    pool: str = "matrix"

    def dense(self, z, kernel, bias):
        return relative_kernel_dense(z, kernel, bias)

    def log_abs_det(self, kernel, bias):
        del bias
        return relative_kernel_log_abs_det(kernel)

    def wrap_optimizer(self, optimizer):
        return pool_second_moment(optimizer, over=self.pool)


@dataclasses.dataclass(frozen=True)
class Autodiff(GradientMode):
    """The whole ``log|det J_g|`` from ``slogdet(jacfwd(g))`` per sample (small D only)."""

    name: str = "autodiff"

    def terms(self, network, x):
        ordinary = GRADIENTS["ordinary"]
        s = network.layer_terms(x, ordinary)[0]
        single = lambda xi: network.layer_terms(xi[None], ordinary)[0][0]  # noqa: E731
        jac = jax.vmap(jax.jacfwd(single))(x)
        return s, jnp.linalg.slogdet(jac)[1], jnp.zeros((), x.dtype)


#: Registered modes by name (the concrete ones; ``"auto"`` is resolved to one of them).
GRADIENTS: dict[str, GradientMode] = {
    mode.name: mode
    for mode in (RelativeCoordinates(), RelativePooled(), Relative(), Ordinary(), Autodiff())
}
#: The rule that picks a mode from the data dimension and batch size (:func:`resolve_gradient`).
AUTO_GRADIENT = "auto"
#: The default of every trainer and of ``FitConfig``.
DEFAULT_GRADIENT = AUTO_GRADIENT


def get_gradient(mode: str | GradientMode) -> GradientMode:
    """The mode object for a registry name (a mode object is returned unchanged).

    Raises:
      ValueError: one line naming the unknown mode and the known ones, or saying that
        ``"auto"`` needs :func:`resolve_gradient`.
    """
    if isinstance(mode, GradientMode):
        return mode
    if mode == AUTO_GRADIENT:
        raise ValueError(
            "gradient mode 'auto' depends on the data dimension and batch size: resolve it "
            "with nica.core.gradients.resolve_gradient(mode, dim, batch_size)"
        )
    if mode not in GRADIENTS:
        known = ", ".join((AUTO_GRADIENT, *GRADIENTS))
        raise ValueError(f"unknown gradient mode {mode!r}; known: {known}")
    return GRADIENTS[mode]


def check_gradient(mode: str | GradientMode) -> str | GradientMode:
    """Returns ``mode`` if it is ``"auto"``, a registered name or a mode object; else raises
    :func:`get_gradient`'s one-line ``ValueError``."""
    if mode != AUTO_GRADIENT:
        get_gradient(mode)
    return mode


def resolve_gradient(mode: str | GradientMode, dim: int, batch_size: int) -> GradientMode:
    """The concrete mode for data of dimension ``dim`` trained in minibatches of ``batch_size``.

    ``"auto"`` gives ``relative_coords`` when ``dim <= batch_size`` and ``relative_pooled``
    otherwise (the module docstring says why); any other name or mode is :func:`get_gradient`'s.
    """
    if isinstance(mode, str) and mode == AUTO_GRADIENT:
        return GRADIENTS["relative_coords" if dim <= batch_size else "relative_pooled"]
    return get_gradient(mode)
