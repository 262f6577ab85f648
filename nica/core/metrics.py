"""Source-recovery metrics: MCC (Pearson / Spearman), weak (CCA-aligned) MCC, Amari distance.

The mean correlation coefficient matches each true component to one estimated component so
that the sum of absolute correlations is maximal (Hungarian algorithm) and averages the matched
absolute correlations. Spearman MCC correlates ranks, so it is invariant to any elementwise
strictly monotone distortion, the indeterminacy left by identifiable nonlinear ICA.

:func:`mean_correlation_coefficient` runs on the host with numpy/scipy; :func:`mcc_jax` is the
same computation in JAX (jit- and vmap-able, e.g. over a seed axis).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from scipy.optimize import linear_sum_assignment
from scipy.stats import rankdata

METHODS: tuple[str, ...] = ("pearson", "spearman")


class MCCResult(NamedTuple):
    """Result of a mean-correlation-coefficient computation.

    Attributes:
        mcc: mean of the matched absolute correlations, in ``[0, 1]``.
        matching: ``(D,)`` int; ``matching[i]`` is the column of ``s_hat`` matched to true
            component ``i``.
        correlations: ``(D,)`` signed correlation of each true component with its match.
    """

    mcc: Any
    matching: Any
    correlations: Any


def _check_pair(s_true: Any, s_hat: Any) -> tuple[np.ndarray, np.ndarray]:
    s_true = np.asarray(s_true, dtype=np.float64)
    s_hat = np.asarray(s_hat, dtype=np.float64)
    for name, a in (("s_true", s_true), ("s_hat", s_hat)):
        if a.ndim != 2:
            raise ValueError(f"{name} must be 2-D (N, D), got shape {a.shape}")
        if a.shape[0] < 2 or a.shape[1] < 1:
            raise ValueError(f"{name} needs at least 2 rows and 1 column, got shape {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} contains NaN or inf values")
    if s_true.shape[0] != s_hat.shape[0]:
        raise ValueError(
            f"s_true and s_hat must have the same number of samples, got "
            f"{s_true.shape[0]} and {s_hat.shape[0]}"
        )
    if s_hat.shape[1] < s_true.shape[1]:
        raise ValueError(
            f"s_hat needs at least as many columns as s_true, got {s_hat.shape[1]} < "
            f"{s_true.shape[1]}"
        )
    return s_true, s_hat


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")


def _standardise(a: np.ndarray) -> np.ndarray:
    """Zero-mean, unit-variance columns; constant columns become all zeros."""
    centred = a - a.mean(axis=0)
    std = centred.std(axis=0)
    safe = np.where(std > 0, std, 1.0)
    return np.where(std > 0, centred / safe, 0.0)


def correlation_matrix(s_true: Any, s_hat: Any, method: str = "pearson") -> np.ndarray:
    """Cross-correlations ``C[i, j] = corr(s_true[:, i], s_hat[:, j])``.

    Args:
        s_true: ``(N, D)`` true sources.
        s_hat: ``(N, D')`` estimates, ``D' >= D``.
        method: ``"pearson"`` or ``"spearman"`` (Pearson on average ranks).

    Returns:
        ``(D, D')`` float64; entries involving a constant column are 0.
    """
    _check_method(method)
    s_true, s_hat = _check_pair(s_true, s_hat)
    if method == "spearman":
        s_true = rankdata(s_true, axis=0)
        s_hat = rankdata(s_hat, axis=0)
    corr = _standardise(s_true).T @ _standardise(s_hat) / s_true.shape[0]
    return np.clip(corr, -1.0, 1.0)


def _match(corr: np.ndarray) -> MCCResult:
    rows, cols = linear_sum_assignment(-np.abs(corr))
    matching = np.empty(corr.shape[0], dtype=np.int64)
    matching[rows] = cols
    matched = corr[np.arange(corr.shape[0]), matching]
    return MCCResult(mcc=float(np.mean(np.abs(matched))), matching=matching, correlations=matched)


def mean_correlation_coefficient(s_true: Any, s_hat: Any, method: str = "pearson") -> MCCResult:
    """Mean correlation coefficient with Hungarian matching on ``|corr|``.

    Args:
        s_true: ``(N, D)`` true sources.
        s_hat: ``(N, D')`` estimated sources, ``D' >= D``.
        method: ``"pearson"`` or ``"spearman"``.

    Returns:
        :class:`MCCResult` with a Python float ``mcc`` and numpy ``matching`` / ``correlations``
        of shape ``(D,)``.

    Raises:
        ValueError: non-2-D inputs, different ``N``, too few columns, NaN/inf, unknown method.
    """
    return _match(correlation_matrix(s_true, s_hat, method))


def _inverse_sqrt_psd(cov: np.ndarray, rel_eps: float = 1e-10) -> np.ndarray:
    """Symmetric pseudo-inverse square root of a PSD matrix (null directions map to 0)."""
    evals, evecs = np.linalg.eigh(cov)
    keep = evals > rel_eps * max(float(evals.max()), np.finfo(np.float64).tiny)
    inv_sqrt = np.where(keep, 1.0 / np.sqrt(np.where(keep, evals, 1.0)), 0.0)
    return (evecs * inv_sqrt) @ evecs.T


def _cca_fit(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """CCA by whitening and SVD of the cross-covariance.

    Returns:
        ``(mean_a, proj_a, mean_b, proj_b)`` with ``(a - mean_a) @ proj_a`` the canonical
        variates of ``a`` (``(D_a, k)``, ``k = min(D_a, D_b)``), likewise for ``b``.
    """
    mean_a, mean_b = a.mean(axis=0), b.mean(axis=0)
    ac, bc = a - mean_a, b - mean_b
    n = a.shape[0]
    wa = _inverse_sqrt_psd(ac.T @ ac / n)
    wb = _inverse_sqrt_psd(bc.T @ bc / n)
    cross = wa @ (ac.T @ bc / n) @ wb
    u, _, vt = np.linalg.svd(cross, full_matrices=False)
    return mean_a, wa @ u, mean_b, wb @ vt.T


def weak_mean_correlation_coefficient(
    s_true: Any, s_hat: Any, seed: int | np.random.Generator = 0, method: str = "pearson"
) -> MCCResult:
    """MCC after an affine alignment learned by CCA on held-out data.

    The samples are split at random into two halves; CCA between ``s_true`` and ``s_hat`` is fit
    on the first half (whiten both, SVD of the whitened cross-covariance) and both are mapped to
    canonical variates on the second half, where the MCC is computed. A perfect score means
    ``s_hat`` is an invertible affine map of ``s_true``.

    Args:
        s_true: ``(N, D)`` true sources, ``N >= 4``.
        s_hat: ``(N, D')`` estimates, ``D' >= D``.
        seed: integer seed or numpy Generator for the split.
        method: correlation used on the held-out canonical variates.

    Returns:
        :class:`MCCResult` over the ``D`` canonical-variate pairs (``matching`` indexes canonical
        variates of ``s_hat``, not its columns).
    """
    _check_method(method)
    s_true, s_hat = _check_pair(s_true, s_hat)
    n = s_true.shape[0]
    if n < 4:
        raise ValueError(f"weak MCC needs at least 4 samples to split in halves, got {n}")
    perm = np.random.default_rng(seed).permutation(n)
    fit, test = perm[: n // 2], perm[n // 2 :]
    mean_t, proj_t, mean_h, proj_h = _cca_fit(s_true[fit], s_hat[fit])
    z_true = (s_true[test] - mean_t) @ proj_t
    z_hat = (s_hat[test] - mean_h) @ proj_h
    return mean_correlation_coefficient(z_true, z_hat, method)


def amari_distance(W: Any, A: Any) -> float:
    """Normalised Amari index of ``P = W @ A`` (row-vector or column-vector alike).

    ``d(P) = [sum_i (sum_j |p_ij| / max_j |p_ij| - 1) + sum_j (sum_i |p_ij| / max_i |p_ij| - 1)]
    / (2 D (D - 1))``, which lies in ``[0, 1]`` and is 0 exactly when ``P`` is a scaled
    permutation matrix.

    Args:
        W: ``(D, D)`` estimated unmixing matrix.
        A: ``(D, D)`` true mixing matrix.

    Returns:
        The distance, a float in ``[0, 1]`` (0 for ``D = 1``).

    Raises:
        ValueError: non-square or mismatched shapes, non-finite entries, or a zero row/column
            in ``P``.
    """
    W = np.asarray(W, dtype=np.float64)
    A = np.asarray(A, dtype=np.float64)
    if W.ndim != 2 or W.shape[0] != W.shape[1] or W.shape != A.shape:
        raise ValueError(f"W and A must be square and of equal shape, got {W.shape} and {A.shape}")
    if not (np.all(np.isfinite(W)) and np.all(np.isfinite(A))):
        raise ValueError("W and A must be finite")
    p = np.abs(W @ A)
    d = p.shape[0]
    if d == 1:
        return 0.0
    row_max, col_max = p.max(axis=1), p.max(axis=0)
    if np.any(row_max == 0) or np.any(col_max == 0):
        raise ValueError("W @ A has a zero row or column; it is not invertible")
    rows = np.sum(p.sum(axis=1) / row_max - 1.0)
    cols = np.sum(p.sum(axis=0) / col_max - 1.0)
    return float((rows + cols) / (2.0 * d * (d - 1)))


def _standardise_jax(a: jax.Array) -> jax.Array:
    centred = a - a.mean(axis=0)
    std = centred.std(axis=0)
    return jnp.where(std > 0, centred / jnp.where(std > 0, std, 1.0), 0.0)


def mcc_jax(s_true: jax.Array, s_hat: jax.Array, method: str = "pearson") -> MCCResult:
    """MCC in JAX: jit- and vmap-able (``method`` must be static).

    Uses ``optax.assignment.hungarian_algorithm`` (which minimises cost) on ``-|C|``. Spearman
    ranks come from a double ``argsort``, so ties are broken by position instead of averaged;
    for continuous data this agrees with :func:`mean_correlation_coefficient`.

    Args:
        s_true: ``(N, D)`` true sources.
        s_hat: ``(N, D')`` estimates, ``D' >= D``.
        method: ``"pearson"`` or ``"spearman"``.

    Returns:
        :class:`MCCResult` of JAX arrays: ``mcc`` scalar, ``matching`` ``(D,)`` int32,
        ``correlations`` ``(D,)``. Under ``vmap`` each field gains the batch axis.
    """
    _check_method(method)
    s_true = jnp.asarray(s_true)
    s_hat = jnp.asarray(s_hat)
    if s_true.ndim != 2 or s_hat.ndim != 2 or s_true.shape[0] != s_hat.shape[0]:
        raise ValueError(
            f"s_true and s_hat must be (N, D) with equal N, got {s_true.shape} and {s_hat.shape}"
        )
    if s_hat.shape[1] < s_true.shape[1]:
        raise ValueError(f"s_hat needs at least {s_true.shape[1]} columns, got {s_hat.shape[1]}")
    dtype = jnp.result_type(s_true, s_hat, jnp.float32)
    s_true = s_true.astype(dtype)
    s_hat = s_hat.astype(dtype)
    if method == "spearman":
        s_true = jnp.argsort(jnp.argsort(s_true, axis=0), axis=0).astype(dtype)
        s_hat = jnp.argsort(jnp.argsort(s_hat, axis=0), axis=0).astype(dtype)
    corr = _standardise_jax(s_true).T @ _standardise_jax(s_hat) / s_true.shape[0]
    corr = jnp.clip(corr, -1.0, 1.0)
    rows, cols = optax.assignment.hungarian_algorithm(-jnp.abs(corr))
    matching = jnp.zeros(corr.shape[0], dtype=cols.dtype).at[rows].set(cols)
    matched = corr[jnp.arange(corr.shape[0]), matching]
    return MCCResult(mcc=jnp.mean(jnp.abs(matched)), matching=matching, correlations=matched)
