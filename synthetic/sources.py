"""Nonstationary independent sources for nonlinear ICA benchmarks.

Generators seeded explicitly (an ``int`` seed or a ``numpy.random.Generator`` as the first
positional argument), all returning float64 sources:

* :func:`segment_sources` -- the TCL / iVAE setting: the sample is cut into ``n_segments``
  contiguous segments; within a segment the components are independent with their own scale
  (and optionally mean). Returns integer segment labels ``u`` of shape ``(N,)``. Its two halves,
  :func:`draw_segment_params` and :func:`sample_segment_sources`, keep the per-segment
  parameters (:class:`SegmentSourceParams`, which also gives the exact log-density).
* :func:`synthetic.continuous.continuous_aux_sources` (in its own module, with its exact
  density) -- the auxiliary variable is continuous (time, or a ``d``-dimensional covariate) and
  each component's scale is a smooth function of it. Returns ``u`` of shape ``(N, d)``, float64.
* :func:`ar1_sources` -- segment sources with AR(1) temporal dependence, for time-contrastive
  style studies. Returns segment labels like :func:`segment_sources`.

Scales are standard deviations: every base distribution is normalised to zero mean and unit
variance before it is multiplied by the drawn scale (as iVAE's code does for Laplace sources).
Per-segment scales are ``U(low, high)`` draws; a range starting at 0 (TCL's ``U(0, 1)``
modulation) is drawn on ``(0, high]``, so that no scale is 0 (:func:`draw_segment_params`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy.signal import lfilter
from scipy.special import gammaln

Distribution = Literal["gaussian", "laplace", "student_t"]
DISTRIBUTIONS: tuple[str, ...] = ("gaussian", "laplace", "student_t")

SeedLike = int | np.random.Generator


def unit_noise(
    rng: np.random.Generator,
    distribution: str,
    shape: tuple[int, ...],
    *,
    df: float = 5.0,
) -> np.ndarray:
    """Draws zero-mean, unit-variance noise from a named family.

    Args:
        rng: numpy random generator.
        distribution: ``"gaussian"``, ``"laplace"`` or ``"student_t"`` (heavier tailed).
        shape: output shape.
        df: degrees of freedom of the Student-t family; must be > 2 (finite variance).

    Returns:
        Array of the given shape, float64.

    Raises:
        ValueError: unknown distribution or ``df <= 2``.
    """
    if distribution == "gaussian":
        return rng.standard_normal(shape)
    if distribution == "laplace":
        # Laplace(0, b) has variance 2 b^2.
        return rng.laplace(0.0, 1.0 / np.sqrt(2.0), shape)
    if distribution == "student_t":
        if not df > 2:
            raise ValueError(f"student_t sources need df > 2 for a finite variance, got {df}")
        return rng.standard_t(df, shape) * np.sqrt((df - 2.0) / df)
    raise ValueError(f"unknown distribution {distribution!r}; expected one of {DISTRIBUTIONS}")


def unit_log_density(distribution: str, e: np.ndarray, *, df: float = 5.0) -> np.ndarray:
    """Log-density of the zero-mean, unit-variance noise of :func:`unit_noise`, elementwise.

    Gaussian ``-(log 2 pi + e^2) / 2``; Laplace with scale ``1/sqrt 2``:
    ``-log(2) / 2 - sqrt(2) |e|``; Student-t rescaled by ``c = sqrt((df - 2) / df)``:
    ``log t_df(e / c) - log c``.

    Args:
        distribution: ``"gaussian"``, ``"laplace"`` or ``"student_t"``.
        e: points, any shape.
        df: Student-t degrees of freedom (> 2).

    Returns:
        ``log p(e)`` of ``e``'s shape, float64.
    """
    e = np.asarray(e, dtype=np.float64)
    if distribution == "gaussian":
        return -0.5 * (np.log(2.0 * np.pi) + e * e)
    if distribution == "laplace":
        return -0.5 * np.log(2.0) - np.sqrt(2.0) * np.abs(e)
    if distribution == "student_t":
        if not df > 2:
            raise ValueError(f"student_t sources need df > 2 for a finite variance, got {df}")
        c = np.sqrt((df - 2.0) / df)
        t = e / c
        log_norm = gammaln((df + 1.0) / 2.0) - gammaln(df / 2.0) - 0.5 * np.log(df * np.pi)
        return log_norm - 0.5 * (df + 1.0) * np.log1p(t * t / df) - np.log(c)
    raise ValueError(f"unknown distribution {distribution!r}; expected one of {DISTRIBUTIONS}")


def _check_positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _check_range(name: str, bounds: tuple[float, float], *, positive: bool) -> None:
    lo, hi = bounds
    if not lo <= hi or (positive and not lo > 0):
        need = "0 < low <= high" if positive else "low <= high"
        raise ValueError(f"{name} must satisfy {need}, got {tuple(bounds)}")


def _check_scale_range(bounds: tuple[float, float]) -> None:
    """A range of per-segment scales: ``0 <= low <= high`` and ``high > 0``."""
    lo, hi = bounds
    if not (0 <= lo <= hi and hi > 0):
        raise ValueError(
            f"scale_range must satisfy 0 <= low <= high, 0 < high, got {tuple(bounds)}"
        )


def _draw_scales(
    rng: np.random.Generator, bounds: tuple[float, float], shape: tuple[int, ...]
) -> np.ndarray:
    """``U(low, high)`` scales, positive: ``rng.uniform(low, high)`` (on ``[low, high)``) when
    ``low > 0``; when ``low == 0``, ``high - high * U[0, 1)``, on ``(0, high]``. Either way one
    double per scale is consumed from ``rng``."""
    lo, hi = bounds
    if lo > 0:
        return rng.uniform(lo, hi, shape)
    return hi - hi * rng.random(shape)


@dataclass(frozen=True, eq=False)
class SegmentSourceParams:
    """The per-segment source distribution of :func:`segment_sources`.

    Component ``j`` of segment ``k`` is ``means[k, j] + scales[k, j] * e`` with ``e`` zero-mean,
    unit-variance noise of ``distribution`` (see :func:`unit_noise`).

    Attributes:
        distribution: ``"gaussian"``, ``"laplace"`` or ``"student_t"``.
        scales: standard deviations, ``(K, D)`` float64, positive.
        means: means, ``(K, D)`` float64.
        df: Student-t degrees of freedom (unused by the other families).
    """

    distribution: str
    scales: np.ndarray
    means: np.ndarray
    df: float = 5.0

    def __post_init__(self) -> None:
        scales = np.asarray(self.scales, dtype=np.float64)
        means = np.asarray(self.means, dtype=np.float64)
        if scales.ndim != 2 or means.shape != scales.shape:
            raise ValueError(
                f"scales and means must be (K, D) alike, got {scales.shape}, {means.shape}"
            )
        if not np.all(scales > 0):
            raise ValueError("source scales must be positive")
        if self.distribution not in DISTRIBUTIONS:
            raise ValueError(
                f"unknown distribution {self.distribution!r}; expected one of {DISTRIBUTIONS}"
            )
        object.__setattr__(self, "scales", scales)
        object.__setattr__(self, "means", means)

    @property
    def n_segments(self) -> int:
        """Number of segments ``K``."""
        return int(self.scales.shape[0])

    @property
    def n_sources(self) -> int:
        """Number of components ``D``."""
        return int(self.scales.shape[1])

    def log_density(self, s: np.ndarray, u: np.ndarray) -> np.ndarray:
        """``log p(s | u) = sum_j log p_j(s_j | u)`` per sample, shape ``(N,)``.

        Args:
            s: sources ``(N, D)``.
            u: segment labels ``(N,)`` in ``[0, K)``.
        """
        s = np.asarray(s, dtype=np.float64)
        u = np.asarray(u)
        if s.ndim != 2 or s.shape[1] != self.n_sources or u.shape != (s.shape[0],):
            raise ValueError(
                f"expected s (N, {self.n_sources}) and u (N,), got {s.shape}, {u.shape}"
            )
        if u.size and (u.min() < 0 or u.max() >= self.n_segments):
            raise ValueError(
                f"segment labels must lie in [0, {self.n_segments}), got [{u.min()}, {u.max()}]"
            )
        scales = self.scales[u]
        e = (s - self.means[u]) / scales
        return (unit_log_density(self.distribution, e, df=self.df) - np.log(scales)).sum(axis=1)

    def segment_log_densities(self, s: np.ndarray) -> np.ndarray:
        """``log p(s | k)`` for every segment ``k``, shape ``(N, K)``, for sources ``s (N, D)``."""
        s = np.asarray(s, dtype=np.float64)
        e = (s[:, None, :] - self.means[None]) / self.scales[None]
        log_p = unit_log_density(self.distribution, e, df=self.df) - np.log(self.scales)[None]
        return log_p.sum(axis=2)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable description (floats round-trip exactly)."""
        return {
            "distribution": self.distribution,
            "df": float(self.df),
            "scales": self.scales.tolist(),
            "means": self.means.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SegmentSourceParams:
        """Rebuilds parameters written by :meth:`to_dict`."""
        try:
            return cls(
                d["distribution"], np.asarray(d["scales"]), np.asarray(d["means"]), float(d["df"])
            )
        except (KeyError, TypeError) as err:
            raise ValueError(f"malformed source parameters: {err!r}") from err


def draw_segment_params(
    seed: SeedLike,
    n_segments: int,
    n_sources: int,
    *,
    distribution: Distribution = "laplace",
    scale_range: tuple[float, float] = (0.5, 3.0),
    mean_range: tuple[float, float] | None = None,
    df: float = 5.0,
) -> SegmentSourceParams:
    """Draws ``scale[k, j] ~ U(scale_range)`` and ``mean[k, j] ~ U(mean_range)`` (zero if
    ``None``), in that order, for ``K = n_segments`` segments and ``D = n_sources`` components.

    ``scale_range`` may start at 0 (TCL's ``U(0, 1)``): the scales are then drawn on
    ``(0, high]``, never 0; with ``low > 0`` on ``[low, high)``.

    Args: as :func:`segment_sources`.

    Returns:
        The :class:`SegmentSourceParams` (``scales`` and ``means`` of shape ``(K, D)``).
    """
    _check_positive_int("n_segments", n_segments)
    _check_positive_int("n_sources", n_sources)
    _check_scale_range(scale_range)
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"unknown distribution {distribution!r}; expected one of {DISTRIBUTIONS}")
    rng = np.random.default_rng(seed)
    scales = _draw_scales(rng, scale_range, (n_segments, n_sources))
    if mean_range is None:
        means = np.zeros((n_segments, n_sources))
    else:
        _check_range("mean_range", mean_range, positive=False)
        means = rng.uniform(mean_range[0], mean_range[1], (n_segments, n_sources))
    return SegmentSourceParams(distribution, scales, means, float(df))


def sample_segment_sources(
    seed: SeedLike, params: SegmentSourceParams, samples_per_segment: int
) -> tuple[np.ndarray, np.ndarray]:
    """Draws ``samples_per_segment`` sources per segment from ``params``.

    Returns:
        ``(s, u)``: sources ``(N, D)`` float64 with ``N = K * samples_per_segment``, segment
        ``k`` in rows ``k * n`` to ``(k + 1) * n``, and labels ``(N,)`` int64.
    """
    _check_positive_int("samples_per_segment", samples_per_segment)
    rng = np.random.default_rng(seed)
    u = np.repeat(np.arange(params.n_segments, dtype=np.int64), samples_per_segment)
    noise = unit_noise(rng, params.distribution, (u.shape[0], params.n_sources), df=params.df)
    return params.means[u] + params.scales[u] * noise, u


def segment_sources(
    seed: SeedLike,
    n_segments: int,
    samples_per_segment: int,
    n_sources: int,
    *,
    distribution: Distribution = "laplace",
    scale_range: tuple[float, float] = (0.5, 3.0),
    mean_range: tuple[float, float] | None = None,
    df: float = 5.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Segment-wise nonstationary sources (TCL / iVAE benchmark).

    Segment ``k`` occupies rows ``k * samples_per_segment`` to ``(k + 1) * samples_per_segment``.
    Within it, component ``j`` is ``mean[k, j] + scale[k, j] * e`` with ``e`` zero-mean,
    unit-variance noise of the chosen family, independent across components and samples;
    ``scale[k, j] ~ U(scale_range)`` and ``mean[k, j] ~ U(mean_range)`` (zero if ``None``).
    This is :func:`draw_segment_params` then :func:`sample_segment_sources` on one stream; use
    those two to keep the parameters (as :func:`synthetic.generate_dataset` does).

    Args:
        seed: integer seed or numpy Generator.
        n_segments: number of segments ``K``.
        samples_per_segment: samples per segment ``n``.
        n_sources: number of components ``D``.
        distribution: base family, ``"gaussian"``, ``"laplace"`` or ``"student_t"``.
        scale_range: ``(low, high)`` of the per-segment standard deviations,
            ``0 <= low <= high``, ``0 < high`` (see :func:`draw_segment_params`).
        mean_range: ``(low, high)`` of the per-segment means, or ``None`` for zero means.
        df: Student-t degrees of freedom (ignored otherwise).

    Returns:
        ``(s, u)``: sources ``(N, D)`` float64 with ``N = K * n``, and labels ``(N,)`` int64 in
        ``[0, K)``.
    """
    _check_positive_int("samples_per_segment", samples_per_segment)
    rng = np.random.default_rng(seed)
    params = draw_segment_params(
        rng,
        n_segments,
        n_sources,
        distribution=distribution,
        scale_range=scale_range,
        mean_range=mean_range,
        df=df,
    )
    return sample_segment_sources(rng, params, samples_per_segment)


def ar1_sources(
    seed: SeedLike,
    n_segments: int,
    samples_per_segment: int,
    n_sources: int,
    *,
    ar_range: tuple[float, float] = (0.3, 0.8),
    distribution: Distribution = "laplace",
    scale_range: tuple[float, float] = (0.5, 3.0),
    df: float = 5.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Nonstationary AR(1) sources: ``s_t = rho_j s_{t-1} + sqrt(1 - rho_j^2) sigma_{k(t), j} e_t``.

    Each component has its own coefficient ``rho_j ~ U(ar_range)``; the innovations ``e_t`` are
    zero-mean, unit-variance noise and their scale ``sigma_{k, j} ~ U(scale_range)`` changes per
    segment, so within a (long enough) segment the stationary standard deviation of component
    ``j`` is ``sigma_{k, j}``. Components are independent; the process runs through segment
    boundaries (starting from ``s_0 = 0``).

    Args:
        seed: integer seed or numpy Generator.
        n_segments: number of segments ``K``.
        samples_per_segment: samples per segment ``n``.
        n_sources: number of components ``D``.
        ar_range: ``(low, high)`` range of the AR coefficients, inside ``(-1, 1)``.
        distribution: family of the innovations.
        scale_range: ``(low, high)`` of the per-segment standard deviations.
        df: Student-t degrees of freedom (ignored otherwise).

    Returns:
        ``(s, u)``: sources ``(N, D)`` float64 in time order, labels ``(N,)`` int64.
    """
    _check_positive_int("n_segments", n_segments)
    _check_positive_int("samples_per_segment", samples_per_segment)
    _check_positive_int("n_sources", n_sources)
    _check_range("scale_range", scale_range, positive=True)
    _check_range("ar_range", ar_range, positive=False)
    if not (-1.0 < ar_range[0] and ar_range[1] < 1.0):
        raise ValueError(f"ar_range must lie inside (-1, 1), got {tuple(ar_range)}")
    rng = np.random.default_rng(seed)
    rho = rng.uniform(ar_range[0], ar_range[1], n_sources)
    scales = rng.uniform(scale_range[0], scale_range[1], (n_segments, n_sources))
    u = np.repeat(np.arange(n_segments, dtype=np.int64), samples_per_segment)
    innovations = unit_noise(rng, distribution, (u.shape[0], n_sources), df=df)
    innovations *= scales[u] * np.sqrt(1.0 - rho**2)
    s = np.empty_like(innovations)
    for j in range(n_sources):
        s[:, j] = lfilter([1.0], [1.0, -rho[j]], innovations[:, j])
    return s, u
