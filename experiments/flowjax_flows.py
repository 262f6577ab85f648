"""flowjax's flows as density baselines, trained on the same split as nica (optional extra).

flowjax (``pip install -e ".[compare]"``) is imported on first use only: without it,
:func:`available` is false and the experiments leave the flows out. The flows are flowjax's own
constructors (``masked_autoregressive_flow``, ``coupling_flow``: affine transformers, a
permutation between layers, a standard normal base); what is ours is the training loop, which
mirrors nica's so that the comparison is of models, not of loops: the same training rows
(standardised), the same validation rows for early stopping, Adam with gradient clipping and a
cosine-decayed learning rate, and one epoch compiled as a ``lax.scan`` of steps.

Parameter counts are effective: entries a gradient can change (MADE's masked-out weights are
stored but never used, and are not counted).
"""

from __future__ import annotations

import functools
import importlib.util
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

__all__ = ["FLOWS", "available", "build_flow", "count_parameters", "fit_flow", "match_width"]

#: Flow kinds: name -> flowjax constructor name (in ``flowjax.flows``).
FLOWS = {"maf": "masked_autoregressive_flow", "coupling": "coupling_flow"}

INSTALL_HINT = 'flowjax is not installed: pip install -e ".[compare]"'


def available() -> bool:
    """Whether flowjax can be imported."""
    return importlib.util.find_spec("flowjax") is not None


def build_flow(key: jax.Array, kind: str, dim: int, *, width: int, layers: int):
    """A flowjax flow of ``kind`` (see :data:`FLOWS`) on ``R^dim`` with a standard normal base.

    Args:
      key: PRNG key of the initial parameters and permutations.
      kind: ``"maf"`` or ``"coupling"``.
      dim: data dimension ``D``.
      width: hidden width of each conditioner (one hidden layer).
      layers: number of flow layers.
    """
    import flowjax.flows
    from flowjax.distributions import StandardNormal

    if kind not in FLOWS:
        raise ValueError(f"unknown flow {kind!r}; known: {', '.join(FLOWS)}")
    constructor = getattr(flowjax.flows, FLOWS[kind])
    return constructor(
        key, base_dist=StandardNormal((dim,)), flow_layers=layers, nn_width=width, nn_depth=1
    )


def _partition(flow):
    import equinox as eqx
    import paramax

    return eqx.partition(
        flow, eqx.is_inexact_array, is_leaf=lambda leaf: isinstance(leaf, paramax.NonTrainable)
    )


def count_parameters(flow) -> int:
    """Trainable entries of ``flow`` that reach its output (masked-out weights excluded)."""
    import paramax

    params, _ = _partition(flow)
    stored = sum(int(np.size(leaf)) for leaf in jax.tree.leaves(params))
    nodes = jax.tree.leaves(flow, is_leaf=lambda n: isinstance(n, paramax.Parameterize))
    masked = 0
    for node in nodes:
        if isinstance(node, paramax.Parameterize) and node.fn is jnp.where:
            mask = np.asarray(node.args[0])
            masked += int(mask.size - mask.sum())
    return stored - masked


def match_width(
    kind: str, dim: int, target: int, *, layers: int, tolerance: float = 0.2
) -> tuple[int, int]:
    """The conditioner width whose flow's parameter count is nearest ``target``.

    Returns ``(width, parameters)``; raises ``ValueError`` when no width comes within
    ``tolerance`` (relative) of ``target``.
    """

    @functools.cache
    def count(width: int) -> int:  # layers are identical in shape: count one
        flow = build_flow(jax.random.key(0), kind, dim, width=width, layers=1)
        return layers * count_parameters(flow)

    low, high = 1, 2
    while count(high) < target:
        low, high = high, 2 * high
    while high - low > 1:  # the count grows with the width: bisect
        mid = (low + high) // 2
        low, high = (mid, high) if count(mid) < target else (low, mid)
    width = min((low, high), key=lambda w: abs(count(w) - target))
    n = count(width)
    if abs(n - target) > tolerance * target:
        raise ValueError(f"no {kind} width gives {target} parameters within {tolerance:.0%}")
    return width, n


def _epoch_fn(static, optimizer: optax.GradientTransformation, batch_size: int) -> Callable:
    """``epoch(params, opt_state, key, x) -> (params, opt_state, mean_nll)``, jitted: a scan of
    Adam steps over shuffled minibatches (the last partial batch dropped, as in nica)."""
    import equinox as eqx
    import paramax

    def nll(params, x):
        return -paramax.unwrap(eqx.combine(params, static)).log_prob(x).mean()

    def step(carry, xb):
        params, opt_state = carry
        loss, grads = jax.value_and_grad(nll)(params, xb)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (eqx.apply_updates(params, updates), opt_state), loss

    def epoch(params, opt_state, key, x):
        n_batches = x.shape[0] // batch_size
        order = jax.random.permutation(key, x.shape[0])[: n_batches * batch_size]
        batches = x[order.reshape(n_batches, batch_size)]
        (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), batches)
        return params, opt_state, losses.mean()

    return jax.jit(epoch), jax.jit(nll)


def fit_flow(
    key: jax.Array,
    flow,
    z_train: np.ndarray,
    z_val: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    clip_norm: float,
    eval_every: int,
    patience: int | None,
):
    """Trains ``flow`` by maximum likelihood on ``z_train (N, D)``, early-stopped on
    ``z_val (M, D)`` (both already standardised).

    Returns:
      ``(flow, info)``: the flow at its best validation NLL; ``info`` has ``best_epoch``,
      ``epochs_run``, ``best_val_nll``, ``wall_s``.
    """
    import equinox as eqx

    params, static = _partition(flow)
    batch_size = min(batch_size, z_train.shape[0])
    steps = epochs * (z_train.shape[0] // batch_size)
    optimizer = optax.chain(
        optax.clip_by_global_norm(clip_norm),
        optax.adam(optax.cosine_decay_schedule(learning_rate, steps)),
    )
    epoch_fn, nll_fn = _epoch_fn(static, optimizer, batch_size)
    x, x_val = jnp.asarray(z_train, jnp.float32), jnp.asarray(z_val, jnp.float32)
    opt_state = optimizer.init(params)
    start = time.perf_counter()
    best = (float(nll_fn(params, x_val)), 0, params)
    since_best, epochs_run = 0, 0
    for epoch in range(1, epochs + 1):
        key, step_key = jax.random.split(key)
        params, opt_state, _ = epoch_fn(params, opt_state, step_key, x)
        epochs_run = epoch
        if epoch % eval_every and epoch != epochs:
            continue
        val = float(nll_fn(params, x_val))
        if not np.isfinite(val):
            break
        if val < best[0]:
            best, since_best = (val, epoch, params), 0
        else:
            since_best += 1
            if patience is not None and since_best >= patience:
                break
    info = {
        "best_epoch": best[1],
        "epochs_run": epochs_run,
        "best_val_nll": best[0],
        "wall_s": time.perf_counter() - start,
    }
    return eqx.combine(best[2], static), info


def log_prob(flow, z: np.ndarray) -> np.ndarray:
    """``log q(z)`` per row, ``(N,)`` float64, of ``z (N, D)`` (in the flow's space)."""
    import equinox as eqx
    import paramax

    fn = eqx.filter_jit(lambda f, a: paramax.unwrap(f).log_prob(a))
    return np.asarray(fn(flow, jnp.asarray(z, jnp.float32)), np.float64)


def sample(key: jax.Array, flow, n: int) -> np.ndarray:
    """``n`` draws ``(n, D)`` from the flow (in its space)."""
    import paramax

    return np.asarray(paramax.unwrap(flow).sample(key, (n,)), np.float64)
