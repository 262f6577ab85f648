"""Invertible fully connected demixing networks (Flax NNX).

Row convention (MATH.md, as ``nnx.Linear``): a layer computes ``y = z @ W + b`` with ``W`` of
shape ``(dim, dim)``. The network is ``z_0 = x``, ``y_k = z_{k-1} W_k + b_k``,
``z_k = sigma(y_k)`` for ``k < L`` and ``s = y_L`` (last layer linear), so

    log|det J_g(x)| = sum_k log|det W_k| + sum_{k<L} sum_i log sigma'(y_k^i)      (Eq. 9)

One contract for every bijection here: ``forward_and_log_det(x) -> (y, logdet)`` with shapes
``(batch, dim) -> (batch, dim), (batch,)``, plus ``inverse(y)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from nica.activations import Activation, make_activation
from nica.relative import (
    coordinate_dense,
    coordinate_log_abs_det,
    relative_dense,
    relative_log_abs_det,
)

__all__ = [
    "GRADIENTS",
    "RELATIVE_GRADIENTS",
    "DemixingNetwork",
    "InvertibleDense",
    "check_gradient",
]

#: Gradient modes of the training step (see :meth:`DemixingNetwork.training_terms`).
GRADIENTS = ("relative", "relative_coords", "ordinary", "autodiff")
#: Modes whose training step has no slogdet and no inverse.
RELATIVE_GRADIENTS = ("relative", "relative_coords")


def check_gradient(gradient: str) -> str:
    """Returns ``gradient`` if it names a known mode, else raises a one-line ``ValueError``."""
    if gradient not in GRADIENTS:
        raise ValueError(f"unknown gradient mode {gradient!r}; known: {', '.join(GRADIENTS)}")
    return gradient


class InvertibleDense(nnx.Module):
    """Square dense layer ``y = x @ kernel + bias`` with orthogonal initialisation.

    Args:
      dim: input and output dimension ``D``.
      rngs: key source for the initial kernel.
      param_dtype: dtype of kernel and bias.
    """

    def __init__(self, dim: int, *, rngs: nnx.Rngs, param_dtype=jnp.float32):
        init = jax.nn.initializers.orthogonal()
        self.kernel = nnx.Param(init(rngs.params(), (dim, dim), param_dtype))
        self.bias = nnx.Param(jnp.zeros((dim,), param_dtype))

    def __call__(self, x: jax.Array, *, gradient: str = "ordinary") -> jax.Array:
        """Applies the layer, shape ``(batch, dim) -> (batch, dim)``.

        With ``gradient="relative"`` the parameters receive the relative gradient; with
        ``"relative_coords"`` the gradient in relative coordinates (see ``nica.relative``).
        """
        if gradient == "relative":
            return relative_dense(x, self.kernel[...], self.bias[...])
        if gradient == "relative_coords":
            return coordinate_dense(x, self.kernel[...], self.bias[...])
        return x @ self.kernel[...] + self.bias[...]

    def log_abs_det(self, *, gradient: str = "ordinary") -> jax.Array:
        """``log|det W|`` (scalar); under the relative modes, a zero-valued carrier of its
        gradient."""
        if gradient == "relative":
            return relative_log_abs_det(self.kernel[...], self.bias[...])
        if gradient == "relative_coords":
            return coordinate_log_abs_det(self.kernel[...])
        return jnp.linalg.slogdet(self.kernel[...])[1]

    def forward_and_log_det(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Returns ``(x @ W + b, log|det W|)`` with shapes ``(batch, dim), (batch,)``."""
        return self(x), jnp.broadcast_to(self.log_abs_det(), x.shape[:1])

    def inverse(self, y: jax.Array) -> jax.Array:
        """Returns ``(y - b) @ W^{-1}``, shape ``(batch, dim)``."""
        return jnp.linalg.solve(self.kernel[...].T, (y - self.bias[...]).T).T


class DemixingNetwork(nnx.Module):
    """Invertible MLP ``g``: ``depth`` square layers, activation between them, last one linear.

    Args:
      dim: data dimension ``D``.
      depth: number of square layers ``L >= 1`` (1 = linear ICA).
      activation: an activation name from ``nica.activations.ACTIVATIONS`` or an instance.
      activation_kwargs: parameters for a named activation, e.g. ``{"slope": 5.0}``.
      rngs: key source for initialisation.
      param_dtype: dtype of all parameters.
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        *,
        activation: str | Activation = "smooth_leaky_relu",
        activation_kwargs: dict | None = None,
        rngs: nnx.Rngs,
        param_dtype=jnp.float32,
    ):
        if dim < 1 or depth < 1:
            raise ValueError(f"dim and depth must be >= 1, got dim={dim}, depth={depth}")
        self.dim = dim
        self.depth = depth
        self.activation = make_activation(activation, **(activation_kwargs or {}))
        self.layers = nnx.List(
            [InvertibleDense(dim, rngs=rngs, param_dtype=param_dtype) for _ in range(depth)]
        )

    def _check_input(self, x: jax.Array) -> None:
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"expected input of shape (batch, {self.dim}), got {x.shape}")

    def training_terms(
        self, x: jax.Array, *, gradient: str = "relative"
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Sources and the two parts of the log-determinant, for a gradient mode.

        Args:
          x: observations, shape ``(batch, dim)``.
          gradient: ``relative`` (layer parameters get the relative gradient; the weight term is
            a zero-valued carrier of its relative gradient, no slogdet), ``relative_coords``
            (the same in relative coordinates, for an optimizer wrapped by
            ``nica.relative.in_relative_coordinates``), ``ordinary`` (exact
            ``sum_k log|det W_k|`` via slogdet, differentiated by autodiff) or ``autodiff``
            (the whole ``log|det J_g|`` from ``slogdet(jacfwd(g))`` per sample; small D only).

        Returns:
          ``(s, logdet_activations, logdet_weights)`` with shapes ``(batch, dim)``, ``(batch,)``
          and ``()``. For ``autodiff`` the full per-sample log-determinant is in
          ``logdet_activations`` and ``logdet_weights`` is 0.
        """
        check_gradient(gradient)
        self._check_input(x)
        if gradient == "autodiff":
            s = self._forward(x, gradient="ordinary")[0]
            single = lambda xi: self._forward(xi[None], gradient="ordinary")[0][0]  # noqa: E731
            jac = jax.vmap(jax.jacfwd(single))(x)
            return s, jnp.linalg.slogdet(jac)[1], jnp.zeros((), x.dtype)
        s, logdet_act = self._forward(x, gradient=gradient)
        logdet_w = sum(layer.log_abs_det(gradient=gradient) for layer in self.layers)
        return s, logdet_act, logdet_w

    def _forward(self, x, *, gradient):
        logdet = jnp.zeros(x.shape[:1], x.dtype)
        z = x
        for k, layer in enumerate(self.layers):
            y = layer(z, gradient=gradient)
            if k < self.depth - 1:
                logdet = logdet + self.activation.log_derivative(y).sum(axis=-1)
                z = self.activation.value(y)
            else:
                z = y
        return z, logdet

    def __call__(self, x: jax.Array) -> jax.Array:
        """Demixes ``x`` (batch, dim) into sources ``s`` (batch, dim)."""
        self._check_input(x)
        return self._forward(x, gradient="ordinary")[0]

    def forward_and_log_det(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Exact ``(s, log|det J_g(x)|)`` with shapes ``(batch, dim), (batch,)`` (uses slogdet)."""
        s, logdet_act, logdet_w = self.training_terms(x, gradient="ordinary")
        return s, logdet_act + logdet_w

    def inverse(self, s: jax.Array) -> jax.Array:
        """Exact inverse ``x = g^{-1}(s)``, shape ``(batch, dim) -> (batch, dim)``."""
        self._check_input(s)
        z = s
        for k in reversed(range(self.depth)):
            if k < self.depth - 1:
                z = self.activation.inverse(z)
            z = self.layers[k].inverse(z)
        return z
