"""Random well-conditioned square matrices: the linear parts of a mixing.

Matrix families (:data:`FAMILIES`): ``"uniform"`` draws entries from U(-1, 1), normalises each
column to unit L2 norm and redraws until the condition number is at most a threshold (by
default the 25th percentile of the condition numbers of 10^4 such draws, computed once per
dimension with a fixed internal seed and cached: :func:`condition_threshold`);
``"orthogonal"`` draws Haar-distributed orthogonal matrices.
"""

from __future__ import annotations

import functools
from typing import Literal

import numpy as np

__all__ = ["FAMILIES", "condition_threshold", "random_matrix"]

FAMILIES: tuple[str, ...] = ("uniform", "orthogonal")

_THRESHOLD_SEED = 20_240_601
_THRESHOLD_CHUNK = 2_000


def _uniform_normalised(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """U(-1, 1) matrices of shape ``(..., D, D)`` with unit-L2-norm columns."""
    a = rng.uniform(-1.0, 1.0, shape)
    return a / np.linalg.norm(a, axis=-2, keepdims=True)


@functools.lru_cache(maxsize=64)
def condition_threshold(dim: int, n_draws: int = 10_000, percentile: float = 25.0) -> float:
    """The ``percentile``-th percentile of the condition number of uniform column-normalised
    matrices of size ``dim``, estimated from ``n_draws`` draws with a fixed internal seed.

    Cached per ``(dim, n_draws, percentile)``, so it is computed once per dimension.

    Args:
        dim: matrix size ``D``.
        n_draws: number of random matrices (10^4 in iVAE's and TCL's code).
        percentile: percentile in ``[0, 100]``.

    Returns:
        The threshold, a float ``>= 1``.
    """
    if dim < 1 or n_draws < 1:
        raise ValueError(f"dim and n_draws must be positive, got {dim} and {n_draws}")
    rng = np.random.default_rng([_THRESHOLD_SEED, dim])
    conds = []
    for start in range(0, n_draws, _THRESHOLD_CHUNK):
        count = min(_THRESHOLD_CHUNK, n_draws - start)
        conds.append(np.linalg.cond(_uniform_normalised(rng, (count, dim, dim))))
    return float(np.percentile(np.concatenate(conds), percentile))


def random_matrix(
    seed: int | np.random.Generator,
    dim: int,
    *,
    family: Literal["uniform", "orthogonal"] = "uniform",
    cond_threshold: float | None = None,
    n_threshold_draws: int = 10_000,
    max_tries: int = 100_000,
) -> np.ndarray:
    """Draws one well-conditioned square matrix.

    Args:
        seed: integer seed or numpy Generator.
        dim: size ``D``.
        family: ``"uniform"`` (U(-1, 1), unit-norm columns, redrawn until
            ``cond <= cond_threshold``) or ``"orthogonal"`` (Haar, via QR with sign fix).
        cond_threshold: condition-number bound for the uniform family; ``None`` uses
            :func:`condition_threshold` ``(dim, n_threshold_draws)``.
        n_threshold_draws: draws used to estimate the default threshold.
        max_tries: cap on redraws.

    Returns:
        A ``(D, D)`` float64 matrix.
    """
    rng = np.random.default_rng(seed)
    if family == "orthogonal":
        z = rng.standard_normal((dim, dim))
        q, r = np.linalg.qr(z)
        return q * np.where(np.diag(r) < 0, -1.0, 1.0)
    if family != "uniform":
        raise ValueError(f"unknown matrix family {family!r}; expected one of {FAMILIES}")
    if cond_threshold is None:
        cond_threshold = condition_threshold(dim, n_threshold_draws)
    for _ in range(max_tries):
        a = _uniform_normalised(rng, (dim, dim))
        if np.linalg.cond(a) <= cond_threshold:
            return a
    raise RuntimeError(
        f"no {dim}x{dim} matrix with condition number <= {cond_threshold} in {max_tries} draws"
    )
