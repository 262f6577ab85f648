"""relative_pooled: Adam with one second moment per square kernel, from the user's own Adam."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from nica.core.gradients import GRADIENTS
from nica.core.model import ICAModel
from nica.core.network import DemixingNetwork
from nica.core.pooling import POOLS, pool_second_moment
from nica.core.priors import make_prior
from nica.core.relative import square_kernel_mask
from nica.fitting.steps import make_epoch_fn


def _model(dim: int, seed: int) -> ICAModel:
    net = DemixingNetwork(dim, 2, rngs=nnx.Rngs(seed), param_dtype=jnp.float64)
    rng = np.random.default_rng(seed)
    for layer in net.layers:
        layer.kernel[...] = jnp.asarray(rng.normal(size=(dim, dim)) / np.sqrt(dim) + np.eye(dim))
        layer.bias[...] = jnp.asarray(rng.normal(size=dim) * 0.5)
    return ICAModel(net, make_prior("laplace"))


def _adam_reference(leaves, grads, moments, t, *, lr, b1, b2, axes):
    """One Adam step (eps = 0) per leaf; ``axes[i]`` pools leaf ``i``'s squared gradient."""
    out = []
    for i, (p, g) in enumerate(zip(leaves, grads, strict=True)):
        m, v = moments[i]
        sq = g**2
        if axes[i] is not None:
            sq = jnp.broadcast_to(sq.mean(axes[i], keepdims=True), g.shape)
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * sq
        moments[i] = (m, v)
        out.append(p - lr * (m / (1 - b1**t)) / jnp.sqrt(v / (1 - b2**t)))
    return out


@pytest.mark.parametrize("pool", sorted(POOLS))
def test_pooled_adam_is_adam_with_one_second_moment_per_kernel(pool, x64):
    """Three full-batch steps equal Adam whose second moment of each kernel is the mean of the
    squared relative gradient over the matrix (or each column); biases get elementwise Adam."""
    lr, b1, b2 = 0.01, 0.9, 0.999
    tx = optax.adam(lr, b1=b1, b2=b2, eps=0.0)
    mode = dataclasses.replace(GRADIENTS["relative_pooled"], pool=pool)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(19, 4)))
    graphdef, params, rest = nnx.split(_model(4, seed=3), nnx.Param, ...)
    epoch = jax.jit(make_epoch_fn(graphdef, rest, tx, gradient=mode, batch_size=19))
    grad = jax.grad(lambda p: nnx.merge(graphdef, p, rest).training_loss(x, gradient=mode)[0])
    axes = [POOLS[pool] if k else None for k in jax.tree.leaves(square_kernel_mask(params))]
    assert axes.count(None) == 2 and len(axes) == 4  # two kernels, two biases
    moments = [(jnp.zeros_like(p), jnp.zeros_like(p)) for p in jax.tree.leaves(params)]
    state = tx.init(params)
    for t in (1, 2, 3):
        want = _adam_reference(
            jax.tree.leaves(params),
            jax.tree.leaves(grad(params)),
            moments,
            t,
            lr=lr,
            b1=b1,
            b2=b2,
            axes=axes,
        )
        params, state, _, finite = epoch(params, state, jax.random.key(t), x, None)
        assert bool(finite)
        for got, ref in zip(jax.tree.leaves(params), want, strict=True):
            np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-13)


def test_optimizers_without_a_second_moment_pass_unchanged(x64):
    params = nnx.state(_model(3, seed=1), nnx.Param)
    grads = jax.tree.map(lambda p: jnp.full_like(p, 0.5), params)
    for tx in (optax.sgd(0.1), optax.sgd(0.1, momentum=0.9)):
        want, _ = tx.update(grads, tx.init(params), params)
        pooled = pool_second_moment(tx)
        got, _ = pooled.update(grads, pooled.init(params), params)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
            np.testing.assert_array_equal(a, b)


def test_pooling_refuses_bad_use(x64):
    params = nnx.state(_model(2, seed=0), nnx.Param)
    grads = jax.tree.map(jnp.ones_like, params)
    with pytest.raises(ValueError, match="unknown pooling 'rows'"):
        pool_second_moment(optax.adam(1e-3), over="rows")
    with pytest.raises(ValueError, match="already pools"):
        pool_second_moment(pool_second_moment(optax.adam(1e-3)))
    tx = pool_second_moment(optax.adam(1e-3))
    with pytest.raises(ValueError, match="needs params"):
        tx.update(grads, tx.init(params))
    plain = {"kernel": jnp.eye(2)}
    with pytest.raises(ValueError, match="no square kernels"):
        tx.update(plain, tx.init(plain), plain)
    twice = pool_second_moment(optax.chain(optax.adam(1e-3), optax.adam(1e-3)))
    with pytest.raises(ValueError, match="several second moments"):
        twice.update(grads, twice.init(params), params)
