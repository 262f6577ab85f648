"""Rules that follow the data dimension: kernel steps scaled by ``lr_reference_dim`` and the
``auto`` depth of the demixer."""

import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import nica
from nica import FitConfig
from nica.core.model import ICAModel
from nica.core.network import DemixingNetwork
from nica.core.priors import make_prior
from nica.core.relative import kernel_step_factor, scale_kernel_steps, square_kernel_mask
from nica.fitting.build import make_optimizer


def _params(dim: int):
    net = DemixingNetwork(
        dim, 3, activation="monotone_spline", rngs=nnx.Rngs(0), param_dtype=jnp.float64
    )
    return nnx.state(ICAModel(net, make_prior("laplace")), nnx.Param)


def _random_like(params, seed: int):
    leaves, treedef = jax.tree.flatten(params)
    rng = np.random.default_rng(seed)
    return jax.tree.unflatten(treedef, [jnp.asarray(rng.normal(size=p.shape)) for p in leaves])


@pytest.mark.parametrize(
    ("dim", "reference", "want"),
    [(3, 5, 1.0), (5, 5, 1.0), (20, 5, 0.25), (50, 8, 0.16), (500, None, 1.0)],
)
def test_kernel_step_factor(dim, reference, want):
    assert kernel_step_factor(dim, reference) == pytest.approx(want, rel=1e-15)


@pytest.mark.parametrize(("dim", "reference"), [(3, 5), (5, 5), (8, 5), (20, 5), (20, None)])
def test_only_square_kernels_above_the_reference_dim_are_scaled(dim, reference, x64):
    params = _params(dim)
    updates = _random_like(params, seed=dim)
    tx = scale_kernel_steps(reference)
    got, _ = tx.update(updates, tx.init(params), params)
    mask = jax.tree.leaves(square_kernel_mask(params))
    assert mask.count(True) == 3 and mask.count(False) > 3  # kernels; biases and slopes
    factor = 1.0 if reference is None or dim <= reference else reference / dim
    for is_kernel, a, b in zip(mask, jax.tree.leaves(got), jax.tree.leaves(updates), strict=True):
        np.testing.assert_array_equal(a, b * factor if is_kernel else b)


def test_default_optimizer_scales_kernel_steps_by_reference_over_dim(x64):
    """Adam's kernel updates under the default config are ``10 / D`` times the unscaled
    ones (``lr_reference_dim=None``), over several steps; every other update is equal."""
    dim = 40
    params = _params(dim)
    scaled, plain = (
        make_optimizer(FitConfig.from_flat(kw), n_samples=5000)
        for kw in ({}, {"lr_reference_dim": None})
    )
    mask = jax.tree.leaves(square_kernel_mask(params))
    s_state, p_state = scaled.init(params), plain.init(params)
    for step in range(3):
        grads = _random_like(params, seed=step)
        s_up, s_state = scaled.update(grads, s_state, params)
        p_up, p_state = plain.update(grads, p_state, params)
        for k, a, b in zip(mask, jax.tree.leaves(s_up), jax.tree.leaves(p_up), strict=True):
            np.testing.assert_allclose(a, b * (0.25 if k else 1.0), rtol=1e-12, atol=1e-15)
            assert float(jnp.abs(b).max()) > 0


def test_step_scaling_refuses_bad_use(x64):
    params = _params(4)
    tx = scale_kernel_steps(2)
    with pytest.raises(ValueError, match="needs params"):
        tx.update(params, tx.init(params))
    with pytest.raises(ValueError, match="reference_dim must be >= 1"):
        scale_kernel_steps(0)
    with pytest.raises(ValueError, match="lr_reference_dim must be >= 1"):
        FitConfig.from_flat({"lr_reference_dim": 0})
    with pytest.raises(ValueError, match="lr_reference_dim must be >= 1"):
        nica.OptimizerConfig(lr_reference_dim=0)
    with pytest.raises(ValueError, match="no square kernels"):
        plain = {"kernel": jnp.eye(2)}
        tx.update(plain, tx.init(plain), plain)


def test_unscaled_dimensions_compile_the_same_step(x64):
    """At ``D <= lr_reference_dim`` the transformation adds no operation to the update."""
    params = _params(4)
    updates = _random_like(params, seed=1)
    plain = optax.adam(1e-2)
    scaled = optax.chain(plain, scale_kernel_steps(5))

    def count(tx):
        fn = lambda u, p: tx.update(u, tx.init(p), p)[0]  # noqa: E731
        return len(jax.make_jaxpr(fn)(updates, params).eqns)

    assert count(scaled) == count(plain)


@pytest.mark.parametrize(
    ("depth", "dim", "want"),
    [
        ("auto", 2, (4, 5)),
        ("auto", 10, (4, 5)),
        ([4, 5], 2, (4, 5)),
        ((6, 2), 50, (6, 2)),
        ("auto", 11, (10,)),
        ("auto", 50, (10,)),
        (3, 50, (3,)),
        (7, 2, (7,)),
    ],
)
def test_candidate_depths(depth, dim, want):
    config = FitConfig.from_flat({"depth": depth})
    assert config.resolve(dim).depths == want
    if len(want) > 1:
        flat = repr(depth if isinstance(depth, str) else list(depth))
        with pytest.raises(ValueError, match=re.escape(f"depth {flat} at D={dim} is chosen by")):
            nica.build_model(config, dim, None, key=jax.random.key(0))


def test_auto_depth_rule_is_in_the_config_record():
    """Cell keys hash ``to_dict``: a changed rule must change the record of an ``auto`` config."""
    assert FitConfig().to_dict()["depth_rule"] == nica.fitting.config.AUTO_DEPTH_RULE
    assert "depth_rule" not in FitConfig.from_flat({"depth": 4}).to_dict()
    assert "depth_rule" not in FitConfig.from_flat({"depth": [4, 5]}).to_dict()


@pytest.mark.parametrize("depth", ["auto", 3, [4, 5], [8, 2, 5]])
def test_depth_settings_round_trip_through_the_flat_record(depth):
    """A search among depths is its list in the flat record (a JSON list), read back as the
    same search, in the same order (ties go to the first)."""
    config = FitConfig.from_flat({"depth": depth})
    assert config.flat()["depth"] == depth
    assert FitConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


@pytest.mark.parametrize(
    ("depth", "message"),
    [
        ("deep", "depth must be 'auto', an integer >= 1 or a list of them"),
        (0, "depth must be >= 1"),
        (2.5, "depth must be 'auto', an integer >= 1 or a list of them"),
        (True, "depth must be 'auto', an integer >= 1 or a list of them"),
        ([], "depths to search must be integers >= 1, got ()"),
        ([4, 0], "depths to search must be integers >= 1"),
        ([4, 2.5], "depths to search must be integers >= 1"),
        ([4, 4], r"depths to search must differ, got \[4, 4\]"),
    ],
)
def test_bad_depth_is_one_line_error(depth, message):
    with pytest.raises(ValueError, match=message):
        FitConfig.from_flat({"depth": depth})
    with pytest.raises(ValueError, match=message):
        nica.ModelConfig(depth=depth)


def test_auto_depth_builds_and_saves_the_resolved_demixer(tmp_path):
    """A default fit of 12 sources trains a demixer of ``DEEP_DEPTH`` layers, records that
    depth (not ``auto``) and reloads to the same transform."""
    from nica.fitting.config import DEEP_ABOVE_DIM, DEEP_DEPTH

    assert 12 > DEEP_ABOVE_DIM and DEEP_DEPTH == 10
    rng = np.random.default_rng(0)
    x = rng.laplace(size=(300, 12)) @ rng.normal(size=(12, 12))
    fitted = nica.fit(x, epochs=1, restarts=1, eval_every=1, conditional=False)
    assert fitted.config.model.depth == 10 and len(fitted.model.demixer.layers) == 10
    fitted.save(tmp_path / "fit")
    again = nica.load(tmp_path / "fit")
    assert again.config.model.depth == 10
    np.testing.assert_array_equal(np.asarray(again.transform(x)), np.asarray(fitted.transform(x)))


@pytest.mark.parametrize("depth", ["auto", [4, 5]])
def test_a_depth_search_keeps_each_seeds_depth_with_the_lower_validation_nll(depth):
    """``auto`` up to 10 sources, and ``depth=[4, 5]``, are exactly the explicit fits at 4 and
    5 layers (same split, same keys), each seed keeping the one with the lower best validation
    NLL."""
    rng = np.random.default_rng(1)
    xs = [np.tanh(rng.laplace(size=(240, 3)) @ rng.normal(size=(3, 3))) for _ in range(3)]
    us = [np.arange(240) % 4 for _ in range(3)]
    small = dict(epochs=3, restarts=1, eval_every=1, batch_size=64)
    seeds = [0, 1, 2]
    auto = nica.fit_seeds(xs, us, seeds=seeds, depth=depth, **small)
    fixed = {d: nica.fit_seeds(xs, us, seeds=seeds, depth=d, **small) for d in (4, 5)}
    for i, fitted in enumerate(auto):
        val = [fixed[d][i].result.best_val_nll for d in (4, 5)]
        want = (4, 5)[int(np.argmin(val))]
        assert fitted.depth_search == {"depths": [4, 5], "val_nll": val, "chosen": want}
        assert fitted.config.model.depth == want and len(fitted.model.demixer.layers) == want
        np.testing.assert_array_equal(fitted.transform(xs[i]), fixed[want][i].transform(xs[i]))


def test_a_diverged_depth_is_never_kept():
    """A candidate that diverged loses to one that ran, whatever NLL it last recorded."""
    from nica.fitting.estimator import _keep_best_depth

    class Result:
        def __init__(self, val, diverged):
            self.best_val_nll, self.diverged = val, diverged

    def candidate(depth, val, diverged=None):
        config = FitConfig.from_flat({"depth": depth})
        return nica.FittedModel(None, config, None, None, Result(val, diverged))

    kept = _keep_best_depth((4, 5), (candidate(4, 1.0), candidate(5, -9.0, "NaN loss")))
    assert kept.config.model.depth == 4 and kept.depth_search["chosen"] == 4
    both = _keep_best_depth((4, 5), (candidate(4, 2.0, "NaN"), candidate(5, 1.0, "NaN")))
    assert both.config.model.depth == 4 and both.result.diverged == "NaN"
