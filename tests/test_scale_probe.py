"""experiments.scale_probe: the whitened variant's map and its scores in the units of x."""

import numpy as np
from scipy import stats

from experiments import scale_probe


class _StandardNormal:
    """A 'fit' whose density is the standard normal of its input."""

    def log_likelihood(self, z, u=None):
        return stats.norm.logpdf(z).sum(axis=1)

    def transform(self, z):
        return z


def test_whitened_map_has_identity_covariance_and_keeps_the_density_of_x():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 3)) @ np.array([[2.0, 0.5, 0.0], [0.0, 1.0, 0.3], [0.1, 0, 0.5]])
    x += np.array([1.0, -2.0, 0.5])
    whitened = scale_probe.Whitened(x)
    z = whitened(x)
    np.testing.assert_allclose(np.cov(z, rowvar=False), np.eye(3), atol=1e-10)
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-12)
    # The standard normal on z is the Gaussian of x's sample mean and covariance, on x.
    whitened.fitted = _StandardNormal()
    truth = stats.multivariate_normal(x.mean(axis=0), np.cov(x, rowvar=False)).logpdf(x[:50])
    np.testing.assert_allclose(whitened.log_likelihood(x[:50]), truth, rtol=1e-10)
