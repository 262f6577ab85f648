"""The batched maximum-likelihood trainer: small pure pieces and one host loop.

Every fit is a batch of *runs* with a leading ``(seeds, restarts)`` layout: each seed has its
own data, validation split and key; the restarts of a seed share its data (broadcast by an inner
``vmap``, never copied). The pieces:

* :func:`validation_split`: a seed's train/validation indices, computed once per seed;
* :func:`make_pass_fn`: one pass (a ``lax.scan`` of optimizer steps over given minibatches)
  for one run; the optimizer is wrapped by the gradient mode here, so a mode that needs a
  wrapped optimizer is never run without it; :func:`make_epoch_fn` shuffles with a key first;
* :class:`HostShuffle`: every run's per-epoch minibatch order, drawn on the host;
* :func:`make_nll_fn`: the exact validation NLL (slogdet; evaluation only);
* :class:`Stopping`: early stopping and divergence, per run, on the host;
* :func:`train_runs`: the loop that ties them together over ``(seeds, restarts)``.

:func:`train` (one module) and :func:`train_seeds` (one module per seed) are the low-level
entry points; :func:`nica.fit` builds on :func:`train_runs`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from nica.core.gradients import DEFAULT_GRADIENT, GradientMode, check_gradient, resolve_gradient
from nica.core.model import ICAModel
from nica.fitting.data import check_observations

__all__ = [
    "FitResult",
    "ProgressEvent",
    "RunData",
    "Stopping",
    "TrainSettings",
    "TrainingDivergedError",
    "HostShuffle",
    "batch_order",
    "make_epoch_fn",
    "make_nll_fn",
    "make_pass_fn",
    "make_scan_fn",
    "seed_sharding",
    "split_runs_data",
    "train",
    "train_runs",
    "train_seeds",
    "validation_split",
]


class TrainingDivergedError(RuntimeError):
    """Training produced a non-finite loss or parameters; the model keeps its best parameters.

    Attributes:
      epoch: the (1-based) epoch at which divergence was detected.
      history: the history up to that point (same layout as :attr:`FitResult.history`).
    """

    def __init__(self, message: str, *, epoch: int, history: dict):
        super().__init__(message)
        self.epoch = epoch
        self.history = history


@dataclasses.dataclass
class FitResult:
    """One run's training record.

    Attributes:
      history: per evaluated epoch: ``epoch``, ``train_nll`` (mean minibatch NLL over the epoch,
        with the weights' ``log|det W|`` taken at the epoch's end; ``nan`` at epoch 0),
        ``val_nll`` (exact), ``seconds`` (wall time since the start).
      best_epoch: epoch of the best validation NLL (0 = initial parameters).
      best_val_nll: that NLL.
      epochs_run: number of epochs trained.
      stop_reason: ``"epochs"``, ``"early_stopping"`` or ``"diverged"``.
      diverged: ``None``, or the divergence message.
    """

    history: dict
    best_epoch: int
    best_val_nll: float
    epochs_run: int
    stop_reason: str
    diverged: str | None = None


class ProgressEvent(NamedTuple):
    """What a ``progress`` callback receives after every epoch (and at epoch 0).

    Attributes:
      phase: ``"restarts"`` (short fits of the initialisations) or ``"fit"``.
      epoch: epochs done in this phase.
      epochs: epochs planned in this phase.
      seconds: wall time since the phase started.
      val_nll: the best validation NLL over the batched runs (nats per sample, in the units
        the trainer was told, see ``train_runs``'s ``nll_offset``), at evaluated epochs, else
        None.
      compiling: at epoch 0, whether XLA compiles this phase's training program before the
        first epoch (its first use in this process), so the next event may take a while.
    """

    phase: str
    epoch: int
    epochs: int
    seconds: float
    val_nll: float | None
    compiling: bool = False


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """Loop settings shared by every run of a batch.

    Attributes:
      epochs: maximum number of passes over the training split.
      batch_size: minibatch size (capped at the training-split size).
      validation_fraction: share of samples held out for the exact validation NLL; with 0 the
        training data is used for evaluation.
      patience: stop a run after this many evaluations without improvement (``None``: never).
      min_delta: improvement below this does not count for early stopping.
      eval_every: evaluate (exact NLL) every this many epochs, and at the last one.
      explode_nats: divergence if the validation NLL rises more than this many nats per
        dimension above both the initial and the best one (``None``: only non-finite values).
    """

    epochs: int = 100
    batch_size: int = 100
    validation_fraction: float = 0.1
    patience: int | None = None
    min_delta: float = 0.0
    eval_every: int = 1
    explode_nats: float | None = 50.0

    def validate(self) -> TrainSettings:
        """Returns self, or raises a one-line ``ValueError`` naming the bad setting."""
        if self.epochs < 1 or self.batch_size < 1 or self.eval_every < 1:
            raise ValueError("epochs, batch_size and eval_every must be >= 1")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError(f"validation_fraction={self.validation_fraction} must be in [0, 1)")
        return self


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


def _gather_runs(order, x, u):
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


def _over_runs(fn: Callable, n_run_args: int, n_data_args: int) -> Callable:
    """``vmap`` over ``(seeds, restarts)``: the first ``n_run_args`` arguments have both axes;
    the next ``n_data_args`` (data) only the seed axis and are broadcast over restarts."""
    inner = jax.vmap(fn, in_axes=(0,) * n_run_args + (None,) * n_data_args)
    return jax.vmap(inner, in_axes=0)


class Stopping:
    """Per-run early stopping and divergence bookkeeping, on the host (arrays of shape (R,)).

    Args:
      initial_val: validation NLLs of the initial parameters, shape ``(R,)``.
      settings: the loop settings.
      dim: data dimension (the explosion limit is per dimension).
      gradient: the mode's name, quoted in divergence messages.
    """

    def __init__(self, initial_val: np.ndarray, settings: TrainSettings, dim: int, gradient):
        if not np.all(np.isfinite(initial_val)):
            raise ValueError("the initial model gives a non-finite NLL on the data")
        self.settings, self.dim, self.gradient = settings, dim, gradient
        n = initial_val.shape[0]
        self.initial_val, self.best_val = initial_val.copy(), initial_val.copy()
        self.best_epoch = np.zeros(n, int)
        self.since_best = np.zeros(n, int)
        self.epochs_run = np.zeros(n, int)
        self.active = np.ones(n, bool)
        self.stop_reason = ["epochs"] * n
        self.diverged: list[str | None] = [None] * n

    def _diverge(self, runs, epoch: int, what: Callable[[int], str]) -> None:
        for i in np.flatnonzero(self.active & runs):
            self.active[i] = False
            self.stop_reason[i] = "diverged"
            self.diverged[i] = (
                f"training diverged at epoch {epoch}: {what(i)} (gradient={self.gradient}); "
                f"kept the best parameters, from epoch {self.best_epoch[i]}"
            )

    def after_epoch(self, epoch: int, finite: np.ndarray) -> None:
        """Counts the epoch for active runs; a non-finite loss or parameter is divergence."""
        self.epochs_run[self.active] = epoch
        self._diverge(~finite, epoch, lambda i: "non-finite loss or parameters")

    def after_evaluation(self, epoch: int, val: np.ndarray) -> np.ndarray:
        """Updates bests and stopping from validation NLLs ``(R,)``; returns the improved runs."""
        self._diverge(
            ~np.isfinite(val), epoch, lambda i: "non-finite validation NLL (singular weights?)"
        )
        if self.settings.explode_nats is not None:
            limit = np.maximum(self.initial_val, self.best_val) + self.settings.explode_nats * (
                self.dim
            )
            self._diverge(
                val > limit,
                epoch,
                lambda i: (
                    f"validation NLL exploded to {val[i]:.4g} (initial {self.initial_val[i]:.4g})"
                ),
            )
        improved = self.active & (val < self.best_val - self.settings.min_delta)
        self.best_val = np.where(improved, val, self.best_val)
        self.best_epoch[improved] = epoch
        self.since_best = np.where(improved, 0, self.since_best + self.active)
        return improved

    def apply_patience(self) -> None:
        """Stops the active runs that have not improved for ``patience`` evaluations."""
        if self.settings.patience is not None:
            done = self.active & (self.since_best >= self.settings.patience)
            self.active[done] = False
            for i in np.flatnonzero(done):
                self.stop_reason[i] = "early_stopping"

    def results(self, histories: list[dict]) -> list[FitResult]:
        """One :class:`FitResult` per run."""
        return [
            FitResult(h, int(e), float(v), int(r), reason, message)
            for h, e, v, r, reason, message in zip(
                histories,
                self.best_epoch,
                self.best_val,
                self.epochs_run,
                self.stop_reason,
                self.diverged,
                strict=True,
            )
        ]


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
        return back(scan_(*flat((params, opt_state, *_gather_runs(order, x, u)))))

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
    settings: TrainSettings = TrainSettings(),
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
      settings: loop settings shared by all runs.
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
    settings.validate()
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

    log = _History(n_runs, phase, settings.epochs, progress, compiling=fresh)
    opt_state = program.init(params)
    best_params = jax.tree.map(jnp.copy, params)
    initial = host(program.nll(params, data.x_val, data.u_val)) + offset
    stopping = Stopping(initial, settings, data.x_train.shape[-1], mode.name)
    log.record(np.ones(n_runs, bool), 0, np.full(n_runs, np.nan), initial)
    for epoch in range(1, settings.epochs + 1):
        order = shuffle.next()
        order = jnp.asarray(order) if sharding is None else jax.device_put(order, sharding)
        params, opt_state, data_nll, finite = program.epoch(
            params, opt_state, order, data.x_train, data.u_train
        )
        stopping.after_epoch(epoch, host(finite).astype(bool))
        val = None
        if epoch % settings.eval_every == 0 or epoch == settings.epochs:
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
        if not stopping.active.any():
            break
    best_params = jax.tree.map(lambda a: a[:n_seeds], best_params)
    return best_params, stopping.results(log.histories)


class _History:
    """Per-run history records and the ``progress`` events of one phase."""

    def __init__(self, n_runs: int, phase: str, epochs: int, progress, *, compiling=False):
        self.histories = [
            {"epoch": [], "train_nll": [], "val_nll": [], "seconds": []} for _ in range(n_runs)
        ]
        self.phase, self.epochs, self.progress = phase, epochs, progress
        self.compiling = compiling
        self.start = time.perf_counter()

    def record(self, runs: np.ndarray, epoch: int, train: np.ndarray, val: np.ndarray) -> None:
        """Appends a record to the history of every run in the boolean mask ``runs``."""
        seconds = time.perf_counter() - self.start
        for i in np.flatnonzero(runs):
            values = (epoch, float(train[i]), float(val[i]), seconds)
            for name, value in zip(self.histories[i], values, strict=True):
                self.histories[i][name].append(value)
        if epoch == 0:
            self.tick(0, val)

    def tick(self, epoch: int, val: np.ndarray | None) -> None:
        """Sends one :class:`ProgressEvent` (best finite validation NLL when evaluated)."""
        if self.progress is None:
            return
        finite = None if val is None else val[np.isfinite(val)]
        best = float(finite.min()) if finite is not None and finite.size else None
        seconds = time.perf_counter() - self.start
        compiling = self.compiling and epoch == 0
        self.progress(ProgressEvent(self.phase, epoch, self.epochs, seconds, best, compiling))


def _check_models(models: Sequence[ICAModel]):
    """Splits ``S`` models of one structure: ``(graphdef, params (S, 1, ...), rest)``."""
    graphdef, params0, rest = nnx.split(models[0], nnx.Param, ...)
    per_seed = [params0]
    for model in models[1:]:
        other_graphdef, params, other_rest = nnx.split(model, nnx.Param, ...)
        same_rest = jax.tree.structure(other_rest) == jax.tree.structure(rest) and all(
            np.array_equal(a, b)
            for a, b in zip(jax.tree.leaves(other_rest), jax.tree.leaves(rest), strict=True)
        )
        if other_graphdef != graphdef or not same_rest:
            raise ValueError("train_seeds needs models of the same structure and settings")
        per_seed.append(params)
    stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves)[:, None], *per_seed)
    return graphdef, stacked, rest


def _checked_data(models, xs, us):
    """Validates every seed's ``x`` (and ``u``) against the models; returns numpy lists."""
    model = models[0]
    if us is None and model.conditional:
        raise ValueError("the model's prior is conditional: pass the auxiliary variable u")
    checked = [
        check_observations(x, None if us is None else us[i], where=f"seed {i}")
        for i, x in enumerate(xs)
    ]
    shapes = {(c.x.shape, None if c.u is None else c.u.shape) for c in checked}
    if len(shapes) > 1:
        raise ValueError(f"all seeds' x (and u) must have the same shape, got {shapes}")
    if checked[0].x.shape[1] != model.demixer.dim:
        raise ValueError(
            f"x has {checked[0].x.shape[1]} columns but the model expects dim={model.demixer.dim}"
        )
    return [c.x for c in checked], None if us is None else [c.u for c in checked]


def train_seeds(
    keys,
    models: Sequence[ICAModel],
    xs,
    us=None,
    *,
    gradient: str | GradientMode = DEFAULT_GRADIENT,
    optimizer: optax.GradientTransformation | None = None,
    progress: Callable[[ProgressEvent], None] | None = None,
    shard: bool | None = None,
    **settings,
) -> list[FitResult]:
    """Trains ``S`` modules at once (one vmapped program); each is updated to its best params.

    Seed ``i`` gets what :func:`train` gives for ``(keys[i], models[i], xs[i], us[i])`` (up to
    floating-point reassociation in batched kernels); the seed axis is sharded over local
    devices (see :func:`seed_sharding`).

    Args:
      keys: ``S`` PRNG keys (validation split and shuffles).
      models: ``S`` :class:`ICAModel` s of the same structure.
      xs: ``S`` observation arrays of one shape ``(N, D)``.
      us: ``None``, or ``S`` auxiliary arrays of one shape.
      gradient: the gradient mode (name or object); default ``"auto"``
        (:func:`nica.core.gradients.resolve_gradient`).
      optimizer: any Optax transformation; default ``optax.adam(1e-3)``.
      progress: called with a :class:`ProgressEvent` after every epoch.
      shard: shard the seed axis over local devices (``None``: when there are several).
      **settings: :class:`TrainSettings` fields (epochs, batch_size, validation_fraction,
        patience, min_delta, eval_every, explode_nats).

    Returns:
      One :class:`FitResult` per seed; a diverged seed has ``diverged`` set.

    Raises:
      ValueError: bad shapes, NaN/Inf, models of different structure, bad settings.
    """
    settings = TrainSettings(**settings).validate()
    mode = check_gradient(gradient)
    if not models or len(keys) != len(models) or len(xs) != len(models):
        raise ValueError("keys, models and xs must have the same non-zero length")
    if us is not None and len(us) != len(models):
        raise ValueError("us must have one entry per model")
    graphdef, params, rest = _check_models(models)
    xs, us = _checked_data(models, xs, us)
    split_keys, shuffle_keys = zip(*(jax.random.split(k) for k in keys), strict=True)
    dtype = models[0].demixer.layers[0].kernel[...].dtype
    data = split_runs_data(
        split_keys, xs, us or [None] * len(xs), settings.validation_fraction, dtype
    )
    best, results = train_runs(
        graphdef,
        params,
        rest,
        data,
        jnp.stack(shuffle_keys)[:, None],
        optimizer=optax.adam(1e-3) if optimizer is None else optimizer,
        gradient=mode,
        settings=settings,
        progress=progress,
        shard=shard,
    )
    for i, model in enumerate(models):
        nnx.update(model, jax.tree.map(lambda leaf, i=i: leaf[i, 0], best))
    return results


def train(
    key: jax.Array,
    model: ICAModel | nnx.Module,
    x,
    u=None,
    *,
    prior: str | nnx.Module | None = None,
    **kwargs,
) -> FitResult:
    """Fits one module by maximum likelihood; it is updated in place to its best parameters.

    Args:
      key: PRNG key for the validation split and the per-epoch shuffles.
      model: an :class:`ICAModel`, or a demixing network (then ``prior`` names its prior).
      x: observations, shape ``(N, D)``.
      u: auxiliary variable, ``(N,)`` integer labels or ``(N, d)`` floats, for a conditional
        prior; ``None`` for the unconditional model.
      prior: with a bare demixer, a prior name from ``nica.core.priors.PRIORS`` or a prior module
        (default Laplace).
      **kwargs: ``gradient``, ``optimizer``, ``progress`` and the :class:`TrainSettings`
        fields, as in :func:`train_seeds`.

    Returns:
      A :class:`FitResult`.

    Raises:
      ValueError: bad shapes, NaN/Inf in the data, unknown names, bad settings.
      TrainingDivergedError: non-finite loss or parameters; the best parameters are kept.
    """
    if not isinstance(model, ICAModel):
        from nica.core.priors import make_prior

        model = ICAModel(model, make_prior("laplace" if prior is None else prior))
    elif prior is not None:
        raise ValueError("pass prior only with a bare demixer; an ICAModel has its own prior")
    (result,) = train_seeds([key], [model], [x], None if u is None else [u], shard=False, **kwargs)
    if result.diverged is not None:
        raise TrainingDivergedError(
            result.diverged, epoch=result.epochs_run, history=result.history
        )
    return result
