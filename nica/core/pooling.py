"""One Adam second moment per square kernel: an Optax wrapper for W-space relative gradients.

Elementwise Adam on the relative gradient ``R = W W^T G_W`` rescales each entry of ``R`` by its
own running RMS, which bends the equivariant direction ``R`` (the ``relative`` mode's Adam
problem). :func:`pool_second_moment` keeps the optimizer's momentum but replaces, for every
square kernel (:class:`nica.core.relative.SquareKernel`), the elementwise second moment ``nu`` by
its mean over the matrix (one scalar per kernel, as Adam-mini does for a block) or over each column
(one scalar per output unit). With Adam's update ``-lr m_hat / (sqrt(nu_hat) + eps)`` that is

    u_pooled = u * sqrt(nu / pool(nu))
             = -lr m_hat / sqrt(pool(nu_hat)) * sqrt(nu_hat) / (sqrt(nu_hat) + eps),

computed from the optimizer's own update and state (the bias correction cancels in the ratio,
and ``pool(EMA(g^2)) = EMA(pool(g^2))`` is the pooled second moment exactly). So the user's
learning rate, schedule, betas, clipping and state are used unchanged; an optimizer without a
second moment (``optax.sgd``, momentum) passes through untouched, so plain SGD on ``R`` stays
the relative-gradient step of docs/math.md. Cost O(D^2) per kernel, no D x D x D product.

The second moment is found in the optimizer state by its name ``nu`` (``optax.adam``,
``adamw``, ``rmsprop``, ``amsgrad``'s ``ScaleByAdamState``, ...; ``inject_hyperparams`` and
``chain`` are fine). The pooling assumes the kernel update is that scaling times scalars
(schedules, ``scale``): a transform after Adam that adds a term (``add_decayed_weights``) is
rescaled with it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from nica.core.relative import square_kernel_mask

__all__ = ["POOLS", "pool_second_moment"]

#: How the second moment of a ``(dim, dim)`` kernel is pooled: the axes averaged over.
POOLS: dict[str, tuple[int, ...]] = {"matrix": (0, 1), "columns": (0,)}


def _pooled(update: jax.Array, nu: jax.Array, axes: tuple[int, ...]) -> jax.Array:
    """``update * sqrt(nu / mean(nu over axes))``; 0 where the pooled moment is 0."""
    pooled = nu.mean(axis=axes, keepdims=True)
    ratio = jnp.where(pooled > 0, nu / jnp.where(pooled > 0, pooled, 1.0), 0.0)
    return update * jnp.sqrt(ratio)


def _second_moment(state):
    """The ``nu`` tree of the optimizer state, or ``None``; one line if there are several."""
    try:
        return optax.tree_utils.tree_get(state, "nu")
    except KeyError:
        raise ValueError(
            "pool_second_moment found several second moments ('nu') in the optimizer state; "
            "pass an optimizer with one Adam-like scaling"
        ) from None


def pool_second_moment(
    optimizer: optax.GradientTransformation, *, over: str = "matrix"
) -> optax.GradientTransformation:
    """Runs ``optimizer`` and pools its second moment over each square kernel.

    Args:
      optimizer: any Optax transformation; one with a second moment ``nu`` in its state
        (Adam, RMSprop, ...) has it pooled for the square kernels, others pass unchanged.
      over: ``"matrix"`` (one second moment per kernel) or ``"columns"`` (one per output unit,
        i.e. per column of ``W`` in the row convention ``z @ W``).

    Returns:
      The wrapped transformation; its state is ``optimizer``'s own (``optimizer.init(params)``
      initialises it), its ``update`` needs ``params`` (an ``nnx.State`` with square kernels).

    Raises:
      ValueError: unknown ``over``, an optimizer already wrapped, or (in ``update``) missing
        ``params``, params without square kernels, several ``nu`` in the state.
    """
    if over not in POOLS:
        raise ValueError(f"unknown pooling {over!r}; known: {', '.join(POOLS)}")
    if getattr(optimizer.update, "pool_second_moment", False):
        raise ValueError("the optimizer already pools its second moment; pass the bare one")
    axes = POOLS[over]

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("pool_second_moment needs params in update()")
        mask = square_kernel_mask(params)
        updates, state = optimizer.update(updates, state, params)
        nu = _second_moment(state)
        if nu is None:
            return updates, state

        def pool(is_kernel, u, v):
            return jax.tree.map(lambda a, b: _pooled(a, b, axes), u, v) if is_kernel else u

        return jax.tree.map(pool, mask, updates, nu), state

    update.pool_second_moment = True  # marks the wrapped transformation
    return optax.GradientTransformation(optimizer.init, update)
