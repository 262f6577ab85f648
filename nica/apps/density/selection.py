"""The choice among candidate density settings, made on the validation rows alone by the
one-standard-error rule."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import jax
import numpy as np

from nica.apps.density.data import DensityData
from nica.apps.density.fitting import fit_nica
from nica.apps.density.gaussian import gaussian_log_likelihood
from nica.fitting.config import FitConfig
from nica.fitting.fitted import FittedModel
from nica.fitting.stopping import TrainingDivergedError

__all__ = [
    "DENSITY_CANDIDATES",
    "DensityCandidate",
    "Selection",
    "one_standard_error_choice",
    "select_nica",
]


@dataclasses.dataclass(frozen=True)
class DensityCandidate:
    """One setting the default density fit tries; the validation rows choose among them.

    Attributes:
      depth: square layers of the demixer (1: linear, with the Gaussian base a Gaussian).
      whiten: the first layer starts at the whitening map of the standardised training rows
        (bias included), not at a random orthogonal matrix. At depth 1 that start is the
        full-covariance Gaussian's maximum-likelihood fit, so early stopping can keep it.
    """

    depth: int
    whiten: bool = False

    @property
    def name(self) -> str:
        """``"depth 2, whitened start"``."""
        return f"depth {self.depth}" + (", whitened start" if self.whiten else "")

    def to_dict(self) -> dict:
        """JSON-ready fields and the name."""
        return {"name": self.name, **dataclasses.asdict(self)}


#: What the default ``nica density`` tries, simplest first; :func:`one_standard_error_choice`
#: of the validation log-likelihoods picks one. A few validation rows cannot rank deep demixers
#: reliably, hence the one-standard-error rule and a depth-1 candidate that starts at the
#: Gaussian's fit; a whitened start helps 2 layers and not 3, so the 3-layer candidate keeps
#: the random start (docs/density.md; results/density_tabular/report.md,
#: results/density_real/report.md).
DENSITY_CANDIDATES = (
    DensityCandidate(1, whiten=True),
    DensityCandidate(2, whiten=True),
    DensityCandidate(3),
)


def one_standard_error_choice(val_log_likelihood: np.ndarray) -> tuple[int, np.ndarray]:
    """The one-standard-error rule over candidates ordered simplest first.

    Args:
      val_log_likelihood: per-row validation log-likelihoods, ``(K, n_val)``, one row per
        candidate (``-inf`` rows for candidates that failed).

    Returns:
      ``(chosen, stderr)``: the first candidate whose mean is at least the best mean less the
      standard error of its per-row difference to the best (a paired error, ``(K,)``; 0 for
      the best itself), so a more flexible candidate must win by more than the noise of the
      validation rows.
    """
    val = np.asarray(val_log_likelihood, np.float64)
    val = np.where(np.isnan(val), -np.inf, val)
    means = val.mean(axis=1)
    best = int(np.argmax(means))
    stderr = np.zeros(val.shape[0])
    for k in range(val.shape[0]):
        diff = val[best] - val[k]
        if k != best and np.all(np.isfinite(diff)) and diff.size > 1:
            stderr[k] = float(np.std(diff, ddof=1) / math.sqrt(diff.size))
    chosen = next(k for k in range(val.shape[0]) if means[k] >= means[best] - stderr[k])
    return chosen, stderr


@dataclasses.dataclass
class Selection:
    """The choice among candidate settings, made on the validation rows only.

    Attributes:
      candidates: the settings tried, simplest first.
      val_log_likelihood: each fit's mean validation log-likelihood in the data's units
        (nats per sample, higher is better), ``(K,)``; ``-inf`` for a fit that diverged.
      stderr: standard error of each one's per-row difference to the best, ``(K,)``.
      chosen: index of the kept candidate (:func:`one_standard_error_choice`).
      fits: the fitted models (``None`` where a fit diverged), for their training curves.
      gaussian_val_log_likelihood: the full-covariance Gaussian's on the same rows.
    """

    candidates: tuple[DensityCandidate, ...]
    val_log_likelihood: np.ndarray
    stderr: np.ndarray
    chosen: int
    fits: list
    gaussian_val_log_likelihood: float

    def to_dict(self) -> dict:
        """JSON-ready record: the rule, and per candidate its score, error and epochs."""
        rows = []
        for k, candidate in enumerate(self.candidates):
            fit = self.fits[k]
            rows.append(
                {
                    **candidate.to_dict(),
                    "val_log_likelihood": float(self.val_log_likelihood[k]),
                    "stderr_of_difference_to_best": float(self.stderr[k]),
                    "best_epoch": None if fit is None else fit.result.best_epoch,
                    "epochs_run": None if fit is None else fit.result.epochs_run,
                    "chosen": k == self.chosen,
                }
            )
        return {
            "rule": "one-standard-error rule on the validation rows (never the test rows):"
            " the simplest candidate whose mean validation log-likelihood is within one"
            " standard error (paired, per row) of the best one's",
            "val_log_likelihood_units": "nats per sample in the data's units (higher is better)",
            "chosen": self.candidates[self.chosen].name,
            "gaussian_val_log_likelihood": self.gaussian_val_log_likelihood,
            "candidates": rows,
        }


def select_nica(
    key: jax.Array,
    data: DensityData,
    config: FitConfig,
    candidates: Sequence[DensityCandidate] = DENSITY_CANDIDATES,
    *,
    progress: Callable | None = None,
) -> tuple[FittedModel, Selection]:
    """Fits ``config`` at each candidate's setting (same key) and keeps one, chosen by the
    validation rows' log-likelihood alone (:func:`one_standard_error_choice`).

    The test rows are never read. ``progress`` events carry the candidate's name as phase.

    Raises:
      TrainingDivergedError: every candidate diverged (the last one's error).
    """
    fits, scores, error = [], [], None
    for candidate in candidates:
        named = None
        if progress is not None:
            named = lambda event, c=candidate: progress(event._replace(phase=c.name))  # noqa: E731
        try:
            fitted = fit_nica(
                key,
                data,
                config.replace(depth=candidate.depth),
                whiten=candidate.whiten,
                progress=named,
            )
        except TrainingDivergedError as err:
            fits.append(None)
            scores.append(np.full(data.z_val.shape[0], -np.inf))
            error = err
            continue
        ll = fitted.log_likelihood(data.z_val, data.u_val if fitted.aux else None)
        fits.append(fitted)
        scores.append(ll + data.log_det_val)
    if all(fit is None for fit in fits):
        raise error
    chosen, stderr = one_standard_error_choice(np.stack(scores))
    gaussian = gaussian_log_likelihood(data.z_train, data.z_val) + data.log_det_val
    selection = Selection(
        tuple(candidates),
        np.stack(scores).mean(axis=1),
        stderr,
        chosen,
        fits,
        float(gaussian.mean()),
    )
    return fits[chosen], selection
