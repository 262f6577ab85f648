"""The batched trainer: :func:`train_runs` trains a ``(seeds, restarts)`` batch of runs in one
compiled, vmapped, shardable program, with one host loop.

Every fit is a batch of *runs*: each seed has its own data, validation split and key; the
restarts of a seed share its data (broadcast by an inner ``vmap``, never copied). The compiled
programs are cached by the caller's ``cache_key`` (a few, oldest dropped first).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from nica.core.gradients import DEFAULT_GRADIENT, GradientMode, resolve_gradient
from nica.fitting.config import TRAINER_LOOP, LoopConfig
from nica.fitting.steps import HostShuffle, RunData, gather_runs, make_nll_fn, make_scan_fn
from nica.fitting.stopping import History, ProgressEvent, Stopping

__all__ = ["seed_sharding", "train_runs"]


def _over_runs(fn: Callable, n_run_args: int, n_data_args: int) -> Callable:
    """``vmap`` over ``(seeds, restarts)``: the first ``n_run_args`` arguments have both axes;
    the next ``n_data_args`` (data) only the seed axis and are broadcast over restarts."""
    inner = jax.vmap(fn, in_axes=(0,) * n_run_args + (None,) * n_data_args)
    return jax.vmap(inner, in_axes=0)


def seed_sharding(n_seeds: int, shard: bool | None = None):
    """How the seed axis is laid out: ``(padded_size, sharding or None)``.

    With several local devices (and ``shard`` not ``False``), the seed axis is padded to a
    multiple of the device count and split across devices with a ``NamedSharding`` over a 1-D
    mesh named ``"seeds"``; each device trains its own seeds, with no communication. With one
    device, or ``shard=False``, or a single seed (unless ``shard=True``), nothing is sharded.
    """
    devices = jax.local_devices()
    if shard is False or len(devices) == 1 or (shard is None and n_seeds == 1):
        return n_seeds, None
    mesh = jax.sharding.Mesh(np.array(devices), ("seeds",))
    padded = -(-n_seeds // len(devices)) * len(devices)
    return padded, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("seeds"))


def _pad_seeds(tree, padded: int, sharding):
    """Pads the leading (seed) axis to ``padded`` by repeating seed 0 and places it."""

    def pad(a):
        if a is None or a.shape[0] == padded:
            return a
        return jnp.concatenate([a, jnp.repeat(a[:1], padded - a.shape[0], 0)])

    tree = jax.tree.map(pad, tree)
    return tree if sharding is None else jax.device_put(tree, sharding)


class _Program(NamedTuple):
    """The jitted functions of one batch of runs."""

    epoch: Callable
    nll: Callable
    logdet: Callable
    init: Callable
    keep_best: Callable


def _compile(graphdef, rest, optimizer, gradient) -> _Program:
    scan_ = jax.vmap(make_scan_fn(graphdef, rest, optimizer, gradient=gradient))

    def epoch(params, opt_state, order, x, u):
        # One flat run axis: vmap nested over (seeds, restarts) runs ~1.5x slower on CPU.
        lead = order.shape[:2]
        flat = lambda t: jax.tree.map(lambda a: a.reshape((-1,) + a.shape[2:]), t)  # noqa: E731
        back = lambda t: jax.tree.map(lambda a: a.reshape(lead + a.shape[1:]), t)  # noqa: E731
        return back(scan_(*flat((params, opt_state, *gather_runs(order, x, u)))))

    logdet = lambda p: nnx.merge(graphdef, p, rest).log_abs_det_weights()  # noqa: E731

    def keep_best(improved, params, best):
        def select(new, old):
            return jnp.where(improved.reshape(improved.shape + (1,) * (new.ndim - 2)), new, old)

        return jax.tree.map(select, params, best)

    both = lambda f: jax.vmap(jax.vmap(f))  # noqa: E731
    return _Program(
        jax.jit(epoch, donate_argnums=(0, 1)),
        jax.jit(_over_runs(make_nll_fn(graphdef, rest), 1, 2)),
        jax.jit(both(logdet)),
        jax.jit(both(optimizer.init)),
        jax.jit(keep_best),
    )


_PROGRAMS: dict = {}  # cache_key -> _Program (a few, oldest dropped first)


def _program(graphdef, rest, optimizer, mode, cache_key) -> _Program:
    """The compiled program, reused across calls that pass the same ``cache_key`` (the caller
    vouches that it determines the optimizer); models with non-parameter arrays never share."""
    if cache_key is None or jax.tree.leaves(rest):
        return _compile(graphdef, rest, optimizer, mode)
    key = (cache_key, graphdef, mode)
    if key not in _PROGRAMS:
        while len(_PROGRAMS) >= 8:
            _PROGRAMS.pop(next(iter(_PROGRAMS)))
        _PROGRAMS[key] = _compile(graphdef, rest, optimizer, mode)
    return _PROGRAMS[key]


def train_runs(
    graphdef: nnx.GraphDef,
    params,
    rest: nnx.State,
    data: RunData,
    keys: jax.Array,
    *,
    optimizer: optax.GradientTransformation,
    gradient: str | GradientMode = DEFAULT_GRADIENT,
    settings: LoopConfig = TRAINER_LOOP,
    progress: Callable[[ProgressEvent], None] | None = None,
    phase: str = "fit",
    shard: bool | None = None,
    cache_key=None,
    nll_offset=None,
):
    """Trains a ``(seeds, restarts)`` batch of runs; returns ``(best_params, results)``.

    Args:
      graphdef, params, rest: as from ``nnx.split(model, nnx.Param, ...)``, the parameters with
        leading axes ``(S, K)`` (seeds, restarts); structure and the rest are shared by all runs.
      data: the seeds' splits (:func:`split_runs_data`), leading axis ``S``.
      keys: shuffle keys, shape ``(S, K)``: each seeds its run's :class:`HostShuffle`.
      optimizer: any Optax transformation (wrapped for the mode inside).
      gradient: the gradient mode (name or object), or ``"auto"`` (resolved from ``D`` and
        the batch size, :func:`nica.core.gradients.resolve_gradient`).
      settings: loop settings shared by all runs (default
        :data:`nica.fitting.config.TRAINER_LOOP`).
      progress: called with a :class:`ProgressEvent` after every epoch.
      phase: the phase name given to ``progress``.
      shard: shard the seed axis over local devices (see :func:`seed_sharding`).
      cache_key: a hashable description of ``optimizer``; calls with equal keys (and the same
        structure and mode) reuse one compiled program.
      nll_offset: ``None`` or one number per seed, shape ``(S,)``, added to every recorded and
        reported NLL of that seed's runs (``sum(log scale)`` of its standardisation records
        them in the units of the unstandardised data); decisions are unchanged by it.

    Returns:
      The best parameters of every run (leading axes ``(S, K)``) and one :class:`FitResult`
      per run, in row-major ``(seed, restart)`` order.
    """
    n_seeds, n_restarts = keys.shape[:2]
    padded, sharding = seed_sharding(n_seeds, shard)
    params, data, keys = _pad_seeds((params, data, keys), padded, sharding)
    batch_size = min(settings.batch_size, data.x_train.shape[1])
    mode = resolve_gradient(gradient, data.x_train.shape[-1], batch_size)
    shuffle = HostShuffle(keys, data.x_train.shape[1], batch_size)
    fresh = cache_key is None or bool(jax.tree.leaves(rest))
    fresh = fresh or (cache_key, graphdef, mode) not in _PROGRAMS
    program = _program(graphdef, rest, optimizer, mode, cache_key)
    n_runs = n_seeds * n_restarts
    offset = np.zeros(n_runs) if nll_offset is None else np.repeat(nll_offset, n_restarts)

    def host(a):  # (padded, K) device array -> (R,) float64
        return np.asarray(a, np.float64)[:n_seeds].reshape(n_runs)

    log = History(n_runs, phase, settings.epochs, progress, compiling=fresh)
    opt_state = program.init(params)
    best_params = jax.tree.map(jnp.copy, params)
    initial = host(program.nll(params, data.x_val, data.u_val)) + offset
    stopping = Stopping(initial, settings, data.x_train.shape[-1], mode.name)
    log.record(np.ones(n_runs, bool), 0, np.full(n_runs, np.nan), initial)
    # Each epoch's finite flags stay on the device until the next evaluation reads them (in
    # epoch order, before the evaluation, so the bookkeeping is what it would be epoch by
    # epoch): no host round trip per epoch, and the host draws the next epoch's minibatches
    # while the device trains (asynchronous dispatch).
    pending = []
    for epoch in range(1, settings.epochs + 1):
        order = shuffle.next()
        order = jnp.asarray(order) if sharding is None else jax.device_put(order, sharding)
        params, opt_state, data_nll, finite = program.epoch(
            params, opt_state, order, data.x_train, data.u_train
        )
        pending.append((epoch, finite))
        val = None
        evaluate = epoch % settings.eval_every == 0 or epoch == settings.epochs
        if evaluate:
            for done, flags in pending:
                stopping.after_epoch(done, host(flags).astype(bool))
            pending.clear()
            val = host(program.nll(params, data.x_val, data.u_val)) + offset
            train = host(data_nll) - host(program.logdet(params)) + offset
            improved = stopping.after_evaluation(epoch, val)
            log.record(stopping.active, epoch, train, val)
            stopping.apply_patience()
            if improved.any():
                mask = np.zeros((padded, n_restarts), bool)
                mask[:n_seeds] = improved.reshape(n_seeds, n_restarts)
                best_params = program.keep_best(jnp.asarray(mask), params, best_params)
        log.tick(epoch, val)
        if evaluate and not stopping.active.any():
            break
    best_params = jax.tree.map(lambda a: a[:n_seeds], best_params)
    return best_params, stopping.results(log.histories)
