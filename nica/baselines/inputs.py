"""Checked inputs of the baselines: the same ``(x, u)`` arrays as ``nica.fit``, validated and
standardised by ``nica.data`` (one path for every model), one record per seed."""

from __future__ import annotations

import json
from typing import NamedTuple

import numpy as np

from nica.data import Standardisation, check_labels, check_observations, standardise
from nica.estimator import describe_aux

__all__ = ["Prepared", "aux_input", "new_aux_input", "prepare_seeds"]


class Prepared(NamedTuple):
    """One seed's checked data.

    Attributes:
      z: standardised observations, ``(N, D)`` float64.
      standardisation: the column map ``z = (x - mean) / scale``.
      u: integer segment labels ``(N,)`` or covariates ``(N, d)``.
      aux: ``{"kind": "segments", "n_segments": M}`` or ``{"kind": "continuous", "aux_dim": d}``.
    """

    z: np.ndarray
    standardisation: Standardisation
    u: np.ndarray
    aux: dict


def _prepare(x, u, *, method: str, labels_only: bool, enabled: bool, where: str) -> Prepared:
    if u is None:
        kind = "integer segment labels u (N,)" if labels_only else "u (labels or covariates)"
        raise ValueError(f"{where}: {method} needs the auxiliary variable: pass {kind}")
    data = check_observations(x, u, where=where)
    if labels_only and data.u.ndim != 1:
        raise ValueError(f"{where}: {method} needs integer segment labels u of shape (N,)")
    aux, u = describe_aux(data.u)
    if aux["kind"] == "segments" and aux["n_segments"] < 2:
        raise ValueError(f"{where}: {method} needs at least 2 segments in u")
    z, standardisation = standardise(data.x, enabled=enabled, where=where)
    return Prepared(z, standardisation, u, aux)


def prepare_seeds(
    xs, us, seeds: list[int], *, method: str, labels_only: bool, enabled: bool = True
) -> list[Prepared]:
    """Checks and standardises each seed's ``x (N, D)`` and ``u``; all seeds must agree in
    shape and in the kind (and number) of auxiliary values. One-line ValueErrors."""
    if not seeds or len(xs) != len(seeds) or (us is not None and len(us) != len(seeds)):
        raise ValueError("pass one x and one u per seed, and at least one seed")
    us = [None] * len(seeds) if us is None else us
    prepared = [
        _prepare(x, u, method=method, labels_only=labels_only, enabled=enabled, where=f"seed {s}")
        for x, u, s in zip(xs, us, seeds, strict=True)
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
    if u.shape[0] != n:
        raise ValueError(f"u has {u.shape[0]} rows but x has {n}")
    if aux["kind"] == "segments":
        labels = check_labels(u, where="u")
        if labels.ndim != 1 or labels.max() >= aux["n_segments"]:
            raise ValueError(f"u must hold labels 0..{aux['n_segments'] - 1} of shape (N,)")
        return aux_input(labels, aux)
    if u.ndim != 2 or u.shape[1] != aux["aux_dim"] or not np.all(np.isfinite(u)):
        raise ValueError(f"u must be finite covariates of shape (N, {aux['aux_dim']})")
    return aux_input(u, aux)
