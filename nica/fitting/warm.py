"""Warm starts: a deep demixer that begins as a fitted shallower one.

A fit with a warm start (``FitConfig.restarts.warm_start``, resolved by
:meth:`nica.fitting.config.FitConfig.resolve`) first fits each seed's linear model (depth 1:
``s = z W + b``, with the fit's restarts), then starts the deep model from it
(:func:`embed_params`): the first layer and the prior are the linear model's, every further layer
starts at the identity (kernel ``I``, bias ``0``), and each learnable activation at its own
initialisation, which is the identity. The deep model then computes exactly the linear model's
sources and likelihood at its first step, and training moves it from there. The progressive
warm start (``"progressive"``) grows the demixer one layer at a time: each depth from 2 up to the
deepest candidate starts from the fit one layer shallower.

This module imports JAX and Flax only.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = ["PROGRESSIVE", "WARM_STARTS", "embed_params", "fit_order", "stack_params", "start_depth"]

#: Warm starts by name: the depth of the model each one fits first (``None``: no warm start).
WARM_STARTS: dict[str, int | None] = {"none": None, "linear": 1, "progressive": 1}
#: Warm starts that grow the demixer one layer at a time from their first depth: each depth
#: up to the deepest candidate is fitted from the one below it.
PROGRESSIVE = frozenset({"progressive"})


def start_depth(warm_start: str, depths) -> int | None:
    """The depth a fit with warm start ``warm_start`` (a name of :data:`WARM_STARTS`) fits
    first, or ``None`` when no candidate of ``depths`` is deeper (nothing to start)."""
    first = WARM_STARTS[warm_start]
    return first if first is not None and max(depths) > first else None


def fit_order(warm_start: str, depths) -> list[tuple[int, int | None]]:
    """The depths a fit trains, in order, each with the depth it starts from (``None``: its own
    initialisations): every candidate of ``depths`` from scratch without a warm start; the
    :func:`start_depth` first, then each candidate from it (``"linear"``) or each depth up to
    the deepest candidate from the one below (:data:`PROGRESSIVE`)."""
    first = start_depth(warm_start, depths)
    if first is None:
        return [(d, None) for d in depths]
    if warm_start in PROGRESSIVE:
        return [(first, None), *((d, d - 1) for d in range(first + 1, max(depths) + 1))]
    return [(first, None), *((d, first) for d in depths if d != first)]


def stack_params(models) -> nnx.State:
    """The ``nnx.Param`` states of ``S`` models of one structure, stacked with leading axes
    ``(S, 1)`` (one run per seed, as the batched trainer takes them)."""
    states = [nnx.state(model, nnx.Param) for model in models]
    return jax.tree.map(lambda *leaves: jnp.stack(leaves)[:, None], *states)


def _keys(path) -> list:
    return [p.key for p in path if isinstance(p, jax.tree_util.DictKey)]


def _leaf(state: nnx.State, keys: list):
    for key in keys:
        state = state[key]
    return state[...]


def embed_params(start: nnx.State, start_depth: int, template: nnx.State) -> nnx.State:
    """Parameters of a deeper demixer that computes what the ``start_depth`` one computes.

    Args:
      start: the shallow model's ``nnx.Param`` state (any leading axes, e.g. ``(S, 1)``).
      start_depth: its number of square layers (>= 1).
      template: the deep model's freshly initialised ``nnx.Param`` state, with the same
        leading axes and the same prior.

    Returns:
      ``template``'s structure with layers ``< start_depth``, hidden activations
      ``< start_depth - 1`` and the prior taken from ``start``; every further layer's kernel the
      identity and bias zero; every further activation as initialised in ``template`` (the
      identity for nica's learnable activations, which makes the deep model equal the shallow
      one; a static activation between the new layers makes it only close).

    Raises:
      ValueError: when ``template`` is not deeper than ``start_depth`` layers.
    """
    deep = len(template["demixer"]["layers"])
    if deep <= start_depth:
        raise ValueError(
            f"a warm start embeds depth {start_depth} into a deeper demixer, not depth {deep}"
        )
    kept = {"layers": start_depth, "activations": start_depth - 1}

    def embed(path, leaf):
        keys = _keys(path)
        in_demixer = keys[0] == "demixer"
        if keys[0] == "prior" or (in_demixer and keys[2] < kept.get(keys[1], 0)):
            return jnp.asarray(_leaf(start, keys), leaf.dtype).reshape(leaf.shape)
        if in_demixer and keys[1] == "layers" and keys[-1] == "kernel":
            eye = jnp.eye(leaf.shape[-1], dtype=leaf.dtype)
            return jnp.broadcast_to(eye, leaf.shape)
        if in_demixer and keys[1] == "layers" and keys[-1] == "bias":
            return jnp.zeros_like(leaf)
        return leaf

    return jax.tree_util.tree_map_with_path(embed, template)
