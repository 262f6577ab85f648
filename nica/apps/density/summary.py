"""Test log-likelihoods as reported: means with standard errors in three units, labelled with
model and quantity, and the like-with-like comparisons with the Gaussian baselines."""

from __future__ import annotations

import math

import numpy as np

from nica.apps.density.gaussian import CLASS_GAUSSIAN, GAUSSIAN
from nica.apps.density.pipeline import DensityFit

__all__ = [
    "LOG_LIKELIHOOD_UNITS",
    "bits_per_dim",
    "compare_with_gaussian",
    "summarise",
    "summarise_fit",
]

#: Mean log-likelihoods are reported in three units; every number saved or printed says which.
LOG_LIKELIHOOD_UNITS = {
    "log_likelihood": "mean test log-likelihood, nats per sample in the data's units (higher is"
    " better)",
    "log_likelihood_stderr": "standard error of that mean, nats per sample",
    "log_likelihood_per_dim": "log_likelihood / D, nats per dimension (higher is better)",
    "bits_per_dim": "-log_likelihood / (D log 2), bits per dimension, a code length (lower is"
    " better)",
}

_LOG2 = math.log(2.0)

# Quantities, as they are labelled in reports.
_MARGINAL = "log p(x)"
_CONDITIONAL = "log p(x | u)"
_MIXTURE = "log p(x) = log sum_c p(c) p(x | c)"


def bits_per_dim(log_likelihood: float, dim: int) -> float:
    """``-log p / (D log 2)``: a mean log-likelihood in nats per sample as bits per dimension."""
    return -log_likelihood / (dim * _LOG2)


def summarise(
    log_likelihood: np.ndarray, dim: int, *, model: str | None = None, quantity: str | None = None
) -> dict:
    """Mean test log-likelihood (nats per sample), its standard error, per dimension and in
    bits per dimension, from per-sample values ``(N,)`` (units: :data:`LOG_LIKELIHOOD_UNITS`);
    labelled with ``model`` and ``quantity`` (e.g. ``"log p(x | u)"``) when given."""
    mean = float(np.mean(log_likelihood))
    labels = {"model": model, "quantity": quantity}
    return {
        **{k: v for k, v in labels.items() if v is not None},
        "log_likelihood": mean,
        "log_likelihood_stderr": float(np.std(log_likelihood) / math.sqrt(log_likelihood.size)),
        "log_likelihood_per_dim": mean / dim,
        "bits_per_dim": bits_per_dim(mean, dim),
    }


def summarise_fit(fit: DensityFit) -> dict[str, dict]:
    """Labelled :func:`summarise` of every test log-likelihood of ``fit``: ``test`` (the
    model's own: ``log p(x | u)`` when conditional, else ``log p(x)``), ``gaussian_test``,
    and when conditional ``marginal_test`` (the mixture over classes, ``p(c)`` the training
    class frequencies) and ``class_gaussian_test``."""
    dim = fit.model.dim
    nica = "nica, conditional on the class" if fit.conditional else "nica"
    summaries = {
        "test": summarise(
            fit.test_log_likelihood,
            dim,
            model=nica,
            quantity=_CONDITIONAL if fit.conditional else _MARGINAL,
        ),
        "gaussian_test": summarise(
            fit.gaussian_test_log_likelihood, dim, model=GAUSSIAN, quantity=_MARGINAL
        ),
    }
    if fit.conditional:
        summaries["marginal_test"] = {
            **summarise(fit.marginal_test_log_likelihood, dim, model=nica, quantity=_MIXTURE),
            "class_prior": "p(c): the class frequencies of the training rows",
        }
        summaries["class_gaussian_test"] = summarise(
            fit.class_gaussian_test_log_likelihood, dim, model=CLASS_GAUSSIAN, quantity=_CONDITIONAL
        )
    return summaries


def compare_with_gaussian(fit: DensityFit) -> list[dict]:
    """Like-with-like test comparisons of the nica fit with its Gaussian baselines.

    ``log p(x)`` against the full-covariance Gaussian's (a conditional model's mixture over
    the classes), and for a conditional model also ``log p(x | u)`` against
    :data:`CLASS_GAUSSIAN`'s. Each record has both means (nats per sample), the difference
    nica minus baseline with the standard error of the per-row differences, ``nica_loses``
    (difference below 0) and ``line``, a sentence saying so.
    """
    marginal = fit.marginal_test_log_likelihood if fit.conditional else fit.test_log_likelihood
    pairs = [(_MARGINAL, marginal, fit.gaussian_test_log_likelihood, GAUSSIAN)]
    if fit.conditional:
        pairs.append(
            (
                _CONDITIONAL,
                fit.test_log_likelihood,
                fit.class_gaussian_test_log_likelihood,
                CLASS_GAUSSIAN,
            )
        )
    records = []
    for quantity, mine, theirs, baseline in pairs:
        diff = np.asarray(mine) - np.asarray(theirs)
        mean = float(diff.mean())
        stderr = float(np.std(diff, ddof=1) / math.sqrt(diff.size)) if diff.size > 1 else 0.0
        verdict = "loses to" if mean < 0 else "beats"
        noise = ", within noise (2 s.e.)" if abs(mean) <= 2 * stderr else ""
        line = (
            f"nica {verdict} the {baseline} on the test split: {quantity} "
            f"{float(np.mean(mine)):.3f} against {float(np.mean(theirs)):.3f} nats per sample "
            f"(higher is better); difference {mean:+.3f} ± {stderr:.3f} (1 s.e.){noise}"
        )
        records.append(
            {
                "quantity": quantity,
                "baseline": baseline,
                "nica_log_likelihood": float(np.mean(mine)),
                "baseline_log_likelihood": float(np.mean(theirs)),
                "difference": mean,
                "difference_stderr": stderr,
                "nica_loses": mean < 0,
                "line": line,
            }
        )
    return records
