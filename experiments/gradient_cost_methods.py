"""The rows of the cost experiment (``experiments.gradient_cost``): the benchmarked model, the
gradient and training-step functions of every row, and which rows are skipped at a ``D``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from nica import GRADIENTS, DemixingNetwork, GradientMode, ICAModel, make_prior
from nica.core.gradients import DEFAULT_GRADIENT, resolve_gradient
from nica.fitting.steps import make_epoch_fn

#: Gradient-only rows: modes of the registry ``nica.GRADIENTS``, then the plain-backprop floor.
GRADIENT_METHODS = ("relative", "ordinary", "autodiff")


#: Full-step rows: every registered mode, then the plain-backprop floor.
STEP_METHODS = (*(f"step:{name}" for name in GRADIENTS), "step:backprop")


METHODS = (*GRADIENT_METHODS, "backprop", *STEP_METHODS, "step:default")


@dataclasses.dataclass(frozen=True)
class PlainBackprop(GradientMode):
    """Not a likelihood gradient: the plain forward pass and prior, no log-determinant term."""

    name: str = "backprop"
    bd2_step: bool = True

    def terms(self, network, x):
        zeros = jnp.zeros(x.shape[:1], x.dtype)
        return network(x), zeros, jnp.zeros((), x.dtype)


def _mode(method: str) -> GradientMode:
    """The mode of a row name (``relative``, ``step:relative``, ``backprop``, ...)."""
    name = method.removeprefix("step:")
    return PlainBackprop() if name == "backprop" else GRADIENTS[name]


def make_model(dim: int, depth: int, *, seed: int = 0):
    """``(graphdef, params, rest)`` of the benchmarked model (float32, Laplace prior)."""
    model = ICAModel(DemixingNetwork(dim, depth, rngs=nnx.Rngs(seed)), make_prior("laplace"))
    return nnx.split(model, nnx.Param, ...)


def make_gradient_fns(
    dim: int, depth: int, *, seed: int = 0
) -> tuple[dict[str, Callable], nnx.State]:
    """Builds the (un-jitted) gradient function of every gradient-only row.

    Args:
      dim: data dimension ``D``.
      depth: number of square layers ``L``.
      seed: initialisation seed.

    Returns:
      ``(fns, params)``: ``fns[method](params, x)`` returns the gradient (same tree as
      ``params``) for a minibatch ``x`` of shape ``(batch, dim)``; ``params`` is the model's
      ``nnx.Param`` state (float32).
    """
    graphdef, params, rest = make_model(dim, depth, seed=seed)

    def gradient_fn(method):
        mode = _mode(method)

        def loss(params, x):
            return nnx.merge(graphdef, params, rest).training_loss(x, gradient=mode)[0]

        return jax.grad(loss)

    return {m: gradient_fn(m) for m in (*GRADIENT_METHODS, "backprop")}, params


def make_step_fns(
    dim: int, depth: int, batch: int, *, seed: int = 0
) -> tuple[dict[str, Callable], tuple[nnx.State, optax.OptState]]:
    """Builds the (un-jitted) epoch function of every full-step row.

    Returns:
      ``(fns, (params, opt_state))``: ``fns["step:<mode>"](params, opt_state, key, x)`` runs
      ``x.shape[0] // batch`` training steps (``x`` of shape ``(steps * batch, dim)``) and
      returns ``(params, opt_state, data_nll, finite)``; ``opt_state`` is
      ``optax.adam(1e-3).init(params)``, valid for every mode (their wrappers keep it).
    """
    graphdef, params, rest = make_model(dim, depth, seed=seed)
    adam = optax.adam(1e-3)

    def step_fn(method):
        epoch = make_epoch_fn(graphdef, rest, adam, gradient=_mode(method), batch_size=batch)
        return lambda params, opt_state, key, x: epoch(params, opt_state, key, x, None)

    return {m: step_fn(m) for m in STEP_METHODS}, (params, adam.init(params))


def autodiff_skip_reason(
    dim: int,
    batch: int,
    *,
    max_dim: int,
    max_bytes: float,
    max_seconds: float,
    calls: int,
    previous: tuple[int, float] | None,
) -> str | None:
    """Why the ``autodiff`` rows are skipped at ``dim``, or ``None`` to run them.

    Args:
      dim: data dimension ``D``.
      batch: minibatch size ``B``.
      max_dim: largest ``D`` to attempt.
      max_bytes: budget for the per-sample Jacobians, estimated as ``B * D * D * 8`` bytes.
      max_seconds: budget for all ``calls`` timed calls at this ``D``.
      calls: number of calls the measurement would make (warm-up included).
      previous: ``(D_prev, median_s)`` of the last measured ``autodiff`` run, scaled by
        ``(D / D_prev)^3`` to predict this one.
    """
    if dim > max_dim:
        return f"D={dim} > --autodiff-max-dim={max_dim}"
    need = batch * dim * dim * 8
    if need > max_bytes:
        return f"Jacobians need ~{need / 2**30:.1f} GiB > budget {max_bytes / 2**30:.1f} GiB"
    if previous is not None:
        prev_dim, prev_s = previous
        estimate = prev_s * (dim / prev_dim) ** 3 * calls
        if estimate > max_seconds:
            return f"predicted {estimate:.0f} s for {calls} calls > budget {max_seconds:.0f} s"
    return None


def default_mode(dim: int, batch: int) -> str:
    """The mode the package default (``DEFAULT_GRADIENT``) resolves to at ``(dim, batch)``."""
    return resolve_gradient(DEFAULT_GRADIENT, dim, batch).name


def slow_rows(dim: int, slow_max_dim: int | None, batch: int) -> tuple[set[str], str | None]:
    """The rows not O(B D^2) that are skipped at ``dim`` (all but the default's step), and why."""
    if slow_max_dim is None or dim <= slow_max_dim:
        return set(), None
    default = f"step:{default_mode(dim, batch)}"
    slow = {"ordinary"} | {m for m in STEP_METHODS if not _mode(m).bd2_step and m != default}
    return slow, f"not O(B D^2), skipped above --slow-max-dim={slow_max_dim}"
