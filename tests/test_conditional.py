"""Conditional priors (Eq. 4): normalised densities, finite-difference gradients, registry."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from scipy import integrate, stats

from nica.apps.density import sample_prior
from nica.core.conditional import CONDITIONAL_FAMILIES, ContinuousPrior, SegmentPrior, gennorm_shape


def _segment_prior(family):
    prior = SegmentPrior(3, 2, family=family, param_dtype=jnp.float64)
    rng = np.random.default_rng(0)
    prior.loc[...] = jnp.asarray(rng.normal(size=(3, 2)))
    prior.log_scale[...] = jnp.asarray(rng.normal(size=(3, 2)) * 0.5)
    return prior, lambda n: jnp.asarray(np.arange(n) % 3)


def _continuous_prior(family):
    prior = ContinuousPrior(2, 2, family=family, rngs=nnx.Rngs(0), param_dtype=jnp.float64)
    prior.head.kernel[...] = jnp.asarray(np.random.default_rng(1).normal(size=(32, 4)) * 0.3)
    return prior, lambda n: jnp.asarray(np.random.default_rng(2).normal(size=(n, 2)))


PRIOR_MAKERS = {"segment": _segment_prior, "continuous": _continuous_prior}
CASES = [(kind, family) for kind in PRIOR_MAKERS for family in CONDITIONAL_FAMILIES]


@pytest.mark.parametrize("kind,family", CASES, ids=[f"{k}-{f}" for k, f in CASES])
def test_density_integrates_to_one_in_each_condition(kind, family, x64):
    prior, make_u = PRIOR_MAKERS[kind](family)
    u = make_u(3)

    # One compiled program per component for every point quad asks for (op by op, each point
    # costs about a millisecond).
    @functools.partial(jax.jit, static_argnums=2)
    def density_at(value, u_row, component):
        s = jnp.zeros((1, 2), jnp.float64).at[0, component].set(value)
        return jnp.exp(prior.log_prob(s, u_row)[0, component])

    for row in range(3):
        for component in range(2):

            def density(value, row=row, component=component):
                return float(density_at(value, u[row : row + 1], component))

            total, _ = integrate.quad(density, -60, 60, limit=400, points=[-5, 0, 5])
            assert total == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("kind,family", CASES, ids=[f"{k}-{f}" for k, f in CASES])
def test_parameter_gradients_match_finite_differences(kind, family, x64):
    eps = 1e-6
    prior, make_u = PRIOR_MAKERS[kind](family)
    u = make_u(6)
    s = jnp.asarray(np.random.default_rng(3).normal(size=(6, 2)) + 0.3)  # away from Laplace kinks
    graphdef, params = nnx.split(prior, nnx.Param)

    def objective(p):
        return nnx.merge(graphdef, p).log_prob(s, u).sum()

    grads = jax.grad(objective)(params)
    leaves, treedef = jax.tree.flatten(params)
    grad_leaves = jax.tree.leaves(grads)
    rng = np.random.default_rng(4)
    for index, (leaf, grad) in enumerate(zip(leaves, grad_leaves, strict=True)):
        direction = jnp.asarray(rng.normal(size=leaf.shape))

        def shifted(sign, index=index, leaf=leaf, direction=direction):
            moved = list(leaves)
            moved[index] = leaf + sign * eps * direction
            return float(objective(jax.tree.unflatten(treedef, moved)))

        numeric = (shifted(1) - shifted(-1)) / (2 * eps)
        assert float(jnp.vdot(grad, direction)) == pytest.approx(numeric, rel=1e-6, abs=1e-7)


def test_segment_prior_prefers_the_right_scale():
    prior = SegmentPrior(2, 1)
    prior.log_scale[...] = jnp.log(jnp.array([[0.5], [3.0]]))
    small = jnp.full((1, 1), 0.2)
    assert prior.log_prob(small, jnp.array([0])) > prior.log_prob(small, jnp.array([1]))


def test_unknown_family_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown conditional prior family 'cauchy'"):
        SegmentPrior(2, 2, family="cauchy")


@pytest.mark.parametrize("raw", [-30.0, -1.5, 0.0, 0.7, 30.0])
def test_gennorm_matches_scipy_and_stays_between_laplace_and_gaussian(raw, x64):
    z = jnp.linspace(-6.0, 6.0, 61)[:, None]
    raw_shape = jnp.full((1,), raw)
    beta = float(gennorm_shape(raw_shape)[0])
    assert 1.0 <= beta <= 2.0
    ours = CONDITIONAL_FAMILIES["gennorm"].log_density(z, raw_shape)
    np.testing.assert_allclose(ours, stats.gennorm.logpdf(np.asarray(z), beta), rtol=1e-10)


def test_gennorm_shape_gradient_is_finite_at_zero(x64):
    def total(raw):
        return CONDITIONAL_FAMILIES["gennorm"].log_density(jnp.zeros((2, 1)), raw).sum()

    grad = jax.grad(total)(jnp.full((1,), 0.3))
    assert np.isfinite(np.asarray(grad)).all()


@pytest.mark.parametrize("sampler,lies", [("normal", "above"), ("laplace", "below")])
def test_gennorm_prior_learns_the_source_shape(sampler, lies):
    """Maximum likelihood on the prior alone moves beta from 1.5 to the sampling family."""
    n_segments, dim = 2, 3
    rng = np.random.default_rng(0)
    scales = np.array([[0.5], [2.0]])
    u = np.arange(4000) % n_segments
    s = jnp.asarray(getattr(rng, sampler)(size=(4000, dim)) * scales[u])
    prior = SegmentPrior(n_segments, dim, family="gennorm", shape_init=1.5)
    graphdef, params = nnx.split(prior, nnx.Param)
    tx = optax.adam(0.05)

    @jax.jit
    def step(params, state):
        grads = jax.grad(lambda p: -nnx.merge(graphdef, p).log_prob(s, u).mean())(params)
        updates, state = tx.update(grads, state)
        return optax.apply_updates(params, updates), state

    state = tx.init(params)
    for _ in range(1000):
        params, state = step(params, state)
    beta = np.asarray(gennorm_shape(params["raw_shape"][...]))
    # Gaussian sources are gennorm with beta = 2, Laplace ones with beta = 1.
    assert (beta > 1.9).all() if lies == "above" else (beta < 1.1).all(), beta


SCIPY_FAMILIES = {
    "gaussian": lambda beta: stats.norm,
    "laplace": lambda beta: stats.laplace,
    "gennorm": lambda beta: stats.gennorm(beta),
}


@pytest.mark.parametrize("family", sorted(CONDITIONAL_FAMILIES))
def test_segment_prior_samples_follow_its_density(family):
    """``nica.apps.density.sample_prior`` draws each component from its own family, location and
    scale (Kolmogorov-Smirnov against scipy; for gennorm, exponents 1.19, 1.5 and 1.81)."""
    assert set(SCIPY_FAMILIES) == set(CONDITIONAL_FAMILIES)
    prior = SegmentPrior(2, 3, family=family)
    prior.loc[...] = jnp.asarray([[0.0, 1.0, -2.0], [3.0, 0.5, 0.0]])
    prior.log_scale[...] = jnp.asarray([[0.0, -1.0, 0.5], [0.3, 0.0, -0.5]])
    if prior.raw_shape is not None:
        prior.raw_shape[...] = jnp.asarray([-1.5, 0.0, 1.5])
    n = 20000
    u = np.arange(n) % 2
    s = sample_prior(jax.random.key(0), prior, 3, n, u)
    betas = [None] * 3 if prior.raw_shape is None else gennorm_shape(prior.raw_shape[...])
    for label in range(2):
        z = (s[u == label] - np.asarray(prior.loc[...][label])) / np.exp(
            np.asarray(prior.log_scale[...][label])
        )
        for component, beta in enumerate(betas):
            reference = SCIPY_FAMILIES[family](None if beta is None else float(beta))
            assert stats.kstest(z[:, component], reference.cdf).pvalue > 1e-3, (label, component)
