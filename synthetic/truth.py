"""The true model's exact log-likelihood for synthetic data.

For a :class:`~synthetic.dataset.Dataset` made by :func:`~synthetic.presets.generate_dataset` or
:func:`~synthetic.presets.make_preset`, the data were drawn as ``x = f(s)`` with ``s | u``
independent across components: per segment ``u = k``
(:class:`~synthetic.sources.SegmentSourceParams`), or with standard deviations ``sigma_j(u)``
smooth in a continuous ``u`` (:class:`~synthetic.continuous.ContinuousSourceParams`). The true
demixer ``g = f^{-1}`` (exact, :meth:`~synthetic.mixing.Mixing.inverse_and_log_det`) then gives,
per sample (docs/math.md, Eq. 4):

    ``log p(x | u) = sum_i log p_i(g_i(x) | u) + log|det J_g(x)|``

and, for segment data, marginalising the segment with weights ``pi_k`` (segment frequencies;
equal for presets):

    ``log p(x) = logsumexp_k (log pi_k + log p(g(x) | k)) + log|det J_g(x)|``.

For continuous ``u`` the conditional density is exact too; the marginal is not provided
(:func:`has_true_marginal`): it would be an integral over ``u``.

Comparing a fit with the truth ("fit NLL minus true NLL", an estimate of
``KL(p_true || p_fit)`` >= 0 up to sampling error): evaluate both on the *same* held-out
samples, in the units of ``x``. ``nica`` fits standardised data ``z = (x - mean) / scale``, so
a z-space NLL (e.g. the training history's validation NLL) converts to x units as
``NLL_x = NLL_z + sum(log scale)``; :meth:`nica.FittedModel.log_likelihood` already returns
x-unit log-likelihoods. Example::

    ds = make_preset("ivae", 0)
    test = sample_from_truth(1, ds)                  # fresh samples of the same true model
    true_nll = -true_log_likelihood(ds, test.x, test.u).mean()
    fit_nll = -fitted.log_likelihood(test.x, test.u).mean()
    gap = fit_nll - true_nll                          # nats per sample, >= 0 up to noise

:func:`nll_gap` does exactly this.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

from synthetic.continuous import ContinuousSourceParams, sample_continuous_sources
from synthetic.dataset import Dataset
from synthetic.mixing import Mixing
from synthetic.presets import replay_source_params
from synthetic.sources import SegmentSourceParams, sample_segment_sources

_CHUNK = 4096

#: The source distributions by the ``"kind"`` key of their ``to_dict`` (segment parameters,
#: recorded without one, are the default).
_SOURCE_KINDS = {
    "segments": SegmentSourceParams,
    ContinuousSourceParams.kind: ContinuousSourceParams,
}

SourceParams = SegmentSourceParams | ContinuousSourceParams


def source_params(dataset: Dataset) -> SourceParams:
    """The source distribution that generated ``dataset``: per-segment
    (:class:`~synthetic.sources.SegmentSourceParams`) or smooth in a continuous ``u``
    (:class:`~synthetic.continuous.ContinuousSourceParams`).

    Read from ``dataset.config["source_params"]`` (recorded by
    :func:`~synthetic.presets.generate_dataset`); for older segment files without it, re-drawn
    from the recorded preset configuration and integer seed.

    Raises:
        ValueError: the dataset has no config, or neither parameters nor a replayable seed, or
            parameters of an unknown kind.
    """
    config = dataset.config
    if config is None:
        raise ValueError("the dataset has no config: the true source distribution is unknown")
    if "source_params" not in config:
        return replay_source_params(config)
    recorded = config["source_params"]
    kind = recorded.get("kind", "segments") if isinstance(recorded, dict) else None
    if kind not in _SOURCE_KINDS:
        raise ValueError(
            f"unknown source parameter kind {kind!r}; expected one of {sorted(_SOURCE_KINDS)}"
        )
    return _SOURCE_KINDS[kind].from_dict(recorded)


def has_true_marginal(dataset: Dataset) -> bool:
    """Whether :func:`true_marginal_log_likelihood` is available for ``dataset``: for segment
    data, not for a continuous ``u``."""
    return isinstance(source_params(dataset), SegmentSourceParams)


def _mixing(dataset: Dataset) -> Mixing:
    if dataset.mixing is None:
        raise ValueError("the dataset has no mixing: the true demixer is unknown")
    return dataset.mixing


def _observations(dataset: Dataset, x: np.ndarray | None) -> np.ndarray:
    """``x`` (default ``dataset.x``) as float64 ``(N, D)``."""
    return np.asarray(dataset.x if x is None else x, dtype=np.float64)


def true_log_likelihood(
    dataset: Dataset, x: np.ndarray | None = None, u: np.ndarray | None = None
) -> np.ndarray:
    """Exact ``log p(x | u)`` under the true model, per sample, in the units of ``x``.

    ``sum_i log p_i(f^{-1}_i(x) | u) + log|det J_{f^{-1}}(x)|`` with the true mixing ``f`` and
    source densities. The true NLL is ``-true_log_likelihood(...).mean()``. To compare with a
    ``nica`` fit on standardised data ``z = (x - mean) / scale``: ``NLL_x = NLL_z +
    sum(log scale)``.

    Args:
        dataset: made by :func:`~synthetic.presets.generate_dataset` /
            :func:`~synthetic.presets.make_preset` (or loaded from such a file).
        x: observations ``(N, D)``; default ``dataset.x``.
        u: the auxiliary variable of ``x``, segment labels ``(N,)`` or a continuous ``(N, d)``
            as the dataset's; default ``dataset.u`` (only when ``x`` is None).

    Returns:
        ``(N,)`` float64.

    Raises:
        ValueError: no mixing or source parameters, or ``x`` given without ``u``.
    """
    if u is None:
        if x is not None:
            raise ValueError("pass the labels u of x (or neither, for the dataset's own)")
        u = dataset.u
    params = source_params(dataset)
    s, log_det = _mixing(dataset).inverse_and_log_det(_observations(dataset, x))
    return params.log_density(s, np.asarray(u)) + log_det


def true_marginal_log_likelihood(
    dataset: Dataset, x: np.ndarray | None = None, weights: np.ndarray | None = None
) -> np.ndarray:
    """Exact unconditional ``log p(x) = log sum_k pi_k p(x | k)`` under the true model.

    Args:
        dataset: as :func:`true_log_likelihood`.
        x: observations ``(N, D)``; default ``dataset.x``.
        weights: segment probabilities ``pi (K,)``; default the segment frequencies of
            ``dataset.u`` (uniform for presets).

    Returns:
        ``(N,)`` float64.

    Raises:
        ValueError: the dataset's ``u`` is continuous (:func:`has_true_marginal`).
    """
    params = source_params(dataset)
    if not isinstance(params, SegmentSourceParams):
        raise ValueError(
            "the true marginal over a continuous u is not available (an integral over u);"
            " compare conditional fits with true_log_likelihood"
        )
    if weights is None:
        counts = np.bincount(np.asarray(dataset.u), minlength=params.n_segments)
        weights = counts / counts.sum()
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != (params.n_segments,):
        raise ValueError(f"weights must have shape ({params.n_segments},), got {weights.shape}")
    with np.errstate(divide="ignore"):
        log_w = np.log(weights)
    s, log_det = _mixing(dataset).inverse_and_log_det(_observations(dataset, x))
    log_p = np.concatenate(
        [
            logsumexp(params.segment_log_densities(s[i : i + _CHUNK]) + log_w, axis=1)
            for i in range(0, s.shape[0], _CHUNK)
        ]
    )
    return log_p + log_det


def sample_from_truth(
    seed: int | np.random.Generator, dataset: Dataset, samples_per_segment: int | None = None
) -> Dataset:
    """Fresh samples of the true model of ``dataset`` (same mixing and source parameters).

    A held-out set for "fit NLL minus true NLL" that no fit has seen. For continuous ``u``, as
    many samples as the dataset's (``config["n_samples"]``), ``u`` laid out the same way (the
    same time grid for ``u = t``, fresh draws for ``"uniform"``), fresh sources.

    Args:
        seed: integer seed or numpy Generator (use one different from the dataset's).
        dataset: as :func:`true_log_likelihood`.
        samples_per_segment: default ``config["samples_per_segment"]``; segment data only.

    Returns:
        A :class:`Dataset` with ``x, s (N, D)``, ``u`` (``(K * n,)`` labels or ``(N, d)``), the
        same mixing and config.

    Raises:
        ValueError: ``samples_per_segment`` given for continuous-``u`` data.
    """
    params = source_params(dataset)
    if isinstance(params, ContinuousSourceParams):
        if samples_per_segment is not None:
            raise ValueError("continuous-u data have no segments: omit samples_per_segment")
        s, u = sample_continuous_sources(seed, params, int(dataset.config["n_samples"]))
    else:
        if samples_per_segment is None:
            samples_per_segment = int(dataset.config["samples_per_segment"])
        s, u = sample_segment_sources(seed, params, samples_per_segment)
    mixing = _mixing(dataset)
    return Dataset(x=mixing(s), s=s, u=u, mixing=mixing, config=dict(dataset.config))


def nll_gap(fitted, dataset: Dataset, *, seed: int, conditional: bool = True) -> dict:
    """Held-out and training NLL of a fit and of the true model, and their differences (nats
    per sample).

    The held-out pair is evaluated on fresh samples of the true model
    (:func:`sample_from_truth` with ``seed``), the training pair on ``dataset`` itself (the
    rows the fit was given, its validation split included); all in the units of ``x``.
    ``nll_gap`` = fit - true on the held-out samples estimates the KL divergence from the truth
    (>= 0 up to sampling noise): near 0 the fit is as likely as the exact inverse of the mixing
    with its own source densities. ``train_gap`` tells the two reasons a gap can be large apart:
    a fit that is much less likely than the truth on its own training data stopped short of the
    maximum likelihood (optimisation or representation), while a training gap near 0 (or below)
    under a large held-out gap is overfitting. An unconditional fit is compared with the true
    marginal over segments (segment data only: :func:`has_true_marginal`).

    Args:
        fitted: anything with ``log_likelihood(x, u=None) -> (N,)`` in x units (a
            ``nica.FittedModel``).
        dataset: the synthetic dataset the fit was trained on (its mixing and source params).
        seed: seed of the held-out samples (use one the dataset was not drawn with).
        conditional: whether the fit models ``p(x | u)`` (else ``p(x)``).

    Returns:
        ``{"test_nll", "true_nll", "nll_gap", "train_nll", "true_train_nll", "train_gap"}``
        (floats; ``*_gap`` = fit - true).

    Raises:
        ValueError: ``conditional=False`` on continuous-``u`` data (no true marginal).
    """
    if not conditional and not has_true_marginal(dataset):
        raise ValueError(
            "no true marginal for continuous-u data: the NLL gap exists for conditional fits only"
        )
    test_fit, test_true = _mean_nlls(fitted, dataset, sample_from_truth(seed, dataset), conditional)
    train_fit, train_true = _mean_nlls(fitted, dataset, dataset, conditional)
    return {
        "test_nll": test_fit,
        "true_nll": test_true,
        "nll_gap": test_fit - test_true,
        "train_nll": train_fit,
        "true_train_nll": train_true,
        "train_gap": train_fit - train_true,
    }


def _mean_nlls(fitted, dataset: Dataset, data: Dataset, conditional: bool) -> tuple[float, float]:
    """Mean NLL of ``fitted`` and of the true model of ``dataset`` on ``data``'s rows."""
    if conditional:
        fit = fitted.log_likelihood(data.x, data.u)
        true = true_log_likelihood(dataset, data.x, data.u)
    else:
        fit = fitted.log_likelihood(data.x)
        true = true_marginal_log_likelihood(dataset, data.x)
    return -float(np.mean(fit)), -float(np.mean(true))
