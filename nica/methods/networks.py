"""The small networks of the baselines: a plain MLP (iVAE's four networks) and a maxout MLP with
an absolute-value last layer (TCL's feature extractor).

Hidden nonlinearities are values in :data:`HIDDEN_ACTIVATIONS`, looked up by name once, when a
network is built. Kernels start Xavier-uniform (iVAE's ``weights_init``) or He-normal (TCL's
``variance_scaling_initializer``); iVAE's biases start as PyTorch's ``nn.Linear`` does,
uniform in ``+-1/sqrt(fan_in)``, TCL's at zero.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = ["HIDDEN_ACTIVATIONS", "MLP", "MaxoutFeatures", "get_hidden_activation", "xtanh"]


def xtanh(x: jax.Array, slope: float = 0.1) -> jax.Array:
    """``tanh(x) + slope * x``, elementwise (iVAE's default hidden unit)."""
    return jnp.tanh(x) + slope * x


#: Hidden units of :class:`MLP` by name (iVAE's ``xtanh`` and ``lrelu``, both with slope 0.1).
HIDDEN_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "xtanh": functools.partial(xtanh, slope=0.1),
    "leaky_relu": functools.partial(jax.nn.leaky_relu, negative_slope=0.1),
}


def get_hidden_activation(name: str) -> Callable[[jax.Array], jax.Array]:
    """The unit ``name`` of :data:`HIDDEN_ACTIVATIONS`; a one-line ValueError otherwise."""
    if name not in HIDDEN_ACTIVATIONS:
        raise ValueError(
            f"unknown hidden activation {name!r}; known: {', '.join(HIDDEN_ACTIVATIONS)}"
        )
    return HIDDEN_ACTIVATIONS[name]


def _torch_bias_init(fan_in: int):
    """PyTorch's ``nn.Linear`` bias initialiser: uniform in ``+-1/sqrt(fan_in)``."""
    bound = 1.0 / fan_in**0.5

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class MLP(nnx.Module):
    """Dense layers of sizes ``sizes`` (``in -> hidden ... -> out``), ``activation`` after every
    layer but the last. Maps ``(batch, sizes[0])`` to ``(batch, sizes[-1])``.

    Args:
      sizes: layer widths, at least two (two = one linear layer).
      activation: the hidden unit, a function of an array.
      rngs: ``nnx.Rngs`` with a ``params`` stream.
    """

    def __init__(self, sizes: Sequence[int], activation: Callable, *, rngs: nnx.Rngs):
        if len(sizes) < 2:
            raise ValueError(f"an MLP needs at least an input and an output size, got {sizes}")
        self.activation = activation
        self.layers = nnx.List(
            nnx.Linear(
                a,
                b,
                kernel_init=nnx.initializers.xavier_uniform(),
                bias_init=_torch_bias_init(a),
                rngs=rngs,
            )
            for a, b in zip(sizes[:-1], sizes[1:], strict=True)
        )

    def __call__(self, h: jax.Array) -> jax.Array:
        for layer in self.layers[:-1]:
            h = self.activation(layer(h))
        return self.layers[-1](h)


class MaxoutFeatures(nnx.Module):
    """TCL's feature extractor: maxout hidden layers, then a dense layer of ``dim`` units with
    the absolute value, so each feature can follow ``|s_i|`` (the sufficient statistic of a
    scale-modulated symmetric source) up to an affine map. ``(batch, in) -> (batch, dim)``.

    Args:
      in_features: data dimension.
      hidden: widths of the maxout layers (each computes ``pieces`` affine maps per unit and
        keeps their maximum); empty for one dense layer with the absolute value.
      dim: number of features (the number of sources).
      pieces: affine maps per maxout unit.
      rngs: ``nnx.Rngs`` with a ``params`` stream.
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int],
        dim: int,
        *,
        pieces: int = 2,
        rngs: nnx.Rngs,
    ):
        he = nnx.initializers.variance_scaling(2.0, "fan_in", "truncated_normal")
        sizes = [in_features, *hidden]
        self.pieces = pieces
        self.hidden = nnx.List(
            nnx.Linear(a, pieces * b, kernel_init=he, rngs=rngs)
            for a, b in zip(sizes[:-1], sizes[1:], strict=True)
        )
        self.last = nnx.Linear(sizes[-1], dim, kernel_init=he, rngs=rngs)

    def __call__(self, h: jax.Array) -> jax.Array:
        for layer in self.hidden:
            y = layer(h)
            h = y.reshape(*y.shape[:-1], -1, self.pieces).max(axis=-1)
        return jnp.abs(self.last(h))
