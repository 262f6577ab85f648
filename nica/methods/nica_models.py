"""nica's own two models as methods of the registry: conditional (Eq. 4) and unconditional
(Eq. 3), fitted by ``nica.fit_seeds`` with a ``nica.FitConfig``."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import ClassVar

import numpy as np

import nica
from nica.methods.protocol import MethodFit

__all__ = ["CONDITIONAL", "UNCONDITIONAL", "NicaModel"]


@dataclasses.dataclass(frozen=True)
class NicaModel:
    """nica's model with (``conditional``) or without ``u``; see :class:`nica.methods.Method`."""

    name: str
    description: str
    conditional: bool

    labels_only: ClassVar[bool] = False
    exact_likelihood: ClassVar[bool] = True
    batched: ClassVar[bool] = True
    target_name: ClassVar[str] = "s"

    @property
    def uses_u(self) -> bool:
        return self.conditional

    def target(self, s: np.ndarray) -> np.ndarray:
        """The true sources ``s (N, D)`` themselves: nica recovers them up to permutation,
        sign and scale."""
        return s

    @property
    def config_type(self) -> type:
        return nica.FitConfig

    def config(self, fields: Mapping[str, object], seed: int) -> nica.FitConfig:
        """The validated ``FitConfig``: ``fields`` (flat names), this model's ``conditional``
        and ``seed``; unknown names or bad values are a one-line ValueError."""
        return nica.FitConfig.from_flat({**fields, "conditional": self.conditional, "seed": seed})

    def fit_seeds(self, xs, us, *, seeds, config, progress=None) -> list[MethodFit]:
        """One :class:`MethodFit` per seed, all seeds in one vmapped ``nica.fit_seeds``."""
        fitted = nica.fit_seeds(
            xs, us if self.conditional else None, seeds=list(seeds), config=config,
            progress=progress,
        )  # fmt: skip
        return [_read(f, x) for f, x in zip(fitted, xs, strict=True)]

    def fit(self, x, u, *, config, progress=None, where: str = "x") -> MethodFit:
        """One fit by ``nica.fit`` (``where`` names ``x`` and ``u`` in errors); a diverged fit
        raises ``nica.TrainingDivergedError``."""
        fitted = nica.fit(
            x, u if self.conditional else None, config=config, progress=progress, where=where,
            where_u=where,
        )  # fmt: skip
        return _read(fitted, x)


def _read(fitted: nica.FittedModel, x) -> MethodFit:
    """A fit of ``x (N, D)`` as a :class:`MethodFit` (``sources`` unless it diverged)."""
    result = fitted.result
    return MethodFit(
        model=fitted,
        sources=None if result.diverged is not None else fitted.transform(x),
        diverged=result.diverged,
        history=result.history,
        val_nll=result.best_val_nll,
        depth=fitted.config.model.depth,  # the depth kept (an int after a fit)
        depth_search=fitted.depth_search,
    )


CONDITIONAL = NicaModel(
    "conditional", "nica's conditional model p(x|u) (Eq. 4): needs u", conditional=True
)
UNCONDITIONAL = NicaModel(
    "unconditional", "nica's unconditional model p(x) (Eq. 3): ignores u", conditional=False
)
