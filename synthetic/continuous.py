"""Sources whose scales vary smoothly with a continuous auxiliary variable, with their density.

The auxiliary variable is ``u = t`` (``aux="time"``: ``N`` equally spaced points in ``[0, 1]``,
``d = 1``) or ``u ~ U(0, 1)^d`` (``aux="uniform"``). Given ``u``, component ``j`` is
``sigma_j(u) * e`` with ``e`` zero-mean, unit-variance noise (:func:`synthetic.sources.unit_noise`),
independent across components and samples, and

    ``sigma_j(u) = low + (high - low) * (1 + tanh(g_j(u))) / 2``,
    ``g_j(u) = sqrt(2 / M) * sum_m c[j, m] * cos(u . w[j, m] + b[j, m])``,

a sum of ``M`` random Fourier features (``w ~ N(0, 1 / bandwidth^2)``, ``b ~ U(0, 2 pi)``,
``c ~ N(0, 1)``), so ``sigma_j`` is smooth with length scale ``bandwidth`` and stays in
``scale_range``. :class:`ContinuousSourceParams` holds ``w, b, c`` and gives ``sigma(u)`` and the
exact ``log p(s | u)``; :func:`draw_continuous_params` and :func:`sample_continuous_sources` are
the two halves of the generator; :func:`continuous_aux_sources` is the one-call version.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from synthetic.sources import (
    DISTRIBUTIONS,
    Distribution,
    SeedLike,
    _check_positive_int,
    _check_range,
    unit_log_density,
    unit_noise,
)

__all__ = [
    "AUX_KINDS",
    "ContinuousSourceParams",
    "continuous_aux_sources",
    "draw_continuous_params",
    "sample_continuous_sources",
]

#: How ``u`` is laid out: ``"time"`` (an ordered grid on ``[0, 1]``, ``d = 1``) or ``"uniform"``.
AUX_KINDS: tuple[str, ...] = ("time", "uniform")


def _aux_values(rng: np.random.Generator, aux: str, n_samples: int, aux_dim: int) -> np.ndarray:
    """``u (n_samples, aux_dim)``: the time grid (``aux="time"``, ``aux_dim`` 1), or
    ``U(0, 1)^d`` draws from ``rng`` (``aux="uniform"``); arguments checked by the caller."""
    if aux == "time":
        return np.linspace(0.0, 1.0, n_samples)[:, None]
    return rng.uniform(0.0, 1.0, (n_samples, aux_dim))


@dataclass(frozen=True, eq=False)
class ContinuousSourceParams:
    """The source distribution of :func:`continuous_aux_sources`: ``s_j | u ~ sigma_j(u) * e``.

    Attributes:
        distribution: ``"gaussian"``, ``"laplace"`` or ``"student_t"``.
        scale_range: ``(low, high)``, ``0 < low <= high``: the range of ``sigma_j``.
        frequencies: ``w``, ``(D, M, d)`` float64.
        phases: ``b``, ``(D, M)`` float64.
        weights: ``c``, ``(D, M)`` float64.
        aux: ``"time"`` or ``"uniform"``: how fresh samples lay out ``u``.
        df: Student-t degrees of freedom (unused by the other families).
    """

    kind: ClassVar[str] = "continuous"  # the "kind" key of :meth:`to_dict`

    distribution: str
    scale_range: tuple[float, float]
    frequencies: np.ndarray
    phases: np.ndarray
    weights: np.ndarray
    aux: str = "time"
    df: float = 5.0

    def __post_init__(self) -> None:
        w = np.asarray(self.frequencies, dtype=np.float64)
        b = np.asarray(self.phases, dtype=np.float64)
        c = np.asarray(self.weights, dtype=np.float64)
        if w.ndim != 3 or b.shape != w.shape[:2] or c.shape != w.shape[:2]:
            raise ValueError(
                f"frequencies must be (D, M, d) and phases, weights (D, M), got {w.shape},"
                f" {b.shape}, {c.shape}"
            )
        if self.distribution not in DISTRIBUTIONS:
            raise ValueError(
                f"unknown distribution {self.distribution!r}; expected one of {DISTRIBUTIONS}"
            )
        if self.aux not in AUX_KINDS:
            raise ValueError(f"unknown aux {self.aux!r}; expected one of {AUX_KINDS}")
        if self.aux == "time" and w.shape[2] != 1:
            raise ValueError(f"aux='time' needs a 1-D u, got frequencies {w.shape}")
        bounds = (float(self.scale_range[0]), float(self.scale_range[1]))
        _check_range("scale_range", bounds, positive=True)
        object.__setattr__(self, "scale_range", bounds)
        object.__setattr__(self, "frequencies", w)
        object.__setattr__(self, "phases", b)
        object.__setattr__(self, "weights", c)

    @property
    def n_sources(self) -> int:
        """Number of components ``D``."""
        return int(self.frequencies.shape[0])

    @property
    def aux_dim(self) -> int:
        """Dimension ``d`` of ``u``."""
        return int(self.frequencies.shape[2])

    def _check_u(self, u: np.ndarray) -> np.ndarray:
        u = np.asarray(u, dtype=np.float64)
        if u.ndim != 2 or u.shape[1] != self.aux_dim:
            raise ValueError(f"u must have shape (N, {self.aux_dim}), got {u.shape}")
        return u

    def scales(self, u: np.ndarray) -> np.ndarray:
        """``sigma(u)``: the standard deviations of the components at ``u (N, d)``, ``(N, D)``."""
        u = self._check_u(u)
        n_features = self.frequencies.shape[1]
        phase = np.einsum("nd,jmd->njm", u, self.frequencies) + self.phases
        g = np.sqrt(2.0 / n_features) * np.einsum("njm,jm->nj", np.cos(phase), self.weights)
        lo, hi = self.scale_range
        return lo + (hi - lo) * 0.5 * (1.0 + np.tanh(g))

    def log_density(self, s: np.ndarray, u: np.ndarray) -> np.ndarray:
        """``log p(s | u) = sum_j [log p_e(s_j / sigma_j(u)) - log sigma_j(u)]``, shape ``(N,)``.

        Args:
            s: sources ``(N, D)``.
            u: auxiliary variable ``(N, d)``.
        """
        s = np.asarray(s, dtype=np.float64)
        u = self._check_u(u)
        if s.ndim != 2 or s.shape[1] != self.n_sources or u.shape[0] != s.shape[0]:
            raise ValueError(
                f"expected s (N, {self.n_sources}) and u (N, {self.aux_dim}), got {s.shape},"
                f" {u.shape}"
            )
        scales = self.scales(u)
        log_p = unit_log_density(self.distribution, s / scales, df=self.df) - np.log(scales)
        return log_p.sum(axis=1)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable description (floats round-trip exactly), with ``"kind"``."""
        return {
            "kind": self.kind,
            "distribution": self.distribution,
            "df": float(self.df),
            "aux": self.aux,
            "scale_range": list(self.scale_range),
            "frequencies": self.frequencies.tolist(),
            "phases": self.phases.tolist(),
            "weights": self.weights.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ContinuousSourceParams:
        """Rebuilds parameters written by :meth:`to_dict`."""
        try:
            return cls(
                d["distribution"],
                tuple(d["scale_range"]),
                np.asarray(d["frequencies"]),
                np.asarray(d["phases"]),
                np.asarray(d["weights"]),
                d["aux"],
                float(d["df"]),
            )
        except (KeyError, TypeError) as err:
            raise ValueError(f"malformed continuous source parameters: {err!r}") from err


def _check_feature_args(
    n_sources: int,
    aux_dim: int,
    aux: str,
    scale_range: tuple[float, float],
    n_features: int,
    bandwidth: float,
) -> None:
    _check_positive_int("n_sources", n_sources)
    _check_positive_int("aux_dim", aux_dim)
    _check_positive_int("n_features", n_features)
    _check_range("scale_range", scale_range, positive=True)
    if not bandwidth > 0:
        raise ValueError(f"bandwidth must be positive, got {bandwidth}")
    if aux not in AUX_KINDS:
        raise ValueError(f"unknown aux {aux!r}; expected one of {AUX_KINDS}")
    if aux == "time" and aux_dim != 1:
        raise ValueError(f"aux='time' needs aux_dim == 1, got {aux_dim}; use aux='uniform'")


def draw_continuous_params(
    seed: SeedLike,
    n_sources: int,
    *,
    aux_dim: int = 1,
    aux: Literal["time", "uniform"] = "time",
    distribution: Distribution = "laplace",
    scale_range: tuple[float, float] = (0.5, 3.0),
    n_features: int = 8,
    bandwidth: float = 0.25,
    df: float = 5.0,
) -> ContinuousSourceParams:
    """Draws the random Fourier features ``w (D, M, d)``, ``b (D, M)``, ``c (D, M)``, in that
    order (see the module docstring). Args: as :func:`continuous_aux_sources`."""
    _check_feature_args(n_sources, aux_dim, aux, scale_range, n_features, bandwidth)
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((n_sources, n_features, aux_dim)) / bandwidth
    b = rng.uniform(0.0, 2.0 * np.pi, (n_sources, n_features))
    c = rng.standard_normal((n_sources, n_features))
    return ContinuousSourceParams(distribution, tuple(scale_range), w, b, c, aux, float(df))


def sample_continuous_sources(
    seed: SeedLike, params: ContinuousSourceParams, n_samples: int
) -> tuple[np.ndarray, np.ndarray]:
    """Draws ``u`` (laid out as ``params.aux`` says), then ``s = sigma(u) * e``.

    Returns:
        ``(s, u)``: sources ``(N, D)`` float64 and auxiliary variable ``(N, d)`` float64.
    """
    _check_positive_int("n_samples", n_samples)
    rng = np.random.default_rng(seed)
    u = _aux_values(rng, params.aux, n_samples, params.aux_dim)
    noise = unit_noise(rng, params.distribution, (n_samples, params.n_sources), df=params.df)
    return params.scales(u) * noise, u


def continuous_aux_sources(
    seed: SeedLike,
    n_samples: int,
    n_sources: int,
    *,
    aux_dim: int = 1,
    aux: Literal["time", "uniform"] = "time",
    distribution: Distribution = "laplace",
    scale_range: tuple[float, float] = (0.5, 3.0),
    n_features: int = 8,
    bandwidth: float = 0.25,
    df: float = 5.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Sources whose scales vary smoothly with a continuous auxiliary variable.

    ``u = t`` (``aux="time"``, only for ``aux_dim == 1``) or ``u ~ U(0, 1)^d``
    (``aux="uniform"``); each component's standard deviation ``sigma_j(u)`` is the smooth
    function of the module docstring, in ``scale_range``. One stream: ``u`` (if drawn), then
    :func:`draw_continuous_params`, then the noise.

    Args:
        seed: integer seed or numpy Generator.
        n_samples: number of samples ``N``.
        n_sources: number of components ``D``.
        aux_dim: dimension ``d`` of the auxiliary variable.
        aux: ``"time"`` or ``"uniform"``.
        distribution: base family of the sources.
        scale_range: ``(low, high)`` range of the standard deviations, ``0 < low <= high``.
        n_features: random Fourier features per component ``M``.
        bandwidth: length scale of the variation in ``u`` (smaller = wigglier).
        df: Student-t degrees of freedom (ignored otherwise).

    Returns:
        ``(s, u)``: sources ``(N, D)`` float64 and auxiliary variable ``(N, d)`` float64.
    """
    _check_positive_int("n_samples", n_samples)
    _check_feature_args(n_sources, aux_dim, aux, scale_range, n_features, bandwidth)
    rng = np.random.default_rng(seed)
    u = _aux_values(rng, aux, n_samples, aux_dim)
    params = draw_continuous_params(
        rng,
        n_sources,
        aux_dim=aux_dim,
        aux=aux,
        distribution=distribution,
        scale_range=scale_range,
        n_features=n_features,
        bandwidth=bandwidth,
        df=df,
    )
    s = params.scales(u) * unit_noise(rng, distribution, (n_samples, n_sources), df=df)
    return s, u
