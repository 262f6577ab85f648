"""What a training run reports and how it stops: results, progress events, early stopping and
divergence (:class:`Stopping`), and the per-run history (:class:`History`)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from nica.fitting.config import LoopConfig

__all__ = ["FitResult", "History", "ProgressEvent", "Stopping", "TrainingDivergedError"]


class TrainingDivergedError(RuntimeError):
    """Training produced a non-finite loss or parameters; the model keeps its best parameters.

    Attributes:
      epoch: the (1-based) epoch at which divergence was detected.
      history: the history up to that point (same layout as :attr:`FitResult.history`).
    """

    def __init__(self, message: str, *, epoch: int, history: dict):
        super().__init__(message)
        self.epoch = epoch
        self.history = history


@dataclasses.dataclass
class FitResult:
    """One run's training record.

    Attributes:
      history: per evaluated epoch: ``epoch``, ``train_nll`` (mean minibatch NLL over the epoch,
        with the weights' ``log|det W|`` taken at the epoch's end; ``nan`` at epoch 0),
        ``val_nll`` (exact), ``seconds`` (wall time since the start).
      best_epoch: epoch of the best validation NLL (0 = initial parameters).
      best_val_nll: that NLL.
      epochs_run: number of epochs trained.
      stop_reason: ``"epochs"``, ``"early_stopping"`` or ``"diverged"``.
      diverged: ``None``, or the divergence message.
    """

    history: dict
    best_epoch: int
    best_val_nll: float
    epochs_run: int
    stop_reason: str
    diverged: str | None = None


class ProgressEvent(NamedTuple):
    """What a ``progress`` callback receives after every epoch (and at epoch 0).

    Attributes:
      phase: ``"restarts"`` (short fits of the initialisations) or ``"fit"``.
      epoch: epochs done in this phase.
      epochs: epochs planned in this phase.
      seconds: wall time since the phase started.
      val_nll: the best validation NLL over the batched runs (nats per sample, in the units
        the trainer was told, see ``train_runs``'s ``nll_offset``), at evaluated epochs, else
        None.
      compiling: at epoch 0, whether XLA compiles this phase's training program before the
        first epoch (its first use in this process), so the next event may take a while.
    """

    phase: str
    epoch: int
    epochs: int
    seconds: float
    val_nll: float | None
    compiling: bool = False


class Stopping:
    """Per-run early stopping and divergence bookkeeping, on the host (arrays of shape (R,)).

    Args:
      initial_val: validation NLLs of the initial parameters, shape ``(R,)``.
      settings: the loop settings.
      dim: data dimension (the explosion limit is per dimension).
      gradient: the mode's name, quoted in divergence messages.
    """

    def __init__(self, initial_val: np.ndarray, settings: LoopConfig, dim: int, gradient):
        if not np.all(np.isfinite(initial_val)):
            raise ValueError("the initial model gives a non-finite NLL on the data")
        self.settings, self.dim, self.gradient = settings, dim, gradient
        n = initial_val.shape[0]
        self.initial_val, self.best_val = initial_val.copy(), initial_val.copy()
        self.best_epoch = np.zeros(n, int)
        self.since_best = np.zeros(n, int)
        self.epochs_run = np.zeros(n, int)
        self.active = np.ones(n, bool)
        self.stop_reason = ["epochs"] * n
        self.diverged: list[str | None] = [None] * n

    def _diverge(self, runs, epoch: int, what: Callable[[int], str]) -> None:
        for i in np.flatnonzero(self.active & runs):
            self.active[i] = False
            self.stop_reason[i] = "diverged"
            self.diverged[i] = (
                f"training diverged at epoch {epoch}: {what(i)} (gradient={self.gradient}); "
                f"kept the best parameters, from epoch {self.best_epoch[i]}"
            )

    def after_epoch(self, epoch: int, finite: np.ndarray) -> None:
        """Counts the epoch for active runs; a non-finite loss or parameter is divergence."""
        self.epochs_run[self.active] = epoch
        self._diverge(~finite, epoch, lambda i: "non-finite loss or parameters")

    def after_evaluation(self, epoch: int, val: np.ndarray) -> np.ndarray:
        """Updates bests and stopping from validation NLLs ``(R,)``; returns the improved runs."""
        self._diverge(
            ~np.isfinite(val), epoch, lambda i: "non-finite validation NLL (singular weights?)"
        )
        if self.settings.explode_nats is not None:
            limit = np.maximum(self.initial_val, self.best_val) + self.settings.explode_nats * (
                self.dim
            )
            self._diverge(
                val > limit,
                epoch,
                lambda i: (
                    f"validation NLL exploded to {val[i]:.4g} (initial {self.initial_val[i]:.4g})"
                ),
            )
        improved = self.active & (val < self.best_val - self.settings.min_delta)
        self.best_val = np.where(improved, val, self.best_val)
        self.best_epoch[improved] = epoch
        self.since_best = np.where(improved, 0, self.since_best + self.active)
        return improved

    def apply_patience(self) -> None:
        """Stops the active runs that have not improved for ``patience`` evaluations."""
        if self.settings.patience is not None:
            done = self.active & (self.since_best >= self.settings.patience)
            self.active[done] = False
            for i in np.flatnonzero(done):
                self.stop_reason[i] = "early_stopping"

    def results(self, histories: list[dict]) -> list[FitResult]:
        """One :class:`FitResult` per run."""
        return [
            FitResult(h, int(e), float(v), int(r), reason, message)
            for h, e, v, r, reason, message in zip(
                histories,
                self.best_epoch,
                self.best_val,
                self.epochs_run,
                self.stop_reason,
                self.diverged,
                strict=True,
            )
        ]


class History:
    """Per-run history records and the ``progress`` events of one phase."""

    def __init__(self, n_runs: int, phase: str, epochs: int, progress, *, compiling=False):
        self.histories = [
            {"epoch": [], "train_nll": [], "val_nll": [], "seconds": []} for _ in range(n_runs)
        ]
        self.phase, self.epochs, self.progress = phase, epochs, progress
        self.compiling = compiling
        self.start = time.perf_counter()

    def record(self, runs: np.ndarray, epoch: int, train: np.ndarray, val: np.ndarray) -> None:
        """Appends a record to the history of every run in the boolean mask ``runs``."""
        seconds = time.perf_counter() - self.start
        for i in np.flatnonzero(runs):
            values = (epoch, float(train[i]), float(val[i]), seconds)
            for name, value in zip(self.histories[i], values, strict=True):
                self.histories[i][name].append(value)
        if epoch == 0:
            self.tick(0, val)

    def tick(self, epoch: int, val: np.ndarray | None) -> None:
        """Sends one :class:`ProgressEvent` (best finite validation NLL when evaluated)."""
        if self.progress is None:
            return
        finite = None if val is None else val[np.isfinite(val)]
        best = float(finite.min()) if finite is not None and finite.size else None
        seconds = time.perf_counter() - self.start
        compiling = self.compiling and epoch == 0
        self.progress(ProgressEvent(self.phase, epoch, self.epochs, seconds, best, compiling))
