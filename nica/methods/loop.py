"""The baselines' training loop: ``S`` seeds, each on its own data, in one vmapped program.

An epoch is a ``lax.scan`` of optimizer steps over shuffled minibatches (the last partial batch
dropped), jitted once and ``vmap``-ped over the seed axis, so seed ``i`` follows exactly the
steps it would follow alone (up to floating-point reassociation in batched kernels). The
optimizer's ``update`` receives the minibatch loss as ``value`` (for
``optax.contrib.reduce_on_plateau``); an exponential moving average of the parameters (TCL's
evaluation weights) is kept when asked for.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from nica.fitting.stopping import ProgressEvent

__all__ = ["LoopResult", "make_epoch_fn", "run_loop"]

#: ``loss_fn(params, key, *batch) -> scalar``: one run's loss on one minibatch.
LossFn = Callable[..., jax.Array]


class LoopResult(NamedTuple):
    """What :func:`run_loop` returns.

    Attributes:
      params: the final parameters, leading axis ``S``.
      averaged: their moving average (leading axis ``S``), or ``None`` without ``average``.
      losses: mean minibatch loss of every epoch run, shape ``(S, epochs_run)``.
      finite: whether every loss and parameter of the seed stayed finite, shape ``(S,)``.
    """

    params: Any
    averaged: Any
    losses: np.ndarray
    finite: np.ndarray


def _all_finite(tree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves))


def make_epoch_fn(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    batch_size: int,
    average: float | None = None,
    passes: int = 1,
) -> Callable:
    """One run's epoch (pure; vmap it over seeds).

    ``epoch(params, opt_state, avg, step, key, data) -> (params, opt_state, avg, step,
    mean_loss, finite)``: ``data`` is a tuple of arrays with a leading sample axis ``N``,
    shuffled with ``key`` and cut into ``N // batch_size`` minibatches (``passes`` > 1: that
    many passes, each its own shuffle, in one call; for small data); ``step`` counts the
    optimizer steps so far (the moving average's warm-up, TensorFlow's
    ``min(average, (1 + step) / (10 + step))``); ``avg`` is ``None`` without ``average``.
    """
    optimizer = optax.with_extra_args_support(optimizer)
    value_and_grad = jax.value_and_grad(loss_fn)

    def step_fn(carry, batch):
        params, opt_state, avg, step, key = carry
        key, loss_key = jax.random.split(key)
        loss, grads = value_and_grad(params, loss_key, *batch)
        updates, opt_state = optimizer.update(grads, opt_state, params, value=loss)
        params = optax.apply_updates(params, updates)
        if average is not None:
            decay = jnp.minimum(average, (1.0 + step) / (10.0 + step))
            avg = jax.tree.map(lambda a, p: decay * a + (1.0 - decay) * p, avg, params)
        return (params, opt_state, avg, step + 1, key), loss

    def epoch(params, opt_state, avg, step, key, data):
        n, n_batches = data[0].shape[0], data[0].shape[0] // batch_size
        order_key, step_key = jax.random.split(key)
        if passes == 1:
            order = jax.random.permutation(order_key, n)[: n_batches * batch_size]
        else:
            orders = jax.vmap(lambda k: jax.random.permutation(k, n)[: n_batches * batch_size])
            order = orders(jax.random.split(order_key, passes)).reshape(-1)
        batches = tuple(a[order.reshape(-1, batch_size)] for a in data)
        carry = (params, opt_state, avg, step, step_key)
        (params, opt_state, avg, step, _), losses = jax.lax.scan(step_fn, carry, batches)
        finite = jnp.all(jnp.isfinite(losses)) & _all_finite(params)
        return params, opt_state, avg, step, losses.mean(), finite

    return epoch


_PROGRAMS: dict = {}  # cache key -> jitted vmapped epoch (a few, oldest dropped first)


def _program(loss_fn, optimizer, batch_size, average, passes, cache_key) -> Callable:
    """The jitted, seed-vmapped epoch; reused across calls with the same ``cache_key`` (the
    caller vouches that it determines ``loss_fn`` and ``optimizer``)."""

    def build():
        epoch = make_epoch_fn(loss_fn, optimizer, batch_size, average, passes)
        return jax.jit(jax.vmap(epoch), donate_argnums=(0, 1))

    if cache_key is None:
        return build()
    key = (cache_key, batch_size, average, passes)
    if key not in _PROGRAMS:
        while len(_PROGRAMS) >= 8:
            _PROGRAMS.pop(next(iter(_PROGRAMS)))
        _PROGRAMS[key] = build()
    return _PROGRAMS[key]


def run_loop(
    loss_fn: LossFn,
    params,
    data: tuple,
    keys: jax.Array,
    *,
    optimizer: optax.GradientTransformation,
    epochs: int,
    batch_size: int,
    average: float | None = None,
    passes: int = 1,
    progress: Callable[[ProgressEvent], None] | None = None,
    phase: str = "fit",
    cache_key=None,
) -> LoopResult:
    """Trains ``S`` runs together for ``epochs`` epochs.

    Args:
      loss_fn: ``loss_fn(params, key, *batch) -> scalar`` of one run.
      params: initial parameters with a leading seed axis ``S``.
      data: arrays of shape ``(S, N, ...)`` (each seed its own data), minibatched together.
      keys: ``S`` PRNG keys (shuffles and the loss's own randomness).
      optimizer: any Optax transformation (given the minibatch loss as ``value``).
      epochs: passes over the data.
      batch_size: minibatch size (at most ``N``).
      average: decay of a moving average of the parameters (``None``: none).
      passes: passes over the data per compiled call (an "epoch" of ``losses``).
      progress: called with a :class:`nica.ProgressEvent` after every epoch.
      phase: the phase name given to ``progress``.
      cache_key: a hashable description of ``loss_fn`` and ``optimizer``: calls with equal
        keys reuse one compiled program (``None``: compile afresh).
    """
    n = data[0].shape[1]
    if not 1 <= batch_size <= n:
        raise ValueError(f"batch_size={batch_size} must be between 1 and the {n} samples")
    epoch = _program(loss_fn, optimizer, batch_size, average, passes, cache_key)
    optimizer = optax.with_extra_args_support(optimizer)
    opt_state = jax.vmap(optimizer.init)(params)
    avg = None if average is None else jax.tree.map(jnp.copy, params)
    step = jnp.zeros(keys.shape[0], jnp.float32)
    split = jax.jit(jax.vmap(lambda k: tuple(jax.random.split(k))))
    losses, finite = [], np.ones(keys.shape[0], bool)
    start = time.perf_counter()
    for done in range(1, epochs + 1):
        keys, epoch_keys = split(keys)
        state = epoch(params, opt_state, avg, step, epoch_keys, data)
        params, opt_state, avg, step, loss, ok = state
        losses.append(np.asarray(loss, np.float64))
        finite &= np.asarray(ok)
        if progress is not None:
            seconds = time.perf_counter() - start
            progress(ProgressEvent(phase, done, epochs, seconds, None))
        if not finite.any():
            break
    return LoopResult(params, avg, np.stack(losses, axis=1), finite)
