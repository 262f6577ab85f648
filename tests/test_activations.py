"""Activation contract: log-derivative vs autodiff, inverse round trips, bad parameters."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nica.activations import ACTIVATIONS, make_activation

# Every registered activation, with leaky ones at slopes on both sides of 1.
CASES = {
    "identity": ("identity", {}),
    "smooth_leaky_relu_0.01": ("smooth_leaky_relu", {"slope": 0.01}),
    "smooth_leaky_relu_0.2": ("smooth_leaky_relu", {"slope": 0.2}),
    "smooth_leaky_relu_5": ("smooth_leaky_relu", {"slope": 5.0}),
    "smooth_leaky_relu_5_sharp": ("smooth_leaky_relu", {"slope": 5.0, "sharpness": 10.0}),
    "leaky_relu_0.2": ("leaky_relu", {"slope": 0.2}),
    "leaky_relu_5": ("leaky_relu", {"slope": 5.0}),
    "leaky_tanh_0.1": ("leaky_tanh", {"beta": 0.1}),
    "leaky_tanh_1": ("leaky_tanh", {"beta": 1.0}),
}


def test_every_registered_activation_is_covered():
    assert {name for name, _ in CASES.values()} == set(ACTIVATIONS)


def _inputs(dtype):
    # Both branches of every leaky activation, the kink region and large magnitudes.
    grid = np.concatenate([np.linspace(-30, 30, 241), np.linspace(-1e-3, 1e-3, 11), [0.0]])
    return jnp.asarray(grid, dtype)


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_log_derivative_matches_autodiff(case, x64):
    act = make_activation(case[0], **case[1])
    y = _inputs(jnp.float64)
    y = y[y != 0]  # leaky_relu is not differentiable at 0
    expected = jnp.log(jax.vmap(jax.grad(act.value))(y))
    np.testing.assert_allclose(act.log_derivative(y), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_inverse_round_trip_float64(case, x64):
    act = make_activation(case[0], **case[1])
    y = _inputs(jnp.float64)
    np.testing.assert_allclose(act.inverse(act.value(y)), y, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_inverse_round_trip_float32_under_jit(case):
    act = make_activation(case[0], **case[1])
    y = _inputs(jnp.float32)
    z = jax.jit(act.value)(y)
    back = jax.jit(act.inverse)(z)
    assert back.dtype == jnp.float32
    np.testing.assert_allclose(back, y, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_strictly_increasing(case, x64):
    act = make_activation(case[0], **case[1])
    z = act.value(jnp.unique(_inputs(jnp.float64)))
    assert bool(jnp.all(jnp.diff(z) > 0))


def test_bad_names_and_parameters_raise_clear_errors():
    with pytest.raises(ValueError, match="unknown activation 'relu'"):
        make_activation("relu")
    with pytest.raises(ValueError, match="slope must be > 0"):
        make_activation("smooth_leaky_relu", slope=-1.0)
    with pytest.raises(ValueError, match="bad parameters"):
        make_activation("leaky_tanh", slope=1.0)
