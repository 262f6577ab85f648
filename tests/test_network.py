"""Network contract: exact log|det J| against autodiff, inverse round trip, shapes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nica.core.activations import MonotoneMixtureSpec, is_learnable
from nica.core.gradients import GRADIENTS
from nica.core.network import DemixingNetwork, InvertibleDense
from nica.core.relative import square_kernel_mask
from nica.fitting.build import build_model
from nica.fitting.config import FitConfig, ModelConfig

ACTIVATION_CASES = {
    "smooth_leaky_relu": ("smooth_leaky_relu", {"slope": 0.2}),
    "smooth_leaky_relu_5": ("smooth_leaky_relu", {"slope": 5.0}),
    "leaky_relu": ("leaky_relu", {"slope": 0.2}),
    "leaky_tanh": ("leaky_tanh", {"beta": 0.1}),
    "identity": ("identity", {}),
    "monotone_mixture": ("monotone_mixture", {}),
    "monotone_spline": ("monotone_spline", {"knots": 7}),
}


def _randomise_activations(net, seed, scale=0.5):
    """Random per-unit slopes ``exp(scale * N(0, 1))`` for every learnable activation."""
    rng = np.random.default_rng(seed)
    if net.activation is None:
        for act in net.activations:
            shape = act.log_slopes[...].shape
            act.log_slopes[...] = jnp.asarray(rng.normal(size=shape) * scale)


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
    _randomise_activations(net, seed + 100, scale=1.0)
    return net


def _with_depths(depths, learnable_depths):
    """``pytest.param(case, depth)`` for every case; learnable activations only at
    ``learnable_depths`` (a depth-1 network has no activation, and compiling each depth of a
    learnable network is what costs test time)."""
    return [
        pytest.param(case, depth, id=f"{name}-{depth}")
        for name, case in ACTIVATION_CASES.items()
        for depth in (learnable_depths if is_learnable(case[0]) else depths)
    ]


@pytest.mark.parametrize("case,depth", _with_depths([1, 2, 3, 4], [3]))
def test_log_det_matches_slogdet_of_jacfwd(case, depth, x64):
    dim = 4
    net = _random_network(dim, depth, case, seed=depth, dtype=jnp.float64)
    x = jnp.asarray(np.random.default_rng(7).normal(size=(6, dim)) * 2.0)

    @jax.jit
    def log_dets(x):
        s, logdet = net.forward_and_log_det(x)
        jac = jax.vmap(jax.jacfwd(lambda xi: net(xi[None])[0]))(x)
        # The ``autodiff`` training mode computes the same quantity from the full Jacobian.
        _, ld_act, ld_w = net.training_terms(x, gradient="autodiff")
        return s, logdet, jnp.linalg.slogdet(jac)[1], ld_act + ld_w

    s, logdet, expected, autodiff = log_dets(x)
    assert s.shape == (6, dim) and logdet.shape == (6,)
    np.testing.assert_allclose(logdet, expected, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(autodiff, logdet, rtol=1e-10, atol=1e-10)


# In float32 the round-trip error of a deep network grows with its conditioning (a leaky slope
# of 0.2 amplifies forward rounding by up to 5x per layer on the way back), so the 1e-5 float32
# bar is checked up to depth 2 and exactness at every depth in float64.
ROUND_TRIP = {
    "float32": (jnp.float32, [1, 2], 1e-5),
    "float64": (jnp.float64, [1, 2, 3, 4], 1e-10),
}


# float32 round trips of the learnable activation alone are in test_activations.py.
LEARNABLE_ROUND_TRIP = {"float32": [], "float64": [4]}


@pytest.mark.parametrize(
    "case,dtype,depth,tol",
    [
        pytest.param(case, dt, depth, tol, id=f"{case_name}-{name}-depth{depth}")
        for case_name, case in ACTIVATION_CASES.items()
        for name, (dt, depths, tol) in ROUND_TRIP.items()
        for depth in (LEARNABLE_ROUND_TRIP[name] if is_learnable(case[0]) else depths)
    ],
)
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
    _randomise_activations(net, depth)
    x = jnp.asarray(np.random.default_rng(3).normal(size=(200, dim)) * 3.0, dtype)

    @jax.jit
    def pre_activations(x):
        ys, z = [], x
        for layer, activation in zip(list(net.layers)[:-1], net.activations, strict=True):
            ys.append(layer(z))
            z = activation.value(ys[-1])
        return ys

    # Inputs reach both branches of the activation in every hidden layer.
    for y in pre_activations(x):
        assert bool(jnp.any(y < 0)) and bool(jnp.any(y > 0))
    back = jax.jit(lambda x: net.inverse(net(x)))(x)
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


def test_learnable_activation_is_per_hidden_layer_and_static_one_is_shared():
    learnable = DemixingNetwork(4, 3, activation="monotone_mixture", rngs=nnx.Rngs(0))
    assert learnable.activation is None and len(learnable.activations) == 2
    assert learnable.activations[0] is not learnable.activations[1]
    slopes = nnx.state(learnable.activations, nnx.Param)
    assert [v.shape for v in jax.tree.leaves(slopes)] == [(4, 10), (4, 10)]  # D (K + 1) each
    static = DemixingNetwork(4, 3, activation="leaky_tanh", rngs=nnx.Rngs(0))
    assert all(act is static.activation for act in static.activations)
    assert not jax.tree.leaves(nnx.state(static.activations, nnx.Param))
    assert (
        len(DemixingNetwork(4, 1, activation="monotone_mixture", rngs=nnx.Rngs(0)).activations) == 0
    )


def test_activation_parameters_get_ordinary_gradients(x64):
    """The relative gradient touches only the square kernels (MATH.md): every gradient mode
    gives the activations' parameters the same, ordinary gradient."""
    case = ACTIVATION_CASES["monotone_mixture"]
    net = _random_network(3, 3, case, seed=5, dtype=jnp.float64)
    x = jnp.asarray(np.random.default_rng(5).normal(size=(8, 3)))
    graphdef, params, rest = nnx.split(net, nnx.Param, ...)
    is_kernel = square_kernel_mask(params)
    assert not any(jax.tree.leaves(nnx.state(is_kernel["activations"])))

    def loss(params, mode):
        s, ld_act, ld_w = nnx.merge(graphdef, params, rest).layer_terms(x, GRADIENTS[mode])
        return (0.5 * s**2).sum() - ld_act.sum() - ld_w

    modes = ("ordinary", "relative", "relative_coords")
    grads = jax.jit(lambda p: [jax.grad(loss)(p, mode)["activations"] for mode in modes])(params)
    for grad in grads[1:]:
        for got, want in zip(jax.tree.leaves(grad), jax.tree.leaves(grads[0]), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_build_model_initialises_learnable_activations_under_vmap():
    mixture = MonotoneMixtureSpec(tail_slope=2.0)
    config = FitConfig(model=ModelConfig(depth=3, activation=mixture))

    def init(key):
        return nnx.state(build_model(config, 4, None, key=key), nnx.Param)

    params = jax.jit(jax.vmap(init))(jax.random.split(jax.random.key(0), 2))
    slopes = jax.tree.leaves(params["demixer"]["activations"])
    assert [v.shape for v in slopes] == [(2, 4, 10), (2, 4, 10)]
    np.testing.assert_allclose(jnp.exp(slopes[0][..., [0, -1]]), 2.0, rtol=1e-6)
