"""The relative gradient of a square dense layer (MATH.md, "Relative gradient", "With biases").

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
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["relative_dense", "relative_gradient_reference", "relative_log_abs_det"]


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
    """The explicit formula ``What What^T G`` of MATH.md, O(D^3); for tests and checks only.

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
