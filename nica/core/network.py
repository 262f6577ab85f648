"""Invertible fully connected demixing networks (Flax NNX).

Row convention (docs/math.md, as ``nnx.Linear``): a layer computes ``y = z @ W + b`` with ``W`` of
shape ``(dim, dim)``. The network is ``z_0 = x``, ``y_k = z_{k-1} W_k + b_k``,
``z_k = sigma(y_k)`` for ``k < L`` and ``s = y_L`` (last layer linear), so

    log|det J_g(x)| = sum_k log|det W_k| + sum_{k<L} sum_i log sigma'(y_k^i)      (Eq. 9)

One contract for every bijection here: ``forward_and_log_det(x) -> (y, logdet)`` with shapes
``(batch, dim) -> (batch, dim), (batch,)``, plus ``inverse(y)``.

A static activation (``nica.core.activations``, e.g. ``smooth_leaky_relu``) is shared by every
hidden layer; a learnable one (``monotone_mixture``) is built once per hidden layer, with its own
per-unit parameters (ordinary ``nnx.Param``s: ordinary gradients in every gradient mode, cost
O(B D K) per layer, so the step stays O(L B D^2)).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from nica.core.activations import (
    Activation,
    is_learnable,
    make_activation,
    value_and_log_derivative,
)
from nica.core.gradients import GRADIENTS, GradientMode, get_gradient
from nica.core.relative import SquareKernel

__all__ = ["DemixingNetwork", "InvertibleDense"]

_ORDINARY = GRADIENTS["ordinary"]


class InvertibleDense(nnx.Module):
    """Square dense layer ``y = x @ kernel + bias`` with orthogonal initialisation.

    The kernel is a :class:`nica.core.relative.SquareKernel` (an ``nnx.Param``), which is how the
    relative-coordinates optimizer finds it.

    Args:
      dim: input and output dimension ``D``.
      rngs: key source for the initial kernel.
      param_dtype: dtype of kernel and bias.
    """

    def __init__(self, dim: int, *, rngs: nnx.Rngs, param_dtype=jnp.float32):
        init = jax.nn.initializers.orthogonal()
        self.kernel = SquareKernel(init(rngs.params(), (dim, dim), param_dtype))
        self.bias = nnx.Param(jnp.zeros((dim,), param_dtype))

    def __call__(self, x: jax.Array, *, mode: GradientMode = _ORDINARY) -> jax.Array:
        """Applies the layer, shape ``(batch, dim) -> (batch, dim)``; ``mode`` decides which
        gradient the parameters receive (see :mod:`nica.core.gradients`)."""
        return mode.dense(x, self.kernel[...], self.bias[...])

    def log_abs_det(self, *, mode: GradientMode = _ORDINARY) -> jax.Array:
        """``log|det W|`` (scalar); under the relative modes, a zero-valued carrier of its
        gradient."""
        return mode.log_abs_det(self.kernel[...], self.bias[...])

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
      activation: an activation name from ``nica.core.activations.ACTIVATIONS`` or an instance (an
        instance, even a learnable one, is shared by every hidden layer).
      activation_kwargs: parameters for a named activation, e.g. ``{"slope": 5.0}``, or
        ``{"knots": 9}`` for ``monotone_mixture`` (its ``dim`` and ``param_dtype`` are the
        network's).
      rngs: key source for initialisation.
      param_dtype: dtype of all parameters.

    Attributes:
      layers: the ``depth`` square layers (``nnx.List`` of :class:`InvertibleDense`).
      activations: the ``depth - 1`` hidden activations (``nnx.List``): one learnable module
        per hidden layer, or the shared static activation repeated.
      activation: the shared activation, or ``None`` when each hidden layer has its own.
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
        kwargs = activation_kwargs or {}
        if isinstance(activation, str) and is_learnable(activation):
            self.activation = None
            hidden = [
                make_activation(activation, dim=dim, param_dtype=param_dtype, **kwargs)
                for _ in range(depth - 1)
            ]
        else:
            self.activation = make_activation(activation, **kwargs)
            hidden = [self.activation] * (depth - 1)
        self.activations = nnx.List(hidden)
        self.layers = nnx.List(
            [InvertibleDense(dim, rngs=rngs, param_dtype=param_dtype) for _ in range(depth)]
        )

    def _check_input(self, x: jax.Array) -> None:
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"expected input of shape (batch, {self.dim}), got {x.shape}")

    def training_terms(
        self, x: jax.Array, *, gradient: str | GradientMode = "relative_coords"
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Sources and the two parts of the log-determinant, for a gradient mode.

        Args:
          x: observations, shape ``(batch, dim)``.
          gradient: a mode of :data:`nica.core.gradients.GRADIENTS` (name or object); it decides
            how the layers and ``log|det W_k|`` take part (see :mod:`nica.core.gradients`).

        Returns:
          ``(s, logdet_activations, logdet_weights)`` with shapes ``(batch, dim)``, ``(batch,)``
          and ``()``. Under the relative modes ``logdet_weights`` is a zero-valued carrier of
          its gradient; under ``autodiff`` the whole per-sample log-determinant is in
          ``logdet_activations`` and ``logdet_weights`` is 0.
        """
        self._check_input(x)
        return get_gradient(gradient).terms(self, x)

    def layer_terms(
        self, x: jax.Array, mode: GradientMode
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Layer-by-layer ``(s, sum_k sum_i log sigma'(y_k^i), sum_k log|det W_k|)`` (Eq. 9)."""
        s, logdet_act = self._forward(x, mode)
        return s, logdet_act, sum(layer.log_abs_det(mode=mode) for layer in self.layers)

    def _forward(self, x: jax.Array, mode: GradientMode) -> tuple[jax.Array, jax.Array]:
        logdet = jnp.zeros(x.shape[:1], x.dtype)
        z = x
        for k, layer in enumerate(self.layers):
            y = layer(z, mode=mode)
            if k < self.depth - 1:
                z, log_derivative = value_and_log_derivative(self.activations[k], y)
                logdet = logdet + log_derivative.sum(axis=-1)
            else:
                z = y
        return z, logdet

    def __call__(self, x: jax.Array) -> jax.Array:
        """Demixes ``x`` (batch, dim) into sources ``s`` (batch, dim)."""
        self._check_input(x)
        return self._forward(x, _ORDINARY)[0]

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
                z = self.activations[k].inverse(z)
            z = self.layers[k].inverse(z)
        return z
