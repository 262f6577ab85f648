"""The relative gradient of a square dense layer (docs/math.md, "Relative gradient", "With biases").

Two pure array functions with a custom VJP carry the whole method:

* :func:`relative_dense` computes ``y = z @ W + b`` and, on the way back, returns the ordinary
  cotangent for ``z`` but the *relative* gradient for ``(W, b)``:
  ``dW = W (Y0^T Delta) + W b^T (1^T Delta)`` computed as ``(W Y0^T) Delta`` (``Y0 = z W``),
  and ``db = (b W^T Z^T) Delta + (1 + b b^T)(1^T Delta)``. Cost O(B D^2), no D x D x D product.
* :func:`relative_log_abs_det` stands for ``log|det W|``. Its value is a placeholder (zero: the
  training step never needs it, and computing it would cost an LU); its VJP is the exact
  relative gradient of ``log|det W|`` in augmented form: ``dW = W``, ``db = b``.

Both transform the gradient linearly in the incoming cotangent, so sums and means over a batch
and any scalar weighting in the loss carry through unchanged. Everything else in the loss (prior
parameters, activations' log-derivatives through ``z``) gets ordinary gradients.

Relative coordinates (gradient mode ``relative_coords``): the optimizer itself runs in the
coordinates of the multiplicative perturbation. Each layer is written locally as
``W (I + E)`` and ``b + beta``; the gradient with respect to ``(E, beta)`` at zero is
``(W^T G_W, G_b)``, computed as ``Y0^T Delta`` (one B x D x D product) and ``1^T Delta``; the
``log|det W|`` term contributes the identity (``log|det W(I + E)| = log|det W| + tr E + ...``).
:func:`in_relative_coordinates` wraps any Optax optimizer so that its update ``U`` for ``E`` is
applied as ``W <- W + W U`` (one D x D x D product, no inverse) and its update for ``beta`` as
``b <- b + U_b``. With plain SGD this is exactly ``W <- W - lr W W^T G_W`` (the relative gradient
of docs/math.md) and an ordinary step for ``b``; with an adaptive optimizer (Adam) the elementwise
scaling acts on ``E``, where the problem is equivariant, rather than on ``W W^T G_W``. The bias
keeps its ordinary gradient (docs/math.md: parameters that are not square layer matrices get
ordinary gradients), which avoids the ``(1 + b b^T)`` and ``W b^T`` couplings of the augmented form.

The same step without the map-back (gradient mode ``relative_pooled``):
:func:`relative_kernel_dense` returns ``W (W^T G_W) = (W Y0^T) Delta`` for the kernel, i.e.
the coordinates' gradient already mapped back to ``W`` (O(B D^2)), and the ordinary gradient
for the bias; :func:`relative_kernel_log_abs_det` contributes ``W``. Any optimizer can then
take the step in ``W`` directly; with plain SGD it is the ``relative_coords`` step exactly.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx

__all__ = [
    "coordinate_dense",
    "coordinate_log_abs_det",
    "SquareKernel",
    "in_relative_coordinates",
    "kernel_step_factor",
    "relative_dense",
    "relative_gradient_reference",
    "relative_kernel_dense",
    "relative_kernel_log_abs_det",
    "relative_log_abs_det",
    "scale_kernel_steps",
    "square_kernel_mask",
]


@jax.custom_vjp
def relative_dense(z: jax.Array, kernel: jax.Array, bias: jax.Array) -> jax.Array:
    """Dense layer ``z @ kernel + bias`` whose parameter gradient is the relative gradient.

    Args:
      z: layer inputs, shape ``(batch, dim)``.
      kernel: square weight matrix ``W``, shape ``(dim, dim)`` (row convention).
      bias: shape ``(dim,)``.

    Returns:
      Pre-activations, shape ``(batch, dim)``.
    """
    return z @ kernel + bias


def _relative_dense_fwd(z, kernel, bias):
    y0 = z @ kernel
    return y0 + bias, (y0, kernel, bias)


def _relative_dense_bwd(residuals, delta):
    y0, kernel, bias = residuals
    delta_sum = delta.sum(axis=0)  # 1^T Delta, (dim,)
    w_y0t = kernel @ y0.T  # W Y0^T = W W^T Z^T, (dim, batch)
    d_kernel = w_y0t @ delta + jnp.outer(kernel @ bias, delta_sum)
    b_y0t = y0 @ bias  # (b W^T Z^T)^T, (batch,)
    d_bias = b_y0t @ delta + (1.0 + bias @ bias) * delta_sum
    d_z = delta @ kernel.T
    return d_z, d_kernel, d_bias


relative_dense.defvjp(_relative_dense_fwd, _relative_dense_bwd)


@jax.custom_vjp
def relative_log_abs_det(kernel: jax.Array, bias: jax.Array) -> jax.Array:
    """Gradient carrier for ``log|det W|`` under the relative gradient.

    The returned *value* is a zero placeholder (no slogdet in the training step); only its
    gradient is meaningful: ``(W, b)`` times the cotangent, the relative gradient of
    ``log|det W|`` with respect to the augmented matrix ``[[W, 0], [b, 1]]``.

    Args:
      kernel: shape ``(dim, dim)``.
      bias: shape ``(dim,)``.

    Returns:
      A scalar zero of the kernel's dtype.
    """
    del bias
    return jnp.zeros((), kernel.dtype)


def _relative_log_abs_det_fwd(kernel, bias):
    return jnp.zeros((), kernel.dtype), (kernel, bias)


def _relative_log_abs_det_bwd(residuals, cotangent):
    kernel, bias = residuals
    return cotangent * kernel, cotangent * bias


relative_log_abs_det.defvjp(_relative_log_abs_det_fwd, _relative_log_abs_det_bwd)


def relative_gradient_reference(
    kernel: jax.Array, bias: jax.Array, grad_kernel: jax.Array, grad_bias: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """The explicit formula ``What What^T G`` of docs/math.md, O(D^3); for tests and checks only.

    Args:
      kernel: ``W``, shape ``(dim, dim)``.
      bias: ``b``, shape ``(dim,)``.
      grad_kernel: ordinary gradient with respect to ``W``, shape ``(dim, dim)``.
      grad_bias: ordinary gradient with respect to ``b``, shape ``(dim,)``.

    Returns:
      ``(dW, db)``: the free blocks of ``What What^T G`` with ``What = [[W, 0], [b, 1]]`` and
      ``G = [[grad_W, 0], [grad_b, 0]]``.
    """
    dim = kernel.shape[0]
    w_hat = jnp.zeros((dim + 1, dim + 1), kernel.dtype)
    w_hat = w_hat.at[:dim, :dim].set(kernel).at[dim, :dim].set(bias).at[dim, dim].set(1.0)
    g_hat = jnp.zeros_like(w_hat).at[:dim, :dim].set(grad_kernel).at[dim, :dim].set(grad_bias)
    rel = w_hat @ w_hat.T @ g_hat
    return rel[:dim, :dim], rel[dim, :dim]


@jax.custom_vjp
def coordinate_dense(z: jax.Array, kernel: jax.Array, bias: jax.Array) -> jax.Array:
    """Dense layer ``z @ kernel + bias`` whose parameter gradient is in relative coordinates.

    The backward pass returns, for the kernel, the gradient with respect to ``E`` in
    ``W (I + E)`` at ``E = 0``: ``W^T G_W = Y0^T Delta`` (``Y0 = z W``, O(B D^2)); for the bias
    its ordinary gradient ``1^T Delta``. Only meaningful with an optimizer wrapped by
    :func:`in_relative_coordinates`, which maps the update back to ``W``. Arguments and shapes
    as :func:`relative_dense`: ``(batch, dim), (dim, dim), (dim,) -> (batch, dim)``.
    """
    return z @ kernel + bias


def _coordinate_dense_fwd(z, kernel, bias):
    y0 = z @ kernel
    return y0 + bias, (y0, kernel)


def _coordinate_dense_bwd(residuals, delta):
    y0, kernel = residuals
    return delta @ kernel.T, y0.T @ delta, delta.sum(axis=0)


coordinate_dense.defvjp(_coordinate_dense_fwd, _coordinate_dense_bwd)


@jax.custom_vjp
def coordinate_log_abs_det(kernel: jax.Array) -> jax.Array:
    """Gradient carrier for ``log|det W|`` in relative coordinates (zero value, O(D) gradient).

    Its gradient is the cotangent times the identity: ``d/dE log|det W (I + E)|`` at ``E = 0``.

    Args:
      kernel: shape ``(dim, dim)``.

    Returns:
      A scalar zero of the kernel's dtype.
    """
    return jnp.zeros((), kernel.dtype)


def _coordinate_log_abs_det_fwd(kernel):
    return jnp.zeros((), kernel.dtype), kernel


def _coordinate_log_abs_det_bwd(kernel, cotangent):
    return (cotangent * jnp.eye(kernel.shape[0], dtype=kernel.dtype),)


coordinate_log_abs_det.defvjp(_coordinate_log_abs_det_fwd, _coordinate_log_abs_det_bwd)


@jax.custom_vjp
def relative_kernel_dense(z: jax.Array, kernel: jax.Array, bias: jax.Array) -> jax.Array:
    """Dense layer ``z @ kernel + bias``: relative gradient for the kernel, ordinary for the bias.

    The backward pass returns ``W W^T G_W = (W Y0^T) Delta`` for the kernel (``Y0 = z W``: two
    B x D x D products, no D x D x D one) and ``1^T Delta`` for the bias. Arguments and shapes
    as :func:`relative_dense`: ``(batch, dim), (dim, dim), (dim,) -> (batch, dim)``.
    """
    return z @ kernel + bias


def _relative_kernel_dense_fwd(z, kernel, bias):
    y0 = z @ kernel
    return y0 + bias, (y0, kernel)


def _relative_kernel_dense_bwd(residuals, delta):
    y0, kernel = residuals
    return delta @ kernel.T, (kernel @ y0.T) @ delta, delta.sum(axis=0)


relative_kernel_dense.defvjp(_relative_kernel_dense_fwd, _relative_kernel_dense_bwd)


@jax.custom_vjp
def relative_kernel_log_abs_det(kernel: jax.Array) -> jax.Array:
    """Gradient carrier for ``log|det W|`` with the kernel-only relative gradient ``W W^T W^{-T}``.

    Its gradient is the cotangent times ``W`` (O(D^2)); its value a zero placeholder.

    Args:
      kernel: shape ``(dim, dim)``.

    Returns:
      A scalar zero of the kernel's dtype.
    """
    return jnp.zeros((), kernel.dtype)


def _relative_kernel_log_abs_det_fwd(kernel):
    return jnp.zeros((), kernel.dtype), kernel


def _relative_kernel_log_abs_det_bwd(kernel, cotangent):
    return (cotangent * kernel,)


relative_kernel_log_abs_det.defvjp(
    _relative_kernel_log_abs_det_fwd, _relative_kernel_log_abs_det_bwd
)


class SquareKernel(nnx.Param):
    """A square layer matrix ``W`` (D x D): the parameters the relative gradient acts on.

    Any ``nnx.Param`` of this type is selected by :func:`square_kernel_mask`; every other
    parameter (biases, priors, conditioning networks) gets ordinary gradients.
    """


def _is_variable(value) -> bool:
    return isinstance(value, nnx.Variable)


def square_kernel_mask(params):
    """Optax-style mask of ``params`` (an ``nnx.State``): ``True`` at every :class:`SquareKernel`.

    Raises:
      ValueError: ``params`` holds no square kernel (e.g. a plain dict of arrays), so a
        kernel-specific update (map-back, pooling) would silently do nothing.
    """
    mask = jax.tree.map(lambda v: isinstance(v, SquareKernel), params, is_leaf=_is_variable)
    if not any(jax.tree.leaves(mask)):
        raise ValueError(
            "found no square kernels (nica.core.relative.SquareKernel) in params; pass the "
            "nnx.Param state of a model built from nica.core.network layers"
        )
    return mask


def in_relative_coordinates(
    optimizer: optax.GradientTransformation,
) -> optax.GradientTransformation:
    """Runs ``optimizer`` on relative coordinates and applies its kernel updates multiplicatively.

    ``optimizer`` receives the gradients of the ``relative_coords`` mode (square kernels:
    ``W^T G_W``; everything else: ordinary) and returns updates ``U``; each square kernel's
    update becomes ``W U`` (so ``W <- W (I + U)``), the others pass unchanged. The kernels are
    found by their variable type (:func:`square_kernel_mask`), not by their path. The state is
    ``optimizer``'s own, so ``optimizer.init(params)`` initialises the wrapped transformation too.

    Cost: one D x D x D product per layer and step (no inverse), which is within the
    O(B D^2) of the gradient when ``D <= B``.

    Args:
      optimizer: any Optax transformation (clipping, schedules, Adam, ...).

    Returns:
      The wrapped transformation; its ``update`` needs ``params``.
    """

    if getattr(optimizer.update, "in_relative_coordinates", False):
        raise ValueError(
            "the optimizer is already wrapped by in_relative_coordinates; pass the bare "
            "optimizer (the relative_coords mode wraps it once)"
        )

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("in_relative_coordinates needs params in update()")
        mask = square_kernel_mask(params)
        updates, state = optimizer.update(updates, state, params)

        def map_back(is_kernel, u, w):
            return jax.tree.map(lambda a, b: b @ a, u, w) if is_kernel else u

        return jax.tree.map(map_back, mask, updates, params), state

    update.in_relative_coordinates = True  # marks the wrapped transformation
    return optax.GradientTransformation(optimizer.init, update)


def kernel_step_factor(dim: int, reference_dim: int | None) -> float:
    """``reference_dim / dim`` above ``reference_dim``, else 1 (and 1 for ``None``)."""
    if reference_dim is None or dim <= reference_dim:
        return 1.0
    return reference_dim / dim


def scale_kernel_steps(reference_dim: int | None) -> optax.GradientTransformation:
    """Scales each square kernel's update by ``reference_dim / D`` when ``D > reference_dim``.

    Adam (and any elementwise-normalising optimizer) moves every entry of a ``D x D`` kernel
    update ``U`` by up to about the learning rate, so the update's spectral norm, which is what
    perturbs the layer (``W (I + U)`` in relative coordinates), reaches ``lr D`` for a
    sign-like rank-one update. Placed after the optimizer in a chain, this transformation
    bounds that size by its ``reference_dim`` value at every larger ``D``; biases and other
    parameters pass unchanged. The factor is a Python constant per kernel shape, and kernels
    with ``D <= reference_dim`` are returned untouched (the compiled step is then the unscaled
    one). Stateless, O(D^2) per kernel.

    Args:
      reference_dim: the dimension up to which updates are left as they are; ``None``: never
        scale.

    Returns:
      A transformation whose ``update`` needs ``params`` (an ``nnx.State`` with square kernels).
    """
    if reference_dim is not None and reference_dim < 1:
        raise ValueError(f"reference_dim must be >= 1 or None, got {reference_dim}")

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("scale_kernel_steps needs params in update()")
        if reference_dim is None:
            return updates, state
        mask = jax.tree.leaves(square_kernel_mask(params))
        leaves, treedef = jax.tree.flatten(updates)

        def scaled(is_kernel, u):
            factor = kernel_step_factor(u.shape[-1], reference_dim) if is_kernel else 1.0
            return u if factor == 1.0 else u * jnp.asarray(factor, u.dtype)

        steps = [scaled(m, u) for m, u in zip(mask, leaves, strict=True)]
        return jax.tree.unflatten(treedef, steps), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)
