"""Maximum-likelihood training with any Optax optimizer and a selectable gradient mode.

The hot loop is functional: the model is split once into ``(graphdef, params, rest)``; one jitted
call runs a whole epoch as a ``lax.scan`` over shuffled minibatches; the exact NLL (slogdet)
is computed on the validation split only at evaluation time. :func:`make_epoch_fn` and
:func:`make_nll_fn` are pure, so callers can ``vmap`` them over seeds.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from nica.model import ICAModel
from nica.network import check_gradient

__all__ = ["FitResult", "TrainingDivergedError", "fit", "make_epoch_fn", "make_nll_fn"]


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
      stop_reason: ``"epochs"`` or ``"early_stopping"``.
    """

    history: dict
    best_epoch: int
    best_val_nll: float
    epochs_run: int
    stop_reason: str


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
    """
    check_gradient(gradient)

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
    gradient: str = "relative",
    optimizer: optax.GradientTransformation | None = None,
    epochs: int = 100,
    batch_size: int = 100,
    validation_fraction: float = 0.1,
    patience: int | None = None,
    min_delta: float = 0.0,
    eval_every: int = 1,
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
      gradient: ``relative`` (default), ``ordinary`` or ``autodiff`` (see ``nica.network``).
      optimizer: any Optax transformation; default ``optax.adam(1e-3)``.
      epochs: maximum number of passes over the training split.
      batch_size: minibatch size (capped at the training-split size).
      validation_fraction: share of samples held out for the exact validation NLL; with 0 the
        training data is used for evaluation.
      patience: stop after this many evaluations without improvement (``None``: never).
      min_delta: improvement below this does not count for early stopping.
      eval_every: evaluate (exact NLL) every this many epochs, and at the last one.
      callback: called with each history record (a dict), e.g. to show progress.

    Returns:
      A :class:`FitResult`.

    Raises:
      ValueError: bad shapes, NaN/Inf in the data, unknown names, bad settings.
      TrainingDivergedError: non-finite loss or parameters; the best parameters are kept.
    """
    check_gradient(gradient)
    if not isinstance(model, ICAModel):
        from nica.priors import make_prior

        model = ICAModel(model, make_prior("laplace" if prior is None else prior))
    elif prior is not None:
        raise ValueError("pass prior only with a bare demixer; an ICAModel has its own prior")
    if epochs < 1 or batch_size < 1 or eval_every < 1:
        raise ValueError("epochs, batch_size and eval_every must be >= 1")
    if not 0.0 <= validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction}")
    x, u = _check_data(x, u, model.demixer.dim, model.conditional)
    optimizer = optax.adam(1e-3) if optimizer is None else optimizer

    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    dtype = model.demixer.layers[0].kernel[...].dtype
    split_key, key = jax.random.split(key)
    order = np.asarray(jax.random.permutation(split_key, x.shape[0]))
    n_val = int(round(validation_fraction * x.shape[0]))
    if validation_fraction > 0 and (n_val == 0 or n_val == x.shape[0]):
        raise ValueError(f"validation_fraction={validation_fraction} leaves an empty split")
    train_idx, val_idx = order[n_val:], (order[:n_val] if n_val else order)
    x = jnp.asarray(x, dtype)
    u = None if u is None else jnp.asarray(u)
    pick = lambda a, idx: None if a is None else a[idx]  # noqa: E731
    x_train, u_train, x_val, u_val = x[train_idx], pick(u, train_idx), x[val_idx], pick(u, val_idx)

    epoch_fn = jax.jit(
        make_epoch_fn(
            graphdef,
            rest,
            optimizer,
            gradient=gradient,
            batch_size=min(batch_size, x_train.shape[0]),
        ),
        donate_argnums=(0, 1),
    )
    nll_fn = jax.jit(make_nll_fn(graphdef, rest))
    logdet_fn = jax.jit(lambda p: nnx.merge(graphdef, p, rest).log_abs_det_weights())

    opt_state = optimizer.init(params)
    history: dict[str, list] = {"epoch": [], "train_nll": [], "val_nll": [], "seconds": []}
    start = time.perf_counter()

    def record(epoch, train_nll, val_nll):
        values = (epoch, train_nll, val_nll, time.perf_counter() - start)
        for name, value in zip(history, values, strict=True):
            history[name].append(value)
        if callback is not None:
            callback({name: values[-1] for name, values in history.items()})

    best_params = jax.tree.map(jnp.copy, params)
    best_val = float(nll_fn(params, x_val, u_val))
    if not math.isfinite(best_val):
        raise ValueError("the initial model gives a non-finite NLL on the data")
    best_epoch, since_best, stop_reason, epochs_run = 0, 0, "epochs", 0
    record(0, float("nan"), best_val)

    def diverged(epoch, what):
        nnx.update(model, best_params)
        raise TrainingDivergedError(
            f"training diverged at epoch {epoch}: {what} (gradient={gradient}); "
            f"kept the best parameters, from epoch {best_epoch}",
            epoch=epoch,
            history=history,
        )

    for epoch in range(1, epochs + 1):
        key, epoch_key = jax.random.split(key)
        params, opt_state, data_nll, finite = epoch_fn(
            params, opt_state, epoch_key, x_train, u_train
        )
        epochs_run = epoch
        if not bool(finite):
            diverged(epoch, "non-finite loss or parameters")
        if epoch % eval_every and epoch != epochs:
            continue
        val = float(nll_fn(params, x_val, u_val))
        if not math.isfinite(val):
            diverged(epoch, "non-finite validation NLL (singular weights?)")
        record(epoch, float(data_nll) - float(logdet_fn(params)), val)
        if val < best_val - min_delta:
            best_val, best_epoch, since_best = val, epoch, 0
            best_params = jax.tree.map(jnp.copy, params)
        else:
            since_best += 1
            if patience is not None and since_best >= patience:
                stop_reason = "early_stopping"
                break

    nnx.update(model, best_params)
    return FitResult(history, best_epoch, best_val, epochs_run, stop_reason)
