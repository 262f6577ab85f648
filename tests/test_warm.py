"""Warm starts (nica.fitting.warm): a deeper demixer embedded from a shallower one computes the
same sources and likelihood, and a fit with ``warm_start='linear'`` starts every depth there."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import nica
from nica.core.conditional import SegmentPrior
from nica.core.model import ICAModel
from nica.core.network import DemixingNetwork
from nica.fitting.config import DEEP_ABOVE_DIM
from nica.fitting.warm import embed_params, stack_params
from synthetic import make_preset

DIM, SEGMENTS = 3, 4


def _model(depth: int, seed: int, noisy: bool = True) -> ICAModel:
    """A float64 model, freshly initialised (learnable activations at the identity) or with
    every parameter moved at random (``noisy``: activations far from the identity)."""
    rngs = nnx.Rngs(seed)
    demixer = DemixingNetwork(
        DIM, depth, activation="monotone_spline", rngs=rngs, param_dtype=jnp.float64
    )
    prior = SegmentPrior(SEGMENTS, DIM, family="gennorm", param_dtype=jnp.float64)
    model = ICAModel(demixer, prior)
    if not noisy:
        return model
    graphdef, params = nnx.split(model, nnx.Param)
    rng = np.random.default_rng(seed)
    noisy = jax.tree.map(lambda a: a + 0.3 * rng.normal(size=a.shape), params)
    return nnx.merge(graphdef, noisy)


def _data(n: int = 64):
    rng = np.random.default_rng(5)
    return jnp.asarray(rng.normal(size=(n, DIM))), jnp.asarray(np.arange(n) % SEGMENTS)


@pytest.mark.parametrize("shallow,deep", [(1, 3), (2, 4)])
def test_embedded_deeper_model_computes_what_the_shallow_one_does(shallow, deep, x64):
    x, u = _data()
    starts = [_model(shallow, seed) for seed in (0, 1)]
    templates = [_model(deep, seed, noisy=False) for seed in (10, 11)]
    params = embed_params(stack_params(starts), shallow, stack_params(templates))
    graphdef = nnx.graphdef(templates[0])
    for i, start in enumerate(starts):
        embedded = nnx.merge(graphdef, jax.tree.map(lambda a, i=i: a[i, 0], params))
        np.testing.assert_allclose(embedded.log_likelihood(x, u), start.log_likelihood(x, u), 1e-12)
        np.testing.assert_allclose(embedded.demixer(x), start.demixer(x), 1e-12)
        for k in range(shallow, deep):
            layer = embedded.demixer.layers[k]
            assert np.array_equal(layer.kernel[...], np.eye(DIM))
            assert not np.any(layer.bias[...])
    # The template's activations beyond the kept ones are left as they are: only their
    # identity initialisation makes the deeper model equal the shallow one.
    moved = [_model(deep, seed) for seed in (10, 11)]
    params = embed_params(stack_params(starts), shallow, stack_params(moved))
    embedded = nnx.merge(graphdef, jax.tree.map(lambda a: a[0, 0], params))
    assert not np.allclose(embedded.log_likelihood(x, u), starts[0].log_likelihood(x, u))


def test_embedding_needs_a_deeper_template():
    with pytest.raises(ValueError, match="deeper demixer"):
        embed_params(stack_params([_model(2, 0)]), 2, stack_params([_model(2, 1)]))


def test_auto_warm_start_is_linear_exactly_where_the_deep_demixer_is_fitted():
    config = nica.FitConfig()
    assert config.resolve(DEEP_ABOVE_DIM).warm_start == "none"
    assert config.resolve(DEEP_ABOVE_DIM + 1).warm_start == "linear"
    assert config.resolve().warm_start is None  # auto without the data's dimension
    assert config.replace(warm_start="linear").resolve(2).warm_start == "linear"


def test_a_warm_started_fit_starts_every_depth_from_the_linear_fit():
    data = make_preset("tiny", 0)
    settings = dict(epochs=3, restarts=2, restart_epochs=1, eval_every=1, batch_size=50)
    fitted = nica.fit(data.x, data.u, depth=[2, 3], warm_start="linear", progress=None, **settings)
    linear = nica.fit(data.x, data.u, depth=1, warm_start="none", progress=None, **settings)
    # The linear stage is the linear fit, with its restarts.
    assert fitted.restarts == linear.restarts
    assert fitted.histories["warm_start"]["val_nll"] == linear.result.history["val_nll"]
    # Every candidate depth's first evaluation is the linear fit's best model.
    for history in fitted.histories["depths"]:
        assert history["val_nll"][0] == pytest.approx(linear.result.best_val_nll, rel=1e-5)
    cold = nica.fit(data.x, data.u, depth=[2, 3], warm_start="none", progress=None, **settings)
    assert cold.histories["depths"][0]["val_nll"][0] != pytest.approx(
        linear.result.best_val_nll, rel=1e-3
    )
    assert "warm_start" not in cold.histories


def test_a_progressive_warm_start_grows_each_depth_from_the_one_below():
    data = make_preset("tiny", 0)
    settings = dict(epochs=3, restarts=2, restart_epochs=1, eval_every=1, batch_size=50)
    grown = nica.fit(
        data.x, data.u, depth=[2, 3], warm_start="progressive", progress=None, **settings
    )
    linear = nica.fit(data.x, data.u, depth=[2], warm_start="linear", progress=None, **settings)
    assert grown.restarts == linear.restarts
    assert grown.histories["warm_start"]["val_nll"] == linear.histories["warm_start"]["val_nll"]
    # Depth 2 is the linear warm start's depth-2 fit; depth 3 starts from depth 2's best.
    depth2, depth3 = grown.histories["depths"]
    assert depth2["val_nll"] == linear.result.history["val_nll"]
    assert depth3["val_nll"][0] == pytest.approx(min(depth2["val_nll"]), rel=1e-5)
    # A single depth 3 grows through depth 2, recorded in "grown".
    deep = nica.fit(data.x, data.u, depth=3, warm_start="progressive", progress=None, **settings)
    assert [h["val_nll"] for h in deep.histories["grown"]] == [depth2["val_nll"]]
    assert deep.result.history["val_nll"] == depth3["val_nll"]


def test_a_warm_start_at_depth_one_is_no_warm_start():
    data = make_preset("tiny", 0)
    settings = dict(epochs=2, restarts=2, restart_epochs=1, eval_every=1, progress=None)
    warm = nica.fit(data.x, data.u, depth=1, warm_start="linear", **settings)
    cold = nica.fit(data.x, data.u, depth=1, warm_start="none", **settings)
    assert warm.result.history["val_nll"] == cold.result.history["val_nll"]
    assert "warm_start" not in warm.histories


def test_nica_fits_plan_names_the_warm_start():
    from nica.apps.cli.fit import _plan

    config = nica.FitConfig.from_flat({"warm_start": "progressive", "depth": [4, 5]})
    plan = _plan(config, 5)
    assert "a depth-1 fit first" in plan and "each depth up to 5 grown from the one below" in plan
    assert "a linear fit first" in _plan(config.replace(warm_start="linear"), 5)
    assert "fit first" not in _plan(config.replace(warm_start="none"), 5)


def test_fit_order_lists_each_depth_once_with_its_start():
    from nica.fitting.warm import fit_order

    assert fit_order("none", (4, 5)) == [(4, None), (5, None)]
    assert fit_order("linear", (4, 5)) == [(1, None), (4, 1), (5, 1)]
    assert fit_order("linear", (1, 3)) == [(1, None), (3, 1)]  # depth 1 is the start itself
    assert fit_order("linear", (1,)) == [(1, None)]  # nothing deeper: no warm start
    assert fit_order("progressive", (3, 5)) == [(1, None), (2, 1), (3, 2), (4, 3), (5, 4)]
