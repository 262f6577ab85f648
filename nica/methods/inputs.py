"""Checked inputs of the baselines: the same ``(x, u)`` arrays as ``nica.fit``, validated and
standardised by ``nica.fitting.data`` (one path for every model), one record per seed."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nica.fitting.auxiliary import encode_aux, read_aux
from nica.fitting.data import Standardisation, check_observations, standardise

__all__ = ["Prepared", "aux_input", "init_seeds", "new_aux_input", "prepare_seeds"]


class Prepared(NamedTuple):
    """One seed's checked data.

    Attributes:
      z: standardised observations, ``(N, D)`` float64.
      standardisation: the column map ``z = (x - mean) / scale``.
      u: segment label codes ``0..M-1`` ``(N,)`` or covariates ``(N, d)``
        (:func:`nica.fitting.auxiliary.read_aux`).
      aux: ``{"kind": "segments", "n_segments": M, "labels": [...]}`` or
        ``{"kind": "continuous", "aux_dim": d}``.
    """

    z: np.ndarray
    standardisation: Standardisation
    u: np.ndarray
    aux: dict


def _prepare(x, u, *, method: str, labels_only: bool, enabled: bool, where: str) -> Prepared:
    if u is None:
        kind = "segment labels u" if labels_only else "u (labels or covariates)"
        raise ValueError(f"{where}: {method} needs the auxiliary variable: pass {kind}")
    data = check_observations(x, u, where=where)
    reading = read_aux(data.u, where=where)
    if labels_only and reading.aux["kind"] != "segments":
        raise ValueError(f"{where}: {method} needs segment labels; {reading.description}")
    if reading.aux["kind"] == "segments" and reading.aux["n_segments"] < 2:
        raise ValueError(f"{where}: {method} needs at least 2 segments in u")
    z, standardisation = standardise(data.x, enabled=enabled, where=where)
    return Prepared(z, standardisation, reading.values, reading.aux)


def prepare_seeds(
    xs, us, seeds: list[int], *, method: str, labels_only: bool, enabled: bool = True
) -> list[Prepared]:
    """Checks and standardises each seed's ``x (N, D)`` and ``u``; all seeds must agree in
    shape and in the kind (and number) of auxiliary values. One-line ValueErrors."""
    if not seeds or len(xs) != len(seeds) or (us is not None and len(us) != len(seeds)):
        raise ValueError("pass one x and one u per seed, and at least one seed")
    us = [None] * len(seeds) if us is None else us
    names = ["x"] if len(seeds) == 1 else [f"xs[{i}]" for i in range(len(seeds))]
    prepared = [
        _prepare(x, u, method=method, labels_only=labels_only, enabled=enabled, where=name)
        for x, u, name in zip(xs, us, names, strict=True)
    ]
    if len({(p.z.shape, json.dumps(p.aux, sort_keys=True)) for p in prepared}) > 1:
        raise ValueError("all seeds' x must have the same shape and u the same labels/width")
    return prepared


def aux_input(u: np.ndarray, aux: dict) -> np.ndarray:
    """What a network reads of ``u``: one-hot labels ``(N, M)`` or the covariates ``(N, d)``,
    float32."""
    if aux["kind"] == "segments":
        return np.eye(aux["n_segments"], dtype=np.float32)[u]
    return np.asarray(u, np.float32)


def new_aux_input(u, aux: dict, n: int) -> np.ndarray:
    """:func:`aux_input` of ``u`` for ``n`` new points, checked against the fit's ``aux``."""
    if u is None:
        raise ValueError("this model reads u: pass the auxiliary variable")
    u = np.asarray(u)
    if u.ndim == 0 or u.shape[0] != n:
        raise ValueError(f"u has shape {u.shape} but x has {n} rows")
    return aux_input(encode_aux(u, aux, where="u"), aux)


def init_seeds(build: Callable[[jax.Array], nnx.Module], seeds: list[int]) -> tuple:
    """One network per seed, built by ``build(key)`` from the first half of a split of
    ``jax.random.key(seed)``.

    Returns:
      ``(graphdef, params, rest, train_keys)``: the networks' structure, their parameters
      stacked on a leading seed axis ``(S, ...)``, the non-parameter state (of the first
      seed's network), and the second halves of the splits ``(S,)`` for training.
    """
    keys = jnp.stack([jax.random.key(s) for s in seeds])
    init_keys, train_keys = jax.vmap(lambda k: tuple(jax.random.split(k)))(keys)
    graphdef, _, rest = nnx.split(build(init_keys[0]), nnx.Param, ...)
    params = jax.jit(jax.vmap(lambda k: nnx.state(build(k), nnx.Param)))(init_keys)
    return graphdef, params, rest, train_keys
