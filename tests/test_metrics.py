"""Tests for nica.core.metrics: MCC (numpy and JAX), weak MCC, Amari distance."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nica.core.metrics import (
    MCCResult,
    amari_distance,
    mcc_jax,
    mean_correlation_coefficient,
    weak_mean_correlation_coefficient,
)

METHODS = ["pearson", "spearman"]


def _laplace(seed, n=5000, d=5):
    return np.random.default_rng(seed).laplace(size=(n, d))


@pytest.mark.parametrize("method", METHODS)
def test_permuted_flipped_rescaled_shifted_copy_scores_one(method):
    s = _laplace(0)
    perm = np.array([3, 0, 4, 1, 2])
    scale = np.array([2.0, -0.5, 3.0, -1.0, 0.1])
    s_hat = s[:, perm] * scale + np.arange(5.0)
    result = mean_correlation_coefficient(s, s_hat, method=method)
    assert isinstance(result, MCCResult)
    assert result.mcc == pytest.approx(1.0, abs=1e-12)
    # matching[i] is the s_hat column holding true component i.
    np.testing.assert_array_equal(perm[result.matching], np.arange(5))
    np.testing.assert_allclose(result.correlations, np.sign(scale[result.matching]), atol=1e-12)


@pytest.mark.parametrize(
    "distortion",
    [lambda z: z**3, np.exp, lambda z: np.tanh(z) + 0.01 * z],
    ids=["cube", "exp", "tanh"],
)
def test_spearman_is_invariant_to_monotone_distortion(distortion):
    s = _laplace(1)
    s_hat = distortion(s[:, ::-1])
    assert mean_correlation_coefficient(s, s_hat, method="spearman").mcc == pytest.approx(1.0)
    # Pearson is not invariant to these distortions.
    assert mean_correlation_coefficient(s, s_hat, method="pearson").mcc < 0.999


@pytest.mark.parametrize("method", METHODS)
def test_independent_sources_score_low(method):
    s = _laplace(2, n=20_000)
    other = _laplace(3, n=20_000)
    assert mean_correlation_coefficient(s, other, method=method).mcc < 0.05


def test_partial_recovery_is_between():
    s = _laplace(4)
    s_hat = s.copy()
    s_hat[:, 0] = _laplace(5)[:, 0]
    mcc = mean_correlation_coefficient(s, s_hat).mcc
    assert 0.75 < mcc < 0.85  # four perfect components, one noise


def test_constant_column_gives_zero_correlation_not_nan():
    s = _laplace(6, d=3)
    s_hat = s.copy()
    s_hat[:, 1] = 7.0
    result = mean_correlation_coefficient(s, s_hat)
    assert np.all(np.isfinite(result.correlations))
    assert result.correlations[1] == 0.0
    assert result.mcc == pytest.approx(2.0 / 3.0)


def test_more_estimated_columns_than_true():
    s = _laplace(7, d=3)
    s_hat = np.concatenate([_laplace(8, d=2), s[:, [2, 0, 1]]], axis=1)
    result = mean_correlation_coefficient(s, s_hat)
    assert result.mcc == pytest.approx(1.0)
    np.testing.assert_array_equal(result.matching, [3, 4, 2])


@pytest.mark.parametrize(
    ("s_true", "s_hat", "match"),
    [
        (np.zeros(10), np.zeros((10, 1)), "s_true must be 2-D"),
        (np.ones((10, 2)), np.ones((11, 2)), "same number of samples"),
        (np.ones((10, 2)), np.full((10, 2), np.nan), "s_hat contains NaN"),
        (np.ones((10, 3)), np.ones((10, 2)), "at least as many columns"),
    ],
    ids=["not-2d", "different-n", "nan", "too-few-columns"],
)
def test_mcc_rejects_bad_input(s_true, s_hat, match):
    with pytest.raises(ValueError, match=match):
        mean_correlation_coefficient(s_true, s_hat)


def test_unknown_method_names_options():
    s = _laplace(9, n=10)
    with pytest.raises(ValueError, match="pearson.*spearman"):
        mean_correlation_coefficient(s, s, method="kendall")
    with pytest.raises(ValueError, match="pearson.*spearman"):
        mcc_jax(jnp.asarray(s), jnp.asarray(s), method="kendall")


def test_weak_mcc_of_linear_mix_is_one_and_strong_mcc_is_not():
    s = _laplace(10)
    mixed = s @ np.random.default_rng(11).normal(size=(5, 5)) + 3.0
    assert weak_mean_correlation_coefficient(s, mixed, seed=0).mcc == pytest.approx(1.0, abs=1e-9)
    assert mean_correlation_coefficient(s, mixed).mcc < 0.9


def test_weak_mcc_of_independent_noise_is_low():
    s = _laplace(12, n=20_000)
    assert weak_mean_correlation_coefficient(s, _laplace(13, n=20_000), seed=1).mcc < 0.1


def test_amari_distance_zero_for_scaled_permutation():
    rng = np.random.default_rng(14)
    A = rng.normal(size=(4, 4))
    perm = np.eye(4)[[2, 0, 3, 1]]
    W = perm @ np.diag([2.0, -1.0, 0.5, 3.0]) @ np.linalg.inv(A)
    assert amari_distance(W, A) == pytest.approx(0.0, abs=1e-12)


def test_amari_distance_positive_and_bounded_otherwise():
    rng = np.random.default_rng(15)
    for _ in range(5):
        W, A = rng.normal(size=(2, 4, 4))
        dist = amari_distance(W, A)
        assert 0.0 < dist <= 1.0
    # A matrix of all-equal magnitudes attains the maximum distance 1.
    assert amari_distance(np.ones((3, 3)), np.eye(3)) == pytest.approx(1.0)


def test_amari_distance_rejects_bad_shapes():
    with pytest.raises(ValueError, match="square"):
        amari_distance(np.ones((2, 3)), np.ones((3, 2)))
    with pytest.raises(ValueError, match="zero row"):
        amari_distance(np.zeros((2, 2)), np.eye(2))


def _noisy_estimates(seed, n=2000, d=4):
    rng = np.random.default_rng(seed)
    s = rng.laplace(size=(n, d))
    perm = rng.permutation(d)
    noise_levels = rng.uniform(0.1, 2.0, d)
    s_hat = s[:, perm] * rng.choice([-1.0, 1.0], d) + noise_levels * rng.normal(size=(n, d))
    return s, s_hat


@pytest.mark.parametrize("method", METHODS)
def test_mcc_jax_matches_scipy_under_vmap(method):
    pairs = [_noisy_estimates(seed) for seed in range(6)]
    s_true = jnp.asarray(np.stack([p[0] for p in pairs]), dtype=jnp.float32)
    s_hat = jnp.asarray(np.stack([p[1] for p in pairs]), dtype=jnp.float32)
    batched = jax.jit(jax.vmap(lambda a, b: mcc_jax(a, b, method=method)))(s_true, s_hat)
    assert batched.mcc.shape == (6,)
    assert batched.matching.shape == (6, 4)
    for k, (s, s_h) in enumerate(pairs):
        ref = mean_correlation_coefficient(s, s_h, method=method)
        assert float(batched.mcc[k]) == pytest.approx(ref.mcc, abs=1e-5)
        np.testing.assert_array_equal(np.asarray(batched.matching[k]), ref.matching)
        np.testing.assert_allclose(np.asarray(batched.correlations[k]), ref.correlations, atol=1e-5)


def test_mcc_jax_constant_column_is_finite():
    s = _laplace(16, n=500, d=3)
    s_hat = s.copy()
    s_hat[:, 0] = 1.0
    result = mcc_jax(jnp.asarray(s, jnp.float32), jnp.asarray(s_hat, jnp.float32))
    assert np.isfinite(float(result.mcc))
    assert float(result.mcc) == pytest.approx(2.0 / 3.0, abs=1e-5)
