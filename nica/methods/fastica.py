"""FastICA (scikit-learn) as a method of the registry: the linear baseline of every benchmark.

It reads no ``u`` and fits each seed on its own (no shared program); ``random_state`` is the
seed. TCL's final linear ICA of its features runs the same settings (:func:`linear_ica`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from nica.fitting.data import check_observations

__all__ = ["FastICAConfig", "FittedFastICA", "fit_fastica_seeds", "linear_ica"]


@dataclasses.dataclass(frozen=True)
class FastICAConfig:
    """The settings of a FastICA fit (scikit-learn's ``FastICA``).

    Attributes:
      seed: its ``random_state`` (the initial unmixing).
      whiten: scikit-learn's ``whiten``; ``unit-variance`` gives sources of variance 1.
      max_iter: iterations of the fixed-point algorithm at most.
    """

    seed: int = 0
    whiten: str = "unit-variance"
    max_iter: int = 1000

    def validate(self) -> FastICAConfig:
        """Returns self, or raises a one-line ``ValueError`` naming the bad setting."""
        if self.whiten not in ("unit-variance", "arbitrary-variance"):
            raise ValueError(
                f"whiten must be 'unit-variance' or 'arbitrary-variance', got {self.whiten!r}"
            )
        if self.max_iter < 1:
            raise ValueError(f"max_iter must be >= 1, got {self.max_iter}")
        return self

    def to_dict(self) -> dict:
        """scikit-learn's keyword arguments, JSON-ready (``seed`` as ``random_state``)."""
        return {"whiten": self.whiten, "max_iter": self.max_iter, "random_state": self.seed}


def linear_ica(config: FastICAConfig, *, who: str = "fastica"):
    """An unfitted scikit-learn ``FastICA`` with ``config``'s settings; a one-line ValueError
    naming ``who`` needs it when scikit-learn is missing."""
    try:
        from sklearn.decomposition import FastICA
    except ImportError:  # pragma: no cover - the baselines extra installs it
        raise ValueError(f"{who} needs scikit-learn: pip install 'nica[baselines]'") from None
    return FastICA(**config.to_dict())


@dataclasses.dataclass
class FittedFastICA:
    """A fitted FastICA.

    Attributes:
      ica: the fitted scikit-learn estimator (``mean_``, ``components_`` ``(D, D)``).
      config: its :class:`FastICAConfig`.
      sources: the recovered sources of the data it was fitted to, ``(N, D)`` (scikit-learn's
        ``fit_transform``).
    """

    ica: object
    config: FastICAConfig
    sources: np.ndarray
    diverged: str | None = None  # FastICA always ends; for the registry's uniform reading

    def transform(self, x, u=None) -> np.ndarray:
        """Recovered sources of new ``x (N, D)``, ``(N, D)``; ``u`` is not used."""
        return self.ica.transform(check_observations(x, where="x").x)


def fit_fastica_seeds(
    xs, us=None, *, seeds, config: FastICAConfig | None = None, progress: Callable | None = None
) -> list[FittedFastICA]:
    """Fits FastICA to each ``xs[i] (N, D)`` with ``random_state = seeds[i]``, one after
    another; ``us`` and ``progress`` are accepted for the registry's signature and not used."""
    config = FastICAConfig() if config is None else config.validate()
    fitted = []
    for x, seed in zip(xs, seeds, strict=True):
        chosen = dataclasses.replace(config, seed=int(seed))
        ica = linear_ica(chosen)
        sources = ica.fit_transform(check_observations(x, where="x").x)
        fitted.append(FittedFastICA(ica, chosen, sources))
    return fitted
