"""A trained model (:class:`FittedModel`): transform, inverse, log-likelihood, save and
:func:`load`."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nica.core.conditional import gennorm_shape
from nica.core.model import ICAModel
from nica.fitting.auxiliary import encode_aux
from nica.fitting.build import build_model
from nica.fitting.config import AUTO, FitConfig
from nica.fitting.data import Standardisation
from nica.fitting.stopping import FitResult
from nica.util.files import load_npz, save_npz, write_json

__all__ = ["FittedModel", "load"]


@functools.partial(jax.jit, static_argnums=0)
def _demix(graphdef, params, rest, z):
    return nnx.merge(graphdef, params, rest).demixer(z)


@functools.partial(jax.jit, static_argnums=0)
def _mix(graphdef, params, rest, s):
    return nnx.merge(graphdef, params, rest).demixer.inverse(s)


@functools.partial(jax.jit, static_argnums=0)
def _log_likelihood(graphdef, params, rest, z, u):
    return nnx.merge(graphdef, params, rest).log_likelihood(z, u)


@dataclasses.dataclass
class FittedModel:
    """A trained model with the standardisation it was trained with.

    ``transform``, ``log_likelihood`` and ``inverse`` compile once per model structure and
    input shape (the parameters are arguments, not constants).

    Attributes:
      model: the trained :class:`ICAModel`.
      config: its :class:`FitConfig`.
      standardisation: the column ``mean`` and ``scale`` applied before the demixer.
      aux: description of the auxiliary variable (see :func:`build_model`).
      result: the training :class:`FitResult` (``None`` after :func:`load`).
      restarts: with ``config.restarts.count > 1``: ``{"val_nll": [...], "chosen": k}``, the
        restarts' best validation NLLs and the index of the one kept.
      depth_search: with several candidate depths: ``{"depths": [4, 5], "val_nll": [...],
        "chosen": 5}``, each depth's best validation NLL and the depth kept
        (``config.model.depth``).
      histories: the training records of the phases before the kept run, each a
        :attr:`FitResult.history` dict: ``"restarts"`` (with restarts) the ``K`` restarts' short
        fits, in ``restarts["val_nll"]`` order; ``"depths"`` (with several candidate depths)
        each depth's main fit, in ``depth_search["depths"]`` order (the kept one is
        ``result.history``); ``"warm_start"`` (with a warm start) the linear fit every depth
        started from, whose restarts are then ``"restarts"`` and ``restarts``; ``"grown"``
        (with the progressive warm start) the main fits of the depths between the linear fit
        and this one's, shallow first, each started from the one before. ``None`` without
        any, and after :func:`load` (not saved).
    """

    model: ICAModel
    config: FitConfig
    standardisation: Standardisation
    aux: dict | None
    result: FitResult | None = None
    restarts: dict | None = None
    depth_search: dict | None = None
    histories: dict | None = None

    @property
    def dim(self) -> int:
        """Data dimension ``D``."""
        return int(self.standardisation.mean.shape[0])

    @property
    def prior_shape(self) -> list[float] | None:
        """The learned exponent ``beta`` of each component (1 Laplace, 2 Gaussian) when the
        prior is ``gennorm``, else ``None``."""
        raw = getattr(self.model.prior, "raw_shape", None)
        return None if raw is None else [float(b) for b in gennorm_shape(raw[...])]

    @property
    def mean(self) -> np.ndarray:
        """Column means subtracted before the demixer, shape ``(dim,)``."""
        return self.standardisation.mean

    @property
    def scale(self) -> np.ndarray:
        """Column scales divided out, shape ``(dim,)``."""
        return self.standardisation.scale

    @property
    def log_scale(self) -> float:
        """``sum(log scale)``: a log-density of the standardised data minus this is the
        log-density of ``x`` in its own units."""
        return float(np.log(self.scale).sum())

    def _parts(self):
        graphdef, params, rest = nnx.split(self.model, nnx.Param, ...)
        return graphdef, params, rest

    def _input(self, a, name: str) -> np.ndarray:
        a = np.asarray(a)
        if a.ndim != 2 or a.shape[1] != self.dim:
            raise ValueError(f"expected {name} of shape (N, {self.dim}), got {a.shape}")
        if not np.issubdtype(a.dtype, np.number) or not np.all(np.isfinite(a)):
            raise ValueError(f"{name} contains NaN, Inf or non-numeric values")
        return a.astype(np.float64)

    def transform(self, x) -> np.ndarray:
        """Recovered sources ``s_hat = g(standardise(x))``, shape ``(N, dim)``, input order."""
        z = jnp.asarray(self.standardisation.apply(self._input(x, "x")), jnp.float32)
        return np.asarray(_demix(*self._parts(), z))

    def inverse(self, s) -> np.ndarray:
        """Observations ``x = g^{-1}(s)`` in the original units, shape ``(N, dim)``."""
        s = jnp.asarray(self._input(s, "s"), jnp.float32)
        z = np.asarray(_mix(*self._parts(), s), np.float64)
        return z * self.scale + self.mean

    def log_likelihood(self, x, u=None) -> np.ndarray:
        """Exact ``log p(x | u)`` per sample, in nats, in the original units of ``x``, shape
        ``(N,)``. ``u`` is read as at fit time (labels through the saved label set; a label
        never seen in training is a ValueError naming it)."""
        z = jnp.asarray(self.standardisation.apply(self._input(x, "x")), jnp.float32)
        if u is not None and np.shape(u)[:1] != (z.shape[0],):
            raise ValueError(f"u has shape {np.shape(u)}; x has {z.shape[0]} rows")
        u = encode_aux(u, self.aux, where="u")
        ll = _log_likelihood(*self._parts(), z, None if u is None else jnp.asarray(u))
        return np.asarray(ll, np.float64) - self.log_scale

    def save(self, directory: str | os.PathLike) -> Path:
        """Writes ``checkpoint.npz`` (parameters + standardisation) and ``checkpoint.json``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        leaves = jax.tree_util.tree_leaves_with_path(nnx.state(self.model, nnx.Param))
        arrays = {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}
        save_npz(directory / "checkpoint.npz", mean=self.mean, scale=self.scale, **arrays)
        # The resolved prior, so that a later change of ``auto`` cannot change a saved model.
        config = {**self.config.to_dict(), "prior": self.config.resolve().prior_family}
        meta = {"config": config, "dim": self.dim, "aux": self.aux}
        write_json(directory / "checkpoint.json", meta)
        return directory


def load(directory: str | os.PathLike) -> FittedModel:
    """Rebuilds a model saved by :meth:`FittedModel.save` (ValueError if it is not one)."""
    directory = Path(directory)
    try:
        meta = json.loads((directory / "checkpoint.json").read_text())
        config = FitConfig.from_dict(meta["config"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{directory}: not a nica checkpoint ({err})") from None
    arrays = load_npz(directory / "checkpoint.npz")
    if config.model.prior.family == AUTO and not any("raw_shape" in name for name in arrays):
        # Saved while ``auto`` still meant laplace with u too (it is gennorm now).
        config = config.replace(prior="laplace")
    model = build_model(config, meta["dim"], meta["aux"], key=jax.random.key(0))
    paths, treedef = jax.tree_util.tree_flatten_with_path(nnx.state(model, nnx.Param))
    try:
        leaves = [jnp.asarray(arrays[jax.tree_util.keystr(p)]) for p, _ in paths]
    except KeyError as err:
        raise ValueError(f"{directory}: checkpoint lacks parameter {err}") from None
    nnx.update(model, jax.tree_util.tree_unflatten(treedef, leaves))
    standardisation = Standardisation(arrays["mean"], arrays["scale"])
    return FittedModel(model, config, standardisation, meta["aux"])
