"""What every method of the registry is (:class:`Method`) and what one seed's fit of it gives
(:class:`MethodFit`), so that ``nica run`` and ``nica fit`` treat every method alike."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np

__all__ = ["Method", "MethodFit"]


@dataclasses.dataclass(frozen=True)
class MethodFit:
    """One seed's fit, read the same way for every method.

    Attributes:
      model: the method's own fitted object (``nica.FittedModel``, ``FittedIVAE``, ...).
      sources: the recovered sources of the data it was fitted to, ``(N, D)``; ``None`` when
        the fit diverged.
      diverged: ``None``, or why the fit is unusable.
      history: per-evaluation training curves (nica's models), else ``None``.
      val_nll: best validation NLL in nats per sample (nica's models), else ``None``.
      depth: the demixer depth the fit kept (nica's models), else ``None``.
      depth_search: the ``depth='auto'`` search (nica's models, when it searched), else ``None``.
      metrics: the method's own numbers for ``nica fit``'s metrics.json (e.g. ``final_loss``).
    """

    model: Any
    sources: np.ndarray | None
    diverged: str | None = None
    history: dict | None = None
    val_nll: float | None = None
    depth: int | None = None
    depth_search: dict | None = None
    metrics: dict = dataclasses.field(default_factory=dict)


class Method(Protocol):
    """A method of the registry (``nica.methods.METHODS``).

    Attributes:
      name: registry key (``nica run`` model name, ``nica fit --method``).
      description: one line.
      uses_u: whether it reads the auxiliary variable ``u``.
      labels_only: whether ``u`` must be integer segment labels.
      exact_likelihood: whether it is one of nica's own models: an exact likelihood (NLL
        metrics, the NLL gap to the true model), every ``nica.FitConfig`` setting, a checkpoint.
      batched: whether several seeds are fitted together in one program.
      target_name: what its sources recover of the true sources ``s``, in words (``"s"`` or
        ``"|s|"``).
      config_type: its config class (with ``validate`` and ``to_dict``).
    """

    name: str
    description: str
    uses_u: bool
    labels_only: bool
    exact_likelihood: bool
    batched: bool
    target_name: str
    config_type: type

    def target(self, s: np.ndarray) -> np.ndarray:
        """What its sources are scored against, from the true sources ``s (N, D)``."""
        ...

    def config(self, fields: Mapping[str, object], seed: int) -> Any:
        """The validated config of ``fields`` and ``seed``; bad fields: a one-line ValueError."""
        ...

    def fit_seeds(
        self, xs, us, *, seeds, config, progress: Callable | None = None
    ) -> list[MethodFit]:
        """Fits ``xs[i] (N, D)`` (with ``us[i]``) for each of ``seeds``; one fit per seed."""
        ...

    def fit(self, x, u, *, config, progress: Callable | None = None, where: str = "x"):
        """One fit of ``x (N, D)``; a diverged fit raises ``nica.TrainingDivergedError``."""
        ...
