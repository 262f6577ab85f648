"""Relative gradient: equals What What^T G (MATH.md) exactly, descends, and needs no inverse."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from nica.core.conditional import CONDITIONAL_FAMILIES, ContinuousPrior, SegmentPrior
from nica.core.gradients import DEFAULT_GRADIENT, GRADIENTS, get_gradient, resolve_gradient
from nica.core.model import ICAModel
from nica.core.network import DemixingNetwork
from nica.core.priors import PRIORS, make_prior
from nica.core.relative import relative_dense, relative_gradient_reference, relative_log_abs_det
from nica.fitting.steps import make_epoch_fn


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


def _grads(model, x, gradient, u=None):
    graphdef, params = nnx.split(model, nnx.Param)

    def loss(p):
        return nnx.merge(graphdef, p).training_loss(x, u, gradient=gradient)[0]

    return jax.grad(loss)(params)


#: Each relative mode's kernel and bias gradient as an explicit O(D^3) formula of the ordinary
#: gradient (MATH.md), and the W-space step direction its kernel gradient stands for.
FORMULAS = {
    "relative": (relative_gradient_reference, lambda w, r_w: r_w),
    "relative_coords": (lambda w, b, g_w, g_b: (w.T @ g_w, g_b), lambda w, c_w: w @ c_w),
    "relative_pooled": (lambda w, b, g_w, g_b: (w @ w.T @ g_w, g_b), lambda w, r_w: r_w),
}
RELATIVE_MODES = sorted(name for name, mode in GRADIENTS.items() if mode.relative)


def test_every_relative_mode_has_an_explicit_formula():
    assert set(FORMULAS) == set(RELATIVE_MODES)


@pytest.mark.parametrize("batch", [1, 7])
@pytest.mark.parametrize(("dim", "prior"), list(zip([2, 5, 17], sorted(PRIORS), strict=True)))
@pytest.mark.parametrize("mode", RELATIVE_MODES)
def test_network_gradient_equals_formula_in_every_layer(mode, dim, prior, batch, x64):
    """Every layer's (kernel, bias) gradient is the mode's explicit formula; the prior's
    parameters keep ordinary gradients; the W-space step is a descent direction."""
    formula, direction = FORMULAS[mode]
    model = _model(dim, depth=3, prior=prior, seed=dim + batch)
    x = jnp.asarray(np.random.default_rng(1).normal(size=(batch, dim)))
    ordinary = _grads(model, x, "ordinary")
    relative = _grads(model, x, mode)
    inner = 0.0
    for k, layer in enumerate(model.demixer.layers):
        w = layer.kernel[...]
        g_w, g_b = _layer_params(ordinary, k)
        r_w, r_b = _layer_params(relative, k)
        e_w, e_b = formula(w, layer.bias[...], g_w, g_b)
        assert _rel_err(r_w, e_w) < 1e-10, f"layer {k} kernel"
        assert _rel_err(r_b, e_b) < 1e-10, f"layer {k} bias"
        inner += float(jnp.vdot(g_w, direction(w, r_w)) + jnp.vdot(g_b, r_b))
    assert inner > 0  # descent direction for the whole network
    for a, b in zip(_prior_leaves(ordinary), _prior_leaves(relative), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("family", sorted(CONDITIONAL_FAMILIES))
@pytest.mark.parametrize("mode", RELATIVE_MODES)
def test_conditional_model_gradient_equals_formula(mode, family, x64):
    """With a segment prior of every family (the default ``gennorm`` learns its shape): the
    layers get the mode's formula, the prior's location, scale and shape ordinary gradients."""
    formula, _ = FORMULAS[mode]
    dim, n_segments = 4, 3
    model = _model(dim, depth=2, prior="laplace", seed=11)
    model.prior = SegmentPrior(n_segments, dim, family=family, param_dtype=jnp.float64)
    rng = np.random.default_rng(7)
    for name in ("loc", "log_scale", "raw_shape"):
        param = getattr(model.prior, name, None)
        if param is not None:
            param[...] = jnp.asarray(rng.normal(size=param.shape) * 0.5)
    x = jnp.asarray(rng.normal(size=(9, dim)))
    u = jnp.asarray(np.arange(9) % n_segments)
    ordinary = _grads(model, x, "ordinary", u)
    relative = _grads(model, x, mode, u)
    for k, layer in enumerate(model.demixer.layers):
        e_w, e_b = formula(layer.kernel[...], layer.bias[...], *_layer_params(ordinary, k))
        r_w, r_b = _layer_params(relative, k)
        assert _rel_err(r_w, e_w) < 1e-10 and _rel_err(r_b, e_b) < 1e-10, f"layer {k}"
    priors = [_prior_leaves(tree) for tree in (ordinary, relative)]
    assert len(priors[0]) == (3 if family == "gennorm" else 2)
    for a, b in zip(*priors, strict=True):
        assert np.abs(np.asarray(a)).max() > 0
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("depth", [1, 3])
def test_ordinary_and_autodiff_gradients_agree(depth, x64):
    model = _model(4, depth, "logistic", seed=3)
    x = jnp.asarray(np.random.default_rng(2).normal(size=(9, 4)))
    ordinary = _grads(model, x, "ordinary")
    autodiff = _grads(model, x, "autodiff")
    for a, b in zip(jax.tree.leaves(ordinary), jax.tree.leaves(autodiff), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


DECOMPOSITIONS = {"lu", "triangular_solve", "cholesky", "eigh", "svd", "qr", "schur", "eig"}
#: (D, B) of the step-cost checks: D > B, so a D x D x D product is more than O(B D^2).
DIM_ABOVE_BATCH = (12, 4)


def _equations(jaxpr):
    """Every equation of ``jaxpr`` and of its sub-jaxprs (scan bodies, pjit, ...)."""
    for eqn in jaxpr.eqns:
        yield eqn
        for value in eqn.params.values():
            for sub in value if isinstance(value, tuple | list) else (value,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    yield from _equations(inner)


def _cubic_products(jaxpr, dim: int) -> list[tuple[int, int, int]]:
    """``(rows, contraction, columns)`` of every ``dot_general`` with all three >= ``dim``."""
    found = []
    for eqn in _equations(jaxpr):
        if eqn.primitive.name != "dot_general":
            continue
        (l_con, r_con), (l_bat, r_bat) = eqn.params["dimension_numbers"]
        lhs, rhs = (v.aval.shape for v in eqn.invars)
        rows = math.prod(n for i, n in enumerate(lhs) if i not in (*l_con, *l_bat))
        cols = math.prod(n for i, n in enumerate(rhs) if i not in (*r_con, *r_bat))
        inner = math.prod(lhs[i] for i in l_con)
        if min(rows, inner, cols) >= dim:
            found.append((rows, inner, cols))
    return found


def _step_jaxpr(gradient, dim: int, batch: int):
    """The jaxpr of a two-step training epoch with Adam (gradient, update, parameter update)."""
    model = _model(dim, 2, "laplace", seed=0, dtype=jnp.float32)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optax.adam(1e-3)
    epoch = make_epoch_fn(graphdef, rest, tx, gradient=gradient, batch_size=batch)
    x = jnp.zeros((2 * batch, dim), jnp.float32)
    return jax.make_jaxpr(epoch)(params, tx.init(params), jax.random.key(0), x, None).jaxpr


@pytest.mark.parametrize("gradient", GRADIENTS)
def test_step_cost_claims_hold_at_d_above_b(gradient):
    """``relative`` modes: no decomposition (LU, ...) in the step; ``bd2_step`` modes: no
    D x D x D product either, optimizer update included. Modes that do not claim it show it."""
    mode, (dim, batch) = GRADIENTS[gradient], DIM_ABOVE_BATCH
    jaxpr = _step_jaxpr(gradient, dim, batch)
    names = {eqn.primitive.name for eqn in _equations(jaxpr)}
    assert "scan" in names  # the walker sees inside the epoch loop
    decompositions, cubic = names & DECOMPOSITIONS, _cubic_products(jaxpr, dim)
    assert bool(decompositions) != mode.relative, f"{gradient} step uses {decompositions}"
    assert bool(decompositions or cubic) != mode.bd2_step, f"{gradient} step has {cubic}"


@pytest.mark.parametrize("dim, batch", [DIM_ABOVE_BATCH, (4, 8)])
def test_default_training_step_is_o_b_d2_at_every_d(dim, batch):
    """The default (``auto``) resolves to a ``bd2_step`` mode when D > B, so its step, Adam's
    update included, has no D x D x D product and no decomposition there; at D <= B it is
    ``relative_coords``, whose D^3 map-back is within the gradient's B D^2."""
    mode = resolve_gradient(DEFAULT_GRADIENT, dim, batch)
    assert mode.name == ("relative_pooled" if dim > batch else "relative_coords")
    jaxpr = _step_jaxpr(DEFAULT_GRADIENT, dim, batch)
    assert not {eqn.primitive.name for eqn in _equations(jaxpr)} & DECOMPOSITIONS
    if dim > batch:
        assert not _cubic_products(jaxpr, dim)


def test_auto_gradient_needs_resolving_and_names_itself_in_errors():
    with pytest.raises(ValueError, match="resolve_gradient"):
        get_gradient("auto")
    with pytest.raises(ValueError, match="known: auto, relative_coords"):
        resolve_gradient("relative_cords", 4, 8)
    assert resolve_gradient(GRADIENTS["ordinary"], 4, 8) is GRADIENTS["ordinary"]


def _prior_leaves(tree):
    return jax.tree.leaves(tree["prior"]) if "prior" in tree else []


def _layer_params(tree, k):
    layer = tree["demixer"]["layers"][k]
    return layer["kernel"][...], layer["bias"][...]


def _one_full_batch_step(model, x, tx, gradient, u=None):
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    epoch = make_epoch_fn(graphdef, rest, tx, gradient=gradient, batch_size=x.shape[0])
    new, _, _, finite = epoch(params, tx.init(params), jax.random.key(0), x, u)
    assert bool(finite)
    return params, new


@pytest.mark.parametrize("gradient", ["relative_coords", "relative_pooled"])
def test_sgd_step_is_the_relative_gradient_step(gradient, x64):
    """With plain SGD: W <- W - lr W W^T G_W (MATH.md); b and the prior's parameters (here a
    conditioning MLP, whose own kernels must not be mapped or pooled) take ordinary steps."""
    lr = 0.05
    model = _model(4, depth=3, prior="laplace", seed=8)
    model.prior = ContinuousPrior(2, 4, hidden=(6,), rngs=nnx.Rngs(1), param_dtype=jnp.float64)
    rng = np.random.default_rng(5)
    x, u = (jnp.asarray(rng.normal(size=(23, d))) for d in (4, 2))
    graphdef, params = nnx.split(model, nnx.Param)
    ordinary = jax.grad(
        lambda p: nnx.merge(graphdef, p).training_loss(x, u, gradient="ordinary")[0]
    )(params)
    before, after = _one_full_batch_step(model, x, optax.sgd(lr), gradient, u)
    for k in range(3):
        w, b = _layer_params(before, k)
        g_w, g_b = _layer_params(ordinary, k)
        new_w, new_b = _layer_params(after, k)
        assert _rel_err(new_w, w - lr * w @ w.T @ g_w) < 1e-12
        assert _rel_err(new_b, b - lr * g_b) < 1e-12
    priors = [_prior_leaves(t) for t in (before, ordinary, after)]
    assert len(priors[0]) >= 4  # the MLP's kernels and biases, plus the heads
    for p, g, q in zip(*priors, strict=True):
        np.testing.assert_allclose(q, p - lr * g, rtol=1e-12, atol=1e-15)


def test_adam_in_relative_coordinates_updates_w_multiplicatively(x64):
    """Adam's update U of the coordinates E is applied as W <- W (I + U)."""
    tx = optax.adam(0.01)
    model = _model(5, depth=2, prior="laplace", seed=2)
    x = jnp.asarray(np.random.default_rng(6).normal(size=(11, 5)))
    coords = _grads(model, x, "relative_coords")
    before, after = _one_full_batch_step(model, x, tx, "relative_coords")
    updates, _ = tx.update(coords, tx.init(before), before)
    for k in range(2):
        w, b = _layer_params(before, k)
        u_w, u_b = _layer_params(updates, k)
        new_w, new_b = _layer_params(after, k)
        assert _rel_err(new_w, w @ (jnp.eye(5) + u_w)) < 1e-12
        assert _rel_err(new_b, b + u_b) < 1e-12
        # Adam moved the coordinates, so W changed by W U, not by U.
        assert _rel_err(new_w, w + u_w) > 1e-3


def test_relative_coordinates_need_params_with_square_kernels():
    from nica.core.relative import in_relative_coordinates

    tx = in_relative_coordinates(optax.sgd(0.1))
    grads = {"demixer": {"kernel": jnp.eye(2)}}
    with pytest.raises(ValueError, match="needs params"):
        tx.update(grads, tx.init(grads))
    # A kernel found only by its name is not enough: square kernels are found by their type.
    with pytest.raises(ValueError, match="no square kernels"):
        tx.update(grads, tx.init(grads), grads)


def test_relative_coordinates_refuse_an_optimizer_wrapped_twice():
    """A pre-wrapped optimizer handed to the trainer would map W U back twice: refused."""
    from nica.core.relative import in_relative_coordinates

    wrapped = in_relative_coordinates(optax.adam(1e-3))
    with pytest.raises(ValueError, match="already wrapped"):
        in_relative_coordinates(wrapped)
    model = _model(3, depth=2, prior="laplace", seed=0, dtype=jnp.float32)
    graphdef, _, rest = nnx.split(model, nnx.Param, ...)
    epoch = make_epoch_fn(graphdef, rest, wrapped, gradient="relative_coords", batch_size=4)
    params = nnx.state(model, nnx.Param)
    x = jnp.zeros((8, 3), jnp.float32)
    with pytest.raises(ValueError, match="already wrapped"):  # when the step is built (traced)
        epoch(params, wrapped.init(params), jax.random.key(0), x, None)


def test_relative_coordinates_map_back_only_square_kernels_whatever_their_path(x64):
    """The mask comes from the variable type: a SquareKernel anywhere is mapped back, an
    nnx.Param named 'kernel' (a conditioning MLP) is not."""
    from nica.core.relative import SquareKernel, in_relative_coordinates

    class Holder(nnx.Module):
        def __init__(self):
            self.anywhere = SquareKernel(jnp.array([[2.0, 1.0], [0.0, 1.0]]))
            self.kernel = nnx.Param(jnp.array([[3.0, 0.0], [1.0, 1.0]]))

    params = nnx.state(Holder(), nnx.Param)
    tx = in_relative_coordinates(optax.sgd(1.0))
    grads = jax.tree.map(jnp.ones_like, params)
    updates, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(
        updates["anywhere"][...], -params["anywhere"][...] @ jnp.ones((2, 2))
    )
    np.testing.assert_allclose(updates["kernel"][...], -jnp.ones((2, 2)))
