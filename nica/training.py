"""Maximum-likelihood training with any Optax optimizer and a selectable gradient mode.

The hot loop is functional: the model is split once into ``(graphdef, params, rest)``; one jitted
call runs a whole epoch as a ``lax.scan`` over shuffled minibatches; the exact NLL (slogdet)
is computed on the validation split only at evaluation time. :func:`make_epoch_fn` and
:func:`make_nll_fn` are pure, so callers can ``vmap`` them over seeds.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from nica.model import ICAModel
from nica.network import check_gradient
from nica.relative import in_relative_coordinates

__all__ = [
    "FitResult",
    "TrainingDivergedError",
    "fit",
    "fit_seeds",
    "make_epoch_fn",
    "make_nll_fn",
    "seed_sharding",
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
    """What :func:`fit` returns; the model itself is updated in place to its best parameters.

    Attributes:
      history: per evaluated epoch: ``epoch``, ``train_nll`` (mean minibatch NLL over the epoch,
        with the weights' ``log|det W|`` taken at the epoch's end), ``val_nll`` (exact),
        ``seconds`` (wall time since the start).
      best_epoch: epoch of the best validation NLL (0 = initial parameters).
      best_val_nll: that NLL.
      epochs_run: number of epochs trained.
      stop_reason: ``"epochs"``, ``"early_stopping"`` or (only from :func:`fit_seeds`)
        ``"diverged"``.
      diverged: ``None``, or the divergence message (only from :func:`fit_seeds`; :func:`fit`
        raises :class:`TrainingDivergedError` instead).
    """

    history: dict
    best_epoch: int
    best_val_nll: float
    epochs_run: int
    stop_reason: str
    diverged: str | None = None


def make_nll_fn(graphdef: nnx.GraphDef, rest: nnx.State) -> Callable:
    """Pure exact mean NLL: ``nll(params, x, u) -> scalar`` (slogdet; evaluation only)."""

    def nll(params, x, u):
        model = nnx.merge(graphdef, params, rest)
        return -model.log_likelihood(x, u).mean()

    return nll


def make_epoch_fn(
    graphdef: nnx.GraphDef,
    rest: nnx.State,
    optimizer: optax.GradientTransformation,
    *,
    gradient: str,
    batch_size: int,
) -> Callable:
    """Builds the pure one-epoch function (jit it, or vmap it over seeds first).

    ``epoch(params, opt_state, key, x, u) -> (params, opt_state, data_nll, finite)``: shuffles
    ``x`` (N, D) and ``u`` (N, ...) or ``None`` with ``key``, drops the last partial batch, and
    scans one optimizer step per minibatch. ``data_nll`` is the mean minibatch NLL without the
    weights' log-determinants; ``finite`` says whether every loss and parameter stayed finite.

    Under ``gradient="relative_coords"`` the optimizer runs in relative coordinates
    (``nica.relative.in_relative_coordinates``; same state as ``optimizer``, so states from
    ``optimizer.init`` fit).
    """
    check_gradient(gradient)
    if gradient == "relative_coords":
        optimizer = in_relative_coordinates(optimizer)

    def loss_fn(params, xb, ub):
        model = nnx.merge(graphdef, params, rest)
        return model.training_loss(xb, ub, gradient=gradient)

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def epoch(params, opt_state, key, x, u):
        def step(carry, idx):
            params, opt_state = carry
            ub = None if u is None else u[idx]
            (_, data_nll), grads = grad_fn(params, x[idx], ub)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), data_nll

        n_batches = x.shape[0] // batch_size
        order = jax.random.permutation(key, x.shape[0])[: n_batches * batch_size]
        (params, opt_state), losses = jax.lax.scan(
            step, (params, opt_state), order.reshape(n_batches, batch_size)
        )
        finite = jnp.all(jnp.isfinite(losses)) & jax.tree.reduce(
            jnp.logical_and, jax.tree.map(lambda p: jnp.all(jnp.isfinite(p)), params)
        )
        return params, opt_state, losses.mean(), finite

    return epoch


def _check_data(x, u, dim: int, conditional: bool) -> tuple[np.ndarray, np.ndarray | None]:
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"x must be a non-empty 2-D array (N, D), got shape {x.shape}")
    if x.shape[1] != dim:
        raise ValueError(f"x has {x.shape[1]} columns but the model expects dim={dim}")
    if not np.issubdtype(x.dtype, np.number) or not np.all(np.isfinite(x)):
        raise ValueError("x contains NaN, Inf or non-numeric values")
    if u is None:
        if conditional:
            raise ValueError("the model's prior is conditional: pass the auxiliary variable u")
        return x, None
    u = np.asarray(u)
    if u.shape[:1] != x.shape[:1] or u.ndim > 2:
        raise ValueError(f"u must have shape (N,) or (N, d) with N={x.shape[0]}, got {u.shape}")
    if not np.issubdtype(u.dtype, np.number) or not np.all(np.isfinite(u)):
        raise ValueError("u contains NaN, Inf or non-numeric values")
    return x, u


def fit(
    key: jax.Array,
    model: ICAModel | nnx.Module,
    x,
    u=None,
    *,
    prior: str | nnx.Module | None = None,
    gradient: str = "relative_coords",
    optimizer: optax.GradientTransformation | None = None,
    epochs: int = 100,
    batch_size: int = 100,
    validation_fraction: float = 0.1,
    patience: int | None = None,
    min_delta: float = 0.0,
    eval_every: int = 1,
    explode_nats: float | None = 50.0,
    callback: Callable[[dict], None] | None = None,
) -> FitResult:
    """Fits by maximum likelihood; the model is updated in place to its best parameters.

    Args:
      key: PRNG key for the validation split and the per-epoch shuffles.
      model: an :class:`ICAModel`, or a demixing network (then ``prior`` names its prior).
      x: observations, shape ``(N, D)``.
      u: auxiliary variable, ``(N,)`` integer labels or ``(N, d)`` floats, for a conditional
        prior; ``None`` for the unconditional model.
      prior: with a bare demixer, a prior name from ``nica.priors.PRIORS`` or a prior module.
      gradient: ``relative_coords`` (default), ``relative``, ``ordinary`` or ``autodiff`` (see
        ``nica.network`` and ``nica.relative``).
      optimizer: any Optax transformation; default ``optax.adam(1e-3)``.
      epochs: maximum number of passes over the training split.
      batch_size: minibatch size (capped at the training-split size).
      validation_fraction: share of samples held out for the exact validation NLL; with 0 the
        training data is used for evaluation.
      patience: stop after this many evaluations without improvement (``None``: never).
      min_delta: improvement below this does not count for early stopping.
      eval_every: evaluate (exact NLL) every this many epochs, and at the last one.
      explode_nats: divergence if the validation NLL rises more than this many nats per
        dimension above both the initial and the best one (``None``: only non-finite values).
      callback: called with each history record (a dict), e.g. to show progress.

    Returns:
      A :class:`FitResult`.

    Raises:
      ValueError: bad shapes, NaN/Inf in the data, unknown names, bad settings.
      TrainingDivergedError: non-finite loss or parameters; the best parameters are kept.
    """
    if not isinstance(model, ICAModel):
        from nica.priors import make_prior

        model = ICAModel(model, make_prior("laplace" if prior is None else prior))
    elif prior is not None:
        raise ValueError("pass prior only with a bare demixer; an ICAModel has its own prior")
    on_record = None if callback is None else (lambda _, record: callback(record))
    (result,) = fit_seeds(
        [key],
        [model],
        [x],
        None if u is None else [u],
        gradient=gradient,
        optimizer=optimizer,
        epochs=epochs,
        batch_size=batch_size,
        validation_fraction=validation_fraction,
        patience=patience,
        min_delta=min_delta,
        eval_every=eval_every,
        explode_nats=explode_nats,
        callback=on_record,
        shard=False,
    )
    if result.diverged is not None:
        raise TrainingDivergedError(
            result.diverged, epoch=result.epochs_run, history=result.history
        )
    return result


def _split_data(key, x, u, validation_fraction):
    """One seed's validation split: ``(x_train, u_train, x_val, u_val)`` as numpy arrays."""
    order = np.asarray(jax.random.permutation(key, x.shape[0]))
    n_val = int(round(validation_fraction * x.shape[0]))
    if validation_fraction > 0 and (n_val == 0 or n_val == x.shape[0]):
        raise ValueError(f"validation_fraction={validation_fraction} leaves an empty split")
    train_idx, val_idx = order[n_val:], (order[:n_val] if n_val else order)
    pick = lambda a, idx: None if a is None else a[idx]  # noqa: E731
    return x[train_idx], pick(u, train_idx), x[val_idx], pick(u, val_idx)


def _stack(trees):
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


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


def fit_seeds(
    keys,
    models,
    xs,
    us=None,
    *,
    gradient: str = "relative_coords",
    optimizer: optax.GradientTransformation | None = None,
    epochs: int = 100,
    batch_size: int = 100,
    validation_fraction: float = 0.1,
    patience: int | None = None,
    min_delta: float = 0.0,
    eval_every: int = 1,
    explode_nats: float | None = 50.0,
    callback: Callable[[int, dict], None] | None = None,
    shard: bool | None = None,
) -> list[FitResult]:
    """Fits ``S`` independent models at once: one compiled program ``vmap``-ped over seeds.

    Every seed has its own key, initial parameters, data, validation split, shuffles, early
    stopping and divergence check; the result for seed ``i`` is what :func:`fit` gives for
    ``(keys[i], models[i], xs[i], us[i])`` (up to floating-point reassociation in batched
    kernels). With several local devices the seed axis is sharded across them (see
    :func:`seed_sharding`), so ``S`` seeds on ``S`` GPUs cost about one fit.

    Args:
      keys: ``S`` PRNG keys (a list, or an array of keys with leading axis ``S``).
      models: ``S`` :class:`ICAModel` s with the same structure (updated in place to their best
        parameters).
      xs: ``S`` observation arrays of the same shape ``(N, D)`` (a list or an ``(S, N, D)``
        array).
      us: ``None``, or ``S`` auxiliary arrays of the same shape.
      gradient, optimizer, epochs, batch_size, validation_fraction, patience, min_delta,
        eval_every, explode_nats: as in :func:`fit`, shared by all seeds.
      callback: called as ``callback(seed_index, record)`` with each history record.
      shard: shard the seed axis across local devices (``None``: when there are several devices
        and several seeds).

    Returns:
      One :class:`FitResult` per seed. A seed that diverged has ``diverged`` set (a message) and
      keeps its best parameters; the others are unaffected.

    Raises:
      ValueError: bad shapes, NaN/Inf in the data, models of different structure, bad settings.
    """
    check_gradient(gradient)
    n_seeds = len(models)
    if n_seeds == 0 or len(keys) != n_seeds or len(xs) != n_seeds:
        raise ValueError("keys, models and xs must have the same non-zero length")
    if us is not None and len(us) != n_seeds:
        raise ValueError("us must have one entry per model")
    if epochs < 1 or batch_size < 1 or eval_every < 1:
        raise ValueError("epochs, batch_size and eval_every must be >= 1")
    if not 0.0 <= validation_fraction < 1.0:
        raise ValueError(f"validation_fraction={validation_fraction} must be in [0, 1)")
    optimizer = optax.adam(1e-3) if optimizer is None else optimizer

    graphdef, params0, rest = nnx.split(models[0], nnx.Param, ...)
    per_seed_params = [params0]
    for model in models[1:]:
        other_graphdef, params, other_rest = nnx.split(model, nnx.Param, ...)
        same_rest = jax.tree.structure(other_rest) == jax.tree.structure(rest) and all(
            np.array_equal(a, b)
            for a, b in zip(jax.tree.leaves(other_rest), jax.tree.leaves(rest), strict=True)
        )
        if other_graphdef != graphdef or not same_rest:
            raise ValueError("fit_seeds needs models of the same structure and settings")
        per_seed_params.append(params)
    dtype = models[0].demixer.layers[0].kernel[...].dtype

    splits, shapes = [], set()
    for i in range(n_seeds):
        x, u = _check_data(
            xs[i], None if us is None else us[i], models[0].demixer.dim, models[0].conditional
        )
        shapes.add((x.shape, None if u is None else u.shape))
        if len(shapes) > 1:
            raise ValueError(f"all seeds' x (and u) must have the same shape, got {shapes}")
        split_key, _ = jax.random.split(keys[i])
        splits.append(_split_data(split_key, x, u, validation_fraction))
    x_train, u_train, x_val, u_val = (
        None if parts[0] is None else np.stack(parts) for parts in zip(*splits, strict=True)
    )
    epoch_keys = jnp.stack([jax.random.split(k)[1] for k in keys])

    # Pad the seed axis to the device count (padding repeats seed 0 and is dropped at the end).
    padded, sharding = seed_sharding(n_seeds, shard)

    def pad(a):
        return a if a is None else np.concatenate([a, np.repeat(a[:1], padded - n_seeds, 0)])

    params = _stack(per_seed_params + per_seed_params[:1] * (padded - n_seeds))
    x_train, x_val = (jnp.asarray(pad(a), dtype) for a in (x_train, x_val))
    u_train, u_val = (None if a is None else jnp.asarray(pad(a)) for a in (u_train, u_val))
    epoch_keys = jnp.concatenate([epoch_keys, jnp.repeat(epoch_keys[:1], padded - n_seeds, 0)])
    if sharding is not None:
        params, x_train, x_val, u_train, u_val, epoch_keys = jax.device_put(
            (params, x_train, x_val, u_train, u_val, epoch_keys), sharding
        )

    epoch_fn = jax.jit(
        jax.vmap(
            make_epoch_fn(
                graphdef,
                rest,
                optimizer,
                gradient=gradient,
                batch_size=min(batch_size, x_train.shape[1]),
            )
        ),
        donate_argnums=(0, 1),
    )
    nll_fn = jax.jit(jax.vmap(make_nll_fn(graphdef, rest)))
    logdet_fn = jax.jit(jax.vmap(lambda p: nnx.merge(graphdef, p, rest).log_abs_det_weights()))
    split_keys = jax.jit(jax.vmap(jax.random.split, out_axes=1))

    @jax.jit
    def keep_best(improved, params, best):
        def select(new, old):
            return jnp.where(improved.reshape((-1,) + (1,) * (new.ndim - 1)), new, old)

        return jax.tree.map(select, params, best)

    opt_state = jax.jit(jax.vmap(optimizer.init))(params)
    histories = [{"epoch": [], "train_nll": [], "val_nll": [], "seconds": []} for _ in models]
    start = time.perf_counter()

    def record(i, epoch, train_nll, val_nll):
        values = (epoch, train_nll, val_nll, time.perf_counter() - start)
        for name, value in zip(histories[i], values, strict=True):
            histories[i][name].append(value)
        if callback is not None:
            callback(i, {name: value[-1] for name, value in histories[i].items()})

    best_params = jax.tree.map(jnp.copy, params)
    best_val = np.asarray(nll_fn(params, x_val, u_val), np.float64)[:n_seeds]
    if not np.all(np.isfinite(best_val)):
        raise ValueError("the initial model gives a non-finite NLL on the data")
    initial_val, dim = best_val.copy(), models[0].demixer.dim
    for i in range(n_seeds):
        record(i, 0, float("nan"), float(best_val[i]))
    best_epoch = np.zeros(n_seeds, int)
    since_best = np.zeros(n_seeds, int)
    epochs_run = np.zeros(n_seeds, int)
    active = np.ones(n_seeds, bool)
    stop_reason = ["epochs"] * n_seeds
    diverged: list[str | None] = [None] * n_seeds

    def mark_diverged(i, epoch, what):
        active[i] = False
        diverged[i] = (
            f"training diverged at epoch {epoch}: {what} (gradient={gradient}); "
            f"kept the best parameters, from epoch {best_epoch[i]}"
        )

    for epoch in range(1, epochs + 1):
        epoch_keys, step_keys = split_keys(epoch_keys)
        params, opt_state, data_nll, finite = epoch_fn(
            params, opt_state, step_keys, x_train, u_train
        )
        epochs_run[active] = epoch
        finite = np.asarray(finite)[:n_seeds]
        for i in np.flatnonzero(active & ~finite):
            mark_diverged(i, epoch, "non-finite loss or parameters")
        if epoch % eval_every == 0 or epoch == epochs:
            val = np.asarray(nll_fn(params, x_val, u_val), np.float64)[:n_seeds]
            train = np.asarray(data_nll, np.float64) - np.asarray(logdet_fn(params), np.float64)
            train = train[:n_seeds]
            for i in np.flatnonzero(active & ~np.isfinite(val)):
                mark_diverged(i, epoch, "non-finite validation NLL (singular weights?)")
            if explode_nats is not None:
                limit = np.maximum(initial_val, best_val) + explode_nats * dim
                for i in np.flatnonzero(active & (val > limit)):
                    what = f"validation NLL exploded to {val[i]:.4g} (initial {initial_val[i]:.4g})"
                    mark_diverged(i, epoch, what)
            improved = active & (val < best_val - min_delta)
            for i in np.flatnonzero(active):
                record(i, epoch, float(train[i]), float(val[i]))
            best_val = np.where(improved, val, best_val)
            best_epoch[improved] = epoch
            since_best = np.where(improved, 0, since_best + active)
            if improved.any():
                mask = np.concatenate([improved, np.zeros(padded - n_seeds, bool)])
                best_params = keep_best(jnp.asarray(mask), params, best_params)
            if patience is not None:
                for i in np.flatnonzero(active & (since_best >= patience)):
                    active[i], stop_reason[i] = False, "early_stopping"
        if not active.any():
            break

    results = []
    for i, model in enumerate(models):
        nnx.update(model, jax.tree.map(lambda leaf, i=i: leaf[i], best_params))
        results.append(
            FitResult(
                histories[i],
                int(best_epoch[i]),
                float(best_val[i]),
                int(epochs_run[i]),
                "diverged" if diverged[i] else stop_reason[i],
                diverged[i],
            )
        )
    return results
