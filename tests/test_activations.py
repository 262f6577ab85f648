"""Activation contract: log-derivative vs autodiff, inverse round trips, bad parameters; and the
learnable ``monotone_mixture``: monotone for any parameters, per-unit, expressive enough for
the inverses of the benchmark mixings."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from nica.core.activations import (
    ACTIVATIONS,
    LeakyTanh,
    MonotoneMixture,
    MonotoneSpline,
    is_learnable,
    make_activation,
    value_and_log_derivative,
)

# Every registered activation, with leaky ones at slopes on both sides of 1. Learnable ones get
# one unit with random parameters (see ``_make``).
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
    "monotone_mixture_4_sharp_knots": ("monotone_mixture", {"knots": 4, "sharpness": 20.0}),
    "monotone_spline_5_knots": ("monotone_spline", {"knots": 5}),
    # Knots denser near 0 (sinh-spaced): the interval lookup inverts the warp.
    "monotone_spline_warp_3_5_knots": ("monotone_spline", {"knots": 5, "warp": 3.0}),
    "monotone_spline_warp_10": ("monotone_spline", {"warp": 10.0}),
}

# The learnable families, with the slope count per unit of their default configuration.
LEARNABLE = {"monotone_mixture": (MonotoneMixture, 10), "monotone_spline": (MonotoneSpline, 17)}


def test_every_registered_activation_is_covered():
    assert {name for name, _ in CASES.values()} == set(ACTIVATIONS)


def _make(case, dtype, *, dim=1, scale=1.5, seed=0):
    """The activation of ``case``; a learnable one with random slopes ``exp(scale * N(0, 1))``."""
    name, kwargs = case
    if not is_learnable(name):
        return make_activation(name, **kwargs)
    act = make_activation(name, dim=dim, param_dtype=dtype, **kwargs)
    shape = act.log_slopes[...].shape
    act.log_slopes[...] = jnp.asarray(np.random.default_rng(seed).normal(size=shape) * scale)
    return act


def _inputs(dtype):
    # Both branches of every leaky activation, the kink region and large magnitudes; one unit.
    grid = np.concatenate([np.linspace(-30, 30, 241), np.linspace(-1e-3, 1e-3, 11), [0.0]])
    return jnp.asarray(grid, dtype)[:, None]


def _jit(act, method):
    """``act.method``, jitted for learnable activations (one compile instead of eager ops)."""
    fn = getattr(act, method)
    return jax.jit(fn) if is_learnable(act) else fn


def _derivative(act, y):
    """Elementwise derivative by forward-mode autodiff (the map is elementwise)."""
    return jax.jvp(_jit(act, "value"), (y,), (jnp.ones_like(y),))[1]


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_log_derivative_matches_autodiff(case, x64):
    act = _make(case, jnp.float64)
    y = _inputs(jnp.float64)
    y = y[y[:, 0] != 0]  # leaky_relu is not differentiable at 0
    expected = jnp.log(_derivative(act, y))
    np.testing.assert_allclose(_jit(act, "log_derivative")(y), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_value_and_log_derivative_is_both_calls(case, x64):
    """What the network's forward pass uses: an activation's shared method, or the two calls."""
    act = _make(case, jnp.float64, dim=3)
    y = jnp.asarray(np.random.default_rng(1).normal(size=(50, 3)) * 3.0)
    value, log_derivative = value_and_log_derivative(act, y)
    np.testing.assert_allclose(value, act.value(y), rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(log_derivative, act.log_derivative(y), rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_inverse_round_trip_float64(case, x64):
    act = _make(case, jnp.float64)
    y = _inputs(jnp.float64)
    back = _jit(act, "inverse")(_jit(act, "value")(y))
    np.testing.assert_allclose(back, y, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_inverse_round_trip_float32_under_jit(case):
    act = _make(case, jnp.float32)
    y = _inputs(jnp.float32)
    z = jax.jit(act.value)(y)
    back = jax.jit(act.inverse)(z)
    assert back.dtype == jnp.float32
    np.testing.assert_allclose(back, y, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_strictly_increasing(case, x64):
    act = _make(case, jnp.float64)
    z = _jit(act, "value")(jnp.unique(_inputs(jnp.float64))[:, None])
    assert bool(jnp.all(jnp.diff(z[:, 0]) > 0))


# Random slopes exp(scale * N(0, 1)), two units per scale: mild, wide, and extreme (slopes from
# ~1e-4 to ~1e4 within one unit).
SCALES = np.repeat([0.5, 2.0, 4.0], 2)


@pytest.mark.parametrize("family", LEARNABLE)
def test_learnable_is_monotone_and_exact_for_any_parameters(family, x64):
    dim = len(SCALES)
    graphdef, params = nnx.split(LEARNABLE[family][0](dim, param_dtype=jnp.float64))
    noise = np.random.default_rng(1).normal(size=params["log_slopes"].shape)
    params["log_slopes"][...] = jnp.asarray(noise * SCALES[:, None])
    y = jnp.asarray(np.linspace(-40, 40, 1001)[:, None] * np.ones(dim))

    @jax.jit
    def evaluate(params):
        act = nnx.merge(graphdef, params)
        z = act.value(y)
        back = act.inverse(z)
        return z, act.log_derivative(y), _derivative(act, y), back, act.value(back)

    z, log_d, derivative, back, z_back = evaluate(params)
    assert bool(jnp.all(jnp.isfinite(log_d)))
    log_w = params["log_slopes"][...]
    # The derivative lies between the smallest and largest slope of its unit.
    assert bool(jnp.all(log_d >= log_w.min(axis=-1) - 1e-12))
    assert bool(jnp.all(log_d <= log_w.max(axis=-1) + 1e-12))
    assert bool(jnp.all(jnp.diff(z, axis=0) > 0))  # sorted inputs give sorted outputs
    np.testing.assert_allclose(log_d, jnp.log(derivative), rtol=1e-10, atol=1e-10)
    # Backward stable for any parameters; exact in y where the conditioning allows it (with
    # slopes ~1e-4 a rounding of z is magnified ~1e4 times in y).
    assert bool(jnp.all(jnp.abs(z_back - z) <= 1e-12 * jnp.abs(z).max(axis=0)))
    mild = SCALES <= 2.0
    np.testing.assert_allclose(back[:, mild], y[:, mild], rtol=1e-10, atol=1e-10)
    # Units are independent: resetting unit 0 to the identity leaves the others unchanged.
    params["log_slopes"][...] = log_w.at[0].set(0.0)
    again = evaluate(params)[0]
    np.testing.assert_allclose(again[:, 1:], z[:, 1:], rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(again[:, 0], y[:, 0], atol=1e-12)


@pytest.mark.parametrize("family", LEARNABLE)
def test_learnable_initialisation(family, x64):
    cls, n_slopes = LEARNABLE[family]
    y = jnp.asarray(np.linspace(-30, 30, 121)[:, None] * np.ones(2))
    identity = cls(2, param_dtype=jnp.float64)
    assert identity.log_slopes[...].shape == (2, n_slopes)
    np.testing.assert_allclose(jax.jit(identity.value)(y), y, atol=1e-12)
    np.testing.assert_allclose(jax.jit(identity.log_derivative)(y), 0.0, atol=1e-12)
    expansive = cls(2, init_tail_slope=5.0, param_dtype=jnp.float64)
    slopes = jnp.exp(jax.jit(expansive.log_derivative)(jnp.asarray([[-30.0, 30.0], [0, 0]])))
    np.testing.assert_allclose(slopes[0], [5.0, 5.0], rtol=1e-10)
    assert bool(jnp.all(slopes[1] < 1.3))  # near 1 at the centre
    value = jax.jit(expansive.value)
    np.testing.assert_allclose(value(-y), -value(y), atol=1e-10)  # odd


def _fit_units(act, z, targets, steps=300, learning_rate=0.3):
    """Least squares of every unit of ``act`` to its column of ``targets`` (Adam on log w)."""
    graphdef, params = nnx.split(act, nnx.Param)
    scale = jnp.mean(targets**2, axis=0)

    def loss(params):
        fitted = nnx.merge(graphdef, params).value(z)
        return jnp.sum(jnp.mean((fitted - targets) ** 2, axis=0) / scale)

    optimizer = optax.adam(optax.cosine_decay_schedule(learning_rate, steps))

    def step(carry, _):
        params, state = carry
        updates, state = optimizer.update(jax.grad(loss)(params), state)
        return (optax.apply_updates(params, updates), state), None

    (params, _), _ = jax.lax.scan(step, (params, optimizer.init(params)), None, length=steps)
    return nnx.merge(graphdef, params).value(z)


# Demixer shapes the family must reach: inverses of leaky ReLU (slope 0.1, both orientations,
# and 0.5), of xtanh = tanh(x) + 0.1 x, of asinh (sinh) and of sinh (asinh, compressive).
# Bars: the max error over [-4, 4] as a fraction of the target's range; measured with the
# defaults (9 knots on [-4, 4], sharpness 6): 0.021, 0.021, 0.005, 0.013, 0.004, 0.004. Kinks
# dominate (a kink of slope change dw is smoothed by ~dw log(2) / sharpness).
INVERSE_MIXINGS = {
    "leaky_relu_0.1": (lambda z: jnp.where(z >= 0, z, 10.0 * z), 0.03),
    "leaky_relu_0.1_flipped": (lambda z: jnp.where(z >= 0, 10.0 * z, z), 0.03),
    "leaky_relu_0.5": (lambda z: jnp.where(z >= 0, z, 2.0 * z), 0.01),
    "xtanh": (LeakyTanh(0.1).inverse, 0.02),
    "asinh": (jnp.sinh, 0.01),
    "sinh": (jnp.arcsinh, 0.01),
}


@pytest.mark.parametrize("family", LEARNABLE)
def test_learnable_fits_inverse_mixings(family, x64):
    z = jnp.linspace(-4.0, 4.0, 401)
    targets = jnp.stack([fn(z) for fn, _ in INVERSE_MIXINGS.values()], axis=1)
    act = LEARNABLE[family][0](len(INVERSE_MIXINGS), param_dtype=jnp.float64)
    fitted = jax.jit(_fit_units)(act, z[:, None] * jnp.ones(len(INVERSE_MIXINGS)), targets)
    errors = jnp.abs(fitted - targets).max(axis=0) / jnp.ptp(targets, axis=0)
    bars = jnp.asarray([bar for _, bar in INVERSE_MIXINGS.values()])
    assert bool(jnp.all(errors < bars)), dict(
        zip(INVERSE_MIXINGS, np.round(errors, 4), strict=True)
    )


def test_bad_names_and_parameters_raise_clear_errors():
    with pytest.raises(ValueError, match="unknown activation 'relu'"):
        make_activation("relu")
    with pytest.raises(ValueError, match="slope must be > 0"):
        make_activation("smooth_leaky_relu", slope=-1.0)
    with pytest.raises(ValueError, match="bad parameters"):
        make_activation("leaky_tanh", slope=1.0)
    with pytest.raises(ValueError, match="bad parameters"):
        make_activation("monotone_mixture")  # no dim
    with pytest.raises(ValueError, match="knots must be >= 1"):
        MonotoneMixture(3, knots=0)
    with pytest.raises(ValueError, match="sharpness and init_tail_slope must be > 0"):
        MonotoneMixture(3, init_tail_slope=0.0)
    with pytest.raises(ValueError, match="odd number of knots >= 3"):
        MonotoneSpline(3, knots=4)
    with pytest.raises(ValueError, match="init_tail_slope must be > 0"):
        MonotoneSpline(3, init_tail_slope=-1.0)
    with pytest.raises(ValueError, match="unknown activation 'relu'"):
        is_learnable("relu")


def test_warped_spline_grid_and_identity_start(x64):
    """``warp`` places the knots at ``bound sinh(warp u) / sinh(warp)`` (u evenly on [-1, 1]),
    denser near 0, and the spline still starts at the identity."""
    act = MonotoneSpline(2, knots=7, bound=4.0, warp=3.0, param_dtype=jnp.float64)
    u = np.linspace(-1.0, 1.0, 7)
    np.testing.assert_allclose(act.grid, 4.0 * np.sinh(3.0 * u) / np.sinh(3.0), rtol=1e-15)
    widths = np.diff(act.grid)
    assert widths[3] < widths[4] < widths[5]  # from the centre outwards
    y = jnp.linspace(-9.0, 9.0, 101, dtype=jnp.float64)[:, None] * jnp.ones((1, 2), jnp.float64)
    value, log_derivative = value_and_log_derivative(act, y)
    np.testing.assert_allclose(value, y, rtol=0, atol=1e-13)
    np.testing.assert_allclose(log_derivative, 0.0, atol=1e-13)
    with pytest.raises(ValueError, match="warp"):
        MonotoneSpline(2, warp=-1.0)
