"""Which components can be trusted without ground truth: reliability across seeds (ICASSO-like).

On real data the sources are unknown, so MCC cannot be computed. :func:`stability` fits the
same data with ``K`` seeds (one vmapped program, :func:`nica.fit_seeds`), takes the fit with
the lowest validation NLL as the reference, matches every other fit's components to the
reference's by the Hungarian algorithm on ``|corr|`` of the recovered sources on ``x``
(:func:`nica.core.metrics.mean_correlation_coefficient`), and scores each reference component
by the median of its matched ``|corr|`` over the other fits. A component near 1 comes back in
every fit; a low one is an artefact of one optimum.

Reliability across seeds is necessary, not sufficient, for identifiability: a wrong optimum
that every seed finds is reliable too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from nica.core.metrics import METHODS, mean_correlation_coefficient
from nica.fitting.auxiliary import read_aux
from nica.fitting.config import FitConfig
from nica.fitting.estimator import check_inputs, checks_said, fit_seeds
from nica.fitting.fitted import FittedModel
from nica.fitting.stopping import ProgressEvent

__all__ = ["DEFAULT_SEEDS", "Stability", "check_arguments", "stability"]

#: The seeds :func:`stability` fits by default.
DEFAULT_SEEDS = (0, 1, 2, 3, 4)


@dataclasses.dataclass(frozen=True, eq=False)
class Stability:
    """The reliability of each component of the reference fit across ``K`` seeds.

    Attributes:
      reliability: ``(D,)`` in ``[0, 1]``: per reference component, the median over the other
        fits of ``|corr|`` with its matched partner.
      matched: ``(R - 1, D)``: every other fit's matched ``|corr|`` (``R`` fits ran; row ``r``
        is the fit ``compared[r]``).
      partners: ``(R - 1, D)`` int: the component of fit ``compared[r]`` matched to each
        reference component.
      val_nll: ``(K,)`` best validation NLL of each seed's fit (nats per sample, units of
        ``x``), ``nan`` where the fit diverged.
      seeds: the ``K`` seeds, in the order of ``val_nll``.
      reference: index into ``seeds`` of the reference fit (lowest validation NLL).
      ran: indices into ``seeds`` of the fits that ran (did not diverge), the order of ``fits``.
      order: ``(D,)`` the reference's components by decreasing reliability.
      diverged: how many fits were left out (diverged in training, or non-finite sources).
      correlation: ``"pearson"`` or ``"spearman"``, the correlation matched on.
      bootstrap: whether each fit saw its own resample of the rows (compared on ``x`` itself).
      fits: the ``R`` :class:`FittedModel` s that ran (:attr:`best` is the reference's).
    """

    reliability: np.ndarray
    matched: np.ndarray
    partners: np.ndarray
    val_nll: np.ndarray
    seeds: tuple[int, ...]
    reference: int
    ran: tuple[int, ...]
    order: np.ndarray
    diverged: int
    correlation: str
    bootstrap: bool
    fits: tuple[FittedModel, ...] = dataclasses.field(repr=False)

    @property
    def best(self) -> FittedModel:
        """The reference fit (the lowest validation NLL)."""
        return self.fits[self.ran.index(self.reference)]

    @property
    def compared(self) -> tuple[int, ...]:
        """Indices into ``seeds`` of the fits compared with the reference (rows of
        ``matched``)."""
        return tuple(i for i in self.ran if i != self.reference)

    @classmethod
    def from_dict(cls, record: dict) -> Stability:
        """The result of a :meth:`to_dict` record, without its fits (``fits`` is empty, so
        :attr:`best` is not available): enough to redraw ``plot_reliability``."""
        return _from_dict(record)

    def to_dict(self) -> dict:
        """JSON-ready record (no models; a diverged fit's ``val_nll`` is ``None``; ``ran`` and
        ``reference`` index ``seeds``)."""
        return {
            "reliability": [float(r) for r in self.reliability],
            "order": [int(i) for i in self.order],
            "matched": [[float(c) for c in row] for row in self.matched],
            "partners": [[int(j) for j in row] for row in self.partners],
            "val_nll": [None if np.isnan(v) else float(v) for v in self.val_nll],
            "seeds": list(self.seeds),
            "reference": self.reference,
            "reference_seed": self.seeds[self.reference],
            "ran": list(self.ran),
            "compared_seeds": [self.seeds[i] for i in self.compared],
            "diverged": self.diverged,
            "correlation": self.correlation,
            "bootstrap": self.bootstrap,
        }


def _from_dict(record: dict) -> Stability:
    """:meth:`Stability.from_dict`."""
    val_nll = np.array([np.nan if v is None else v for v in record["val_nll"]], np.float64)
    reliability = np.asarray(record["reliability"], np.float64)
    return Stability(
        reliability=reliability,
        matched=np.asarray(record["matched"], np.float64).reshape(-1, reliability.size),
        partners=np.asarray(record["partners"], np.int64).reshape(-1, reliability.size),
        val_nll=val_nll,
        seeds=tuple(int(s) for s in record["seeds"]),
        reference=int(record["reference"]),
        ran=tuple(int(i) for i in record["ran"]),
        order=np.asarray(record["order"], np.int64),
        diverged=int(record["diverged"]),
        correlation=record["correlation"],
        bootstrap=bool(record["bootstrap"]),
        fits=(),
    )


def check_arguments(seeds, correlation: str) -> tuple[int, ...]:
    """The check :func:`stability` makes of ``seeds`` and ``correlation`` first, without
    fitting: the seeds as ints; one-line ValueErrors for too few, repeated or non-integer
    seeds, or an unknown correlation."""
    if correlation not in METHODS:
        raise ValueError(
            f"unknown correlation {correlation!r}; expected one of {', '.join(METHODS)}"
        )
    if isinstance(seeds, (int, np.integer)):
        raise ValueError(f"seeds must be a sequence of integers, one per fit, got {seeds!r}")
    seeds = tuple(seeds)
    if not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in seeds):
        raise ValueError(f"seeds must be integers, got {seeds!r}")
    seeds = tuple(int(s) for s in seeds)
    if len(seeds) < 2:
        raise ValueError(f"stability needs at least 2 seeds to compare fits, got {len(seeds)}")
    if len(set(seeds)) < len(seeds):
        repeated = sorted({s for s in seeds if seeds.count(s) > 1})
        raise ValueError(f"seeds must differ (repeated: {', '.join(map(str, repeated))})")
    return seeds


def _resamples(x: np.ndarray, u, seeds: tuple[int, ...], aux: dict | None):
    """Each seed's bootstrap resample of the rows: ``(xs, us)``, row indices drawn with
    replacement from ``numpy.random.default_rng(seed)``; a resample that loses a segment of
    ``u`` is a one-line ValueError."""
    xs, us = [], None if u is None else []
    for seed in seeds:
        rows = np.random.default_rng(seed).integers(0, x.shape[0], x.shape[0])
        xs.append(x[rows])
        if u is not None:
            us.append(u[rows])
            lost = read_aux(us[-1], where="u").aux != aux
            if lost:
                raise ValueError(
                    f"the bootstrap resample of seed {seed} misses a segment of u: segments are"
                    " too small to resample; use bootstrap=False or larger segments"
                )
    return xs, us


def _sources(fits: list[FittedModel], x: np.ndarray) -> tuple[list[int], list[np.ndarray]]:
    """The fits that ran (not diverged, finite sources on ``x``) and their sources ``(N, D)``."""
    ran, sources = [], []
    for i, fitted in enumerate(fits):
        if fitted.result is not None and fitted.result.diverged is not None:
            continue
        s_hat = fitted.transform(x)
        if np.all(np.isfinite(s_hat)):
            ran.append(i)
            sources.append(s_hat)
    return ran, sources


def stability(
    x,
    u=None,
    *,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    bootstrap: bool = False,
    correlation: str = "pearson",
    config: FitConfig | None = None,
    progress: Callable[[ProgressEvent], None] | str | None = None,
    **flat_overrides,
) -> Stability:
    """Fits ``K = len(seeds)`` models and scores how reliably each component comes back.

    Args:
      x: observations ``(N, D)``, ``D >= 2`` (as :func:`nica.fit`).
      u: ``None`` or the auxiliary variable (as :func:`nica.fit`; the conditional model).
      seeds: ``K >= 2`` distinct integer seeds, one fit each (initialisation, validation split,
        shuffling; with ``bootstrap`` also the resample).
      bootstrap: each fit sees its own resample of the ``N`` rows, drawn with replacement
        from ``numpy.random.default_rng(seed)`` (``u`` resampled alongside); the sources are
        compared on ``x`` itself either way.
      correlation: ``"pearson"`` or ``"spearman"`` (on ranks: blind to monotone distortions).
      config: the settings (default :class:`FitConfig`); ``flat_overrides`` replace its own
        (``epochs=100, depth=2``).
      progress: as :func:`nica.fit_seeds` (default ``None``: nothing).

    Returns:
      :class:`Stability`: per reference component ``reliability (D,)``, the matched ``|corr|``
      ``(R - 1, D)`` of the ``R`` fits that ran, every seed's validation NLL ``(K,)``, and the
      fits themselves (``.best`` is the reference).

    Raises:
      ValueError: one line: fewer than 2 or repeated seeds, an unknown ``correlation``, bad data or
        settings (as :func:`nica.fit`), or fewer than 2 fits that did not diverge.
    """
    seeds = check_arguments(seeds, correlation)
    config = (FitConfig() if config is None else config).replace(**flat_overrides)
    reading = check_inputs(x, u, config=config)  # x and u's errors, said once, before fitting
    x = np.asarray(x)
    u = None if reading is None else np.asarray(u)
    if bootstrap:
        xs, us = _resamples(x, u, seeds, None if reading is None else reading.aux)
    else:
        xs, us = [x] * len(seeds), None if u is None else [u] * len(seeds)
    where = "bootstrap sample" if bootstrap else "x"
    with checks_said():
        fits = fit_seeds(xs, us, seeds=seeds, config=config, progress=progress, where=where)
    ran, sources = _sources(fits, x)
    if len(ran) < 2:
        raise ValueError(
            f"only {len(ran)} of {len(seeds)} fits ran without diverging; stability needs 2 to"
            " compare (try a smaller learning_rate, or more seeds)"
        )
    val_nll = np.full(len(seeds), np.nan)
    val_nll[ran] = [fits[i].result.best_val_nll for i in ran]
    reference = ran[int(np.argmin(val_nll[ran]))]  # the first on a tie
    reference_sources = sources[ran.index(reference)]
    others = [k for k, i in enumerate(ran) if i != reference]
    matches = [
        mean_correlation_coefficient(reference_sources, sources[k], correlation) for k in others
    ]
    matched = np.abs(np.array([m.correlations for m in matches], np.float64))
    reliability = np.median(matched, axis=0)
    return Stability(
        reliability=reliability,
        matched=matched,
        partners=np.array([m.matching for m in matches], np.int64),
        val_nll=val_nll,
        seeds=seeds,
        reference=reference,
        ran=tuple(ran),
        order=np.argsort(-reliability, kind="stable"),
        diverged=len(seeds) - len(ran),
        correlation=correlation,
        bootstrap=bool(bootstrap),
        fits=tuple(fits[i] for i in ran),
    )
