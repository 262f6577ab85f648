"""The pure pieces of training one run, and the data they run on.

* :func:`validation_split` / :func:`split_runs_data`: a seed's train/validation split, computed
  once per seed, stacked over seeds (:class:`RunData`);
* :func:`make_scan_fn` / :func:`make_pass_fn`: one pass (a ``lax.scan`` of optimizer steps over
  given minibatches) for one run; the optimizer is wrapped by the gradient mode here, so a mode
  that needs a wrapped optimizer is never run without it; :func:`make_epoch_fn` shuffles with a
  key first;
* :class:`HostShuffle` / :func:`batch_order`: every run's per-epoch minibatch order, drawn on
  the host;
* :func:`make_nll_fn`: the exact validation NLL (slogdet; evaluation only).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from nica.core.gradients import DEFAULT_GRADIENT, GradientMode, check_gradient, resolve_gradient

__all__ = [
    "HostShuffle",
    "RunData",
    "batch_order",
    "gather_runs",
    "make_epoch_fn",
    "make_nll_fn",
    "make_pass_fn",
    "make_scan_fn",
    "split_runs_data",
    "validation_split",
]


class RunData(NamedTuple):
    """Training and validation data of ``S`` seeds: ``x_*`` ``(S, n, D)``, ``u_*`` or None."""

    x_train: jax.Array
    u_train: jax.Array | None
    x_val: jax.Array
    u_val: jax.Array | None


def validation_split(key: jax.Array, n: int, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """A random ``(train_idx, val_idx)`` split of ``n`` samples; with ``fraction=0`` the
    validation indices are all samples (evaluation on the training data)."""
    order = np.asarray(jax.random.permutation(key, n))
    n_val = int(round(fraction * n))
    if fraction > 0 and (n_val == 0 or n_val == n):
        raise ValueError(f"validation_fraction={fraction} leaves an empty split of {n} samples")
    return order[n_val:], (order[:n_val] if n_val else order)


def split_runs_data(split_keys, xs, us, fraction: float, dtype) -> RunData:
    """Splits each seed's ``x`` (N, D) and ``u`` once and stacks them over the seed axis."""
    parts = []
    for key, x, u in zip(split_keys, xs, us, strict=True):
        train_idx, val_idx = validation_split(key, x.shape[0], fraction)
        pick = lambda a, idx: None if a is None else a[idx]  # noqa: E731
        parts.append((x[train_idx], pick(u, train_idx), x[val_idx], pick(u, val_idx)))
    stacked = [None if p[0] is None else np.stack(p) for p in zip(*parts, strict=True)]
    x_train, u_train, x_val, u_val = stacked
    as_u = lambda a: None if a is None else jnp.asarray(a)  # noqa: E731
    return RunData(
        jnp.asarray(x_train, dtype), as_u(u_train), jnp.asarray(x_val, dtype), as_u(u_val)
    )


def make_nll_fn(graphdef: nnx.GraphDef, rest: nnx.State) -> Callable:
    """Pure exact mean NLL: ``nll(params, x, u) -> scalar`` (slogdet; evaluation only)."""

    def nll(params, x, u):
        return -nnx.merge(graphdef, params, rest).log_likelihood(x, u).mean()

    return nll


def make_scan_fn(
    graphdef: nnx.GraphDef,
    rest: nnx.State,
    optimizer: optax.GradientTransformation,
    *,
    gradient: str | GradientMode = DEFAULT_GRADIENT,
) -> Callable:
    """Builds the pure function that scans one optimizer step per given minibatch, one run.

    ``scan_(params, opt_state, xb, ub) -> (params, opt_state, data_nll, finite)``: ``xb`` of
    shape ``(n_batches, batch, D)``, ``ub`` ``(n_batches, batch, ...)`` or ``None``.
    ``data_nll`` is the mean minibatch NLL without the weights' log-determinants; ``finite``
    says whether every loss and parameter stayed finite. ``gradient`` ``"auto"`` is resolved
    from ``D`` and the batch size when the function is traced
    (:func:`nica.core.gradients.resolve_gradient`). The optimizer is wrapped by the mode
    (``mode.wrap_optimizer``); its state is the unwrapped optimizer's, so
    ``optimizer.init(params)`` gives ``opt_state``.
    """
    check_gradient(gradient)

    def scan_(params, opt_state, xb, ub):
        mode = resolve_gradient(gradient, xb.shape[-1], xb.shape[-2])
        wrapped = mode.wrap_optimizer(optimizer)

        def loss(params, xb, ub):
            return nnx.merge(graphdef, params, rest).training_loss(xb, ub, gradient=mode)

        grad_fn = jax.value_and_grad(loss, has_aux=True)

        def step(carry, batch):
            params, opt_state = carry
            (_, data_nll), grads = grad_fn(params, *batch)
            updates, opt_state = wrapped.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), data_nll

        (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), (xb, ub))
        finite = jnp.all(jnp.isfinite(losses)) & jax.tree.reduce(
            jnp.logical_and, jax.tree.map(lambda p: jnp.all(jnp.isfinite(p)), params)
        )
        return params, opt_state, losses.mean(), finite

    return scan_


def make_pass_fn(
    graphdef: nnx.GraphDef,
    rest: nnx.State,
    optimizer: optax.GradientTransformation,
    *,
    gradient: str | GradientMode = DEFAULT_GRADIENT,
) -> Callable:
    """Builds the pure one-pass function of one run, over minibatches given as indices.

    ``pass_(params, opt_state, order, x, u) -> (params, opt_state, data_nll, finite)``: the
    steps of :func:`make_scan_fn` over ``x[order]``, ``u[order]``, with ``order`` of shape
    ``(n_batches, batch)`` (integer indices into ``x`` (N, D) and ``u`` (N, ...) or ``None``).
    """
    scan_ = make_scan_fn(graphdef, rest, optimizer, gradient=gradient)

    def pass_(params, opt_state, order, x, u):
        return scan_(params, opt_state, x[order], None if u is None else u[order])

    return pass_


def gather_runs(order, x, u):
    """Minibatches of every run: ``x[s][order[s, k]]`` for ``order`` ``(S, K, n, B)`` and ``x``
    ``(S, N, D)``, as one plain gather from the flattened seeds (a gather batched over the run
    axes by ``vmap`` costs several times the whole step on XLA's CPU backend)."""
    n_seeds, n = x.shape[:2]
    flat = order + (jnp.arange(n_seeds, dtype=order.dtype) * n)[:, None, None, None]
    pick = lambda a: None if a is None else a.reshape((-1,) + a.shape[2:])[flat]  # noqa: E731
    return pick(x), pick(u)


def make_epoch_fn(
    graphdef: nnx.GraphDef,
    rest: nnx.State,
    optimizer: optax.GradientTransformation,
    *,
    gradient: str | GradientMode = DEFAULT_GRADIENT,
    batch_size: int,
) -> Callable:
    """Builds the pure one-epoch function of one run (jit it, or vmap it over runs first).

    ``epoch(params, opt_state, key, x, u) -> (params, opt_state, data_nll, finite)``: shuffles
    ``x`` (N, D) and ``u`` (N, ...) or ``None`` with ``key`` (``jax.random.permutation``),
    drops the last partial batch, and runs :func:`make_pass_fn`'s pass over the minibatches.
    The trainer itself draws its permutations on the host (:class:`HostShuffle`: XLA's CPU sort
    is a third of a small model's epoch); this is the same epoch for callers that hold a key.
    """
    pass_ = make_pass_fn(graphdef, rest, optimizer, gradient=gradient)

    def epoch(params, opt_state, key, x, u):
        order = jax.random.permutation(key, x.shape[0])
        return pass_(params, opt_state, batch_order(order, batch_size), x, u)

    return epoch


def batch_order(permutation, batch_size: int):
    """The first ``n_batches * batch_size`` entries of ``permutation`` (..., N) as
    ``(..., n_batches, batch_size)`` minibatch indices (the last partial batch is dropped)."""
    n_batches = permutation.shape[-1] // batch_size
    kept = permutation[..., : n_batches * batch_size]
    return kept.reshape(permutation.shape[:-1] + (n_batches, batch_size))


class HostShuffle:
    """Each run's minibatch order for every epoch, drawn on the host with numpy.

    ``jax.random.permutation`` sorts: on XLA's CPU backend about 0.5 us per sample, a third of
    a 5-source epoch and as much again per vmapped run, where numpy's Fisher-Yates shuffle costs
    a few ns per sample. Every run gets its own ``numpy`` generator seeded from its JAX key, so
    a run's orders depend on its key only: the same key gives the same fit whether the run is
    trained alone or vmapped with others.

    Args:
      keys: PRNG keys, one per run, any leading shape ``R`` (e.g. ``(S, K)``).
      n: samples per run (the training split's size).
      batch_size: minibatch size (``<= n``).
    """

    def __init__(self, keys: jax.Array, n: int, batch_size: int):
        data = np.asarray(jax.random.key_data(keys), np.uint32)
        self.shape = tuple(keys.shape)
        self.n, self.batch_size = n, batch_size
        self.generators = [
            np.random.Generator(np.random.PCG64(np.random.SeedSequence(row.tolist())))
            for row in data.reshape(int(np.prod(self.shape, dtype=int)), -1)
        ]

    def next(self) -> np.ndarray:
        """The next epoch's orders, ``int32`` of shape ``R + (n_batches, batch_size)``."""
        orders = np.stack([g.permutation(self.n).astype(np.int32) for g in self.generators])
        return batch_order(orders.reshape(self.shape + (self.n,)), self.batch_size)
