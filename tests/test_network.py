"""Network contract: exact log|det J| against autodiff, inverse round trip, shapes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nica.network import DemixingNetwork, InvertibleDense

ACTIVATION_CASES = {
    "smooth_leaky_relu": ("smooth_leaky_relu", {"slope": 0.2}),
    "smooth_leaky_relu_5": ("smooth_leaky_relu", {"slope": 5.0}),
    "leaky_relu": ("leaky_relu", {"slope": 0.2}),
    "leaky_tanh": ("leaky_tanh", {"beta": 0.1}),
    "identity": ("identity", {}),
}


def _random_network(dim, depth, case, seed, dtype):
    net = DemixingNetwork(
        dim,
        depth,
        activation=case[0],
        activation_kwargs=case[1],
        rngs=nnx.Rngs(seed),
        param_dtype=dtype,
    )
    # Move away from the orthogonal initialisation: random, non-symmetric, with biases.
    rng = np.random.default_rng(seed)
    for layer in net.layers:
        layer.kernel[...] = jnp.asarray(
            rng.normal(size=(dim, dim)) / np.sqrt(dim) + np.eye(dim), dtype
        )
        layer.bias[...] = jnp.asarray(rng.normal(size=dim), dtype)
    return net


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
@pytest.mark.parametrize("case", ACTIVATION_CASES.values(), ids=ACTIVATION_CASES.keys())
def test_log_det_matches_slogdet_of_jacfwd(case, depth, x64):
    dim = 4
    net = _random_network(dim, depth, case, seed=depth, dtype=jnp.float64)
    x = jnp.asarray(np.random.default_rng(7).normal(size=(6, dim)) * 2.0)
    s, logdet = net.forward_and_log_det(x)
    assert s.shape == (6, dim) and logdet.shape == (6,)
    jac = jax.vmap(jax.jacfwd(lambda xi: net(xi[None])[0]))(x)
    np.testing.assert_allclose(logdet, jnp.linalg.slogdet(jac)[1], rtol=1e-10, atol=1e-10)
    # The ``autodiff`` training mode computes the same quantity from the full Jacobian.
    _, ld_act, ld_w = net.training_terms(x, gradient="autodiff")
    np.testing.assert_allclose(ld_act + ld_w, logdet, rtol=1e-10, atol=1e-10)


# In float32 the round-trip error of a deep network grows with its conditioning (a leaky slope
# of 0.2 amplifies forward rounding by up to 5x per layer on the way back), so the 1e-5 float32
# bar is checked up to depth 2 and exactness at every depth in float64.
ROUND_TRIP = {
    "float32": (jnp.float32, [1, 2], 1e-5),
    "float64": (jnp.float64, [1, 2, 3, 4], 1e-10),
}


@pytest.mark.parametrize(
    "dtype,depth,tol",
    [(dt, depth, tol) for dt, depths, tol in ROUND_TRIP.values() for depth in depths],
    ids=[f"{name}-depth{d}" for name, (_, depths, _) in ROUND_TRIP.items() for d in depths],
)
@pytest.mark.parametrize("case", ACTIVATION_CASES.values(), ids=ACTIVATION_CASES.keys())
def test_inverse_round_trip(case, dtype, depth, tol):
    dim = 5
    with jax.enable_x64(dtype == jnp.float64):
        _check_round_trip(case, dtype, depth, tol, dim)


def _check_round_trip(case, dtype, depth, tol, dim):
    net = DemixingNetwork(
        dim,
        depth,
        activation=case[0],
        activation_kwargs=case[1],
        rngs=nnx.Rngs(depth),
        param_dtype=dtype,
    )
    x = jnp.asarray(np.random.default_rng(3).normal(size=(200, dim)) * 3.0, dtype)
    # Inputs reach both branches of the activation in every hidden layer.
    z = x
    for layer in list(net.layers)[:-1]:
        y = layer(z)
        assert bool(jnp.any(y < 0)) and bool(jnp.any(y > 0))
        z = net.activation.value(y)
    back = jax.jit(lambda s: net.inverse(s))(net(x))
    assert back.dtype == dtype
    np.testing.assert_allclose(back, x, rtol=tol, atol=tol)


def test_dense_layer_contract(x64):
    layer = InvertibleDense(3, rngs=nnx.Rngs(0), param_dtype=jnp.float64)
    w = layer.kernel[...]
    np.testing.assert_allclose(w @ w.T, np.eye(3), atol=1e-12)  # orthogonal initialisation
    x = jnp.ones((2, 3))
    y, logdet = layer.forward_and_log_det(x)
    np.testing.assert_allclose(logdet, [0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(layer.inverse(y), x, atol=1e-12)


def test_bad_shapes_and_modes_raise():
    net = DemixingNetwork(3, 2, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"shape \(batch, 3\)"):
        net(jnp.ones((4, 2)))
    with pytest.raises(ValueError, match="unknown gradient mode 'natural'"):
        net.training_terms(jnp.ones((4, 3)), gradient="natural")
    with pytest.raises(ValueError, match="depth must be >= 1"):
        DemixingNetwork(3, 0, rngs=nnx.Rngs(0))
