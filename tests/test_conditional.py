"""Conditional priors (Eq. 4): normalised densities, finite-difference gradients, registry."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy import integrate

from nica.conditional import CONDITIONAL_FAMILIES, ContinuousPrior, SegmentPrior


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
    for row in range(3):
        for component in range(2):

            def density(value, row=row, component=component):
                s = jnp.zeros((1, 2)).at[0, component].set(value)
                return float(jnp.exp(prior.log_prob(s, u[row : row + 1])[0, component]))

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
