"""The Gaussian baselines of a density fit, in float64 NumPy: the full-covariance Gaussian and,
for a conditional model, the Gaussian with class means and a pooled covariance."""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "CLASS_GAUSSIAN",
    "GAUSSIAN",
    "class_gaussian_log_likelihood",
    "gaussian_log_likelihood",
]

#: The baseline every density fit is compared with (same split, preprocessing and Jacobian).
GAUSSIAN = "full-covariance Gaussian"

#: The baseline of a conditional model's ``log p(x | u)``.
CLASS_GAUSSIAN = "Gaussian with class means and a pooled full covariance"


def gaussian_log_likelihood(z_train: np.ndarray, z_test: np.ndarray) -> np.ndarray:
    """Log-density ``(M,)`` of ``z_test (M, D)`` under the maximum-likelihood full-covariance
    Gaussian of ``z_train (N, D)``."""
    mean = z_train.mean(axis=0)
    return _gaussian_log_density(z_test - mean, np.cov(z_train, rowvar=False, bias=True))


def class_gaussian_log_likelihood(
    z_train: np.ndarray, u_train: np.ndarray, z_test: np.ndarray, u_test: np.ndarray
) -> np.ndarray:
    """``log p(z | u)``, shape ``(M,)``, under the maximum-likelihood Gaussian with one mean per
    class and a pooled full covariance (linear discriminant analysis's density), fitted to
    ``z_train (N, D)`` with label codes ``u_train (N,)`` (``0..M-1``, see
    :func:`nica.fitting.auxiliary.encode_aux`); a class without training rows gets the overall mean.
    The baseline of a conditional model's ``log p(x | u)``."""
    n_classes = int(max(u_train.max(), u_test.max())) + 1
    means = np.repeat(z_train.mean(axis=0, keepdims=True), n_classes, axis=0)
    for c in np.unique(u_train):
        means[c] = z_train[u_train == c].mean(axis=0)
    residual = z_train - means[u_train]
    cov = residual.T @ residual / z_train.shape[0]
    return _gaussian_log_density(z_test - means[u_test], cov)


def _gaussian_log_density(centred: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """``log N(centred; 0, cov)`` per row, ``(M, D) -> (M,)``."""
    dim = centred.shape[1]
    chol = np.linalg.cholesky(np.reshape(cov, (dim, dim)))
    white = np.linalg.solve(chol, centred.T)
    log_det = 2.0 * np.log(np.diag(chol)).sum()
    return -0.5 * (white**2).sum(axis=0) - 0.5 * log_det - 0.5 * dim * math.log(2.0 * math.pi)
