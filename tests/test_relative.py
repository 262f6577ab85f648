"""Relative gradient: equals What What^T G (MATH.md) exactly, descends, and needs no inverse."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from nica.model import ICAModel
from nica.network import GRADIENTS, DemixingNetwork
from nica.priors import PRIORS, make_prior
from nica.relative import relative_dense, relative_gradient_reference, relative_log_abs_det
from nica.training import make_epoch_fn


def _rel_err(a, b):
    return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


def _layer_losses(z, c):
    """A nonlinear data term plus -log|det W|, with ordinary and relative layers."""

    def data(y):
        return jnp.sum(c * jnp.log(jnp.cosh(y))) + jnp.sum(y**2 * c**2)

    def ordinary(w, b):
        return data(z @ w + b) - 0.7 * jnp.linalg.slogdet(w)[1]

    def relative(w, b):
        return data(relative_dense(z, w, b)) - 0.7 * relative_log_abs_det(w, b)

    return ordinary, relative


@pytest.mark.parametrize("batch", [1, 7])
@pytest.mark.parametrize("dim", [2, 5, 17])
def test_layer_relative_gradient_equals_explicit_formula(dim, batch, x64):
    rng = np.random.default_rng(dim * 10 + batch)
    w = jnp.asarray(rng.normal(size=(dim, dim)))
    b = jnp.asarray(rng.normal(size=dim))
    z = jnp.asarray(rng.normal(size=(batch, dim)))
    c = jnp.asarray(rng.normal(size=(batch, dim)))
    ordinary, relative = _layer_losses(z, c)
    g_w, g_b = jax.grad(ordinary, argnums=(0, 1))(w, b)
    r_w, r_b = jax.grad(relative, argnums=(0, 1))(w, b)
    e_w, e_b = relative_gradient_reference(w, b, g_w, g_b)
    assert _rel_err(r_w, e_w) < 1e-10
    assert _rel_err(r_b, e_b) < 1e-10
    # The values agree apart from the log-det placeholder.
    np.testing.assert_allclose(
        relative(w, b), ordinary(w, b) + 0.7 * jnp.linalg.slogdet(w)[1], rtol=1e-12
    )
    # Descent direction: <G, What What^T G> = |What^T G|^2 > 0.
    assert float(jnp.vdot(g_w, r_w) + jnp.vdot(g_b, r_b)) > 0


def _model(dim, depth, prior, seed, dtype=jnp.float64):
    net = DemixingNetwork(
        dim,
        depth,
        activation="smooth_leaky_relu",
        activation_kwargs={"slope": 0.3},
        rngs=nnx.Rngs(seed),
        param_dtype=dtype,
    )
    rng = np.random.default_rng(seed)
    for layer in net.layers:
        layer.kernel[...] = jnp.asarray(rng.normal(size=(dim, dim)) / np.sqrt(dim) + np.eye(dim))
        layer.bias[...] = jnp.asarray(rng.normal(size=dim) * 0.5)
    return ICAModel(net, make_prior(prior))


def _grads(model, x, gradient):
    graphdef, params = nnx.split(model, nnx.Param)

    def loss(p):
        return nnx.merge(graphdef, p).training_loss(x, gradient=gradient)[0]

    return jax.grad(loss)(params)


@pytest.mark.parametrize("prior", sorted(PRIORS))
@pytest.mark.parametrize("batch", [1, 7])
@pytest.mark.parametrize("dim", [2, 5, 17])
def test_network_relative_gradient_equals_formula_in_every_layer(dim, batch, prior, x64):
    model = _model(dim, depth=3, prior=prior, seed=dim + batch)
    x = jnp.asarray(np.random.default_rng(1).normal(size=(batch, dim)))
    ordinary = _grads(model, x, "ordinary")
    relative = _grads(model, x, "relative")
    inner = 0.0
    for k, layer in enumerate(model.demixer.layers):
        g_w = ordinary["demixer"]["layers"][k]["kernel"][...]
        g_b = ordinary["demixer"]["layers"][k]["bias"][...]
        r_w = relative["demixer"]["layers"][k]["kernel"][...]
        r_b = relative["demixer"]["layers"][k]["bias"][...]
        e_w, e_b = relative_gradient_reference(layer.kernel[...], layer.bias[...], g_w, g_b)
        assert _rel_err(r_w, e_w) < 1e-10, f"layer {k} kernel"
        assert _rel_err(r_b, e_b) < 1e-10, f"layer {k} bias"
        inner += float(jnp.vdot(g_w, r_w) + jnp.vdot(g_b, r_b))
    assert inner > 0  # descent direction for the whole network


@pytest.mark.parametrize("depth", [1, 3])
def test_ordinary_and_autodiff_gradients_agree(depth, x64):
    model = _model(4, depth, "logistic", seed=3)
    x = jnp.asarray(np.random.default_rng(2).normal(size=(9, 4)))
    ordinary = _grads(model, x, "ordinary")
    autodiff = _grads(model, x, "autodiff")
    for a, b in zip(jax.tree.leaves(ordinary), jax.tree.leaves(autodiff), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


DECOMPOSITIONS = {"lu", "triangular_solve", "cholesky", "eigh", "svd", "qr", "schur", "eig"}


def _primitives(jaxpr) -> set[str]:
    names = set()
    for eqn in jaxpr.eqns:
        names.add(eqn.primitive.name)
        for value in eqn.params.values():
            for sub in value if isinstance(value, tuple | list) else (value,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    names |= _primitives(inner)
    return names


@pytest.mark.parametrize("gradient", GRADIENTS)
def test_only_the_relative_training_step_is_free_of_decompositions(gradient):
    model = _model(6, 3, "laplace", seed=0, dtype=jnp.float32)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optax.adam(1e-3)
    epoch = make_epoch_fn(graphdef, rest, tx, gradient=gradient, batch_size=8)
    x = jnp.zeros((32, 6), jnp.float32)
    jaxpr = jax.make_jaxpr(epoch)(params, tx.init(params), jax.random.key(0), x, None)
    found = _primitives(jaxpr.jaxpr) & DECOMPOSITIONS
    assert "scan" in _primitives(jaxpr.jaxpr)  # the walker sees inside the epoch loop
    if gradient == "relative":
        assert not found, f"relative step uses {found}"
    else:
        assert "lu" in found
