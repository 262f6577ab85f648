"""The methods ``nica run`` and ``nica fit --method`` know, by name: :data:`METHODS`.

nica's two models (:mod:`nica.methods.nica_models`), FastICA (:mod:`nica.methods.fastica`) and
the nonlinear-ICA baselines iVAE and TCL, each behind the :class:`nica.methods.Method` protocol.
Each says what its sources recover of the true sources ``s``: iVAE the sources themselves, TCL
their absolute values (its features are the sufficient statistics of scale-modulated sources,
which carry no sign), so experiments score TCL against ``|s|``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import numpy as np

import nica
from nica.methods.fastica import FastICAConfig, fit_fastica_seeds
from nica.methods.ivae import IVAEConfig, fit_ivae_seeds
from nica.methods.nica_models import CONDITIONAL, UNCONDITIONAL
from nica.methods.protocol import Method, MethodFit
from nica.methods.settings import with_settings
from nica.methods.tcl import TCLConfig, fit_tcl_seeds

__all__ = ["METHODS", "Baseline", "get_method"]


def _identity(s: np.ndarray) -> np.ndarray:
    return s


def _transform(fitted, x, u) -> np.ndarray:
    return fitted.transform(x, u)


def _final_loss(fitted) -> dict:
    return {"final_loss": float(fitted.losses[-1])}


@dataclasses.dataclass(frozen=True)
class Baseline:
    """A comparison method (FastICA, iVAE, TCL); see :class:`nica.methods.Method`.

    Attributes (beyond the protocol's):
      fit_function: ``fit_function(xs, us, *, seeds, config, progress)``, one fitted object per
        seed with ``diverged`` and ``transform(x, u)``.
      sources_of: the recovered sources ``(N, D)`` of the data a fitted object was fitted to.
      metrics: the fitted object's own numbers for ``nica fit``'s metrics.json.
    """

    name: str
    description: str
    config_type: type
    fit_function: Callable
    uses_u: bool = True
    labels_only: bool = False
    batched: bool = True
    target_name: str = "s"
    target: Callable[[np.ndarray], np.ndarray] = _identity
    sources_of: Callable = _transform
    metrics: Callable[[object], dict] = _final_loss
    exact_likelihood: bool = False

    def config(self, fields: Mapping[str, object], seed: int):
        """The validated config: defaults, ``fields`` and ``seed``; one-line ValueErrors."""
        return with_settings(self.config_type(), {**fields, "seed": seed})

    def fit_seeds(self, xs, us, *, seeds, config, progress=None) -> list[MethodFit]:
        """One :class:`MethodFit` per seed (all seeds in one program when ``batched``)."""
        us = us if self.uses_u else None
        fitted = self.fit_function(xs, us, seeds=list(seeds), config=config, progress=progress)
        us = [None] * len(fitted) if us is None else us
        return [self._read(f, x, u) for f, x, u in zip(fitted, xs, us, strict=True)]

    def fit(self, x, u, *, config, progress=None, where: str = "x") -> MethodFit:
        """One fit with ``config.seed``; a diverged fit raises ``nica.TrainingDivergedError``
        (``where`` is for the protocol: the inputs are checked before, under their names)."""
        (fit,) = self.fit_seeds([x], [u], seeds=[config.seed], config=config, progress=progress)
        if fit.diverged is not None:
            raise nica.TrainingDivergedError(fit.diverged, epoch=len(fit.model.losses), history={})
        return fit

    def _read(self, fitted, x, u) -> MethodFit:
        sources = None if fitted.diverged is not None else self.sources_of(fitted, x, u)
        return MethodFit(fitted, sources, fitted.diverged, metrics=self.metrics(fitted))


def _tcl_metrics(fitted) -> dict:
    return {**_final_loss(fitted), "segment_accuracy": fitted.accuracy}


_METHODS: tuple[Method, ...] = (
    CONDITIONAL,
    UNCONDITIONAL,
    Baseline(
        "fastica",
        "FastICA (scikit-learn): linear ICA, ignores u",
        FastICAConfig,
        fit_fastica_seeds,
        uses_u=False,
        batched=False,
        sources_of=lambda fitted, x, u: fitted.sources,  # fit_transform's own sources
        metrics=lambda fitted: {"iterations": int(fitted.ica.n_iter_)},
    ),
    Baseline(
        "ivae",
        "iVAE (Khemakhem et al. 2020): posterior means; needs u",
        IVAEConfig,
        fit_ivae_seeds,
    ),
    Baseline(
        "tcl",
        "TCL (Hyvarinen & Morioka 2016): FastICA of its features, which follow |s|; needs labels",
        TCLConfig,
        fit_tcl_seeds,
        labels_only=True,
        target_name="|s|",
        target=np.abs,
        metrics=_tcl_metrics,
    ),
)

#: Every method by name: ``conditional``, ``unconditional``, ``fastica``, ``ivae``, ``tcl``.
METHODS: dict[str, Method] = {method.name: method for method in _METHODS}


def get_method(name: str) -> Method:
    """The method ``name``; a one-line ValueError naming the known ones otherwise."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; known: {', '.join(METHODS)}")
    return METHODS[name]
